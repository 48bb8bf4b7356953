"""TeraHAC (Dhulipala et al., SIGMOD 2024): (1+eps)-approximate graph average linkage in rounds.

Each round computes every cluster's best neighbour, groups the active clusters into size-capped
partitions along best edges (affinity), merges inside every partition only *good* edges, and contracts:

    g(a, b) = max(B(a), B(b)) / min(W(a, b), M(a), M(b)),   good iff g <= 1 + eps

where B is a cluster's best similarity over *all* its neighbours (those outside the partition are
frozen) and M the smallest merge similarity inside its subtree. Merging only good edges, in any order
and any partition, gives a (1+eps)-approximate dendrogram; eps = 0 admits only reciprocal-best pairs,
i.e. exact average linkage. Inside a partition, neighbours' sizes are *announced* lazily (a cluster
re-announces once it outgrows (1+alpha) times its last announcement, alpha = eps/2), so the estimated
similarities satisfy W <= W^ <= (1+alpha) W and estimated goodness never under-states the truth.

The round driver here is written once against the engine contract :class:`teraml.hac.engines.Engine`
(``load``, ``run_round``, ``n_active``, ``result``); the shared pure functions (tie ranks, the affinity
partition, SubgraphHAC, the contraction) are numba kernels on plain arrays in ``teraml.hac._kernels``, and
:class:`teraml.hac.engines.LocalEngine` runs partitions on a thread pool (``n_jobs``).

>>> from teraml.hac import Graph, TeraHAC
>>> from teraml.datasets import make_planted_partition_graph
>>> src, dst, w, labels = make_planted_partition_graph(400, 8, random_state=0)
>>> model = TeraHAC(threshold=0.1).fit(Graph.from_edges(src, dst, w, n_nodes=400))
>>> model.n_clusters_
8
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import validate_data

from teraml._spark import SparkSessionType, is_spark_dataframe, is_spark_session
from teraml._validation import VERBOSE, InstanceOf, Interval, Options, check_params
from teraml.hac._kernels import tie_ranks
from teraml.hac.dendrogram import Dendrogram
from teraml.hac.engines import Engine, LocalEngine
from teraml.hac.engines.local import N_JOBS
from teraml.hac.graph import SIMILARITY_THRESHOLD, Graph

__all__ = ["TeraHAC", "run_rounds"]

logger = logging.getLogger("teraml.hac")


def run_rounds(engine: Engine, *, prune: float, epsilon: float, cap: int, partitioner: str, levels: int,
               max_rounds: int, verbose: bool = False) -> list[dict]:
    """The round driver: ``engine.run_round`` until no cluster is active or ``max_rounds`` is reached.

    Returns the stats of each round. Stopping at ``max_rounds`` with clusters still active warns
    (``ConvergenceWarning``); the partial result stays in the engine.
    """
    from tqdm.auto import tqdm

    stats = []
    with tqdm(desc="TeraHAC rounds", unit="round", disable=not verbose, leave=False) as bar:
        for rnd in range(max_rounds):
            st = engine.run_round(rnd, prune, epsilon, cap, partitioner, levels)
            if st is None:
                return stats
            stats.append(st)
            bar.update(1)
            bar.set_postfix(active=st["active"], merges=st["merges"])
            logger.info("TeraHAC round %d: %d active, %d edges, %d merges, %.2f s", rnd, st["active"], st["edges"],
                        st["merges"], st["seconds"])
    n_active = engine.n_active(prune)
    if n_active:
        warnings.warn(f"TeraHAC stopped after max_rounds={max_rounds} rounds with {n_active} active clusters; "
                      "the result is partial", ConvergenceWarning, stacklevel=3)
    return stats


# ----------------------------------------------------------------------------------------- estimator


class TeraHAC(ClusterMixin, BaseEstimator):
    """(1+eps)-approximate average-linkage HAC of a similarity graph, or of points through their k-NN graph.

    ``fit(X)`` takes either a feature matrix (dense or scipy.sparse rows; clustered through its exact k-NN
    similarity graph, :meth:`Graph.from_points`) or a similarity graph (a :class:`Graph`, or a square
    similarity matrix with ``affinity="precomputed"``), so TeraHAC sits in a scikit-learn ``Pipeline`` after a
    scaler and beside ``AgglomerativeClustering`` in a comparison loop.

    >>> from sklearn.datasets import load_wine
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = load_wine(return_X_y=True)
    >>> make_pipeline(StandardScaler(), TeraHAC(n_clusters=3)).fit_predict(X).shape
    (178,)

    Parameters
    ----------
    threshold : float >= 0 or None
        Merge down to this similarity and cut there (at most one of threshold / n_clusters): a leaf joins its
        highest ancestor of similarity >= t, and the run stays active while some W >= t / (1 + eps), so a
        merge exactly at t is made at every eps.
    n_clusters : int or None
        Run to the end (t = 0) and cut into exactly this many clusters (:meth:`Dendrogram.cut`), or into more
        when the graph has more than n_clusters connected components: one cluster per component, with a
        warning (no edge joins them; on points, raise n_neighbors). With neither threshold nor n_clusters
        the run goes to the end and ``labels_`` are the connected components (the cut at t = 0); cut the
        fitted ``dendrogram_`` for any other number of clusters.
    affinity : "auto" (default), "knn" or "precomputed". What X is: "knn" reads X as n feature rows (dense or
        scipy.sparse) and clusters their exact k-NN similarity graph (``n_neighbors``, ``metric``);
        "precomputed" reads X as a similarity graph: a :class:`Graph`, or an n x n similarity matrix, sparse or
        dense (0 = no edge). "auto" is "precomputed" for a :class:`Graph` or any scipy.sparse matrix, "knn" for
        everything else (dense arrays, lists, DataFrames); pass "knn" for sparse feature rows.
    n_neighbors : int >= 1, default 10. Neighbours per point of the k-NN graph ("knn"); with fewer than
        n_neighbors + 1 points, every other point (the complete graph).
    metric : "cosine" (default; similarity 1 - d, pairs <= 0 dropped) or "euclidean" (1 / (1 + d)) ("knn").
    epsilon : float >= 0, default 0.1. 0 gives exact average linkage.
    engine : "local" (in-process), "spark" (:class:`teraml.hac.engines.spark.SparkEngine` on the active
        SparkSession, or a new ``local[*]`` one; ``pip install teraml[spark]``), a SparkSession (the Spark engine
        on it), or an object implementing :class:`teraml.hac.engines.Engine` (used as given). The merges are
        bit-identical on every engine; ``n_jobs`` applies to "local" only. A Spark DataFrame X (columns src,
        dst, weight) needs the Spark engine: its edges are cleaned and clustered in Spark, never collected, and
        ``labels_`` (node, cluster) and ``merges_`` (id, left, right, similarity, size, round) are then Spark
        DataFrames too.
    partitioner : "affinity" (size-capped partitions along best edges) or "single" (one partition).
    max_partition_size : int or None (max(ceil(n/100), 10^6) active clusters).
    affinity_levels : int >= 1, default 3. Levels of size-capped affinity clustering that form the
        partitions: 1 joins clusters along best edges only (google/graph-mining's partition); each further
        level joins every partition to the one across its heaviest outgoing edge (within the cap). Larger
        partitions freeze fewer boundaries, so a round merges more, at a higher cost per round: a planted-
        partition graph of 10^5 nodes and 10^6 edges takes 22 / 17 / 9 rounds with 1 / 2 / 3 levels, one of
        10^6 nodes and 10^7 edges 33 / 27 / 19.
    max_rounds : int, default 1000.
    n_jobs : None, -1 or int >= 1. Threads over partitions (None = 1, -1 = all cores); the merges do not
        depend on it.
    random_state : None or int >= 0. Tie order: node order if None, else a splitmix64 mix of (index, seed).
    verbose : bool. A progress bar per round (logger ``teraml.hac`` logs each round too).

    Fitted: ``labels_`` (clusters 0..k-1 ordered by smallest node), ``n_clusters_``, ``dendrogram_``,
    ``n_rounds_``, ``round_stats_``, ``node_ids_``, ``threshold_``, ``graph_`` (the :class:`Graph` clustered:
    the k-NN graph built from points, or the input graph), ``affinity_`` ("knn" or "precomputed"),
    ``n_features_in_`` (array input only), and scikit-learn's
    ``AgglomerativeClustering`` attributes: ``children_`` (n - 1, 2) and ``distances_`` (n - 1,) of the full
    tree (distance 1 - similarity, or 1 / similarity when a similarity exceeds 1; the trees of a forest are
    joined by extra merges at the largest distance + 1, so scipy's ``dendrogram`` draws them),
    ``n_leaves_`` and ``n_connected_components_`` (of the graph).

    Example: scikit-learn's dendrogram recipe works as is::

        counts = ...  # subtree sizes from children_, as in scikit-learn's example
        scipy.cluster.hierarchy.dendrogram(np.column_stack([model.children_, model.distances_, counts]))
    """

    def __init__(self, threshold=None, *, n_clusters=None, affinity="auto", n_neighbors=10, metric="cosine",
                 epsilon=0.1, engine="local", partitioner="affinity", max_partition_size=None, affinity_levels=3,
                 max_rounds=1000, n_jobs=None, random_state=None, verbose=False):
        self.threshold = threshold
        self.n_clusters = n_clusters
        self.affinity = affinity
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.epsilon = epsilon
        self.engine = engine
        self.partitioner = partitioner
        self.max_partition_size = max_partition_size
        self.affinity_levels = affinity_levels
        self.max_rounds = max_rounds
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "threshold": [SIMILARITY_THRESHOLD, None, SIMILARITY_THRESHOLD.text],
        "n_clusters": [Interval("int", 1), None, "an int >= 1"],
        "affinity": [Options("auto", "knn", "precomputed", phrase="or")],
        "n_neighbors": [Interval("int", 1)],
        "metric": [Options("cosine", "euclidean", phrase="or")],
        "epsilon": [Interval("float", 0, text="a finite float >= 0")],
        "engine": [Options("local", "spark"), InstanceOf(SparkSessionType, "a SparkSession"), InstanceOf(Engine),
                   "'local', 'spark', a SparkSession or an object implementing teraml.hac.engines.Engine"],
        "partitioner": [Options("affinity", "single", phrase="or")],
        "max_partition_size": [Interval("int", 2), None],
        "affinity_levels": [Interval("int", 1)],
        "max_rounds": [Interval("int", 1)],
        "n_jobs": N_JOBS,
        "random_state": [None, Interval("int", 0)],
        "verbose": VERBOSE,
    }

    #: The checks of scikit-learn's ``check_estimator(TeraHAC())`` that cannot pass, with the reason; the test
    #: passes this dict as ``expected_failed_checks`` (every other check passes).
    _expected_failed_checks: dict[str, str] = {
        "check_estimators_dtypes": "its integer data has an all-zero row, for which cosine similarity (the default "
                                   "metric) is undefined: TeraHAC raises a ValueError that counts the rows, as "
                                   "AgglomerativeClustering(metric='cosine') does; metric='euclidean' passes the check",
    }

    def fit(self, X, y=None):
        """Cluster ``X``: feature rows (through their k-NN graph) or a similarity graph; see ``affinity``."""
        if self.threshold is not None and self.n_clusters is not None:
            raise ValueError(f"at most one of threshold or n_clusters may be given, got threshold={self.threshold!r}, "
                             f"n_clusters={self.n_clusters!r}")
        p = check_params(self, self._parameter_constraints, sep=", ")
        eps = p["epsilon"]
        if eps > 1:
            warnings.warn(f"epsilon={eps} > 1 allows merges far from the best; results may be poor", UserWarning,
                          stacklevel=2)
        spark_graph = type(X).__name__ == "SparkGraph"   # read_edges' output (pyspark is not imported here)
        spark_df = spark_graph or is_spark_dataframe(X)
        engine = p["engine"]
        if engine == "spark" or is_spark_session(engine):
            from teraml.hac.engines.spark import SparkEngine

            engine = SparkEngine(None if engine == "spark" else engine)
        elif engine == "local":
            if spark_df:
                raise TypeError("X is a Spark DataFrame, which needs engine='spark' (or a SparkSession), got "
                                "engine='local'")
            engine = LocalEngine(p["n_jobs"])
        if spark_df:
            from teraml.hac.engines.spark import SparkEngine, read_edges

            if not isinstance(engine, SparkEngine):
                raise TypeError(f"X is a Spark DataFrame, which needs engine='spark', a SparkSession or a SparkEngine, "
                                f"got engine={type(engine).__name__}")
            if p["affinity"] == "knn":
                raise TypeError("X is a Spark DataFrame of edges (src, dst, weight), which needs affinity='precomputed' "
                                "(or 'auto'), got affinity='knn'")
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
            self.affinity_ = "precomputed"
            g = X if spark_graph else read_edges(X)
        else:
            g = self._graph(X, p)
        t = p["threshold"] if p["threshold"] is not None else 0.0
        n = g.n_nodes
        engine.load(g, tie_ranks(n, p["random_state"]))   # cluster id of each node; ties follow it
        cap = p["max_partition_size"] or max(-(-n // 100), 10**6)
        stats = run_rounds(engine, prune=t / (1.0 + eps), epsilon=eps, cap=cap, partitioner=p["partitioner"],
                           levels=p["affinity_levels"], max_rounds=p["max_rounds"], verbose=p["verbose"])
        left, right, sim, sizes, rounds = engine.result()
        d = Dendrogram(n, left, right, sim, sizes, rounds, g.node_ids)
        self.dendrogram_ = d
        self.threshold_ = t
        self.labels_ = d.flatten(t) if p["n_clusters"] is None else d.cut(p["n_clusters"])
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_rounds_ = len(stats)
        self.round_stats_ = stats
        self.node_ids_ = g.node_ids
        self.n_leaves_ = n
        if t == 0.0 and len(stats) < p["max_rounds"]:   # a complete run to t = 0 makes one tree per component
            self.n_connected_components_ = n - d.n_merges
        elif spark_df:
            self.n_connected_components_ = None   # not computed for an edge table that stays in Spark
        else:
            adj = sp.coo_array((np.ones(g.n_edges, dtype=np.int8), (g.src, g.dst)), shape=(n, n))
            self.n_connected_components_ = int(connected_components(adj, directed=False)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # a (1+eps) tree may be non-monotone: drawn as is
            big = d.n_merges and float(d.similarity.max()) > 1.0
            Z = d.to_linkage("reciprocal" if big else "one_minus")
        self.children_ = Z[:, :2].astype(np.intp)
        self.distances_ = Z[:, 2].copy()
        self.graph_ = g
        if spark_df:
            self._spark_outputs(d, engine.spark)
        else:
            self.__dict__.pop("merges_", None)
        return self

    def _spark_outputs(self, d: Dendrogram, spark) -> None:
        """``labels_`` (node, cluster) and ``merges_`` (id, left, right, similarity, size, round) as DataFrames."""
        import pandas as pd

        labels = pd.DataFrame({"node": self.node_ids_, "cluster": self.labels_})
        self.labels_ = spark.createDataFrame(labels)
        merges = pd.DataFrame({"id": d.n_leaves + np.arange(d.n_merges, dtype=np.int64), "left": d.left,
                               "right": d.right, "similarity": d.similarity, "size": d.size,
                               "round": d.round.astype(np.int32)})
        self.merges_ = spark.createDataFrame(merges, "id long, left long, right long, similarity double, size long, "
                                                     "round int")

    def _graph(self, X, p) -> Graph:
        """The similarity graph to cluster, built from ``X`` as ``affinity`` says; sets ``affinity_``."""
        affinity = p["affinity"]
        if affinity == "auto":
            affinity = "precomputed" if isinstance(X, Graph) or sp.issparse(X) else "knn"
        self.affinity_ = affinity
        for name in ("n_features_in_", "feature_names_in_"):   # from an earlier fit on an array
            self.__dict__.pop(name, None)
        if isinstance(X, Graph):
            if affinity == "knn":
                raise TypeError("X must be feature rows (an array or a scipy.sparse matrix) with affinity='knn', got "
                                "Graph; pass affinity='precomputed' (or 'auto') to cluster a Graph")
            return X
        if affinity == "precomputed":
            if sp.issparse(X):   # today's graph path, unchanged: Graph.from_sparse checks and cleans
                if X.ndim == 2 and X.shape[0] != X.shape[1]:
                    raise ValueError(f"similarity matrix must be square, got shape {X.shape}; for sparse feature rows "
                                     "pass affinity='knn'")
                return Graph.from_sparse(X)
            S = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
            return Graph.from_sparse(sp.coo_array(S))
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False,
                          ensure_min_samples=2)   # Graph.from_points names the rows with NaN/inf
        return Graph.from_points(X, n_neighbors=min(p["n_neighbors"], X.shape[0] - 1), metric=p["metric"])

    def __sklearn_clone__(self):
        """scikit-learn's ``clone`` (GridSearchCV, Pipeline): a SparkSession engine is shared, not deep-copied (a
        session is a handle on one running Spark application, which cannot be copied)."""
        from sklearn.base import _clone_parametrized, clone

        if not is_spark_session(self.engine):
            return _clone_parametrized(self)
        params = {k: (v if k == "engine" else clone(v, safe=False)) for k, v in self.get_params(deep=False).items()}
        return type(self)(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # "auto" reads a sparse X as a similarity graph, so sparse *feature rows* need affinity="knn" (the error
        # for a non-square one says so); "knn" and "precomputed" take sparse X
        tags.input_tags.sparse = self.affinity != "auto"
        tags.input_tags.pairwise = self.affinity == "precomputed"
        tags.input_tags.positive_only = self.affinity == "precomputed"   # similarities are >= 0
        return tags
