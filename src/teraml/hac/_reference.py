"""SubgraphHAC, slow and readable: the oracle the numba kernel (``_kernels.subgraph_hac``) is tested against.

Both functions here take one partition as plain dicts, with the same signature:

* ``members``: the partition's cluster ids;
* ``adj[u]``: ``{neighbour: S(u, x)}`` for every member u (neighbours outside the partition are frozen:
  they count in B, never merge);
* ``size`` / ``M``: per-cluster dicts covering members and neighbours (M = +inf for a singleton);
* ``eps``: merge while the goodness g = max(B(a), B(b)) / min(W(a, b), M(a), M(b)) <= 1 + eps;
* ``prune``: edges with W < prune never merge.

:func:`subgraph_hac_naive` recomputes every B and g after each merge and merges the smallest (g, a, b);
:func:`subgraph_hac_dicts` runs the fast kernel (lazy size announcements, a node-level priority queue) on
the same input. At eps = 0 both merge the same pairs in the same order; at eps > 0 the kernel may merge in
another (still good) order. Both return ``(merges, size, M)``: the merges in order as tuples
``(a, b, W, seq)`` (the naive one appends the true g), and the surviving clusters' size and M.

>>> adj = {0: {1: 0.5, 2: 0.1}, 1: {0: 0.5}}
>>> size, M = {0: 1, 1: 1, 2: 1}, {0: math.inf, 1: math.inf, 2: math.inf}
>>> subgraph_hac_dicts([0, 1], adj, size, M, 0.1)
([(0, 1, 0.5, 0)], {0: 2}, {0: 0.5})
>>> subgraph_hac_naive([0, 1], adj, size, M, 0.1)
([(0, 1, 0.5, 0, 1.0)], {0: 2}, {0: 0.5})
"""

from __future__ import annotations

import math

import numpy as np

from teraml.hac._kernels import CSR, ULP_SLACK, Clusters, Partitions, RoundOutput, subgraph_hac

__all__ = ["subgraph_hac_naive", "subgraph_hac_dicts"]


def subgraph_hac_naive(members, adj, size, M, eps, prune=0.0):
    """Merge the pair of smallest goodness (ties: smaller a, then b) while it is <= 1 + eps; recompute all."""
    inside = set(members)
    S = {u: dict(adj.get(u, {})) for u in members}     # S(u, x) of every alive member u
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}
    alive = set(members)

    def W(u, x):
        return S[u][x] / (float(n[u]) * float(n[x] if x in inside else size[x]))

    merges = []
    while True:
        B = {u: max((W(u, x) for x in S[u]), default=0.0) for u in alive}
        best = None
        for a in sorted(alive):
            for b in S[a]:
                if b in alive and a < b and W(a, b) >= prune:
                    w = W(a, b)
                    den = min(w, m[a], m[b])
                    g = max(B[a], B[b]) / den if den > 0 else math.inf
                    if best is None or (g, a, b) < best[:3]:
                        best = (g, a, b, w)
        if best is None or best[0] > (1.0 + eps) * ULP_SLACK:
            break
        g, a, b, w = best
        merges.append((a, b, w, len(merges), g))
        # b joins a (a < b): S(a, x) += S(b, x), sizes add, M is the smallest merge inside
        m[a] = min(m[a], m[b], w)
        for x, s in S[b].items():
            if x != a:
                S[a][x] = S[a].get(x, 0.0) + s
        S[a].pop(b, None)
        n[a] += n[b]
        alive.discard(b)
        for x in alive:
            if b in S[x]:
                s = S[x].pop(b)
                if x != a:
                    S[x][a] = S[x].get(a, 0.0) + s
        del S[b]
    return merges, {u: n[u] for u in sorted(alive)}, {u: m[u] for u in sorted(alive)}


def subgraph_hac_dicts(members, adj, size, M, eps, prune=0.0):
    """The numba kernel on the same dict input (one partition; its key is the smallest member)."""
    members = sorted(int(u) for u in members)
    member_set = set(members)
    ids = set(members)
    for u in members:
        ids.update(int(x) for x in adj.get(u, {}))
    n_ids = max(ids) + 1 if ids else 0
    indptr = np.zeros(n_ids + 1, dtype=np.int64)
    nbr, wt = [], []
    for u in range(n_ids):
        row = adj.get(u, {}) if u in member_set else {}
        for x in sorted(row):
            nbr.append(int(x))
            wt.append(float(row[x]))
        indptr[u + 1] = len(nbr)
    sz = np.ones(n_ids, dtype=np.int64)
    Mv = np.full(n_ids, np.inf)
    for u in ids:
        sz[u] = size[u]
        Mv[u] = M[u]
    part = np.full(n_ids, -1, dtype=np.int64)
    part[members] = members[0] if members else -1
    k = len(members)
    out = RoundOutput(np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64), np.empty(k, dtype=np.float64),
                      np.zeros(1, dtype=np.int64), sz.copy(), Mv.copy(), np.arange(n_ids, dtype=np.int64))
    if k >= 2:
        parts = Partitions(np.array([0, k], dtype=np.int64), np.array(members, dtype=np.int64), part,
                           np.zeros(n_ids, dtype=np.int64))
        csr = CSR(indptr, np.array(nbr, dtype=np.int64), np.array(wt, dtype=np.float64))
        subgraph_hac(0, 1, parts, csr, Clusters(sz, Mv), float(eps), float(prune), out)
    c = int(out.count[0])
    merges = [(int(out.a[i]), int(out.b[i]), float(out.w[i]), i) for i in range(c)]
    alive = [u for u in members if out.rep[u] == u]
    return merges, {u: int(out.size[u]) for u in alive}, {u: float(out.M[u]) for u in alive}
