"""Spark benchmark: TeraHAC's Spark engine beside the local engine on the same graphs, in Spark local mode.

E2 (spec terahac §6.2): digits cosine 10-NN (D1), local engine vs Spark ``local[2]``: bit-identical merge tables,
time ratio reported. Scale: a planted-partition graph (D3) of n = 10^6 nodes and ~10^7 edges (``--quick``:
n = 10^4) on both engines, the per-round time, shuffle bytes and active clusters of the Spark run, the round
count, and the same bit-identity check. Selection: ``select_spark`` beside ``select`` with the same fitted
centres (the largest difference of an item's probability). Both engines run in this process; the local
engine on 2 threads, Spark on ``local[2]`` with the driver memory of ``--driver-memory``.

Run by ``teraml bench spark [--quick]`` (results/spark.json and a plot) and, quick, by the ``teraml demo``
section, which is skipped with a note when pyspark or Java is missing.
"""

from __future__ import annotations

import time

import numpy as np

from teraml._benchutil import check as _check
from teraml._demo import DemoContext, DemoSection, SummaryRow
from teraml.hac import TeraHAC

FIELDS = ("left", "right", "similarity", "size", "round")


def add_arguments(parser) -> None:
    parser.add_argument("--n", type=int, default=None, help="nodes of the scale graph (default 10^6; --quick 10^4)")
    parser.add_argument("--driver-memory", default="10g", help="spark.driver.memory of the new local session")


def _log(verbose, msg):
    if verbose:
        print(f"[spark] {msg}", flush=True)


def _identical(a, b) -> bool:
    da, db = a.dendrogram_, b.dendrogram_
    return all(np.array_equal(getattr(da, f), getattr(db, f)) for f in FIELDS)


def _session(driver_memory: str):
    from teraml._spark import spark_session

    return spark_session("local[2]", config={"spark.driver.memory": driver_memory,
                                             "spark.sql.shuffle.partitions": "8"})


def _pair(graph, spark, params, verbose, label):
    """Local engine (2 threads) then the Spark engine on one graph: both models and times."""
    _log(verbose, f"{label}: local engine")
    t0 = time.perf_counter()
    local = TeraHAC(n_jobs=2, **params).fit(graph)
    t_local = time.perf_counter() - t0
    _log(verbose, f"{label}: local {t_local:.1f} s, {local.n_rounds_} rounds; Spark engine")
    t0 = time.perf_counter()
    on_spark = TeraHAC(engine=spark, verbose=verbose, **params).fit(graph)
    t_spark = time.perf_counter() - t0
    _log(verbose, f"{label}: Spark {t_spark:.1f} s, {on_spark.n_rounds_} rounds")
    return local, t_local, on_spark, t_spark


def run(*, quick=False, verbose=True, n=None, driver_memory="10g", scale=True) -> DemoSection:
    """E2, then (``scale``) the scale run and the selection parity; ``teraml demo`` runs E2 alone."""
    from teraml.hac._bench import d1_graph, d3_graph

    res: dict = {"quick": bool(quick)}
    checks: list = []
    try:
        spark = _session(driver_memory)
    except ImportError as exc:
        res["skipped"] = str(exc)
        checks.append(_check("E2", f"Spark unavailable: {exc}", None, None, None, "identical", None))
        res["checks"] = checks
        return _section(res)
    res["spark_version"] = spark.version
    res["master"] = spark.sparkContext.master
    # warm-up: numba caches and the Python workers, reported apart
    t0 = time.perf_counter()
    TeraHAC(threshold=0.5, engine=spark).fit(d3_graph(200)[0])
    res["warmup_seconds"] = time.perf_counter() - t0

    g1 = d1_graph(10)[0]
    local, t_l, sp, t_s = _pair(g1, spark, {"threshold": 0.0}, verbose, "E2 D1")
    same = _identical(local, sp)
    res["e2"] = {"n": g1.n_nodes, "edges": g1.n_edges, "local_seconds": t_l, "spark_seconds": t_s,
                 "rounds": sp.n_rounds_, "identical": same, "round_stats": sp.round_stats_}
    checks.append(_check("E2", f"D1 digits 10-NN ({g1.n_edges:,} edges), t=0: merge tables bit-identical; time "
                         "Spark local[2] / local engine (reported)", t_s, t_l, t_s / t_l, "identical", same))

    if not scale:
        res["checks"] = checks
        return _section(res)
    n = int(n or (10_000 if quick else 1_000_000))
    _log(verbose, f"scale: D3 n={n:,}")
    g3 = d3_graph(n)[0]
    local, t_l, sp, t_s = _pair(g3, spark, {"threshold": 0.0}, verbose, f"D3 n={n:,}")
    same = _identical(local, sp)
    stats = sp.round_stats_
    res["scale"] = {"n": n, "edges": g3.n_edges, "local_seconds": t_l, "spark_seconds": t_s,
                    "local_rounds": local.n_rounds_, "rounds": sp.n_rounds_, "identical": same,
                    "round_seconds": [s["seconds"] for s in stats],
                    "round_shuffle_bytes": [s.get("shuffle_bytes") for s in stats],
                    "round_active": [s["active"] for s in stats], "round_edges": [s["edges"] for s in stats],
                    "local_round_seconds": [s["seconds"] for s in local.round_stats_]}
    checks.append(_check("scale", f"D3 n={n:,} ({g3.n_edges:,} edges), t=0, {sp.n_rounds_} rounds: merge tables "
                         "bit-identical; time Spark local[2] / local engine on 2 threads (reported)", t_s, t_l,
                         t_s / t_l, "identical", same))
    try:
        res["selection"] = _selection_parity(spark, quick)
        s = res["selection"]
        checks.append(_check("select", f"select_spark vs select, n={s['n']:,}, same fitted centres: max |p diff| "
                             "and equal representatives", s["max_p_diff"], None, None, "<= 1e-6 and equal",
                             s["max_p_diff"] <= 1e-6 and s["same_representatives"]))
    except ImportError as exc:
        res["selection"] = {"error": str(exc)}
    res["checks"] = checks
    return _section(res)


def _selection_parity(spark, quick) -> dict:
    """``score_spark`` (select_spark's scores) and the in-process ``SensitivitySampler`` with one fitted KMeans:
    the largest difference of any row's probability, and whether the representatives are the same rows."""
    import pandas as pd
    from sklearn.cluster import KMeans

    from teraml.selection import SensitivitySampler
    from teraml.selection.spark import score_spark

    n = 5_000 if quick else 50_000
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    loss = np.abs(X[:, 0]) + 0.1
    km = KMeans(20, n_init=1, random_state=0).fit(X)
    t0 = time.perf_counter()
    ref = SensitivitySampler(400, clusterer=km, random_state=0).fit(X, lambda i: loss[i])
    t_local = time.perf_counter() - t0
    df = spark.createDataFrame(pd.DataFrame({"id": np.arange(n, dtype=np.int64), "embedding": list(X)}))
    t0 = time.perf_counter()
    with score_spark(df, 400, clusterer=km, loss_fn=lambda ids: loss[ids], random_state=0) as s:
        got = s.probabilities().toPandas().sort_values("id")
        reps = np.sort(np.asarray(s.representatives))
    t_spark = time.perf_counter() - t0
    return {"n": n, "local_seconds": t_local, "spark_seconds": t_spark,
            "max_p_diff": float(np.max(np.abs(got["probability"].to_numpy() - ref.probabilities_))),
            "same_representatives": bool(np.array_equal(reps, np.sort(ref.representatives_)))}


def _section(res) -> DemoSection:
    import matplotlib.pyplot as plt

    sec = DemoSection(title="TeraHAC on Apache Spark (teraml.hac.engines.spark)", results=res)
    if "skipped" in res:
        sec.text = f"Skipped: {res['skipped']}"
        return sec
    sec.text = ("The Spark engine runs the same round driver and the same numba kernels as the local engine "
                "(groupBy().applyInPandas per partition, exact aggregates, a checkpoint per round); on the same "
                f"input its merge table is bit-identical. Spark {res['spark_version']}, {res['master']}; "
                f"warm-up (Python workers, numba caches) {res['warmup_seconds']:.1f} s, not counted.")
    rows = []
    for key in ("e2", "scale"):
        r = res.get(key)
        if r:
            rows.append([key, r["n"], r["edges"], r["rounds"], f"{r['local_seconds']:.1f}", f"{r['spark_seconds']:.1f}",
                         f"{r['spark_seconds'] / r['local_seconds']:.1f}", "yes" if r["identical"] else "NO"])
    sec.tables = [("local engine vs Spark local[2]", ["run", "n", "edges", "rounds", "local s", "Spark s",
                                                     "Spark / local", "bit-identical"], rows)]
    sc = res.get("scale") or {**res["e2"], "local_round_seconds": [],
                                  "round_seconds": [s["seconds"] for s in res["e2"]["round_stats"]],
                                  "round_shuffle_bytes": [s.get("shuffle_bytes") for s in res["e2"]["round_stats"]],
                                  "round_active": [s["active"] for s in res["e2"]["round_stats"]],
                                  "round_edges": [s["edges"] for s in res["e2"]["round_stats"]]}
    if sc:
        sec.tables.append((f"Spark rounds (n={sc['n']:,})", ["round", "active", "edges", "seconds", "shuffle MB"],
                           [[i, a, e, f"{s:.1f}", "" if b is None else f"{b / 1e6:.1f}"]
                            for i, (a, e, s, b) in enumerate(zip(sc["round_active"], sc["round_edges"],
                                                                sc["round_seconds"], sc["round_shuffle_bytes"]))]))
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        r = np.arange(len(sc["round_seconds"]))
        ax.bar(r - 0.2, sc["round_seconds"], 0.4, label="Spark seconds")
        if sc["local_round_seconds"]:
            ax.bar(r[:len(sc["local_round_seconds"])] + 0.2, sc["local_round_seconds"], 0.4, label="local seconds")
        ax.set_xlabel("round")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("seconds")
        ax2 = ax.twinx()
        mb = [np.nan if b is None else b / 1e6 for b in sc["round_shuffle_bytes"]]
        ax2.plot(r, mb, "k.-", label="Spark shuffle MB")
        ax2.set_ylabel("shuffle MB written")
        ax.set_title(f"D3 n={sc['n']:,}, {sc['edges']:,} edges: per-round cost")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8)
        fig.tight_layout()
        sec.figures = [("per-round time and shuffle bytes", fig)]
    checks = res["checks"]
    sec.tables.append(("checks", ["id", "criterion", "ours", "baseline", "ratio", "threshold", "result"],
                       [[c["id"], c["criterion"], c["ours"], c["baseline"], c["ratio"], c["threshold"],
                         "----" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")] for c in checks]))
    return sec


def demo(ctx: DemoContext) -> DemoSection:
    sec = run(quick=True, verbose=ctx.verbose, scale=False)
    e2 = sec.results.get("e2")
    if e2:
        sec.summary = [SummaryRow("hac (spark)", "D1 merge table, Spark local[2] vs local engine: bit-identical; "
                                  "time ratio", f"{e2['spark_seconds']:.1f} s", f"{e2['local_seconds']:.2f} s",
                                  e2["spark_seconds"] / e2["local_seconds"])]
    else:
        sec.summary = [SummaryRow("hac (spark)", "skipped: " + sec.results.get("skipped", ""), "", "", None)]
    return sec
