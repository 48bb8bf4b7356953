"""The shared kernels outside SubgraphHAC: tie ranks and the size-capped affinity partition."""


import numpy as np

from teraml.hac._kernels import affinity_partition, tie_ranks


def _partition(active, best, B, cap):
    active = np.asarray(active)
    best_arr = np.full(active.max() + 1, -1, dtype=np.int64)
    Barr = np.zeros(active.max() + 1)
    for u in active:
        best_arr[u], Barr[u] = best[u], B[u]
    order = active[np.lexsort((active, -Barr[active]))]
    part = affinity_partition(order.astype(np.int64), best_arr, cap, best_arr.size)
    return {int(u): int(part[u]) for u in active}


def test_affinity_partition_counts_only_real_unions():
    # a chain of mutual-best pairs: sizes must not inflate (google/graph-mining defect, pitfall 10)
    active = [0, 1, 2, 3]
    best = {0: 1, 1: 0, 2: 3, 3: 2}
    B = {0: 1.0, 1: 1.0, 2: 0.9, 3: 0.9}
    part = _partition(active, best, B, cap=2)
    assert part == {0: 0, 1: 0, 2: 2, 3: 2}
    best = {0: 1, 1: 2, 2: 3, 3: 2}
    assert len(set(_partition(active, best, B, cap=4).values())) == 1
    assert len(set(_partition(active, best, B, cap=3).values())) == 2
    # a refused union must not count: 0-1 joined (2), 2->1 refused at cap 2, then 3->2 must still fit
    best = {0: 1, 1: 0, 2: 1, 3: 2}
    B = {0: 1.0, 1: 1.0, 2: 0.9, 3: 0.8}
    assert _partition(active, best, B, cap=2) == {0: 0, 1: 0, 2: 2, 3: 2}


def test_tie_ranks_is_a_seeded_permutation():
    assert tie_ranks(5).tolist() == [0, 1, 2, 3, 4]
    r1, r2, r3 = tie_ranks(1000, 7), tie_ranks(1000, 7), tie_ranks(1000, 8)
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    assert np.array_equal(np.sort(r1), np.arange(1000))
