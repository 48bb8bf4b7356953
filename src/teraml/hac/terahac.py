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

The round driver here is written once against the engine contract (``load``, ``run_round``,
``result``); the shared pure functions (``_tie_ranks``, ``_affinity_partition``, ``_subgraph_hac``,
``_segment_sum``) are numba kernels on plain arrays in ``teraml.hac._kernels``, and
``teraml.hac.engines.LocalEngine`` runs partitions on a thread pool (``n_jobs``).

>>> from teraml.hac import Graph, TeraHAC
>>> from teraml.datasets import make_planted_partition_graph
>>> src, dst, w, labels = make_planted_partition_graph(400, 8, random_state=0)
>>> model = TeraHAC(threshold=0.1).fit(Graph.from_edges(src, dst, w, n_nodes=400))
>>> model.n_clusters_
8
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import ConvergenceWarning

from teraml._validation import type_name
from teraml.hac._kernels import ULP_SLACK as _ULP_SLACK
from teraml.hac._kernels import (  # noqa: F401  (the shared pure functions of spec §4.1 live here)
    _affinity_partition,
    _best,
    _build_csr,
    _segment_sum,
    _subgraph_hac,
    _tie_ranks,
)
from teraml.hac.dendrogram import Dendrogram
from teraml.hac.engines.local import LocalEngine
from teraml.hac.graph import Graph

__all__ = ["TeraHAC"]

logger = logging.getLogger("teraml.hac")



# ----------------------------------------------------------------------------------------- SubgraphHAC


def _subgraph_hac_dicts(members, adj, size, M, eps, prune=0.0):
    """Run the SubgraphHAC kernel on dict inputs (tests, small examples).

    ``members``: the partition's cluster ids; ``adj[u]``: {neighbour: S(u, x)} for every member u (neighbours
    outside are frozen); ``size``/``M``: per-cluster dicts covering members and neighbours. Returns
    ``(merges, new_size, new_M)``: merges (a, b, W, seq) in order and the surviving clusters' size and M.

    >>> merges, size, M = _subgraph_hac_dicts([0, 1], {0: {1: 0.5, 2: 0.1}, 1: {0: 0.5}}, {0: 1, 1: 1, 2: 1},
    ...                                       {0: math.inf, 1: math.inf, 2: math.inf}, 0.1)
    >>> merges, size
    ([(0, 1, 0.5, 0)], {0: 2})
    """
    members = sorted(int(u) for u in members)
    member_set = set(members)
    ids = set(members)
    for u in members:
        ids.update(int(x) for x in adj.get(u, {}))
    n = max(ids) + 1 if ids else 0
    indptr = np.zeros(n + 1, dtype=np.int64)
    nbr, wt = [], []
    for u in range(n):
        row = adj.get(u, {}) if u in member_set else {}
        for x in sorted(row):
            nbr.append(int(x))
            wt.append(float(row[x]))
        indptr[u + 1] = len(nbr)
    sz = np.ones(n, dtype=np.int64)
    Mv = np.full(n, np.inf)
    for u in ids:
        sz[u] = size[u]
        Mv[u] = M[u]
    part = np.full(n, -1, dtype=np.int64)
    part[members] = members[0] if members else -1
    k = len(members)
    out_a = np.empty(k, dtype=np.int64)
    out_b = np.empty(k, dtype=np.int64)
    out_w = np.empty(k, dtype=np.float64)
    out_cnt = np.zeros(1, dtype=np.int64)
    new_size, new_M, rep = sz.copy(), Mv.copy(), np.arange(n, dtype=np.int64)
    if k >= 2:
        _subgraph_hac(0, 1, np.array([0, k], dtype=np.int64), np.array(members, dtype=np.int64), part,
                      np.zeros(n, dtype=np.int64), indptr, np.array(nbr, dtype=np.int64), np.array(wt, dtype=np.float64),
                      sz, Mv, float(eps), float(prune), out_a, out_b, out_w, out_cnt, new_size, new_M, rep)
    c = int(out_cnt[0])
    merges = [(int(out_a[i]), int(out_b[i]), float(out_w[i]), i) for i in range(c)]
    alive = [u for u in members if rep[u] == u]
    return merges, {u: int(new_size[u]) for u in alive}, {u: float(new_M[u]) for u in alive}


def _subgraph_hac_naive(members, adj, size, M, eps):
    """Test oracle: recompute every B and g after each merge; merge the smallest g while <= 1 + eps."""
    inP = set(members)
    A = {u: dict(adj[u]) for u in members}
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}
    alive = set(members)

    def W(u, x):
        return A[u][x] / (float(n[u]) * float(n[x] if x in inP else size[x]))

    merges = []
    seq = 0
    while True:
        B = {u: max((W(u, x) for x in A[u]), default=0.0) for u in alive}
        best = None
        for a in sorted(alive):
            for b in A[a]:
                if b in alive and b in inP and a < b:
                    w = W(a, b)
                    den = min(w, m[a], m[b])
                    g = max(B[a], B[b]) / den if den > 0 else math.inf
                    if best is None or (g, a, b) < best[:3]:
                        best = (g, a, b, w)
        if best is None or best[0] > (1.0 + eps) * _ULP_SLACK:
            break
        g, a, b, w = best
        c, o = (a, b) if a < b else (b, a)
        merges.append((a, b, w, seq, g))
        seq += 1
        m[c] = min(m[a], m[b], w)
        for x, s in A[o].items():
            if x != c:
                A[c][x] = A[c].get(x, 0.0) + s
        A[c].pop(o, None)
        n[c] = n[a] + n[b]
        alive.discard(o)
        for x in list(A):
            if o in A[x]:
                s = A[x].pop(o)
                if x != c:
                    A[x][c] = A[x].get(c, 0.0) + s
        del A[o]
    return merges


# ----------------------------------------------------------------------------------------- estimator


class TeraHAC(ClusterMixin, BaseEstimator):
    """(1+eps)-approximate average-linkage HAC of a similarity graph, in rounds.

    Parameters
    ----------
    threshold : float >= 0 or None
        Stop merging below this similarity and cut there (exactly one of threshold / n_clusters).
    n_clusters : int or None
        Run to the end (t = 0) and cut the dendrogram into at most this many clusters.
    epsilon : float >= 0, default 0.1. 0 gives exact average linkage.
    engine : "local" (the only engine built so far).
    partitioner : "affinity" (size-capped partitions along best edges) or "single" (one partition).
    max_partition_size : int or None (max(ceil(n/100), 10^6) active clusters).
    affinity_levels : int >= 1, default 3. Levels of size-capped affinity clustering that form the
        partitions: 1 joins clusters along best edges only (google/graph-mining's partition); each further
        level joins every partition to the one across its heaviest outgoing edge (within the cap). Larger
        partitions freeze fewer boundaries, so a round merges more: on D3 n=1e5, 22 / 17 / 9 rounds with 1 / 2
        / 3 levels, and 33 / 27 / 19 at n=1e6 (10^7 edges), at a higher cost per round.
    max_rounds : int, default 1000.
    n_jobs : None, -1 or int >= 1. Threads over partitions (None = 1, -1 = all cores); the merges do not
        depend on it.
    random_state : None or int >= 0. Tie order: node order if None, else a splitmix64 mix of (index, seed).
    verbose : bool. A progress bar per round (logger ``teraml.hac`` logs each round too).

    Fitted: ``labels_`` (clusters 0..k-1 ordered by smallest node), ``n_clusters_``, ``dendrogram_``,
    ``n_rounds_``, ``round_stats_``, ``node_ids_``, ``threshold_``.
    """

    def __init__(self, threshold=None, *, n_clusters=None, epsilon=0.1, engine="local", partitioner="affinity",
                 max_partition_size=None, affinity_levels=3, max_rounds=1000, n_jobs=None, random_state=None,
                 verbose=False):
        self.threshold = threshold
        self.n_clusters = n_clusters
        self.epsilon = epsilon
        self.engine = engine
        self.partitioner = partitioner
        self.max_partition_size = max_partition_size
        self.affinity_levels = affinity_levels
        self.max_rounds = max_rounds
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _check(self):
        if (self.threshold is None) == (self.n_clusters is None):
            raise ValueError(f"exactly one of threshold or n_clusters must be given, got threshold={self.threshold!r}, "
                             f"n_clusters={self.n_clusters!r}")
        t = self.threshold
        if t is not None and (isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real)
                              or not math.isfinite(t) or t < 0):
            raise ValueError(f"threshold must be a finite float >= 0 (a similarity, not a distance), got {t!r}")
        k = self.n_clusters
        if k is not None and (isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1):
            raise ValueError(f"n_clusters must be an int >= 1, got {k!r}")
        e = self.epsilon
        if isinstance(e, (bool, np.bool_)) or not isinstance(e, numbers.Real) or not math.isfinite(e) or e < 0:
            raise ValueError(f"epsilon must be a finite float >= 0, got {e!r}")
        if e > 1:
            warnings.warn(f"epsilon={e} > 1 allows merges far from the best; results may be poor", UserWarning,
                          stacklevel=3)
        if self.engine != "local":
            raise ValueError(f"engine must be 'local' (the Spark engine is not built yet), got {self.engine!r}")
        if self.partitioner not in ("affinity", "single"):
            raise ValueError(f"partitioner must be 'affinity' or 'single', got {self.partitioner!r}")
        mp = self.max_partition_size
        if mp is not None and (isinstance(mp, (bool, np.bool_)) or not isinstance(mp, numbers.Integral) or mp < 2):
            raise ValueError(f"max_partition_size must be an int >= 2 or None, got {mp!r}")
        nj = self.n_jobs
        if nj is not None and (isinstance(nj, (bool, np.bool_)) or not isinstance(nj, numbers.Integral) or nj == 0):
            raise ValueError(f"n_jobs must be None, -1 or an int >= 1, got {nj!r}")
        rs = self.random_state
        if rs is not None and (isinstance(rs, (bool, np.bool_)) or not isinstance(rs, numbers.Integral) or rs < 0):
            raise ValueError(f"random_state must be None or an int >= 0, got {rs!r}")
        lv = self.affinity_levels
        if isinstance(lv, (bool, np.bool_)) or not isinstance(lv, numbers.Integral) or lv < 1:
            raise ValueError(f"affinity_levels must be an int >= 1, got {lv!r}")
        mr = self.max_rounds
        if isinstance(mr, (bool, np.bool_)) or not isinstance(mr, numbers.Integral) or mr < 1:
            raise ValueError(f"max_rounds must be an int >= 1, got {mr!r}")

    def fit(self, X, y=None):
        self._check()
        if isinstance(X, Graph):
            g = X
        elif sp.issparse(X):
            g = Graph.from_sparse(X)
        else:
            raise TypeError(f"X must be a Graph or a square scipy.sparse matrix, got {type_name(X)}; for points use "
                            "Graph.from_points")
        eps = float(self.epsilon)
        t = float(self.threshold) if self.threshold is not None else 0.0
        n = g.n_nodes
        rank = _tie_ranks(n, self.random_state)              # cluster id of each node; ties follow it
        leaf_of = np.empty(n, dtype=np.int64)
        leaf_of[rank] = np.arange(n)                           # cluster id -> leaf index
        engine = LocalEngine(self.n_jobs)
        engine.load(rank[g.src], rank[g.dst], g.weight, n)
        engine.node = leaf_of.copy()                           # dendrogram leaves keep the node order
        prune = t / (1.0 + eps)
        cap = self.max_partition_size or max(-(-n // 100), 10**6)
        stats = []
        from tqdm.auto import tqdm

        bar = tqdm(desc="TeraHAC rounds", unit="round", disable=not self.verbose, leave=False)
        for rnd in range(self.max_rounds + 1):
            if rnd == self.max_rounds:
                indptr, nbr, wt = _build_csr(engine.src, engine.dst, engine.S, n)
                n_active = int(np.count_nonzero(_best(indptr, nbr, wt, engine.size)[1] > prune))
                if n_active:
                    warnings.warn(f"TeraHAC stopped after max_rounds={self.max_rounds} rounds with {n_active} "
                                  "active clusters; the result is partial", ConvergenceWarning, stacklevel=2)
                break
            st_ = engine.run_round(rnd, prune, eps, cap, self.partitioner, self.affinity_levels)
            if st_ is None:
                break
            stats.append(st_)
            bar.update(1)
            bar.set_postfix(active=st_["active"], merges=st_["merges"])
            logger.info("TeraHAC round %d: %d active, %d edges, %d merges, %.2f s", rnd, st_["active"], st_["edges"],
                        st_["merges"], st_["seconds"])
        bar.close()
        n_rounds = len(stats)
        left, right, sim, sizes, rounds = engine.result()
        d = Dendrogram(n, left, right, sim, sizes, rounds, g.node_ids)
        self.dendrogram_ = d
        self.threshold_ = t
        self.labels_ = d.flatten(t) if self.threshold is not None else d.cut(self.n_clusters)
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_rounds_ = n_rounds
        self.round_stats_ = stats
        self.node_ids_ = g.node_ids
        return self
