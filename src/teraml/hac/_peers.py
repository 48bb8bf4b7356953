"""Peers rebuilt for the HAC benchmark, and dendrogram purity.

* ``rac_graph``: RAC (reciprocal agglomerative clustering): every round merges *all* reciprocal-best
  pairs at once, which is exact average linkage (racplusplus segfaults under numpy 2, so it is rebuilt).
* ``scc``: SCC (Monath et al., KDD 2021): round r links every cluster to its best neighbour when that
  similarity is >= tau_r (tau geometric from the largest similarity down to the threshold, 50 rounds) and
  contracts the linked components (multi-way merges); ``affinity=True`` (tau = -inf) is affinity
  clustering (Boruvka rounds). nmonath/scc cannot run under numpy 2 (``np.Inf``), so it is rebuilt.
* ``dendrogram_purity``: exact dendrogram purity over all same-label pairs (Heller & Ghahramani 2005).

All of them use the same graph objective as TeraHAC: W(A, B) = S(A, B) / (|A| |B|).

>>> import numpy as np
>>> from teraml.hac import Graph
>>> g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.3, 0.6, 0.9], n_nodes=4)
>>> d, rounds = rac_graph(g)
>>> rounds, d.similarity.round(3).tolist()
(3, [0.9, 0.3, 0.15])
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from teraml.hac._kernels import best_edges, build_csr, roots, segment_sum
from teraml.hac.dendrogram import Dendrogram
from teraml.hac.graph import Graph

__all__ = ["rac_graph", "scc", "dendrogram_purity", "parents_of"]


def _canonical(graph: Graph):
    a = np.minimum(graph.src, graph.dst).astype(np.int64)
    b = np.maximum(graph.src, graph.dst).astype(np.int64)
    o = np.lexsort((b, a))
    return a[o], b[o], graph.weight[o].astype(np.float64)


def rac_graph(graph: Graph, threshold: float = 0.0, max_rounds: int = 10**7):
    """RAC on a similarity graph: each round merges every reciprocal-best pair with W >= threshold.

    Returns ``(Dendrogram, n_rounds)``; the merges equal exact average linkage when there are no ties.
    """
    n = graph.n_nodes
    src, dst, S = _canonical(graph)
    size = np.ones(n, dtype=np.int64)
    node = np.arange(n, dtype=np.int64)
    left, right, sim, msize = [], [], [], []
    done = 0
    rounds = 0
    while rounds < max_rounds:
        best, B = best_edges(build_csr(src, dst, S, n), size)
        u = np.flatnonzero((best >= 0) & (B >= threshold) & (B > 0))
        mutual = u[(best[best[u]] == u) & (u < best[u])]
        if mutual.size == 0:
            break
        rounds += 1
        v = best[mutual]
        k = mutual.size
        left.append(node[mutual])
        right.append(node[v])
        sim.append(B[mutual])
        size[mutual] += size[v]
        msize.append(size[mutual].copy())
        node[mutual] = n + done + np.arange(k)
        done += k
        rep = np.arange(n, dtype=np.int64)
        rep[v] = mutual
        src, dst, S = segment_sum(src, dst, S, roots(rep), n)
    def cat(xs, dt):
        return np.concatenate(xs).astype(dt) if xs else np.empty(0, dt)

    d = Dendrogram(n, cat(left, np.int64), cat(right, np.int64), cat(sim, np.float64), cat(msize, np.int64),
                   node_ids=graph.node_ids)
    return d, rounds


def scc(graph: Graph, tau_min: float | None = None, n_rounds: int = 50, affinity: bool = False):
    """SCC (or affinity clustering with ``affinity=True``) on a similarity graph.

    tau runs geometrically from the largest edge similarity down to ``tau_min`` (default: the smallest
    edge similarity; the benchmark passes the smallest merge similarity of exact HAC, so both go as deep).

    Returns ``(parent, n_rounds_run)``: ``parent[v]`` is the parent node of node v (leaves 0..n-1, each
    contraction creates one node per merged component, children before parents; -1 for roots).
    """
    n = graph.n_nodes
    src, dst, S = _canonical(graph)
    if src.size == 0:
        return np.full(n, -1, dtype=np.int64), 0
    wmax = float(S.max())
    lo = float(S.min()) if tau_min is None else min(float(tau_min), wmax)
    taus = np.full(n_rounds if not affinity else 10**7, -np.inf)
    if not affinity:
        taus = wmax * (lo / wmax) ** (np.arange(n_rounds) / max(n_rounds - 1, 1))
    size = np.ones(n, dtype=np.int64)
    node = np.arange(n, dtype=np.int64)
    parent = [np.full(n, -1, dtype=np.int64)]
    total = n
    run = 0
    for tau in taus:
        best, B = best_edges(build_csr(src, dst, S, n), size)
        u = np.flatnonzero((best >= 0) & (B >= tau) & (B > 0))
        if u.size == 0:
            if affinity or src.size == 0:
                break
            continue
        run += 1
        link = coo_array((np.ones(u.size), (u, best[u])), shape=(n, n))
        _, comp = connected_components(link, directed=False)
        involved = np.zeros(n, dtype=bool)
        involved[u] = True
        involved[best[u]] = True
        ids = np.flatnonzero(involved)
        # representative: the smallest id of each component
        rep_of_comp = np.full(comp.max() + 1, n, dtype=np.int64)
        np.minimum.at(rep_of_comp, comp[ids], ids)
        rep = np.arange(n, dtype=np.int64)
        rep[ids] = rep_of_comp[comp[ids]]
        reps = np.unique(rep[ids])
        new_nodes = total + np.arange(reps.size)
        new_of_rep = np.empty(n, dtype=np.int64)
        new_of_rep[reps] = new_nodes
        par = np.full(reps.size, -1, dtype=np.int64)
        parent.append(par)
        full = np.concatenate(parent)
        full[node[ids]] = new_of_rep[rep[ids]]
        parent = [full]
        np.add.at(size, rep[ids], np.where(rep[ids] != ids, size[ids], 0))
        node[reps] = new_nodes
        total += reps.size
        src, dst, S = segment_sum(src, dst, S, rep, n)
        if src.size == 0:
            break
    return np.concatenate(parent), run


def parents_of(d: Dendrogram) -> np.ndarray:
    """Parent array of a binary dendrogram (leaves 0..n-1, merge i creates node n + i)."""
    n = d.n_leaves
    parent = np.full(n + d.n_merges, -1, dtype=np.int64)
    parent[d.left] = n + np.arange(d.n_merges)
    parent[d.right] = n + np.arange(d.n_merges)
    return parent


@njit(cache=True)
def _purity_sums(parent, y, n_classes, n_leaves):
    N = parent.size
    cnt = np.zeros((N, n_classes), dtype=np.int64)
    for i in range(n_leaves):
        cnt[i, y[i]] = 1
    for v in range(N):
        p = parent[v]
        if p >= 0:
            for c in range(n_classes):
                cnt[p, c] += cnt[v, c]
    child_pairs = np.zeros((N, n_classes), dtype=np.float64)
    for v in range(N):
        p = parent[v]
        if p >= 0:
            for c in range(n_classes):
                k = cnt[v, c]
                child_pairs[p, c] += k * (k - 1) / 2.0
    total = 0.0
    for v in range(n_leaves, N):
        sz = 0
        for c in range(n_classes):
            sz += cnt[v, c]
        for c in range(n_classes):
            k = cnt[v, c]
            pairs = k * (k - 1) / 2.0 - child_pairs[v, c]
            if pairs > 0:
                total += pairs * k / sz
    return total


def dendrogram_purity(parent, labels) -> float:
    """Exact dendrogram purity: the mean, over all pairs of leaves with the same label, of the fraction of
    that label among the leaves under the pair's lowest common ancestor. A forest is joined under one
    virtual root (a pair never joined scores its label's share of all leaves).

    ``parent``: parent node of every node (leaves first, children before parents, -1 for roots), e.g.
    ``parents_of(dendrogram)``.

    >>> d = Dendrogram(4, [0, 2, 4], [1, 3, 5], [0.9, 0.8, 0.1])
    >>> dendrogram_purity(parents_of(d), [0, 0, 1, 1]), dendrogram_purity(parents_of(d), [0, 1, 0, 1])
    (1.0, 0.5)
    """
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    n = y.size
    counts = np.bincount(y)
    denom = float((counts * (counts - 1) / 2).sum())
    if denom == 0:
        return 1.0
    parent = np.asarray(parent, dtype=np.int64)
    roots = parent < 0
    if roots.sum() > 1:  # join the forest under a virtual root
        parent = np.where(roots, parent.size, parent)
        parent = np.r_[parent, -1]
    return float(_purity_sums(parent, y.astype(np.int64), int(counts.size), n) / denom)
