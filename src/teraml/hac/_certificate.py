"""Brute-force certificate of a (1+eps)-approximate average-linkage dendrogram (benchmark check Q4).

``certify(graph, dendrogram, eps, threshold)`` replays the merges on an exact state and returns

* ``max_goodness``: the largest g(a, b) = max(B(a), B(b)) / min(W(a, b), M(a), M(b)) over the merges, in
  the dendrogram's order (every merge of TeraHAC must be good: g <= 1 + eps);
* ``min_greedy_ratio``: replaying instead the *available* merge of largest W each time (both children
  formed), the smallest W / W_max, W_max the largest similarity between any two current clusters (must be
  >= 1 / (1 + eps));
* ``max_root_w``: the largest W left between two roots (must be <= threshold / (1 + eps));
* ``max_w_error``: the largest relative gap between a recorded similarity and the exact W.

It is quadratic in the worst case and meant for tests on small graphs.

>>> from teraml.hac import Graph, exact_hac
>>> g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.3, 0.6, 0.9], n_nodes=4)
>>> c = certify(g, exact_hac(g), eps=0.0)
>>> c["max_goodness"], c["min_greedy_ratio"], c["max_root_w"]
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

import heapq
import math

from teraml.hac.dendrogram import Dendrogram
from teraml.hac.graph import Graph

__all__ = ["certify"]


def _initial(graph: Graph):
    adj: dict[int, dict[int, float]] = {u: {} for u in range(graph.n_nodes)}
    for a, b, w in zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist()):
        adj[a][b] = adj[a].get(b, 0.0) + w
        adj[b][a] = adj[b].get(a, 0.0) + w
    return adj


def _merge(adj, size, a, b, c):
    """Merge clusters a and b into the new node c (sums S, sizes)."""
    row = {}
    for src in (a, b):
        for x, s in adj[src].items():
            if x not in (a, b):
                row[x] = row.get(x, 0.0) + s
    for x, s in row.items():
        nb = adj[x]
        nb.pop(a, None)
        nb.pop(b, None)
        nb[c] = s
    del adj[a], adj[b]
    adj[c] = row
    size[c] = size.pop(a) + size.pop(b)
    return row


def certify(graph: Graph, d: Dendrogram, eps: float, threshold: float = 0.0) -> dict:
    n = d.n_leaves
    left, right, sim = d.left.tolist(), d.right.tolist(), d.similarity.tolist()

    # 1. goodness of every merge in the dendrogram's order
    adj = _initial(graph)
    size = {u: 1 for u in range(n)}
    M = {u: math.inf for u in range(n)}

    def W(u, x, s):
        return s / (float(size[u]) * float(size[x]))

    max_g, max_err = 0.0, 0.0
    for i, (a, b, w_rec) in enumerate(zip(left, right, sim)):
        s = adj[a].get(b)
        if s is None:
            return {"max_goodness": math.inf, "min_greedy_ratio": 0.0, "max_root_w": math.inf,
                    "max_w_error": math.inf, "bad_merge": i}
        w = W(a, b, s)
        max_err = max(max_err, abs(w - w_rec) / w)
        Ba = max(W(a, x, t) for x, t in adj[a].items())
        Bb = max(W(b, x, t) for x, t in adj[b].items())
        max_g = max(max_g, max(Ba, Bb) / min(w, M[a], M[b]))
        c = n + i
        M[c] = min(M.pop(a), M.pop(b), w)
        _merge(adj, size, a, b, c)
    max_root = max((W(u, x, t) for u, row in adj.items() for x, t in row.items()), default=0.0)

    # 2. greedy replay: the available merge of largest W, against the global largest W
    adj = _initial(graph)
    size = {u: 1 for u in range(n)}
    child_of = {}
    for i, (a, b) in enumerate(zip(left, right)):
        child_of[a] = i
        child_of[b] = i
    ready = {i: 0 for i in range(len(left))}
    avail = []
    for i, (a, b) in enumerate(zip(left, right)):
        ready[i] = (a < n) + (b < n)
        if ready[i] == 2:
            heapq.heappush(avail, (-sim[i], i))
    edges = [(-W(u, x, s), u, x) for u, row in adj.items() for x, s in row.items() if u < x]
    heapq.heapify(edges)
    min_ratio = 1.0
    while avail:
        _, i = heapq.heappop(avail)
        a, b = left[i], right[i]
        while edges:
            negw, u, x = edges[0]
            if u in adj and x in adj[u] and -negw == W(u, x, adj[u][x]):
                break
            heapq.heappop(edges)
        wmax = -edges[0][0] if edges else 0.0
        w = W(a, b, adj[a][b])
        if wmax > 0:
            min_ratio = min(min_ratio, w / wmax)
        c = n + i
        row = _merge(adj, size, a, b, c)
        for x, s in row.items():
            heapq.heappush(edges, (-W(c, x, s), c, x) if c < x else (-W(c, x, s), x, c))
        p = child_of.get(c)
        if p is not None:
            ready[p] += 1
            if ready[p] == 2:
                heapq.heappush(avail, (-sim[p], p))
    return {"max_goodness": max_g, "min_greedy_ratio": min_ratio, "max_root_w": max_root, "max_w_error": max_err}
