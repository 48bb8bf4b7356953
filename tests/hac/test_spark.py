"""The Spark engine (spec terahac §6.1 E1): bit-identical merge tables with the local engine, on the shared
local[2] SparkSession (tests/conftest.py), plus the DataFrame input, the CLI, a retried task and the errors."""

import json
import sys
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest

from teraml.datasets import make_planted_partition_graph
from teraml.hac import Graph, TeraHAC

FIELDS = ("left", "right", "similarity", "size", "round")


def _same_tree(a, b):
    da, db = a.dendrogram_, b.dendrogram_
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(da, f), getattr(db, f), err_msg=f)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.n_rounds_ == b.n_rounds_


def _path(n=64):
    return Graph.from_edges(np.arange(n - 1), np.arange(1, n), np.arange(1, n) / n)


def _er(n=200, p=0.05, seed=0):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    return Graph.from_edges(iu[0][keep], iu[1][keep], rng.uniform(0, 1, keep.sum()), n_nodes=n)


def _planted(n=300, blocks=5):
    s, d, w, _ = make_planted_partition_graph(n, blocks, random_state=0)
    return Graph.from_edges(s, d, w, n_nodes=n)


@pytest.mark.parametrize("graph, params", [
    (_path(), {"threshold": 0.0}),                                   # D4, n = 64
    (_er(), {"threshold": 0.3, "random_state": 3}),                   # D5, t = 0.3, a tie order
    (_planted(), {"threshold": 0.05, "max_partition_size": 40}),      # D3, 5 blocks, capped partitions
], ids=["D4", "D5", "D3"])
def test_bit_identical_to_local(spark, graph, params, monkeypatch, tmp_path):
    """Spec E1. On D4 one SubgraphHAC task also fails once: Spark retries it (local[2,2]) and the merges are
    unchanged (the fault-tolerance check)."""
    import teraml.hac.engines.spark as spark_engine

    marker = str(tmp_path / "failed-once")
    if graph.n_nodes == 64:
        original = spark_engine._subgraph_group

        def flaky(pdf, eps, prune):   # a closure: shipped to the worker by value
            import os

            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected task failure")
            return original(pdf, eps, prune)

        monkeypatch.setattr(spark_engine, "_subgraph_group", flaky)
    local = TeraHAC(**params).fit(graph)
    on_spark = TeraHAC(engine=spark, **params).fit(graph)
    _same_tree(local, on_spark)
    assert [s["merges"] for s in local.round_stats_] == [s["merges"] for s in on_spark.round_stats_]
    assert [s["partitions"] for s in local.round_stats_] == [s["partitions"] for s in on_spark.round_stats_]
    assert (tmp_path / "failed-once").exists() == (graph.n_nodes == 64)


@pytest.mark.slow
def test_partition_in_spark_equals_driver_partition(spark):
    """collect_limit=None partitions in Spark (pointer jumping; the shared kernel on components over the cap):
    the same merges as the local engine, levels included."""
    from teraml.hac.engines.spark import SparkEngine

    g = _er(60, 0.1, seed=5)
    params = {"threshold": 0.2, "max_partition_size": 5, "random_state": 1, "affinity_levels": 2}
    local = TeraHAC(**params).fit(g)
    on_spark = TeraHAC(engine=SparkEngine(spark, collect_limit=None, checkpoint="local"), **params).fit(g)
    _same_tree(local, on_spark)
    assert max(s["max_partition"] for s in on_spark.round_stats_) <= 6


def test_link_sets_in_spark_equal_the_kernel(spark):
    """The distributed partition step (pointer jumping, components within the cap taken whole, larger ones through
    the shared kernel in applyInPandas) equals the kernel run on all the rows at once."""
    from teraml.hac._kernels import best_edges, build_csr
    from teraml.hac.engines.spark import SparkEngine, _link_group

    g = _er(60, 0.08, seed=1)
    size = np.random.default_rng(0).integers(1, 4, g.n_nodes)
    best, B = best_edges(build_csr(g.src, g.dst, g.weight, g.n_nodes), size)   # a real link graph: 2-cycles only
    has = best >= 0
    nodes = pd.DataFrame({"v": np.flatnonzero(has), "to": best[has], "w": B[has], "cnt": size[has]})
    want = _link_group(nodes, 7, 2).set_index("v")["key"]
    got = SparkEngine(spark)._link_sets(spark.createDataFrame(nodes), 7, 2).toPandas().set_index("v")["key"]
    assert got.loc[want.index].tolist() == want.tolist()
    assert (nodes.groupby(want.loc[nodes["v"]].to_numpy())["cnt"].sum() <= 7).all()


def test_components_by_pointer_jumping(spark):
    """A chain, a mutual pair and a lone node: every node reaches the smaller end of its mutual pair."""
    from teraml.hac.engines.spark import SparkEngine

    nodes = spark.createDataFrame(pd.DataFrame({"v": [0, 1, 2, 3, 4, 5, 6], "to": [1, 0, 1, 2, 3, 6, -1]}))
    comp = SparkEngine(spark)._components(nodes).toPandas().sort_values("v")
    assert comp["root"].tolist() == [0, 0, 0, 0, 0, 6, 6]


def test_dataframe_input_stays_in_spark(spark):
    """A DataFrame with non-contiguous ids, a node named only by a self-loop, a zero-weight row and a pair listed
    three times: cleaned in Spark exactly as Graph.from_edges cleans the same rows (a tie order too)."""
    import warnings

    from teraml.hac.engines.spark import read_edges

    g = _er(80, 0.1, seed=2)
    ids = np.arange(g.n_nodes) * 7 + 1000
    src = np.r_[ids[g.dst], 5, 6, ids[g.src[:1]], ids[g.dst[:1]]]
    dst = np.r_[ids[g.src], 5, ids[0], ids[g.dst[:1]], ids[g.src[:1]]]
    w = np.r_[g.weight, 1.0, 0.0, 0.31183145201048545, 0.9486494471372439]   # sums that differ if not left to right
    params = {"threshold": 0.25, "random_state": 5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for dup in ("max", "sum"):
            local = TeraHAC(**params).fit(Graph.from_edges(src, dst, w, duplicates=dup))
            df = spark.createDataFrame(pd.DataFrame({"src": src, "dst": dst, "weight": w}))
            X = df if dup == "max" else read_edges(df, duplicates="sum")
            model = TeraHAC(engine="spark", **params).fit(X)
            assert model.graph_.report == local.graph_.report
            labels = model.labels_.toPandas().sort_values("node")
            assert labels["node"].tolist() == local.node_ids_.tolist()          # 5 and 6 kept, as isolated nodes
            assert labels["cluster"].tolist() == local.labels_.tolist()
            merges = model.merges_.toPandas()
            for col, f in (("similarity", "similarity"), ("left", "left"), ("right", "right"), ("size", "size")):
                np.testing.assert_array_equal(merges[col].to_numpy(), getattr(local.dendrogram_, f))


def test_cli_parquet_to_parquet(spark, tmp_path):
    from teraml import cli

    g = _er(100, 0.08, seed=4)
    pd.DataFrame({"a": g.src, "b": g.dst, "w": g.weight}).to_parquet(tmp_path / "edges.parquet")
    args = ["hac", str(tmp_path / "edges.parquet"), "--threshold", "0.3", "--src-col", "a", "--dst-col", "b",
            "--weight-col", "w", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*args, "--engine", "spark", "--out", str(tmp_path / "spark")]) == 0
    local = pd.read_csv(tmp_path / "local" / "labels.csv")
    labels = pd.read_parquet(tmp_path / "spark" / "labels").sort_values("node")
    assert labels["cluster"].tolist() == local["cluster"].tolist()
    merges_local = pd.read_csv(tmp_path / "local" / "merges.csv")
    merges = pd.read_parquet(tmp_path / "spark" / "merges").sort_values("id")
    np.testing.assert_array_equal(merges["similarity"].to_numpy(), merges_local["similarity"].to_numpy())
    summary = json.loads((tmp_path / "spark" / "summary.json").read_text())
    assert summary["n_edges"] == g.n_edges and summary["rounds"]


@pytest.mark.parametrize("frame, err, match", [
    ({"src": [0, 1], "dst": [1, 2], "w": [0.5, 0.5]}, ValueError, r"lacks column 'weight'; found \['src', 'dst', 'w'\]"),
    ({"src": [0, 1], "dst": [1, 2], "weight": ["a", "b"]}, TypeError, r"weight must be numeric, got dtype string"),
    ({"src": [0, 1], "dst": [1, 2], "weight": [0.5, -0.3]}, ValueError,
     r"weight must be >= 0 \(0 means no edge\); found 1 negative values, min -0.3"),
    ({"src": [0, 1], "dst": [1, 2], "weight": [0.5, float("nan")]}, ValueError,
     r"weight must be finite; found 1 NaN/inf values"),
    ({"src": [0.5, 1.0], "dst": [1.0, 2.0], "weight": [0.5, 0.4]}, TypeError, r"node ids must be all integers or all"),
    ({"src": [0, 1], "dst": [0, 1], "weight": [0.5, 0.4]}, ValueError, r"graph has no edge with weight > 0 after"),
], ids=["column", "weight-type", "negative", "nan", "float-ids", "empty"])
def test_dataframe_errors(spark, frame, err, match):
    df = spark.createDataFrame(list(zip(*frame.values())), list(frame))   # Python rows: a NaN stays NaN
    with pytest.warns(UserWarning, match="self-loops") if "graph has no edge" in match else nullcontext():
        with pytest.raises(err, match=match):
            TeraHAC(threshold=0.1, engine="spark").fit(df)


def test_duplicates_in_spark(spark):
    from teraml.hac.engines.spark import read_edges

    df = spark.createDataFrame(pd.DataFrame({"src": ["a", "b", "a"], "dst": ["b", "a", "c"],
                                             "weight": [0.2, 0.5, 0.1]}))
    g = read_edges(df)
    assert g.node_ids.tolist() == ["a", "b", "c"]
    got = g.edges.toPandas().sort_values(["src", "dst"])
    assert got["weight"].tolist() == [0.5, 0.1]
    with pytest.raises(ValueError, match=r"1 node pairs appear with different weights, e.g. \(a, b\): 0.2 vs 0.5"):
        read_edges(df, duplicates="error")
    assert read_edges(df, duplicates="sum").edges.toPandas().sort_values(["src", "dst"])["weight"].tolist() == [0.7, 0.1]


def test_clone_shares_the_session(spark):
    """GridSearchCV clones the estimator: the SparkSession engine is shared, every other parameter copied."""
    from sklearn.base import clone

    model = TeraHAC(threshold=0.2, engine=spark, max_rounds=7)
    twin = clone(model)
    assert twin.engine is spark and twin.get_params()["max_rounds"] == 7 and twin is not model
    assert clone(TeraHAC(engine="spark")).engine == "spark"


def test_local_engine_rejects_a_dataframe(spark):
    df = spark.createDataFrame(pd.DataFrame({"src": [0], "dst": [1], "weight": [0.5]}))
    with pytest.raises(TypeError, match=r"X is a Spark DataFrame, which needs engine='spark'"):
        TeraHAC(threshold=0.1).fit(df)


def test_engine_parameter_message():
    with pytest.raises(ValueError, match=r"engine must be 'local', 'spark', a SparkSession or an object implementing "
                                         r"teraml.hac.engines.Engine, got 'dask'"):
        TeraHAC(threshold=0.1, engine="dask").fit(_path(8))


def test_missing_pyspark_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.delitem(sys.modules, "teraml.hac.engines.spark", raising=False)
    with pytest.raises(ImportError, match=r"engine='spark' requires pyspark>=4.0 and Java 17\+: "
                                          r"pip install teraml\[spark\]"):
        TeraHAC(threshold=0.1, engine="spark").fit(_path(8))


def test_missing_java_says_how_to_install(monkeypatch, tmp_path):
    import teraml._spark as ts

    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    ok, why = ts._java_ok()
    assert not ok and "no java executable" in why
    pyspark_sql = pytest.importorskip("pyspark.sql")
    monkeypatch.setattr(pyspark_sql.SparkSession, "getActiveSession", staticmethod(lambda: None))
    with pytest.raises(ImportError, match=r"requires pyspark>=4.0 and Java 17\+: pip install teraml\[spark\] "
                                          r"\(no java executable"):
        ts.spark_session()
