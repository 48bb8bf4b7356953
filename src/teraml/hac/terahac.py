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

This module is the in-process engine written in Python; the spec's numba kernels and Spark engine are
not built yet.

>>> from teraml.hac import Graph, TeraHAC
>>> from teraml.datasets import make_planted_partition_graph
>>> src, dst, w, labels = make_planted_partition_graph(400, 8, random_state=0)
>>> model = TeraHAC(threshold=0.1).fit(Graph.from_edges(src, dst, w, n_nodes=400))
>>> model.n_clusters_
8
"""

from __future__ import annotations

import heapq
import logging
import math
import numbers
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import ConvergenceWarning

from teraml._validation import type_name
from teraml.hac.dendrogram import Dendrogram
from teraml.hac.graph import Graph

__all__ = ["TeraHAC"]

logger = logging.getLogger("teraml.hac")

# Goodness is compared with (1 + eps) times this: a merged cluster's W(c, x) = (S(a,x) + S(b,x)) / (n_c n_x)
# can exceed the merge similarity by a rounding error when the two are equal in exact arithmetic (ties),
# which at eps = 0 would otherwise stall a round.
_ULP_SLACK = 1.0 + 1e-12


# ----------------------------------------------------------------------------------------- partition


def _affinity_partition(active, best, B, cap):
    """Union each active u with best(u), visiting by decreasing B (ties: smaller id), while the union's
    count stays <= cap; counts change only on a real union. Returns {u: part_key (smallest id)}."""
    parent = {u: u for u in active}
    count = {u: 1 for u in active}

    def find(u):
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for u in sorted(active, key=lambda x: (-B[x], x)):
        v = best[u]
        if v not in parent:
            continue
        ru, rv = find(u), find(v)
        if ru == rv or count[ru] + count[rv] > cap:
            continue
        if rv < ru:
            ru, rv = rv, ru
        parent[rv] = ru
        count[ru] += count[rv]
    return {u: find(u) for u in active}


# ----------------------------------------------------------------------------------------- SubgraphHAC


def _subgraph_hac(members, adj, size, M, eps):
    """Merge good edges inside one partition.

    ``members``: the partition's cluster ids; ``adj[u]``: {neighbour: S(u, x)} for all u in members
    (neighbours outside are frozen); ``size``/``M``: per-cluster dicts. Mutates nothing it does not
    own; returns ``(merges, new_size, new_M)`` where merges are (a, b, W, seq) in order and the new_*
    dicts describe the clusters alive in the partition at the end (ids = smallest merged id).
    """
    alpha = eps / 2.0
    inP = set(members)
    A = {u: dict(adj[u]) for u in members}              # private copies
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}
    ann = {u: size[u] for u in members}                  # announced sizes of partition clusters
    alive = set(members)
    stale = set()

    def wsize(x):  # the size used for neighbour x in W^: announced for partition clusters, fixed outside
        return ann[x] if x in inP else size[x]

    def what(u, x, s):
        return s / (float(n[u]) * float(wsize(x)))

    def bhat(u):
        return max((what(u, x, s) for x, s in A[u].items()), default=0.0)

    Bh = {u: bhat(u) for u in members}

    def ghat(a, b):
        w = A[a][b] / (float(n[a]) * float(n[b]))       # the exact W
        den = min(w, m[a], m[b])
        return (max(Bh[a], Bh[b]) / den) if den > 0 else math.inf, w

    heap = []
    ver = {u: 0 for u in members}

    def push_edges(u):
        for x in A[u]:
            if x in alive and x in inP:
                a, b = (u, x) if u < x else (x, u)
                g, _ = ghat(a, b)
                heapq.heappush(heap, (g, a, b, ver[a], ver[b]))

    for u in sorted(members):
        push_edges(u)
    limit = (1.0 + eps) * _ULP_SLACK
    merges = []
    seq = 0
    while True:
        if not heap:
            break
        g0, a, b, va, vb = heapq.heappop(heap)
        if a not in alive or b not in alive or ver[a] != va or ver[b] != vb or b not in A[a]:
            continue
        refreshed = False
        for u in (a, b):
            if u in stale:
                stale.discard(u)
                Bh[u] = bhat(u)
                ver[u] += 1
                push_edges(u)
                refreshed = True
        if refreshed:
            continue
        g, w = ghat(a, b)
        if g != g0:
            heapq.heappush(heap, (g, a, b, va, vb))
            continue
        if g > limit:
            if stale:  # refresh everything stale: estimates only fall, keys may drop below the limit
                for u in list(stale):
                    if u in alive:
                        Bh[u] = bhat(u)
                        ver[u] += 1
                        push_edges(u)
                stale.clear()
                heapq.heappush(heap, (g, a, b, ver[a], ver[b]))
                continue
            heapq.heappush(heap, (g, a, b, va, vb))
            break
        # merge a and b into c = min(a, b)
        c, o = (a, b) if a < b else (b, a)
        merges.append((a, b, w, seq))
        seq += 1
        n_c = n[a] + n[b]
        m[c] = min(m[a], m[b], w)
        Ac, Ao = A[c], A[o]
        Ac.pop(o, None)
        Ao.pop(c, None)
        L_is_c = len(Ac) >= len(Ao)
        big, small = (Ac, Ao) if L_is_c else (Ao, Ac)
        for x, s in small.items():
            # S(c, x) = S(a, x) + S(b, x), the smaller id's term first
            big[x] = (Ac[x] + Ao[x]) if x in big else s
        A[c] = big
        A[o] = {}
        ann_c = ann[c] if L_is_c else ann[o]
        n[c] = n_c
        alive.discard(o)
        announce = n_c > (1.0 + alpha) * ann_c
        ann[c] = n_c if announce else ann_c
        ver[c] += 1
        ver[o] += 1
        for x, s in big.items():
            if x in inP and x in alive:
                Ax = A[x]
                Ax.pop(o, None)
                Ax[c] = s
                wx = s / (float(n[x]) * float(ann[c]))
                if wx > Bh[x]:
                    Bh[x] = wx
                    ver[x] += 1
                    push_edges(x)
                elif announce:
                    stale.add(x)
        Bh[c] = bhat(c)
        push_edges(c)
    return merges, {u: n[u] for u in alive}, {u: m[u] for u in alive}


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
    max_rounds : int, default 1000.
    random_state : None or int; with an int, ties follow a seeded permutation of the node ids.

    Fitted: ``labels_`` (clusters 0..k-1 ordered by smallest node), ``n_clusters_``, ``dendrogram_``,
    ``n_rounds_``, ``round_stats_``, ``node_ids_``, ``threshold_``.
    """

    def __init__(self, threshold=None, *, n_clusters=None, epsilon=0.1, engine="local", partitioner="affinity",
                 max_partition_size=None, max_rounds=1000, n_jobs=None, random_state=None, verbose=False):
        self.threshold = threshold
        self.n_clusters = n_clusters
        self.epsilon = epsilon
        self.engine = engine
        self.partitioner = partitioner
        self.max_partition_size = max_partition_size
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
        # ranks: cluster ids; ties follow them
        if self.random_state is None:
            rank = np.arange(n)
        else:
            rank = np.random.default_rng(self.random_state).permutation(n)
        leaf_of = np.empty(n, dtype=np.int64)
        leaf_of[rank] = np.arange(n)                       # cluster id (rank) -> leaf index
        adj: dict[int, dict[int, float]] = {}
        for a, b, w in zip(rank[g.src].tolist(), rank[g.dst].tolist(), g.weight.tolist()):
            adj.setdefault(a, {})[b] = adj.get(a, {}).get(b, 0.0) + w
            adj.setdefault(b, {})[a] = adj.get(b, {}).get(a, 0.0) + w
        size = {u: 1 for u in range(n)}
        Mv = {u: math.inf for u in range(n)}
        node = {u: int(leaf_of[u]) for u in range(n)}      # dendrogram node of each cluster
        prune = t / (1.0 + eps)
        cap = self.max_partition_size or max(-(-n // 100), 10**6)
        left, right, sim, sizes, rounds = [], [], [], [], []
        stats = []
        n_rounds = 0
        from tqdm.auto import tqdm

        bar = tqdm(desc="TeraHAC rounds", unit="round", disable=not self.verbose, leave=False)
        for rnd in range(self.max_rounds + 1):
            t0 = time.perf_counter()
            best, B = {}, {}
            for u, nb in adj.items():
                bu, bw = -1, -1.0
                su = float(size[u])
                for x, s in nb.items():
                    w = s / (su * float(size[x]))
                    if w > bw or (w == bw and x < bu):
                        bu, bw = x, w
                if bu >= 0:
                    best[u], B[u] = bu, bw
            active = [u for u in B if B[u] > prune]
            if not active:
                break
            if rnd == self.max_rounds:
                warnings.warn(f"TeraHAC stopped after max_rounds={self.max_rounds} rounds with {len(active)} active "
                              "clusters; the result is partial", ConvergenceWarning, stacklevel=2)
                break
            if self.partitioner == "single":
                part = {u: min(active) for u in active}
            else:
                part = _affinity_partition(active, best, B, cap)
            groups: dict[int, list[int]] = {}
            for u, k in part.items():
                groups.setdefault(k, []).append(u)
            merged_any = 0
            part_results = []  # applied after every partition ran: the boundary stays frozen at round start
            mapping = {}
            for key in sorted(groups):
                members = groups[key]
                if len(members) < 2:
                    continue
                merges, nsize, nM = _subgraph_hac(members, adj, size, Mv, eps)
                local = {u: size[u] for u in members}
                for a, b, w, _seq in merges:
                    c = min(a, b)
                    local[c] = local[a] + local[b]
                    left.append(node[a])
                    right.append(node[b])
                    sim.append(w)
                    sizes.append(local[c])
                    rounds.append(rnd)
                    node[c] = n + len(left) - 1
                merged_any += len(merges)
                # membership: every member maps to the surviving cluster that absorbed it
                rep = {u: u for u in members}
                for a, b, _w, _s in merges:
                    c, o = (a, b) if a < b else (b, a)
                    rep[o] = c

                def root(u, rep=rep):
                    while rep[u] != u:
                        u = rep[u]
                    return u

                for u in members:
                    mapping[u] = root(u)
                part_results.append((nsize, nM))
            if not merged_any:
                raise RuntimeError("TeraHAC round made no merge; this is a bug (the heaviest edge is always good)")
            # contract: relabel and sum parallel edges (ascending old ids)
            for nsize, nM in part_results:
                for c in nsize:
                    size[c] = nsize[c]
                    Mv[c] = nM[c]
            dead = [u for u, c in mapping.items() if c != u]
            for u in dead:
                del size[u], Mv[u]
            new_adj: dict[int, dict[int, float]] = {}
            for u in sorted(adj):
                cu = mapping.get(u, u)
                row = new_adj.setdefault(cu, {})
                for x in sorted(adj[u]):
                    cx = mapping.get(x, x)
                    if cx != cu:
                        row[cx] = row.get(cx, 0.0) + adj[u][x]
            adj = {u: r for u, r in new_adj.items() if r}
            n_rounds += 1
            stats.append({"round": rnd, "active": len(active), "edges": sum(len(r) for r in adj.values()) // 2,
                          "partitions": sum(1 for g_ in groups.values() if len(g_) > 1),
                          "max_partition": max(len(g_) for g_ in groups.values()), "merges": merged_any,
                          "seconds": time.perf_counter() - t0})
            bar.update(1)
            logger.info("TeraHAC round %d: %d active, %d merges", rnd, len(active), merged_any)
        bar.close()
        d = Dendrogram(n, left, right, sim, sizes, rounds, g.node_ids)
        self.dendrogram_ = d
        self.threshold_ = t
        self.labels_ = d.flatten(t) if self.threshold is not None else d.cut(self.n_clusters)
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_rounds_ = n_rounds
        self.round_stats_ = stats
        self.node_ids_ = g.node_ids
        return self
