"""select_spark: parity with select on fixed centres (every row's p, the representatives), the draws' distribution,
the Selection it returns, bad input, and `teraml select --engine spark` against the local engine."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import chisquare
from sklearn.cluster import KMeans

from teraml import cli
from teraml.selection import SensitivitySampler


class FixedCenters:
    """A fitted clusterer: just cluster_centers_."""

    def __init__(self, centers):
        self.cluster_centers_ = np.asarray(centers, dtype=np.float64)


def _blobs(n, d=6, k=6, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) + rng.normal(scale=4, size=(k, d))[rng.integers(0, k, n)]).astype(dtype)
    loss = np.abs(X[:, 0]).astype(np.float64) + 0.1 * rng.random(n)
    return X, loss


def _ids(n):
    return 7 + 10 * np.arange(n, dtype=np.int64)    # ids are not row positions (but ascending with them)


def _frame(spark, X, ids, *, vector=False, partitions=None):
    """(id long, embedding array<float|double>), or a pyspark.ml Vector column with ``vector``."""
    kind = pa.float32() if X.dtype == np.float32 else pa.float64()
    emb = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel(), kind), X.shape[1]).cast(pa.list_(kind))
    df = spark.createDataFrame(pa.table({"id": ids, "embedding": emb}))
    if vector:
        from pyspark.ml.functions import array_to_vector

        df = df.select("id", array_to_vector("embedding").alias("embedding"))
        assert type(df.schema["embedding"].dataType).__name__ == "VectorUDT"
    return df.repartition(partitions, "id") if partitions else df


def _score_both(spark, X, loss, budget, *, partitions=None, vector=False, **params):
    """(SparkScores, the fitted in-process SensitivitySampler, Spark's p in row order, Spark's labels)."""
    from teraml.selection.spark import score_spark

    ids = _ids(X.shape[0])
    calls = []

    def loss_fn(q):
        calls.append(q.copy())
        return loss[(q - 7) // 10]

    fn = loss_fn if params.get("score", "loss") == "loss" else None
    s = score_spark(_frame(spark, X, ids, vector=vector, partitions=partitions), budget, loss_fn=fn, **params)
    ref = SensitivitySampler(budget, **params).fit(X, (lambda i: loss[i]) if fn else None)
    got = sorted(s.probabilities().collect())
    assert [r["id"] for r in got] == ids.tolist()
    if fn is not None:
        assert len(calls) == 1 and calls[0].dtype == np.int64 and np.array_equal(calls[0], ids[ref.representatives_])
    return s, ref, np.array([r["probability"] for r in got]), np.array([r["label"] for r in got])


def _check_parity(s, ref, p, labels):
    ids = _ids(ref.labels_.size)
    assert np.array_equal(labels, ref.labels_)
    assert np.array_equal(s.representatives, ids[ref.representatives_])      # same rows, same cluster order
    np.testing.assert_allclose(p, ref.probabilities_, rtol=1e-6, atol=1e-12)
    assert abs(p.sum() - 1) < 1e-9 and np.all(p[ref.representatives_] == 0)
    np.testing.assert_allclose(s.lam, ref.lam_, rtol=1e-9)
    np.testing.assert_allclose(s.clustering_cost, ref.clustering_cost_, rtol=1e-9)
    assert np.array_equal(s.cluster_sizes, ref.cluster_sizes_)


# ------------------------------------------------------------------------------------------ parity (fast)


def test_parity_and_selection_small(spark):
    """600 rows, fixed centres with one that no row is nearest (dropped, as in-process): equal p and representatives,
    and the Selection is select's in form (ids, weights count / (m p), the representatives' losses)."""
    X, loss = _blobs(600)
    centers = np.vstack([KMeans(6, n_init=1, random_state=0).fit(X).cluster_centers_, np.full((1, 6), 1e3)])
    with pytest.warns(UserWarning, match="dropped 1 empty clusters of 7"):
        s, ref, p, labels = _score_both(spark, X, loss, 60, clusterer=FixedCenters(centers), n_clusters=7,
                                        random_state=3)
    with s:
        _check_parity(s, ref, p, labels)
        sel = s.sample()
        ids = _ids(600)
        k, m = 6, 54
        assert sel.n_total == 600 and sel.n_loss_queries == k and int(sel.counts[sel.role == "sample"].sum()) == m
        assert np.all(np.diff(sel.indices) > 0) and set(sel.indices.tolist()) <= set(ids.tolist())
        rep = sel.role == "representative"
        assert sorted(sel.indices[rep].tolist()) == sorted(s.representatives.tolist())
        np.testing.assert_array_equal(sel.losses[rep], loss[(sel.indices[rep] - 7) // 10])
        drawn = ~rep
        row = (sel.indices[drawn] - 7) // 10
        np.testing.assert_allclose(sel.probabilities[drawn], ref.probabilities_[row], rtol=1e-6)
        np.testing.assert_allclose(sel.weights[drawn], sel.counts[drawn] / (m * ref.probabilities_[row]), rtol=1e-6)
        assert np.all(sel.weights[rep] == 1) and np.all(sel.probabilities[rep] == 1)
        # the sampling stream restarts without random_state; another seed draws again from the same scores
        again, other = s.sample(), s.sample(random_state=11)
        assert np.array_equal(again.indices, sel.indices) and np.array_equal(again.weights, sel.weights)
        assert not np.array_equal(other.indices, sel.indices)
        # estimate_mean queries loss_fn (with ids) only for the drawn rows
        asked = []
        mean, se = sel.estimate_mean(lambda q: asked.append(q) or loss[(q - 7) // 10])
        assert np.isfinite(mean) and se > 0 and asked[0].size == len(sel)    # another callable: every row


def test_parity_kmeans_score_vector_column(spark):
    """The loss-free score on a pyspark.ml Vector column (float64), per-cluster normalisation, uniform_mix,
    rows spread over 3 hash partitions."""
    X, loss = _blobs(400, d=4, k=5, seed=1, dtype=np.float64)
    km = KMeans(5, n_init=1, random_state=0).fit(X)
    s, ref, p, labels = _score_both(spark, X, loss, 40, clusterer=km, n_clusters=5, score="kmeans",
                                    normalize="cluster", uniform_mix=0.1, random_state=0, vector=True, partitions=3)
    with s:
        _check_parity(s, ref, p, labels)
        sel = s.sample()
        assert sel.n_loss_queries == 0 and int(sel.counts.sum()) == 40 and set(sel.role.tolist()) == {"sample"}


# ------------------------------------------------------------------------------------------ parity (slow, the spec's)


@pytest.mark.slow
@pytest.mark.parametrize("score, vector", [("loss", False), ("kmeans", True)])
def test_parity_5000_rows(spark, score, vector):
    X, loss = _blobs(5000, d=8, k=10, seed=2, dtype=np.float64 if vector else np.float32)
    km = KMeans(10, n_init=1, random_state=0).fit(X)
    s, ref, p, labels = _score_both(spark, X, loss, 200, clusterer=km, n_clusters=10, score=score, random_state=0,
                                    vector=vector, partitions=4)
    with s:
        _check_parity(s, ref, p, labels)


@pytest.mark.slow
def test_draws_match_the_in_process_distribution(spark):
    """Per-cluster counts of 20 draws of m = 190 from 4 partitions against m p summed per cluster: chi-square
    p > 0.001 (the spec's test); and the in-process draws of the same size pass the same test."""
    X, loss = _blobs(5000, d=8, k=10, seed=2)
    km = KMeans(10, n_init=1, random_state=0).fit(X)
    s, ref, p, labels = _score_both(spark, X, loss, 200, clusterer=km, n_clusters=10, random_state=0, partitions=4)
    with s:
        k = s.n_clusters
        m = 200 - k
        expected = 20 * m * np.bincount(ref.labels_, weights=ref.probabilities_, minlength=k)
        got = np.zeros(k)
        for seed in range(20):
            sel = s.sample(random_state=seed)
            drawn = sel.role == "sample"
            rows = (sel.indices[drawn] - 7) // 10
            got += np.bincount(ref.labels_[rows], weights=sel.counts[drawn], minlength=k)
        assert got.sum() == 20 * m
        assert chisquare(got, expected).pvalue > 0.001, (got, expected)


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def small(spark):
    X, loss = _blobs(30, d=3, k=3)
    return _frame(spark, X, np.arange(30)), loss, X


def test_bad_columns_and_types(spark, small):
    from teraml.selection import select_spark

    df, loss, X = small
    fn = lambda q: loss[q]   # noqa: E731
    with pytest.raises(ValueError, match=r"features_col 'vec' is not a column of df; found \['id', 'embedding'\]"):
        select_spark(df, 10, features_col="vec", loss_fn=fn)
    with pytest.raises(ValueError, match=r"id_col 'key' is not a column of df"):
        select_spark(df, 10, id_col="key", loss_fn=fn)
    with pytest.raises(TypeError, match=r"column 'embedding' \(features_col\) must be an array of numbers or a "
                                        r"pyspark.ml Vector; got string"):
        select_spark(df.selectExpr("id", "'a' AS embedding"), 10, loss_fn=fn)
    with pytest.raises(TypeError, match=r"column 'id' \(id_col\) must hold integer ids \(long\); got double"):
        select_spark(df.selectExpr("CAST(id AS double) AS id", "embedding"), 10, loss_fn=fn)
    with pytest.raises(TypeError, match="df must be a Spark DataFrame or a path to Parquet"):
        select_spark(np.zeros((5, 2)), 2, score="kmeans")
    with pytest.raises(ValueError, match="could not read"):
        select_spark("/nonexistent/emb.parquet", 2, score="kmeans")


def test_bad_parameters(spark, small):
    from teraml.selection import select_spark

    df, loss, X = small
    fn = lambda q: loss[q]   # noqa: E731
    for budget, exc, msg in [(50, ValueError, r"budget must be an integer in \[1, 30\]; got 50"),
                             ("5", TypeError, r"budget must be an integer in \[1, 30\]; got str '5'")]:
        with pytest.raises(exc, match=msg):
            select_spark(df, budget, loss_fn=fn)
    with pytest.raises(ValueError, match=r"budget must be >= n_clusters \+ 1 = 6 for score='loss'; got 5"):
        select_spark(df, 5, n_clusters=5, loss_fn=fn)
    # parameters that do not depend on the data fail before any pass over it
    for params, exc, msg in [({"z": 0.5}, ValueError, "z must be a finite float >= 1; got 0.5"),
                             ({"lam": "big"}, ValueError, "lam must be 'balanced' or a finite float >= 0; got 'big'"),
                             ({"uniform_mix": 1.0}, ValueError, r"uniform_mix must be a float in \[0, 1\); got 1.0"),
                             ({"normalize": "x"}, ValueError, "normalize must be 'global' or 'cluster'; got 'x'"),
                             ({"clusterer": "kmeans"}, ValueError, "clusterer must be 'auto' \\(pyspark.ml KMeans\\) "
                                                                   "or a fitted estimator with cluster_centers_"),
                             ({"foo": 1}, TypeError, r"select_spark got unexpected parameters \['foo'\]")]:
        with pytest.raises(exc, match=msg):
            select_spark(df, 10, loss_fn=fn, **params)
    with pytest.raises(ValueError, match="score='loss' needs loss_fn"):
        select_spark(df, 10)
    with pytest.raises(ValueError, match=r"loss_fn must return 2 finite losses >= 0; got shape \(2,\), 1 invalid"):
        select_spark(df, 10, clusterer=FixedCenters(X[:2]), n_clusters=2, loss_fn=lambda q: np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"clusterer's cluster_centers_ must have shape \(k, 3\); got \(2, 4\)"):
        select_spark(df, 10, clusterer=FixedCenters(np.zeros((2, 4))), loss_fn=fn)


def test_bad_rows(spark):
    from teraml.selection import select_spark

    rows = [(i, [float(i), 1.0]) for i in range(6)]
    cases = [
        (rows[:3] + [(3, [float("nan"), 1.0])] + rows[4:], "must be finite; found NaN, inf or a missing value in the "
                                                           "row with id 3"),
        (rows[:5] + [(5, [1.0])], "needs one length for every row; found lengths 1 and 2"),
        (rows + [(2, [0.0, 0.0])], "must hold unique ids; 2 appears 2 times"),
        (rows + [(None, [0.0, 0.0])], "column 'id' \\(id_col\\) has 1 missing ids"),
    ]
    for data, msg in cases:
        df = spark.createDataFrame(data, "id long, embedding array<double>")
        with pytest.raises(ValueError, match=msg):
            select_spark(df, 3, score="kmeans")


def test_missing_pyspark_is_an_import_error(monkeypatch):
    from teraml.selection import select_spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ImportError, match=r"select_spark requires pyspark>=4.0 and Java 17\+: pip install "
                                          r"teraml\[spark\]"):
        select_spark("emb.parquet", 10, score="kmeans")


def test_lazy_export_loads_no_pyspark():
    code = ("import sys, teraml.selection as s; f = s.select_spark; "
            "assert 'pyspark' not in sys.modules and f.__module__ == 'teraml.selection.spark'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ teraml select


def _run(capsys, *argv):
    rc = cli.main(["select", *map(str, argv)])
    return rc, capsys.readouterr().err


def test_cli_spark_engine_matches_local(spark, tmp_path, capsys):
    """The CLI cannot pass a fitted clusterer, so each engine clusters on its own (sklearn KMeans, pyspark.ml KMeans);
    on 5 well-separated blobs both find the same clusters, so the representatives are equal and every row drawn by
    both engines has the same p (to the float32 rounding of sklearn's centres)."""
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(500, 6)) + np.repeat(rng.normal(scale=12, size=(5, 6)), 100, axis=0)).astype(np.float32)
    ids = 1000 + np.arange(500)
    loss = np.abs(X[:, 0]).astype(np.float64) + 0.1
    pq.write_table(pa.table({"id": ids, "embedding": pa.array(list(X), type=pa.list_(pa.float32()))}),
                   tmp_path / "emb.parquet")
    pq.write_table(pa.table({"id": ids, "loss": loss}), tmp_path / "loss.parquet")
    outs = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.parquet"
        rc, err = _run(capsys, tmp_path / "emb.parquet", "--budget", 80, "-k", 5, "--losses", tmp_path / "loss.parquet",
                       "--seed", 0, "--engine", engine, "--spark-master", "local[2]", "-o", out, "--quiet")
        assert rc == 0, err
        summary = json.loads(err.strip().splitlines()[-1])
        assert summary["n"] == 500 and summary["k"] == 5 and summary["m"] == 75
        outs[engine] = pq.read_table(out).to_pydict()
    loc, spk = outs["local"], outs["spark"]
    assert set(spk) == set(loc) and all(i is None for i in spk["index"])    # Spark rows are named by id alone
    rep = {e: sorted(i for i, r in zip(o["id"], o["role"]) if r == "representative") for e, o in outs.items()}
    assert len(rep["spark"]) == 5 and rep["spark"] == rep["local"]
    assert sum(c for c, r in zip(spk["count"], spk["role"]) if r == "sample") == 75
    assert all(v is not None for v in spk["loss"])           # every loss the file knows is filled in
    p_loc = {i: p for i, p, r in zip(loc["id"], loc["probability"], loc["role"]) if r == "sample"}
    both = [(p_loc[i], p) for i, p, r in zip(spk["id"], spk["probability"], spk["role"]) if r == "sample" and i in p_loc]
    assert len(both) >= 5
    np.testing.assert_allclose(*zip(*both), rtol=1e-4)


def test_cli_spark_engine_bad_input(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.zeros((10, 2)))
    pq.write_table(pa.table({"id": [1, 2], "embedding": [[0.0], [1.0]]}), tmp_path / "e.parquet")
    for argv, msg in [((tmp_path / "e.npy", "--budget", 3, "--score", "kmeans"), "--engine spark reads Parquet"),
                      ((tmp_path / "e.parquet", "--budget", 3), "--engine spark with --score loss needs --losses"),
                      ((tmp_path / "e.parquet", "--budget", 3, "--score", "kmeans", "--clusterer", "kmeans"),
                       "--clusterer kmeans applies to --engine local")]:
        rc, err = _run(capsys, *argv, "--engine", "spark", "-o", tmp_path / "o.parquet")
        assert rc == 2 and msg in err, err


def test_warnings_surface_as_in_process(spark):
    """All-zero representative losses: the same warning as select, and p proportional to delta alone."""
    X, _ = _blobs(200, d=3, k=4, seed=5)
    zero = np.zeros(200)
    km = KMeans(4, n_init=1, random_state=0).fit(X)
    with pytest.warns(UserWarning, match="all representative losses are 0"):
        s, ref, p, labels = _score_both(spark, X, zero, 40, clusterer=km, n_clusters=4, random_state=0)
    with s:
        _check_parity(s, ref, p, labels)
