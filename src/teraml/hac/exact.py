"""Exact graph average-linkage HAC: the sequential reference TeraHAC is tested against.

W(A, B) = S(A, B) / (|A| |B|), where S sums the edge weights between the clusters and a missing pair
counts as similarity 0 (all |A||B| pairs are averaged, unlike scikit-learn's connectivity-constrained
"average", which averages connected pairs only). Repeatedly merge the pair with the largest W (ties: the
pair of smaller cluster ids) while W >= threshold (so flattening at the threshold, where a leaf joins its
highest ancestor of similarity >= t, sees every merge made). Sums are float64, sizes int64. A max-heap with lazy
invalidation gives O(m log n) heap operations; adjacency maps merge smaller-into-larger.

>>> import numpy as np
>>> from teraml.hac import Graph
>>> g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.9, 0.1, 0.8])
>>> d = exact_hac(g)
>>> d.left.tolist(), d.right.tolist(), d.similarity.round(4).tolist()
([0, 2, 4], [1, 3, 5], [0.9, 0.8, 0.025])
"""

from __future__ import annotations

import heapq

from teraml._validation import check_instance, check_param
from teraml.hac.dendrogram import Dendrogram
from teraml.hac.graph import SIMILARITY_THRESHOLD, Graph

__all__ = ["exact_hac"]


def exact_hac(graph, threshold=0.0) -> Dendrogram:
    """Exact average-linkage HAC of a :class:`Graph` (merges while the best similarity is >= ``threshold``).

    Cluster ids are the smallest leaf in the cluster; ties in W go to the lexicographically smallest
    (id, id) pair. The dendrogram numbers merge i as node n + i.
    """
    check_instance("graph", graph, Graph, "a teraml.hac.Graph", sep=", ")
    threshold = check_param("threshold", threshold, [SIMILARITY_THRESHOLD], sep=", ")
    n = graph.n_nodes
    adj: list[dict[int, float]] = [dict() for _ in range(n)]
    for a, b, w in zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist()):
        adj[a][b] = adj[a].get(b, 0.0) + w
        adj[b][a] = adj[b].get(a, 0.0) + w
    size = [1] * n
    node = list(range(n))          # dendrogram node of each live cluster (keyed by cluster id)
    version = [0] * n
    alive = [True] * n
    heap = []
    for a in range(n):
        for b, s in adj[a].items():
            if a < b:
                heap.append((-s, a, b, 0, 0))
    heapq.heapify(heap)
    left, right, sim, sizes = [], [], [], []
    while heap:
        negw, a, b, va, vb = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or version[a] != va or version[b] != vb:
            continue
        w = -negw
        if w < threshold:
            break
        c, o = (a, b) if a < b else (b, a)          # the merged cluster keeps the smaller id
        left.append(node[a])
        right.append(node[b])
        sim.append(w)
        size[c] = size[a] + size[b]
        sizes.append(size[c])
        node[c] = n + len(left) - 1
        alive[o] = False
        # merge adjacency: S(c, x) = S(a, x) + S(b, x); smaller map into the larger
        ac, ao = adj[c], adj[o]
        ac.pop(o, None)
        ao.pop(c, None)
        if len(ao) > len(ac):
            ac, ao = ao, ac
        for x, s in ao.items():
            ac[x] = ac.get(x, 0.0) + s
        adj[c] = ac
        adj[o] = {}
        version[c] += 1
        for x, s in ac.items():
            ax = adj[x]
            ax.pop(o, None)
            ax[c] = s
            version_x = version[x]
            wx = s / (float(size[c]) * float(size[x]))
            lo, hi = (c, x) if c < x else (x, c)
            heapq.heappush(heap, (-wx, lo, hi, version[lo] if lo == c else version_x,
                                  version[hi] if hi == c else version_x))
    return Dendrogram(n, left, right, sim, sizes, None, graph.node_ids)
