"""In-process TeraHAC engine: numba kernels, a thread pool over partitions.

The engine holds the graph as canonical edges (cluster ids = ranks, ``src < dst``, float64 sums, sorted)
plus per-cluster sizes (int64) and M (float64). Each round builds a directed CSR, finds every cluster's
best neighbour, partitions the active clusters, runs SubgraphHAC on every partition (the kernels release
the GIL, so partitions run on ``n_jobs`` threads; each writes its own output slots, so the merges do not
depend on ``n_jobs``) and contracts. It implements :class:`~teraml.hac.engines.Engine`.

>>> import numpy as np
>>> from teraml.hac import Graph
>>> from teraml.hac.engines import LocalEngine
>>> eng = LocalEngine(n_jobs=1)
>>> eng.load(Graph.from_edges([0, 1, 0], [1, 2, 2], [0.9, 0.5, 0.1]), np.arange(3))
>>> eng.run_round(0, prune=0.0, epsilon=0.0, cap=10, partitioner="affinity")["merges"]
2
>>> eng.result()[2].round(6).tolist()   # merge similarities: {0,1} at 0.9, then {0,1} with 2 at 0.6/2
[0.9, 0.3]
>>> eng.run_round(1, prune=0.0, epsilon=0.0, cap=10, partitioner="affinity") is None   # nothing left
True
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from teraml._validation import Interval, check_param
from teraml.hac._kernels import (
    Clusters,
    Partitions,
    RoundOutput,
    affinity_level,
    affinity_partition,
    best_edges,
    build_csr,
    roots,
    segment_sum,
    subgraph_hac,
)
from teraml.hac.engines._base import MergeBook

__all__ = ["LocalEngine", "N_JOBS"]

#: The constraint of ``n_jobs``: None (one thread), a negative int (all cores + 1 + n_jobs) or an int >= 1.
N_JOBS = [None, Interval("int", None, -1), Interval("int", 1), "None, -1 or an int >= 1"]


def _resolve_jobs(n_jobs) -> int:
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return int(n_jobs)


class LocalEngine:
    """The in-process engine: ``load``, then ``run_round`` until it returns None, then ``result``.

    ``n_jobs``: threads over partitions (None = 1, -1 = all cores). The merges are identical for every
    ``n_jobs``.
    """

    def __init__(self, n_jobs=None):
        self.n_jobs = _resolve_jobs(check_param("n_jobs", n_jobs, N_JOBS, sep=", "))

    def load(self, graph, ranks) -> None:
        """The graph's edges in cluster-id space (``ranks[u]`` = cluster id of node u), canonical and sorted."""
        ranks = np.asarray(ranks, dtype=np.int64)
        src, dst = ranks[graph.src], ranks[graph.dst]
        a, b = np.minimum(src, dst), np.maximum(src, dst)
        order = np.lexsort((b, a))
        self.n = n = int(graph.n_nodes)
        self.src, self.dst, self.S = a[order], b[order], np.asarray(graph.weight, dtype=np.float64)[order]
        self.clusters = Clusters(np.ones(n, dtype=np.int64), np.full(n, np.inf))
        self.book = MergeBook(n, ranks)

    def n_active(self, prune) -> int:
        """Clusters with a neighbour and best similarity B >= ``prune``."""
        _, B = best_edges(build_csr(self.src, self.dst, self.S, self.n), self.clusters.size)
        return int(np.count_nonzero((B >= prune) & (B > 0)))

    def run_round(self, rnd, prune, epsilon, cap, partitioner, levels=1):
        """One round; returns its stats dict, or None when no cluster is active (B >= prune, B > 0).

        ``levels``: affinity levels of the partition (1: sets along best edges only, as the reference; each
        further level joins every set to the set across its heaviest outgoing edge, within ``cap``)."""
        t0 = time.perf_counter()
        n = self.n
        size = self.clusters.size
        n_edges = int(self.src.size)
        csr = build_csr(self.src, self.dst, self.S, n)
        best, B = best_edges(csr, size)
        active = np.flatnonzero((B >= prune) & (B > 0))
        if active.size == 0:
            return None
        if partitioner == "single":
            part = np.full(n, -1, dtype=np.int64)
            part[active] = active[0]
        else:
            order = active[np.lexsort((active, -B[active]))]
            part = affinity_partition(order, best, int(cap), n)
            for _ in range(int(levels) - 1):
                part = affinity_level(part, csr, size, int(cap))
        keys = part[active]
        idx = np.argsort(keys, kind="stable")                  # by (key, id): active is ascending
        members, keys = active[idx], keys[idx]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        lens = np.diff(np.r_[starts, keys.size])
        multi = lens >= 2                                      # a singleton partition cannot merge
        members = members[np.repeat(multi, lens)]
        plen = lens[multi]
        pstart = np.zeros(plen.size + 1, dtype=np.int64)
        np.cumsum(plen, out=pstart[1:])
        P = plen.size
        parts = Partitions(pstart, members, part, np.zeros(n, dtype=np.int64))
        out = RoundOutput(np.empty(members.size, dtype=np.int64), np.empty(members.size, dtype=np.int64),
                          np.empty(members.size, dtype=np.float64), np.zeros(P, dtype=np.int64), size.copy(),
                          self.clusters.M.copy(), np.arange(n, dtype=np.int64))
        eps, prune = float(epsilon), float(prune)
        if self.n_jobs == 1 or P < 2:
            subgraph_hac(0, P, parts, csr, self.clusters, eps, prune, out)
        else:
            # contiguous chunks of similar total size; every partition writes only its own slots
            n_chunks = min(P, 4 * self.n_jobs)
            bounds = np.searchsorted(pstart, np.linspace(0, pstart[-1], n_chunks + 1)[1:-1])
            bounds = np.unique(np.r_[0, bounds, P])
            with ThreadPoolExecutor(self.n_jobs) as pool:
                list(pool.map(lambda lo_hi: subgraph_hac(lo_hi[0], lo_hi[1], parts, csr, self.clusters, eps, prune,
                                                         out), zip(bounds[:-1], bounds[1:])))
        merges = int(out.count.sum())
        if merges == 0:
            raise RuntimeError("TeraHAC round made no merge; this is a bug (the heaviest edge is always good)")
        self.book.record(pstart, out, size.copy(), rnd)
        self.clusters = Clusters(out.size, out.M)
        self.src, self.dst, self.S = segment_sum(self.src, self.dst, self.S, roots(out.rep), n)
        return {"round": int(rnd), "active": int(active.size), "edges": n_edges, "partitions": int(P),
                "max_partition": int(plen.max()) if P else 1, "merges": merges,
                "seconds": time.perf_counter() - t0}

    def result(self):
        """Merges so far: (left, right, similarity, size, round) in (round, part_key, seq) order."""
        return self.book.result()
