"""TeraHAC on Apache Spark: the same rounds and the same numba kernels as the local engine, on DataFrames.

:class:`SparkEngine` implements :class:`~teraml.hac.engines.Engine`, so ``TeraHAC(engine="spark")`` runs the
very same round driver (``teraml.hac.terahac.run_rounds``). Between rounds the graph lives in Spark as two
checkpointed tables: canonical edges ``(src, dst, S)`` (cluster ids, ``src < dst``, float64 sums) and
clusters ``(id, size, M)``. A round is

1. every directed edge's ``W = S / (size(u) * size(x))`` (the kernels' formula, IEEE double in the JVM), and per
   cluster ``max(struct(W, -x))``: its best neighbour (ties: smaller id) and B; active iff B >= prune, B > 0;
2. the size-capped affinity partition, level by level: the components of the link graph (best edges, then
   each set's heaviest outgoing edge) by pointer jumping; a component of at most ``cap`` clusters is one set
   (every capped union in it succeeds), a larger one runs the shared kernel (``affinity_partition``, or
   ``capped_union`` for the further levels) on its own rows in ``groupBy().applyInPandas``: unions never cross
   components, so that equals the local engine's single sequential pass;
3. ``groupBy(partition).applyInPandas`` runs ``_kernels.subgraph_hac`` on each partition's rows (its members'
   edges to every neighbour, sorted by (u, x), ids relabelled in order, so every tie breaks as in-process);
4. the contraction: relabel joins, ``repartition(new src)``, ``sortWithinPartitions(new src, new dst, old src,
   old dst)`` and ``mapInPandas`` summing each run of parallel edges left to right (``_kernels.run_sums``,
   carrying a run across Arrow batches), never Spark's ``sum``, whose order varies; then a checkpoint.

Only exact aggregates (max, min, count, integer sums), joins and sorts run in SQL; every float sum and every
tie happens in the shared kernels, so the merge table is bit-identical to :class:`LocalEngine`'s. The merges
of each round (at most n - 1 rows in all) are collected to the driver, which numbers them in (round,
partition key, sequence) order exactly as the local engine does; the edges never leave Spark.

>>> from teraml.hac import Graph, TeraHAC
>>> g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.9, 0.2, 0.8])
>>> TeraHAC(threshold=0.5, engine="spark").fit(g).labels_.tolist()   # doctest: +SKIP
[0, 0, 1, 1]
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from teraml._spark import ensure_checkpoint_dir, require_pyspark, spark_session
from teraml.hac._kernels import (
    CSR,
    Clusters,
    Partitions,
    RoundOutput,
    affinity_partition,
    capped_union,
    resolve,
    roots,
    run_sums,
    subgraph_hac,
)
from teraml.hac.engines._base import MergeBook

require_pyspark("engine='spark'")

from pyspark import StorageLevel  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

__all__ = ["SparkEngine", "SparkGraph", "read_edges"]

_EDGE_SCHEMA = "src long, dst long, S double"
_LINK_OUT = "v long, key long"
_NO_INT, _NO_FLOAT = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
_GROUP_OUT = "kind byte, key long, seq long, a long, b long, w double, size long"


# ----------------------------------------------------------------------------------- pure group functions
# Module-level, so Spark's workers import them (and the numba kernels, compiled with cache=True) by name.


def _link_group(pdf: pd.DataFrame, cap: int, level: int) -> pd.DataFrame:
    """One oversize component of the link graph: the shared capped union on its own rows.

    Rows (v, to, w, cnt): a node (level 1: an active cluster, its best neighbour and B; further levels: a set
    key, the set across its heaviest outgoing edge and that W) and its cluster count. Ids are relabelled in
    ascending order, so the visiting order and every tie are those of the global pass."""
    v = pdf["v"].to_numpy(np.int64)
    order = np.argsort(v, kind="stable")
    v = v[order]
    to = pdf["to"].to_numpy(np.int64)[order]
    w = pdf["w"].to_numpy(np.float64)[order]
    has = to >= 0
    lto = np.full(v.size, -1, dtype=np.int64)
    lto[has] = np.searchsorted(v, to[has])
    if level == 1:   # affinity_partition: visit by decreasing B, ties by the smaller id (v is ascending)
        loc_order = np.lexsort((np.arange(v.size), -w))
        part = affinity_partition(loc_order.astype(np.int64), lto, int(cap), v.size)
        key = v[part]
    else:
        cnt = pdf["cnt"].to_numpy(np.int64)[order]
        keys = np.flatnonzero(has).astype(np.int64)
        bw = np.where(has, w, -1.0)
        parent = capped_union(keys, bw, lto, cnt, int(cap))
        key = v[resolve(parent, np.arange(v.size, dtype=np.int64))]
    return pd.DataFrame({"v": v, "key": key})


def _subgraph_group(pdf: pd.DataFrame, eps: float, prune: float) -> pd.DataFrame:
    """SubgraphHAC of one partition (the shared kernel), from its rows (key, u, x, S, nu, Mu, nx): every edge of a
    member u to every neighbour x, with the sizes and u's M. Returns merge rows (kind 0: key, seq, a, b, w) and a
    row per member (kind 1: a = the member, b = its cluster after the round, w = M, size)."""
    pdf = pdf.sort_values(["u", "x"], kind="stable")
    u = pdf["u"].to_numpy(np.int64)
    x = pdf["x"].to_numpy(np.int64)
    ids = np.unique(np.concatenate([u, x]))          # ascending: local ids keep the order of cluster ids
    lu, lx = np.searchsorted(ids, u), np.searchsorted(ids, x)
    n = ids.size
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(lu, minlength=n), out=indptr[1:])
    size = np.ones(n, dtype=np.int64)
    size[lx] = pdf["nx"].to_numpy(np.int64)
    size[lu] = pdf["nu"].to_numpy(np.int64)
    M = np.full(n, np.inf)
    M[lu] = pdf["Mu"].to_numpy(np.float64)
    members = np.unique(lu).astype(np.int64)
    part = np.full(n, -1, dtype=np.int64)
    part[members] = members[0]
    k = members.size
    parts = Partitions(np.array([0, k], dtype=np.int64), members, part, np.zeros(n, dtype=np.int64))
    csr = CSR(indptr, lx.astype(np.int64), pdf["S"].to_numpy(np.float64))
    out = RoundOutput(np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64), np.empty(k, dtype=np.float64),
                      np.zeros(1, dtype=np.int64), size.copy(), M.copy(), np.arange(n, dtype=np.int64))
    subgraph_hac(0, 1, parts, csr, Clusters(size, M), float(eps), float(prune), out)
    c = int(out.count[0])
    root = roots(out.rep)[members]
    key = int(ids[members[0]])
    return pd.DataFrame({
        "kind": np.r_[np.zeros(c, dtype=np.int8), np.ones(k, dtype=np.int8)],
        "key": np.full(c + k, key, dtype=np.int64),
        "seq": np.r_[np.arange(c, dtype=np.int64), np.full(k, -1, dtype=np.int64)],
        "a": np.r_[ids[out.a[:c]], ids[members]],
        "b": np.r_[ids[out.b[:c]], ids[root]],
        "w": np.r_[out.w[:c], out.M[members]],
        "size": np.r_[np.zeros(c, dtype=np.int64), out.size[members]],
    })


def _contract_batches(batches):
    """Sum runs of parallel edges in one partition sorted by (a, b, old src, old dst), left to right, carrying the
    open run across Arrow batches (the same order as the local engine's ``segment_sum``)."""
    carry = None
    for pdf in batches:
        a = pdf["a"].to_numpy(np.int64)
        b = pdf["b"].to_numpy(np.int64)
        w = pdf["S"].to_numpy(np.float64)
        if carry is not None:
            a, b, w = np.r_[carry[0], a], np.r_[carry[1], b], np.r_[carry[2], w]
        if a.size == 0:
            continue
        first, sums = run_sums(a, b, w)
        carry = (a[first[-1:]], b[first[-1:]], sums[-1:])   # the last run may go on in the next batch
        first, sums = first[:-1], sums[:-1]
        if first.size:
            yield pd.DataFrame({"src": a[first], "dst": b[first], "S": sums})
    if carry is not None:
        yield pd.DataFrame({"src": carry[0], "dst": carry[1], "S": carry[2]})


# ----------------------------------------------------------------------------------- input


class SparkGraph:
    """An edge list held by Spark, cleaned like :meth:`Graph.from_edges`: ``edges`` (src, dst, weight) with dense
    ids ``0..n-1`` (``src < dst``, each pair once), ``n_nodes``, ``node_ids`` (original ids, ascending; a numpy
    array on the driver) and ``report`` (cleaning counts). Built by :func:`read_edges`."""

    def __init__(self, edges: DataFrame, n_nodes: int, node_ids: np.ndarray, report: dict, cached=None):
        self.edges, self.n_nodes, self.node_ids, self.report = edges, n_nodes, node_ids, report
        self._cached = cached   # the cleaned table read_edges persisted; released once an engine has loaded it

    def release(self) -> None:
        """Unpersist the cleaned edge table read_edges cached (the engine's checkpoint holds the edges)."""
        if self._cached is not None:
            self._cached.unpersist()
            self._cached = None

    @property
    def n_edges(self) -> int:
        return int(self.report["edges"])

    def __repr__(self) -> str:
        return f"SparkGraph(n_nodes={self.n_nodes}, n_edges={self.n_edges})"


_INT_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUM_TYPES = _INT_TYPES + (T.FloatType, T.DoubleType, T.DecimalType, T.BooleanType)


def read_edges(df, *, columns=("src", "dst", "weight"), duplicates="max", session=None, name="edges",
               format=None) -> SparkGraph:
    """Check and clean an edge DataFrame (or a Parquet/CSV path read by Spark) into a :class:`SparkGraph`,
    with :meth:`Graph.from_edges`' rules and messages: the columns must exist, ids be all integers or all strings,
    weights numeric, non-null, finite and >= 0; self-loops and zero weights are dropped (one warning), a pair
    listed several times (either direction) keeps the max (``duplicates="max"``), the sum (``"sum"``, added in
    ascending order of the weights, so the result does not depend on Spark's row order) or raises (``"error"``
    unless all weights agree). Nothing is collected but the node ids. A path is read as CSV when ``format="csv"``
    or it ends in ``.csv``, else as Parquet (a file or a folder).

    >>> g = read_edges(spark.createDataFrame([(1, 2, 0.5)], "src long, dst long, weight double"))  # doctest: +SKIP
    >>> g.n_nodes, g.node_ids.tolist()                                                             # doctest: +SKIP
    (2, [1, 2])
    """
    from teraml._validation import check_choice

    duplicates = check_choice("duplicates", duplicates, ("max", "sum", "error"), phrase="or", sep=", ")
    if not isinstance(df, DataFrame):
        spark = session or spark_session()
        path = str(df)
        name = path.rsplit("/", 1)[-1]
        fmt = format or ("csv" if path.lower().endswith(".csv") else "parquet")
        df = _read_csv(spark, path, columns) if fmt == "csv" else spark.read.parquet(path)
    s_col, d_col, w_col = columns
    found = df.columns
    for want, flag in ((s_col, "src"), (d_col, "dst"), (w_col, "weight")):
        if want not in found:
            raise ValueError(f"{name} lacks column {want!r}; found {found}; pass columns=/--{flag}-col")
    types = {f.name: f.dataType for f in df.schema.fields}
    if not isinstance(types[w_col], _NUM_TYPES):
        raise TypeError(f"weight must be numeric, got dtype {types[w_col].simpleString()}")
    kinds = {"int" if isinstance(types[c], _INT_TYPES) else "str" if isinstance(types[c], T.StringType)
             else types[c].simpleString() for c in (s_col, d_col)}
    if not kinds <= {"int", "str"} or len(kinds) != 1:
        raise TypeError(f"node ids must be all integers or all strings, got {sorted(kinds)} columns "
                        f"{s_col!r} and {d_col!r}")
    as_long = kinds == {"int"}
    e = df.select(*[(F.col(c).cast("long") if as_long else F.col(c)).alias(a) for c, a in ((s_col, "s"), (d_col, "d"))],
                  F.col(w_col).cast("double").alias("w"))
    checks = e.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("w").isNull()).alias("nulls"),
        F.count_if(F.col("s").isNull() | F.col("d").isNull()).alias("id_nulls"),
        F.count_if(F.isnan("w") | (F.abs("w") == float("inf"))).alias("nonfinite"),
        F.count_if(F.col("w") < 0).alias("neg"),
        F.min("w").alias("wmin"),
        F.count_if(F.col("s") == F.col("d")).alias("loops"),
        F.count_if((F.col("w") == 0) & (F.col("s") != F.col("d"))).alias("zeros"),
    ).first()
    if checks["nulls"]:
        raise ValueError(f"weight has {checks['nulls']} missing values")
    if checks["id_nulls"]:
        raise ValueError(f"node ids have {checks['id_nulls']} missing values")
    if checks["nonfinite"]:
        raise ValueError(f"weight must be finite; found {checks['nonfinite']} NaN/inf values")
    if checks["neg"]:
        raise ValueError(f"weight must be >= 0 (0 means no edge); found {checks['neg']} negative values, "
                         f"min {checks['wmin']:g}")
    if checks["loops"] or checks["zeros"]:
        warnings.warn(f"dropped {checks['loops']} self-loops and {checks['zeros']} zero-weight edges", UserWarning,
                      stacklevel=2)
    ids = (e.select(F.col("s").alias("node")).union(e.select(F.col("d").alias("node"))).distinct()
           .orderBy("node"))   # every id named by a row, as Graph.from_edges: a node of self-loops only stays
    e = e.filter((F.col("s") != F.col("d")) & (F.col("w") > 0))
    e = e.select(F.least("s", "d").alias("s"), F.greatest("s", "d").alias("d"), "w")
    grouped = e.groupBy("s", "d")
    if duplicates == "max":
        e = grouped.agg(F.max("w").alias("w"), F.count(F.lit(1)).alias("c"))
    elif duplicates == "sum":
        e = grouped.agg(F.aggregate(F.array_sort(F.collect_list("w")), F.lit(0.0), lambda acc, x: acc + x).alias("w"),
                        F.count(F.lit(1)).alias("c"))
    else:
        e = grouped.agg(F.max("w").alias("w"), F.min("w").alias("lo"), F.count(F.lit(1)).alias("c"))
        bad = e.filter(F.col("lo") != F.col("w"))
        first = bad.orderBy("s", "d").first()
        if first is not None:
            raise ValueError(f"{bad.count()} node pairs appear with different weights, e.g. ({first['s']}, "
                             f"{first['d']}): {first['lo']} vs {first['w']}; use duplicates='max' or 'sum'")
    e = cached = e.persist(StorageLevel.MEMORY_AND_DISK)
    stats = e.agg(F.count(F.lit(1)).alias("m"), F.sum("c").alias("rows")).first()
    if not stats["m"]:
        raise ValueError(f"graph has no edge with weight > 0 after cleaning (dropped {checks['loops']} self-loops, "
                         f"{checks['zeros']} zero weights)")
    node_ids = np.asarray(ids.toPandas()["node"].to_numpy())
    if node_ids.dtype == object:
        node_ids = node_ids.astype(str)
    spark = e.sparkSession
    index = spark.createDataFrame(pd.DataFrame({"node": node_ids, "idx": np.arange(node_ids.size, dtype=np.int64)}))
    e = (e.join(F.broadcast(index) if node_ids.size < 2_000_000 else index, F.col("s") == F.col("node"))
         .select(F.col("idx").alias("src"), "d", "w")
         .join(F.broadcast(index) if node_ids.size < 2_000_000 else index, F.col("d") == F.col("node"))
         .select("src", F.col("idx").alias("dst"), F.col("w").alias("weight")))
    report = {"input_rows": int(checks["rows"]), "self_loops": int(checks["loops"]),
              "zero_weights": int(checks["zeros"]), "duplicate_rows": int(stats["rows"]) - int(stats["m"]),
              "edges": int(stats["m"])}   # the keys of Graph.report
    return SparkGraph(e, int(node_ids.size), node_ids, report, cached=cached)


def _read_csv(spark, path: str, columns) -> DataFrame:
    """A CSV edge list read by Spark as :meth:`Graph.read` reads it: every field as text (a UTF-8 byte-order mark
    dropped from the header, blank lines skipped); ids trimmed, and integers (long) when every id of both columns
    is one, else strings; the weight a double (text that is no number is a TypeError naming a value)."""
    df = spark.read.csv(path, header=True, inferSchema=False, encoding="UTF-8", mode="FAILFAST")
    df = df.toDF(*[c.lstrip("\ufeff") for c in df.columns])
    if not set(columns) <= set(df.columns):
        return df   # read_edges names the missing column
    s_col, d_col, w_col = columns
    ids = [F.trim(F.col(c)) for c in (s_col, d_col)]
    bad = df.agg(*[F.sum(F.when(i.isNotNull() & i.try_cast("long").isNull(), 1).otherwise(0)).alias(f"b{j}")
                   for j, i in enumerate(ids)],
                 F.sum(F.when(F.col(w_col).isNotNull() & F.trim(F.col(w_col)).try_cast("double").isNull(), 1)
                       .otherwise(0)).alias("bw")).first()
    if bad["bw"]:
        example = (df.filter(F.col(w_col).isNotNull() & F.trim(F.col(w_col)).try_cast("double").isNull())
                   .select(w_col).first()[0])
        raise TypeError(f"weight must be numeric, got dtype string ({bad['bw']} values are not numbers, e.g. "
                        f"{example!r})")
    as_int = not (bad["b0"] or bad["b1"])
    return df.select(*[(i.try_cast("long") if as_int else i).alias(c) for i, c in zip(ids, (s_col, d_col))],
                     F.trim(F.col(w_col)).try_cast("double").alias(w_col))


# ----------------------------------------------------------------------------------- the engine


class SparkEngine:
    """The Spark engine: ``load``, then ``run_round`` until it returns None, then ``result`` (the
    :class:`~teraml.hac.engines.Engine` contract); merges bit-identical to :class:`LocalEngine`'s.

    ``session``: a SparkSession (default: the active one, else a new ``local[*]`` one); ``partitions``: the
    number of partitions of the edge table (default: twice the default parallelism); ``checkpoint``:
    ``"reliable"`` (the checkpoint directory; survives a lost executor, the default) or ``"local"`` (executor
    storage; faster, for local mode); ``collect_limit``: partition on the driver (the same kernels, on the
    collected (cluster, best, B) rows, O(active clusters) memory) when at most this many clusters are active;
    ``None`` always partitions in Spark (components by pointer jumping; the shared kernel runs only on
    components larger than the cap). Either way the partitions are the same.

    >>> from teraml.hac import Graph, TeraHAC
    >>> from teraml.hac.engines.spark import SparkEngine                      # doctest: +SKIP
    >>> g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.9, 0.2, 0.8])
    >>> TeraHAC(threshold=0.5, engine=SparkEngine()).fit(g).n_clusters_     # doctest: +SKIP
    2
    """

    def __init__(self, session=None, *, partitions=None, checkpoint="reliable", collect_limit=2_000_000):
        from teraml._validation import Interval, check_choice, check_param

        self.spark = ensure_checkpoint_dir(session) if session is not None else spark_session()
        self.partitions = check_param("partitions", partitions, [None, Interval("int", 1)], sep=", ")
        self.collect_limit = check_param("collect_limit", collect_limit, [None, Interval("int", 0)], sep=", ")
        self.checkpoint = check_choice("checkpoint", checkpoint, ("reliable", "local"), phrase="or", sep=", ")
        if self.partitions is None:
            self.partitions = max(2, 2 * self.spark.sparkContext.defaultParallelism)
        self.round_log: list[dict] = []

    # -------------------------------------------------------------- helpers
    def _save(self, df: DataFrame) -> DataFrame:
        if self.checkpoint == "reliable":
            return df.checkpoint(eager=True)
        return df.localCheckpoint(eager=True)

    def _small(self, df: DataFrame, rows: int) -> DataFrame:
        """``df`` marked for a broadcast join when it has at most ``collect_limit`` rows (the big side of the join,
        the edges, then moves no byte), else as it is."""
        return F.broadcast(df) if self.collect_limit is not None and rows <= self.collect_limit else df

    def _directed(self) -> DataFrame:
        """Every directed edge (u, x, S) with both sizes, u's M and W = S / (size(u) * size(x))."""
        E, C = self.E, self._small(self.C, self.n - self.book.n_done)
        d = (E.select(F.col("src").alias("u"), F.col("dst").alias("x"), "S")
             .unionByName(E.select(F.col("dst").alias("u"), F.col("src").alias("x"), "S")))
        d = (d.join(C.select(F.col("id").alias("u"), F.col("size").alias("nu"), F.col("M").alias("Mu")), "u")
             .join(C.select(F.col("id").alias("x"), F.col("size").alias("nx")), "x"))
        return d.withColumn("W", F.col("S") / (F.col("nu").cast("double") * F.col("nx").cast("double")))

    @staticmethod
    def _best(d: DataFrame) -> DataFrame:
        """best(u) (ties: smaller x) and B(u) = W(u, best(u)) for every cluster with a neighbour."""
        m = d.groupBy("u").agg(F.max(F.struct(F.col("W"), (-F.col("x")).alias("negx"))).alias("m"))
        return m.select("u", F.col("m.W").alias("B"), (-F.col("m.negx")).alias("best"))

    def _components(self, nodes: DataFrame) -> DataFrame:
        """(v, root): the components of the functional link graph ``v -> to`` (to = -1: no link) by pointer
        jumping; a mutual pair is the root cycle, broken at its smaller end."""
        back = nodes.select(F.col("v").alias("to"), F.col("to").alias("to2"))
        P = (nodes.join(back, "to", "left")
             .select("v", F.when((F.col("to") < 0) | ((F.col("to2") == F.col("v")) & (F.col("v") < F.col("to"))),
                                 F.col("v")).otherwise(F.col("to")).alias("p")))
        P = P.localCheckpoint(eager=True)
        n = P.count()
        for _ in range(max(1, int(n).bit_length()) + 2):   # depth halves per jump
            J = (P.join(P.select(F.col("v").alias("p"), F.col("p").alias("pp")), "p")
                 .select("v", F.col("pp").alias("p"), (F.col("p") != F.col("pp")).alias("moved")))
            J = J.localCheckpoint(eager=True)
            if J.filter("moved").isEmpty():
                return J.select("v", F.col("p").alias("root"))
            P = J.select("v", "p")
        raise RuntimeError("pointer jumping did not converge: the link graph has a cycle longer than 2 (a tie "
                           "broken differently at its two ends); this is a bug")

    @staticmethod
    def _level_links(d: DataFrame, part: DataFrame) -> DataFrame:
        """(v, to, w): each set's heaviest edge to another set of active clusters (ties: smaller set key)."""
        pu = part.select(F.col("v").alias("u"), F.col("key").alias("pu"))
        px = part.select(F.col("v").alias("x"), F.col("key").alias("px"))
        return (d.join(pu, "u").join(px, "x").filter(F.col("pu") != F.col("px"))
                .groupBy("pu").agg(F.max(F.struct("W", (-F.col("px")).alias("negp"))).alias("m"))
                .select(F.col("pu").alias("v"), (-F.col("m.negp")).alias("to"), F.col("m.W").alias("w")))

    def _link_sets(self, nodes: DataFrame, cap: int, level: int) -> DataFrame:
        """(v, key): the capped union of the link graph ``nodes`` (v, to, w, cnt), component by component."""
        comp = self._components(nodes.select("v", "to"))
        tagged = nodes.join(comp, "v")
        stats = tagged.groupBy("root").agg(F.min("v").alias("kmin"), F.sum("cnt").alias("total"))
        tagged = tagged.join(stats, "root").persist(StorageLevel.MEMORY_AND_DISK)
        small = tagged.filter(F.col("total") <= cap).select("v", F.col("kmin").alias("key"))
        big = tagged.filter(F.col("total") > cap).select("root", "v", "to", "w", "cnt")
        big = big.groupBy("root").applyInPandas(lambda pdf: _link_group(pdf, cap, level), _LINK_OUT)
        out = small.unionByName(big).localCheckpoint(eager=True)
        tagged.unpersist()
        return out

    # -------------------------------------------------------------- the contract
    def load(self, graph, ranks) -> None:
        """The graph's edges in cluster-id space (``ranks[u]`` = cluster id of node u): a :class:`Graph` (sent to
        Spark) or a :class:`SparkGraph` (its DataFrame, never collected)."""
        spark = self.spark
        ranks = np.asarray(ranks, dtype=np.int64)
        self.n = n = int(graph.n_nodes)
        if isinstance(graph, SparkGraph):
            e = graph.edges
            if not np.array_equal(ranks, np.arange(n)):   # a tie order: relabel in Spark
                r = spark.createDataFrame(pd.DataFrame({"idx": np.arange(n, dtype=np.int64), "rank": ranks}))
                e = (e.join(r, e["src"] == r["idx"]).select(F.col("rank").alias("s"), "dst", "weight")
                     .join(r, F.col("dst") == r["idx"]).select("s", F.col("rank").alias("d"), "weight"))
            else:
                e = e.select(F.col("src").alias("s"), F.col("dst").alias("d"), "weight")
            E = e.select(F.least("s", "d").alias("src"), F.greatest("s", "d").alias("dst"),
                         F.col("weight").cast("double").alias("S"))
        else:
            src, dst = ranks[graph.src], ranks[graph.dst]
            pdf = pd.DataFrame({"src": np.minimum(src, dst), "dst": np.maximum(src, dst),
                                "S": np.asarray(graph.weight, dtype=np.float64)})
            E = spark.createDataFrame(pdf, _EDGE_SCHEMA)
        self.E = self._save(E.repartition(self.partitions, "src"))
        if isinstance(graph, SparkGraph):
            graph.release()
        self.C = self._save(spark.range(n).select(F.col("id"), F.lit(1).cast("long").alias("size"),
                                                  F.lit(float("inf")).alias("M")))
        self.run_size = np.ones(n, dtype=np.int64)
        self.book = MergeBook(n, ranks)

    def _active(self, d: DataFrame, prune: float) -> DataFrame:
        """(u, B, best) of the active clusters: a neighbour and B >= ``prune``."""
        return self._best(d).filter((F.col("B") >= float(prune)) & (F.col("B") > 0))

    def n_active(self, prune) -> int:
        """Clusters with a neighbour and best similarity B >= ``prune``."""
        return self._active(self._directed(), prune).count()

    def run_round(self, rnd, prune, epsilon, cap, partitioner, levels=1):
        """One round on Spark; returns its stats dict (with ``shuffle_bytes`` where Spark reports it), or None
        when no cluster is active."""
        t0 = time.perf_counter()
        shuffle0 = _shuffle_bytes(self.spark)   # stages before this round
        prune, eps, cap = float(prune), float(epsilon), int(cap)
        d = self._directed().persist(StorageLevel.MEMORY_AND_DISK)
        best = self._active(d, prune).localCheckpoint(eager=True)
        n_active = best.count()
        n_edges = self.E.count()
        # partition on the driver while the active clusters are few
        on_driver = self.collect_limit is not None and n_active <= self.collect_limit
        if on_driver:
            nodes_pd = best.toPandas()
        if n_active == 0:
            d.unpersist()
            return None
        if partitioner == "single":
            kmin = int(nodes_pd["u"].min()) if on_driver else best.agg(F.min("u")).first()[0]
            part = best.select(F.col("u").alias("v"), F.lit(kmin).cast("long").alias("key"))
        elif on_driver:
            nodes_pd = nodes_pd.rename(columns={"u": "v", "best": "to", "B": "w"}).assign(cnt=1)
            part_pd = _link_group(nodes_pd, cap, 1)
            for level in range(2, int(levels) + 1):
                part = F.broadcast(self.spark.createDataFrame(part_pd, _LINK_OUT))
                links = self._level_links(d, part).toPandas()
                sets = part_pd.groupby("key").size().rename("cnt").rename_axis("v").reset_index()
                sets = sets.merge(links, on="v", how="left").fillna({"to": -1, "w": -1.0})
                newkey = _link_group(sets.astype({"to": np.int64}), cap, level)
                part_pd = part_pd.assign(key=part_pd["key"].map(newkey.set_index("v")["key"]).astype(np.int64))
            part = self.spark.createDataFrame(part_pd, _LINK_OUT)
        else:
            nodes = best.select(F.col("u").alias("v"), F.col("best").alias("to"), F.col("B").alias("w"),
                                F.lit(1).cast("long").alias("cnt"))
            part = self._link_sets(nodes, cap, 1)
            for level in range(2, int(levels) + 1):
                links = self._level_links(d, part)
                sets = (part.groupBy("key").agg(F.count(F.lit(1)).alias("cnt")).withColumnRenamed("key", "v")
                        .join(links, "v", "left").fillna({"to": -1, "w": -1.0}).localCheckpoint(eager=True))
                newkey = self._link_sets(sets, cap, level)
                part = (part.join(newkey.select(F.col("v").alias("key"), F.col("key").alias("nk")), "key")
                        .select("v", F.col("nk").alias("key")).localCheckpoint(eager=True))
        if on_driver and partitioner != "single":
            k = part_pd.groupby("key")["v"].transform("size")
            multi_pd = part_pd[k >= 2].rename(columns={"v": "u"})
            n_parts = int(multi_pd["key"].nunique())
            biggest = int(k.max()) if n_parts else 1
            multi = F.broadcast(self.spark.createDataFrame(multi_pd[["u", "key"]], "u long, key long"))
        else:
            sizes = part.groupBy("key").agg(F.count(F.lit(1)).alias("k")).filter(F.col("k") >= 2)
            multi = part.join(sizes, "key").select(F.col("v").alias("u"), "key")
            psizes = sizes.agg(F.count(F.lit(1)).alias("P"), F.max("k").alias("big")).first()
            n_parts, biggest = int(psizes["P"]), int(psizes["big"] or 1)
        rows = d.join(multi, "u").select("key", "u", "x", "S", "nu", "Mu", "nx")
        out = (rows.groupBy("key").applyInPandas(lambda pdf: _subgraph_group(pdf, eps, prune), _GROUP_OUT)
               .persist(StorageLevel.MEMORY_AND_DISK))
        merges = out.filter(F.col("kind") == 0).select("key", "seq", "a", "b", "w").toPandas()
        if merges.empty:
            raise RuntimeError("TeraHAC round made no merge; this is a bug (the heaviest edge is always good)")
        merges = merges.sort_values(["key", "seq"], kind="stable")
        count = merges.groupby("key", sort=True).size().to_numpy(np.int64)
        start = np.zeros(count.size + 1, dtype=np.int64)
        np.cumsum(count, out=start[1:])
        ro = RoundOutput(merges["a"].to_numpy(np.int64), merges["b"].to_numpy(np.int64),
                         merges["w"].to_numpy(np.float64), count, _NO_INT, _NO_FLOAT, _NO_INT)
        n_merges_round = self.book.record(start, ro, self.run_size, rnd)
        # contraction
        members = out.filter(F.col("kind") == 1)
        relabel = self._small(members.filter(F.col("a") != F.col("b"))
                              .select(F.col("a").alias("old"), F.col("b").alias("new")), n_merges_round)
        survivors = members.filter(F.col("a") == F.col("b")).select(
            F.col("a").alias("id"), F.col("size").alias("nsize"), F.col("w").alias("nM"))
        C = (self.C.join(relabel.select(F.col("old").alias("id")), "id", "left_anti")
             .join(survivors, "id", "left")
             .select("id", F.coalesce("nsize", "size").alias("size"), F.coalesce("nM", "M").alias("M")))
        rs = relabel.select(F.col("old").alias("src"), F.col("new").alias("ns"))
        rd = relabel.select(F.col("old").alias("dst"), F.col("new").alias("nd"))
        e = (self.E.join(rs, "src", "left").join(rd, "dst", "left")
             .select("src", "dst", "S", F.coalesce("ns", "src").alias("s1"), F.coalesce("nd", "dst").alias("d1"))
             .filter(F.col("s1") != F.col("d1"))
             .select("src", "dst", "S", F.least("s1", "d1").alias("a"), F.greatest("s1", "d1").alias("b")))
        E = (e.repartition(self.partitions, "a").sortWithinPartitions("a", "b", "src", "dst")
             .mapInPandas(_contract_batches, _EDGE_SCHEMA))
        self.E = self._save(E)
        self.C = self._save(C)
        d.unpersist()
        out.unpersist()
        stats = {"round": int(rnd), "active": int(n_active), "edges": int(n_edges), "partitions": n_parts,
                 "max_partition": biggest, "merges": int(n_merges_round),
                 "seconds": time.perf_counter() - t0}
        shuffle1 = _shuffle_bytes(self.spark, shuffle0[1]) if shuffle0 is not None else None
        if shuffle1 is not None:
            stats["shuffle_bytes"] = shuffle1[0]
        return stats

    def result(self):
        """Merges so far: (left, right, similarity, size, round) in (round, part_key, seq) order."""
        return self.book.result()


def _shuffle_bytes(spark, after: int = -1) -> tuple[int, int] | None:
    """(shuffle bytes written by the stages with id > ``after``, the largest stage id) from Spark's status store (an
    internal API), or None if it cannot be read; the figures are informative only."""
    try:
        sc = spark.sparkContext
        gw = sc._gateway
        empty = gw.jvm.java.util.ArrayList()
        stages = sc._jsc.sc().statusStore().stageList(empty, False, False, gw.new_array(gw.jvm.double, 0), empty)
        total, last = 0, after
        for i in range(stages.size()):
            st = stages.apply(i)
            sid = int(st.stageId())
            if sid > after:
                total += int(st.shuffleWriteBytes())
                last = max(last, sid)
        return total, last
    except Exception:
        return None
