"""In-process TeraHAC engine: numba kernels, a thread pool over partitions (spec terahac §4.5).

The engine holds the graph as canonical edges (cluster ids = ranks, ``src < dst``, float64 sums, sorted)
plus per-cluster sizes (int64) and M (float64). Each round builds a directed CSR, finds every cluster's
best neighbour, partitions the active clusters, runs SubgraphHAC on every partition (the kernels release
the GIL, so partitions run on ``n_jobs`` threads; each writes its own output slots, so the merges do not
depend on ``n_jobs``) and contracts.

>>> import numpy as np
>>> from teraml.hac.engines import LocalEngine
>>> eng = LocalEngine(n_jobs=1)
>>> eng.load(np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.5, 0.1]), 3)
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

from teraml.hac._kernels import (
    _affinity_level,
    _affinity_partition,
    _best,
    _build_csr,
    _record,
    _roots,
    _segment_sum,
    _subgraph_hac,
)

__all__ = ["LocalEngine"]


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
        self.n_jobs = _resolve_jobs(n_jobs)

    def load(self, src, dst, weight, n_nodes) -> None:
        """Canonical edges in cluster-id space (any order; ``src != dst``, each pair once)."""
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        w = np.asarray(weight, dtype=np.float64)
        a, b = np.minimum(src, dst), np.maximum(src, dst)
        order = np.lexsort((b, a))
        self.n = int(n_nodes)
        self.src, self.dst, self.S = a[order], b[order], w[order]
        self.size = np.ones(self.n, dtype=np.int64)
        self.M = np.full(self.n, np.inf)
        self.node = np.arange(self.n, dtype=np.int64)          # dendrogram node of each cluster id
        cap = max(self.n - 1, 0)
        self.left = np.empty(cap, dtype=np.int64)
        self.right = np.empty(cap, dtype=np.int64)
        self.sim = np.empty(cap, dtype=np.float64)
        self.msize = np.empty(cap, dtype=np.int64)
        self.mround = np.empty(cap, dtype=np.int32)
        self.n_done = 0

    def run_round(self, rnd, prune, epsilon, cap, partitioner, levels=1):
        """One round; returns its stats dict, or None when no cluster is active (B <= prune).

        ``levels``: affinity levels of the partition (1: sets along best edges only, as the reference; each
        further level joins every set to the set across its heaviest outgoing edge, within ``cap``)."""
        t0 = time.perf_counter()
        n = self.n
        n_edges = int(self.src.size)
        indptr, nbr, wt = _build_csr(self.src, self.dst, self.S, n)
        best, B = _best(indptr, nbr, wt, self.size)
        active = np.flatnonzero(B > prune)
        if active.size == 0:
            return None
        if partitioner == "single":
            part = np.full(n, -1, dtype=np.int64)
            part[active] = active[0]
        else:
            order = active[np.lexsort((active, -B[active]))]
            part = _affinity_partition(order, best, int(cap), n)
            for _ in range(int(levels) - 1):
                part = _affinity_level(part, indptr, nbr, wt, self.size, int(cap))
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
        loc = np.zeros(n, dtype=np.int64)
        out_a = np.empty(members.size, dtype=np.int64)
        out_b = np.empty(members.size, dtype=np.int64)
        out_w = np.empty(members.size, dtype=np.float64)
        out_cnt = np.zeros(P, dtype=np.int64)
        new_size = self.size.copy()
        new_M = self.M.copy()
        rep = np.arange(n, dtype=np.int64)
        args = (pstart, members, part, loc, indptr, nbr, wt, self.size, self.M, float(epsilon), float(prune),
                out_a, out_b, out_w, out_cnt, new_size, new_M, rep)
        if self.n_jobs == 1 or P < 2:
            _subgraph_hac(0, P, *args)
        else:
            # contiguous chunks of similar total size; every partition writes only its own slots
            n_chunks = min(P, 4 * self.n_jobs)
            bounds = np.searchsorted(pstart, np.linspace(0, pstart[-1], n_chunks + 1)[1:-1])
            bounds = np.unique(np.r_[0, bounds, P])
            with ThreadPoolExecutor(self.n_jobs) as pool:
                list(pool.map(lambda lo_hi: _subgraph_hac(lo_hi[0], lo_hi[1], *args), zip(bounds[:-1], bounds[1:])))
        merges = int(out_cnt.sum())
        if merges == 0:
            raise RuntimeError("TeraHAC round made no merge; this is a bug (the heaviest edge is always good)")
        run_size = self.size.copy()
        before = self.n_done
        self.n_done = _record(pstart, out_a, out_b, out_w, out_cnt, self.node, run_size, n, self.n_done,
                              self.left, self.right, self.sim, self.msize)
        self.mround[before:self.n_done] = rnd
        self.size, self.M = new_size, new_M
        root = _roots(rep)
        self.src, self.dst, self.S = _segment_sum(self.src, self.dst, self.S, root, n)
        return {"round": int(rnd), "active": int(active.size), "edges": n_edges, "partitions": int(P),
                "max_partition": int(plen.max()) if P else 1, "merges": merges,
                "seconds": time.perf_counter() - t0}

    def result(self):
        """Merges so far: (left, right, similarity, size, round) in (round, part_key, seq) order."""
        k = self.n_done
        return self.left[:k], self.right[:k], self.sim[:k], self.msize[:k], self.mround[:k]
