"""Sensitivity sampling on Apache Spark: :func:`select_spark`, the same selection as :func:`select` for a
DataFrame too large for one machine.

The input is a DataFrame with a long id column and an ``array<float>``/``array<double>`` (or ``pyspark.ml``
Vector) column, or a path to Parquet. Four steps, each a pass over the rows on the executors:

1. Cluster with ``pyspark.ml.clustering.KMeans(k, initMode="k-means||", initSteps=2, maxIter=20, tol=1e-4,
   seed)``, or take the centres of a fitted ``clusterer=`` (an estimator with ``cluster_centers_``).
2. A map over Arrow batches with the centres broadcast gives (id, label, D); ``groupBy(label)`` gives the
   cluster sizes, costs and representatives (``min(struct(squared distance, id))``: the member nearest its
   centre, ties to the lower id).
3. The driver calls ``loss_fn(ids)`` once, on the k representatives' ids, and broadcasts their rows; a pass
   writes delta (the distance to the representative) into a persisted table, and aggregates give lam and the
   per-partition sums of the sampling score v.
4. The driver draws how many of the m draws fall in each partition (multinomial); each partition draws its
   share i.i.d. proportional to p, seeded by (seed, partition id), so the draws are exactly i.i.d. from p.
   Only the k representatives and at most m drawn rows reach the driver.

Each row's probability p equals :func:`select`'s on the same centres (the assignment and the distances run
the very same numpy code, on the same float32/float64 values); the draws agree in distribution, not draw for
draw. The executors import ``teraml`` (install it there); pyspark is imported when a function here is called,
never when ``teraml.selection`` is.

>>> import numpy as np
>>> from teraml.selection import select_spark
>>> from teraml._spark import spark_session
>>> spark = spark_session("local[2]")                                        # doctest: +SKIP
>>> X = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
>>> df = spark.createDataFrame([(i, x.tolist()) for i, x in enumerate(X)],
...                            "id long, embedding array<float>")           # doctest: +SKIP
>>> sel = select_spark(df, 100, loss_fn=lambda ids: np.abs(X[ids, 0]),
...                    random_state=0)                                       # doctest: +SKIP

20 representatives were queried and 80 draws made; ``sel.indices`` are ids.

>>> sel.n_loss_queries, int(sel.counts.sum())   # doctest: +SKIP
(20, 100)
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from teraml._spark import is_spark_dataframe, require_pyspark, spark_session
from teraml._validation import InstanceOf, Interval, check_array, check_instance, check_param, type_name
from teraml.selection._cluster import assign, distance_to_rows, power_z, warn_dropped, warn_fitted_k
from teraml.selection._selection import Selection
from teraml.selection.sensitivity import (
    check_clustering_cost,
    check_losses,
    check_select_params,
    kmeans_scores,
    split_random_state,
    warn_k_vs_m,
    warn_small_probabilities,
    warn_uniform_fallback,
    warn_zero_losses,
)

__all__ = ["select_spark", "score_spark", "SparkScores", "SPARK_KMEANS"]

log = logging.getLogger(__name__)

#: The pyspark.ml KMeans settings of step 1 (k and seed come from the call).
SPARK_KMEANS = {"initMode": "k-means||", "initSteps": 2, "maxIter": 20, "tol": 1e-4}

_WHAT = "select_spark"
_SCORED_SCHEMA = "id long, label int, D double, delta double, a double, rep boolean"
_DRAW_SCHEMA = "id long, count long, p double"


def select_spark(df, budget, *, features_col="embedding", id_col="id", loss_fn=None, **select_params) -> Selection:
    """:func:`select` on Spark: a weighted subset of ``budget`` rows of a DataFrame (or Parquet path).

    Parameters
    ----------
    df : a Spark DataFrame, or a path (str or PathLike) to a Parquet file or folder, read with
        ``spark.read.parquet`` on the active SparkSession (a new ``local[*]`` one if none is active). A path whose
        files lack ``features_col`` uses every numeric column but ``id_col`` as the vector.
    budget : int in [1, n]. k representatives + m = budget - k draws (``score="loss"``), or m = budget draws.
    features_col : the vectors: ``array<float>`` (float32 arithmetic, as ``select`` on a float32 array),
        ``array<double>`` or another numeric array, or a ``pyspark.ml`` Vector (float64). One length for every row.
    id_col : integer ids (long), unique. They name the rows everywhere: ``loss_fn`` receives them and the
        result's ``indices`` are ids.
    loss_fn : ``loss_fn(ids: int64 array) -> losses (k,) >= 0``, called once on the driver with the k
        representatives' ids (``score="loss"``).
    **select_params : :func:`select`'s ``score``, ``n_clusters``, ``z``, ``lam``, ``normalize``, ``uniform_mix``,
        ``random_state`` and ``verbose``, with the same meaning, defaults and checks; ``clusterer`` is "auto"
        (``pyspark.ml`` KMeans with :data:`SPARK_KMEANS`) or a fitted estimator with ``cluster_centers_``, whose
        centres are used as they are (then ``select`` on the collected rows gives every row the same p).

    Returns
    -------
    Selection whose ``indices`` are ids (ascending), with weights, counts, probabilities, roles and the
    representatives' losses as :func:`select` gives them; ``n_total`` is the row count.

    Cost: Spark KMeans (at most 20 passes) plus four passes over the rows and one over the persisted table of
    (id, label, D, delta, score) per draw; driver memory O(k d + m + partitions).

    >>> import numpy as np
    >>> from teraml.selection import select_spark
    >>> sel = select_spark("embeddings.parquet", 500, score="kmeans", random_state=0)   # doctest: +SKIP
    >>> int(sel.counts.sum()), sel.n_loss_queries      # 500 draws; sel.indices are ids  # doctest: +SKIP
    (500, 0)
    """
    scores = score_spark(df, budget, features_col=features_col, id_col=id_col, loss_fn=loss_fn, **select_params)
    try:
        return scores.sample()
    finally:
        scores.unpersist()


@dataclass(eq=False)
class SparkScores:
    """Steps 1-3 of :func:`select_spark` done: every row's probability is known, and :meth:`sample` draws.

    ``table`` is the persisted DataFrame (id, label, D, delta, a, rep, part): cluster label after dropping empty
    clusters, D = distance to the centre ^ z, delta = distance to the representative ^ z (0 under
    ``score="kmeans"``), ``a`` the part of the score that does not depend on lam (the representative's loss, or
    the k-means score), ``rep`` whether the row is a representative, ``part`` its partition. Call
    :meth:`unpersist` (or use ``with``) when done.
    """

    table: object
    n_total: int
    n_features: int
    score: str
    budget: int
    cluster_centers: np.ndarray
    cluster_sizes: np.ndarray
    clustering_cost: float
    representatives: np.ndarray
    representative_losses: np.ndarray
    lam: float
    n_free: int
    backend: str
    timings: dict
    _lam_v: float = 0.0
    _total_v: float = 0.0
    _uniform: bool = False
    _alpha: float = 0.0
    _part_mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _sample_seq: object = None
    _loss_fn: object = None
    _broadcasts: list = field(default_factory=list)
    _verbose: bool = False

    @property
    def n_clusters(self) -> int:
        """k after dropping empty clusters."""
        return int(self.cluster_centers.shape[0])

    @property
    def n_loss_queries(self) -> int:
        return int(self.representatives.size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unpersist()

    def unpersist(self) -> None:
        """Release the persisted table and the broadcast variables."""
        self.table.unpersist()
        for b in self._broadcasts:
            b.unpersist()
        self._broadcasts = []

    def probabilities(self):
        """A DataFrame (id, label, probability): every row's p of one draw (0 for the representatives)."""
        from pyspark.sql import functions as F

        return self.table.select("id", "label", F.when(F.col("rep"), F.lit(0.0))
                                 .otherwise(self._p_column()).alias("probability"))

    def _p_column(self):
        from pyspark.sql import functions as F

        if self.n_free == 0:
            return F.lit(0.0)
        a = self._alpha
        if self._uniform:
            return F.lit((1.0 - a) * (1.0 / self.n_free) + a / self.n_free)
        v = F.col("a") + F.lit(self._lam_v) * F.col("delta")
        return F.lit(1.0 - a) * (v / F.lit(self._total_v)) + F.lit(a / self.n_free)

    def sample(self, *, random_state=None) -> Selection:
        """Draw m rows i.i.d. from p (partition counts on the driver, each partition its own share) and merge
        them with the representatives. Without ``random_state`` the fitted sampling stream restarts, so repeated
        calls give the same draw."""
        t0 = time.perf_counter()
        if random_state is None:
            seq = self._sample_seq
        else:
            rs = check_param("random_state", random_state, [Interval("int", 0), InstanceOf(np.random.Generator),
                                                            "an int >= 0 or a numpy.random.Generator"])
            seq = np.random.SeedSequence(int(rs.integers(2**63 - 1)) if isinstance(rs, np.random.Generator) else rs)
        k = self.representatives.size
        m = self.budget - k if self.score == "loss" else self.budget
        mass = self._part_mass
        if m > 0 and mass.sum() > 0:
            driver = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, 0)))
            counts = driver.multinomial(m, mass / mass.sum())
            rows = self._draw(counts, seq)
        else:
            m = 0
            rows = []
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            cnt = np.array([r[1] for r in rows], dtype=np.int64)
            pr = np.array([r[2] for r in rows], dtype=np.float64)
            idx, first, inv = np.unique(ids, return_index=True, return_inverse=True)
            counts_s = np.bincount(inv, weights=cnt).astype(np.int64)
            prob_s = pr[first]
        else:
            idx, counts_s, prob_s = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        reps, L = self.representatives, self.representative_losses
        n_s = idx.size
        indices = np.concatenate([reps, idx])
        weights = np.concatenate([np.ones(k), counts_s / (m * prob_s) if m else np.empty(0)])
        cnt = np.concatenate([np.ones(k, dtype=np.int64), counts_s])
        probs = np.concatenate([np.ones(k), prob_s])
        role = np.array(["representative"] * k + ["sample"] * n_s, dtype=object)
        losses = np.concatenate([L if L.size else np.full(k, np.nan), np.full(n_s, np.nan)])
        order = np.argsort(indices, kind="stable")
        sel = Selection(indices[order], weights[order], cnt[order], probs[order], role[order].astype(str),
                        losses[order], n_total=self.n_total, n_loss_queries=int(k))
        object.__setattr__(sel, "_loss_source", self._loss_fn)
        self.timings["sample"] = time.perf_counter() - t0
        _say(self._verbose, "sample", self.timings["sample"], f"{m} draws, {n_s} distinct rows")
        return sel

    def _draw(self, counts: np.ndarray, seq) -> list:
        sc = self.table.sparkSession.sparkContext
        consts = sc.broadcast({"counts": counts, "mass": self._part_mass, "entropy": seq.entropy,
                               "key": tuple(seq.spawn_key), "alpha": self._alpha, "lam_v": self._lam_v,
                               "total": self._total_v, "uniform": self._uniform, "n_free": self.n_free})
        try:
            with _quiet_pandas_warning():
                drawn = self.table.select("id", "a", "delta", "rep", "part").mapInArrow(
                    _drawer(consts), _DRAW_SCHEMA)
            return [(r["id"], r["count"], r["p"]) for r in drawn.collect()]
        finally:
            consts.unpersist()


def score_spark(df, budget, *, features_col="embedding", id_col="id", loss_fn=None, **select_params) -> SparkScores:
    """Steps 1-3 of :func:`select_spark` (same parameters): cluster, query the representatives, score every row.

    Returns :class:`SparkScores`, whose :meth:`~SparkScores.sample` draws (again) and whose
    :meth:`~SparkScores.probabilities` gives every row's p as a DataFrame. Release it with ``unpersist()``.
    """
    require_pyspark(_WHAT)
    check_instance("features_col", features_col, str, "a column name (str)")
    check_instance("id_col", id_col, str, "a column name (str)")
    params = check_select_params(budget, caller=_WHAT, **select_params)
    clusterer = params["clusterer"]
    if not (clusterer == "auto" or hasattr(clusterer, "cluster_centers_")):
        raise ValueError(f"clusterer must be 'auto' (pyspark.ml KMeans) or a fitted estimator with "
                         f"cluster_centers_ for select_spark; got {clusterer!r}")
    if params["score"] == "loss" and loss_fn is None:
        raise ValueError("score='loss' needs loss_fn(indices) -> losses; pass loss_fn or use score='kmeans'")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(ids) -> losses; got {type_name(loss_fn)}")
    verbose = bool(params["verbose"])
    t = {}
    t0 = time.perf_counter()
    prepared, dtype = _prepare(df, features_col, id_col)
    from pyspark import StorageLevel

    prepared = prepared.persist(StorageLevel.MEMORY_AND_DISK)
    broadcasts = []
    scored = None
    try:
        n, d, col_sums = _check_rows(prepared, features_col, id_col)
        params = check_select_params(budget, n, caller=_WHAT, **select_params)
        t["validate"] = time.perf_counter() - t0
        _say(verbose, "validate", t["validate"], f"{n} rows, {d} features")
        k_req, score, z = params["n_clusters"], params["score"], params["z"]
        warn_k_vs_m(k_req, params["budget"] - k_req if score == "loss" else params["budget"], stacklevel=2)
        seed, sample_seq = split_random_state(params["random_state"])
        sc = prepared.sparkSession.sparkContext

        # step 1: the centres
        t0 = time.perf_counter()
        if clusterer == "auto":
            centers, backend = _spark_kmeans(prepared, k_req, seed, col_sums, n), "pyspark.ml KMeans"
        else:
            centers = np.asarray(clusterer.cluster_centers_, dtype=np.float64)
            if centers.ndim != 2 or centers.shape[1] != d:
                raise ValueError(f"clusterer's cluster_centers_ must have shape (k, {d}); got {centers.shape}")
            warn_fitted_k("the fitted clusterer has", centers.shape[0], k_req, stacklevel=2)
            backend = type(clusterer).__name__
        t["cluster"] = time.perf_counter() - t0
        _say(verbose, "cluster", t["cluster"], f"{centers.shape[0]} centres ({backend})")

        # step 2: assignment; sizes, costs and representatives by groupBy(label)
        t0 = time.perf_counter()
        b_centers = sc.broadcast(centers)
        broadcasts.append(b_centers)
        from pyspark.sql import functions as F

        with _quiet_pandas_warning():
            assigned = prepared.mapInArrow(_assigner(b_centers, dtype, z), "label int, sq double, D double, id long")
        groups = (assigned.groupBy("label").agg(F.count(F.lit(1)).alias("size"), F.sum("D").alias("cost"),
                                                F.min(F.struct("sq", "id")).alias("r")).collect())
        groups.sort(key=lambda r: r["label"])
        present = np.array([r["label"] for r in groups], dtype=np.int64)
        k0 = centers.shape[0]
        asked = k_req if clusterer == "auto" else k0   # pyspark.ml KMeans gives fewer centres on few distinct rows
        if present.size != asked:
            warn_dropped(asked, int(present.size), stacklevel=2)
        remap = np.full(k0, -1, dtype=np.int32)
        remap[present] = np.arange(present.size, dtype=np.int32)
        centers = centers[present]
        k = int(present.size)
        sizes = np.array([r["size"] for r in groups], dtype=np.int64)
        costs = np.array([r["cost"] for r in groups], dtype=np.float64)
        phi = float(costs.sum())
        check_clustering_cost(phi, None, centers, n, stacklevel=2)
        t["assign"] = time.perf_counter() - t0

        # step 3: the representatives' losses, delta into a persisted table, lam
        t0 = time.perf_counter()
        if score == "loss":
            reps = np.array([r["r"]["id"] for r in groups], dtype=np.int64)
            got = {r["id"]: r["x"] for r in prepared.where(F.col("id").isin(reps.tolist())).collect()}
            R = np.array([got[i] for i in reps.tolist()], dtype=np.float64).reshape(k, d)
            tq = time.perf_counter()
            L = check_losses(check_array("loss_fn's result", loss_fn(reps.copy()), ndim=None, finite=False), k)
            t["loss_fn"] = time.perf_counter() - tq
        else:
            reps, R, L = np.empty(0, np.int64), np.empty((0, d)), np.empty(0)
        consts = sc.broadcast({"remap": remap, "R": R, "reps": np.sort(reps), "L": L, "sizes": sizes, "costs": costs,
                               "phi": phi, "z": z, "score": score, "normalize": params["normalize"]})
        broadcasts.append(consts)
        with _quiet_pandas_warning():
            scored = (prepared.mapInArrow(_scorer(b_centers, consts, dtype), _SCORED_SCHEMA)
                      .withColumn("part", F.spark_partition_id()).persist(StorageLevel.MEMORY_AND_DISK))
        free = scored.where(~F.col("rep"))
        agg = free.agg(F.count(F.lit(1)).alias("n"), F.sum("delta").alias("delta"), F.sum("a").alias("a")).first()
        delta_all = float(agg["delta"] or 0.0)   # = the sum over all rows: a representative's delta is 0
        prepared.unpersist()
        if not np.isfinite(delta_all):
            check_clustering_cost(delta_all, None, centers, n)   # raises the overflow error
        t["distances"] = time.perf_counter() - t0 - t.get("loss_fn", 0.0)

        # step 3, continued: lam and the per-partition sums of v
        t0 = time.perf_counter()
        n_free = int(agg["n"])
        lam, lam_v, total, uniform, mass = 0.0, 0.0, 0.0, False, np.zeros(0)
        alpha = params["uniform_mix"]
        if n_free:
            if score == "loss":
                if params["lam"] == "balanced":
                    den = float(agg["delta"] or 0.0)
                    lam = float(agg["a"] or 0.0) / den if den > 0 else 0.0
                else:
                    lam = float(params["lam"])
                if not np.any(L > 0):
                    warn_zero_losses(stacklevel=2)
                    lam_v = 1.0   # v = 0 + 1 * delta: p proportional to delta alone
                else:
                    lam_v = lam
            v = F.col("a") + F.lit(lam_v) * F.col("delta")
            parts = (free.groupBy("part").agg(F.sum(v).alias("v"), F.count(F.lit(1)).alias("n"),
                                              F.min(v).alias("vmin"),
                                              F.sum(F.when(v == 0, 1).otherwise(0)).alias("zero")).collect())
            n_parts = max(r["part"] for r in parts) + 1
            part_v, part_n = np.zeros(n_parts), np.zeros(n_parts)
            for r in parts:
                part_v[r["part"]], part_n[r["part"]] = r["v"], r["n"]
            total = float(part_v.sum())
            if total <= 0:
                warn_uniform_fallback(stacklevel=2)
                uniform = True
                mass = part_n / n_free
            else:
                mass = (1.0 - alpha) * (part_v / total) + alpha * (part_n / n_free)
                vmin = min(r["vmin"] for r in parts)
                zero = sum(int(r["zero"]) for r in parts) if alpha == 0 else 0
                warn_small_probabilities((1.0 - alpha) * (vmin / total) + alpha / n_free, n_free, zero,
                                         stacklevel=2)
        t["score"] = time.perf_counter() - t0
        _say(verbose, "score", t["assign"] + t["distances"] + t["score"], f"k={k}, lam={lam:.4g}")
        return SparkScores(table=scored, n_total=n, n_features=d, score=score, budget=params["budget"],
                           cluster_centers=centers, cluster_sizes=sizes, clustering_cost=phi, representatives=reps,
                           representative_losses=L, lam=lam, n_free=n_free, backend=backend, timings=t,
                           _lam_v=lam_v, _total_v=total, _uniform=uniform, _alpha=alpha, _part_mass=mass,
                           _sample_seq=sample_seq, _loss_fn=loss_fn if score == "loss" else None,
                           _broadcasts=broadcasts, _verbose=verbose)
    except BaseException:
        prepared.unpersist()
        if scored is not None:
            scored.unpersist()
        for b in broadcasts:
            b.unpersist()
        raise


# ------------------------------------------------------------------------------------------ input


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _prepare(df, features_col: str, id_col: str):
    """(DataFrame (id long, x array<float|double>), numpy dtype of x), with the schema checked."""
    require_pyspark(_WHAT)
    from pyspark.sql import types as T

    from_path = isinstance(df, (str, os.PathLike))
    if from_path:
        path = os.fspath(df)
        spark = spark_session(what=_WHAT)
        try:
            df = spark.read.parquet(path)
        except Exception as exc:   # AnalysisException: missing path, not Parquet
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"df must be a Spark DataFrame or a readable Parquet file or folder; could not read "
                             f"{path}: {first}") from None
    elif not is_spark_dataframe(df):
        raise TypeError(f"df must be a Spark DataFrame or a path to Parquet (str or PathLike); got {type_name(df)}")
    fields = {f.name: f.dataType for f in df.schema.fields}
    if id_col not in fields:
        raise ValueError(f"id_col {id_col!r} is not a column of df; found {list(fields)}")
    it = fields[id_col]
    if not isinstance(it, T.IntegralType):
        raise TypeError(f"column {id_col!r} (id_col) must hold integer ids (long); got {it.simpleString()}")
    if features_col not in fields and from_path:
        cols = [n for n, t in fields.items() if n != id_col and isinstance(t, T.NumericType)]
        others = [n for n in fields if n != id_col and n not in cols]
        if not cols:
            raise ValueError(f"{path} has no list column {features_col!r} and no numeric columns; found "
                             f"{list(fields)}")
        if others:
            raise TypeError(f"{path}: columns {others} are not numeric; name the vector column with features_col")
        single = all(isinstance(fields[c], T.FloatType) for c in cols)
        from pyspark.sql import functions as F

        x = F.array(*[_col(c).cast("float" if single else "double") for c in cols])
        return df.select(_col(id_col).cast("long").alias("id"), x.alias("x")), (np.float32 if single else np.float64)
    if features_col not in fields:
        raise ValueError(f"features_col {features_col!r} is not a column of df; found {list(fields)}")
    ft = fields[features_col]
    if isinstance(ft, T.ArrayType) and isinstance(ft.elementType, T.NumericType):
        single = isinstance(ft.elementType, T.FloatType)
        x = _col(features_col).cast("array<float>" if single else "array<double>")
        dtype = np.float32 if single else np.float64
    elif type(ft).__name__ == "VectorUDT":
        from pyspark.ml.functions import vector_to_array

        x, dtype = vector_to_array(_col(features_col), "float64"), np.float64
    else:
        raise TypeError(f"column {features_col!r} (features_col) must be an array of numbers or a pyspark.ml "
                        f"Vector; got {ft.simpleString()}")
    return df.select(_col(id_col).cast("long").alias("id"), x.alias("x")), dtype


def _check_rows(prepared, features_col: str, id_col: str) -> tuple[int, int, np.ndarray | None]:
    """One pass: (rows, features, column sums); ValueError for missing ids or vectors, ragged or non-finite
    vectors, and repeated ids."""
    from pyspark.sql import functions as F

    with _quiet_pandas_warning():
        summary = prepared.mapInArrow(
            _row_checker, "rows long, null_id long, null_x long, lmin long, lmax long, bad_id long, "
                          "sums array<double>").collect()
    n = sum(r["rows"] for r in summary)
    null_id = sum(r["null_id"] for r in summary)
    null_x = sum(r["null_x"] for r in summary)
    lens = [(r["lmin"], r["lmax"]) for r in summary if r["lmin"] is not None]
    lmin = min((a for a, _ in lens), default=0)
    lmax = max((b for _, b in lens), default=0)
    shape_error = ValueError(f"df must have at least 1 row and {features_col!r} at least 1 value; got shape "
                             f"({n}, {lmax})")
    if n == 0:
        raise shape_error
    if null_id:
        raise ValueError(f"column {id_col!r} (id_col) has {null_id} missing ids")
    if null_x:
        raise ValueError(f"column {features_col!r} (features_col) has {null_x} missing vectors")
    if lmax == 0:
        raise shape_error
    if lmin != lmax:
        raise ValueError(f"column {features_col!r} (features_col) needs one length for every row; found lengths "
                         f"{lmin} and {lmax}")
    bad = [r["bad_id"] for r in summary if r["bad_id"] is not None]
    if bad:
        raise ValueError(f"column {features_col!r} (features_col) must be finite; found NaN, inf or a missing "
                         f"value in the row with id {bad[0]}")
    dup = prepared.groupBy("id").count().where(F.col("count") > 1).limit(1).collect()
    if dup:
        raise ValueError(f"column {id_col!r} (id_col) must hold unique ids; {dup[0]['id']} appears "
                         f"{dup[0]['count']} times")
    sums = [np.asarray(r["sums"]) for r in summary if r["sums"] is not None]
    return int(n), int(lmax), (np.sum(sums, axis=0) if sums else None)


def _spark_kmeans(prepared, k: int, seed: int, col_sums, n: int) -> np.ndarray:
    """Centres (k', d) float64 of pyspark.ml KMeans (k' <= k when there are fewer distinct rows); k = 1 is the
    mean (pyspark.ml KMeans needs k >= 2)."""
    if k == 1:
        return (col_sums / n)[None, :]
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    data = prepared.select(array_to_vector(F.col("x")).alias("features"))
    model = KMeans(k=k, seed=seed, featuresCol="features", **SPARK_KMEANS).fit(data)
    return np.array([np.asarray(c, dtype=np.float64) for c in model.clusterCenters()])


# ------------------------------------------------------------------------------------------ executor code


def _matrix(col, dtype) -> np.ndarray:
    """An Arrow list column of equal-length numeric lists as an (n, d) array of ``dtype``."""
    n = len(col)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(n, -1).astype(dtype, copy=False) if n else np.empty((0, 0), dtype)


def _row_checker(batches):
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = null_id = null_x = 0
    lmin = lmax = bad_id = None
    sums = None
    for b in batches:
        ids, x = b.column(0), b.column(1)
        rows += b.num_rows
        null_id += ids.null_count
        null_x += x.null_count
        lengths = pc.list_value_length(x)
        lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if lo is not None:
            lmin = lo if lmin is None else min(lmin, lo)
            lmax = hi if lmax is None else max(lmax, hi)
        values = x.flatten().to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        if bad_id is None and not finite.all():
            parent = pc.list_parent_indices(x).to_numpy(zero_copy_only=False)
            bad_id = ids[int(parent[int(np.argmin(finite))])].as_py()
        if lo is not None and lo == hi and lo > 0 and lmin == lmax and finite.all():
            part = values.reshape(-1, lo).sum(axis=0, dtype=np.float64)
            sums = part if sums is None else sums + part
    yield pa.RecordBatch.from_pydict({"rows": [rows], "null_id": [null_id], "null_x": [null_x], "lmin": [lmin],
                                      "lmax": [lmax], "bad_id": [bad_id],
                                      "sums": [None if sums is None else sums.tolist()]},
                                     schema=pa.schema([("rows", pa.int64()), ("null_id", pa.int64()),
                                                       ("null_x", pa.int64()), ("lmin", pa.int64()),
                                                       ("lmax", pa.int64()), ("bad_id", pa.int64()),
                                                       ("sums", pa.list_(pa.float64()))]))


def _assigner(b_centers, dtype, z):
    """Step 2's map: each row's nearest centre (the in-process :func:`assign`), squared distance and D."""

    def run(batches):
        import pyarrow as pa

        centers = b_centers.value
        for b in batches:
            X = _matrix(b.column(1), dtype)
            if X.shape[0] == 0:
                continue
            labels, sq = assign(X, centers)
            yield pa.RecordBatch.from_arrays([pa.array(labels, pa.int32()), pa.array(sq), pa.array(power_z(sq, z)),
                                              b.column(0)], names=["label", "sq", "D", "id"])

    return run


def _scorer(b_centers, b_consts, dtype):
    """Step 3's map: label (relabelled), D, delta to the representative, the lam-free score a, rep flag."""

    def run(batches):
        import pyarrow as pa

        centers, c = b_centers.value, b_consts.value
        z = c["z"]
        for b in batches:
            X = _matrix(b.column(1), dtype)
            if X.shape[0] == 0:
                continue
            ids = b.column(0).to_numpy()
            raw, sq = assign(X, centers)
            labels = c["remap"][raw]
            D = power_z(sq, z)
            if c["score"] == "loss":
                delta = distance_to_rows(X, c["R"], labels, z)
                a = c["L"][labels]
                rep = np.isin(ids, c["reps"], assume_unique=True)
            else:
                delta = np.zeros(labels.size)
                a = kmeans_scores(labels, D, c["sizes"], normalize=c["normalize"], phi=c["phi"], costs=c["costs"])
                rep = np.zeros(labels.size, dtype=bool)
            yield pa.RecordBatch.from_arrays([b.column(0), pa.array(labels, pa.int32()), pa.array(D), pa.array(delta),
                                              pa.array(a), pa.array(rep)],
                                             names=["id", "label", "D", "delta", "a", "rep"])

    return run


def _drawer(b_consts):
    """Step 4's map: this partition's share of the draws, i.i.d. proportional to p, by inverse CDF over the
    rows as they stream past (sorted uniforms, one cumulative sum per batch)."""

    def run(batches):
        import pyarrow as pa

        c = b_consts.value
        a, n_free = c["alpha"], c["n_free"]
        u = None
        pos = 0
        offset = 0.0
        last = None
        part = None
        for b in batches:
            if b.num_rows == 0:
                continue
            if u is None:
                part = b.column("part")[0].as_py()
                want = int(c["counts"][part]) if part < len(c["counts"]) else 0
                if want == 0:
                    for _ in batches:   # read the rest: a worker that leaves input unread is not reused
                        pass
                    return
                seq = np.random.SeedSequence(c["entropy"], spawn_key=(*c["key"], 1, part))
                u = np.sort(np.random.default_rng(seq).random(want)) * c["mass"][part]
            rep = b.column("rep").to_numpy(zero_copy_only=False)
            if c["uniform"]:
                p = np.full(b.num_rows, (1.0 - a) * (1.0 / n_free) + a / n_free)
            else:
                v = b.column("a").to_numpy() + c["lam_v"] * b.column("delta").to_numpy()
                p = (1.0 - a) * (v / c["total"]) + a / n_free
            p[rep] = 0.0
            cum = offset + np.cumsum(p)
            end = int(np.searchsorted(u, cum[-1], side="left"))
            ids = b.column("id").to_numpy()
            if end > pos:
                rows = np.searchsorted(cum, u[pos:end], side="right")
                r, cnt = np.unique(rows, return_counts=True)
                yield pa.RecordBatch.from_arrays([pa.array(ids[r]), pa.array(cnt.astype(np.int64)), pa.array(p[r])],
                                                 names=["id", "count", "p"])
                pos = end
            nz = np.flatnonzero(p > 0)
            if nz.size:
                last = (int(ids[nz[-1]]), float(p[nz[-1]]))
            offset = float(cum[-1])
        if u is not None and pos < u.size and last is not None:   # rounding left a uniform past the last sum
            yield pa.RecordBatch.from_arrays([pa.array([last[0]], pa.int64()), pa.array([u.size - pos], pa.int64()),
                                              pa.array([last[1]])], names=["id", "count", "p"])

    return run


# ------------------------------------------------------------------------------------------ helpers


class _quiet_pandas_warning(warnings.catch_warnings):
    """mapInArrow goes through pandas_udf, which warns about the installed pandas; the Arrow path never uses
    pandas, so that one warning is silenced."""

    def __enter__(self):
        out = super().__enter__()
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        return out


def _say(verbose: bool, stage: str, seconds: float, what: str) -> None:
    log.debug("select_spark %s: %.3f s (%s)", stage, seconds, what)
    if verbose:
        print(f"[select_spark] {stage}: {seconds:.2f} s ({what})", flush=True)
