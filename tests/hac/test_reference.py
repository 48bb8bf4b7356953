"""The SubgraphHAC kernel against its readable reference and the invariants I2-I4."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.hac._reference import subgraph_hac_dicts, subgraph_hac_naive


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_i2_every_merge_is_good_with_a_frozen_boundary(eps, seed, er_graph, replay, adjacency):
    rng = np.random.default_rng(seed)
    g = er_graph(80, 0.15, seed)
    adj = adjacency(g)
    size = {u: int(rng.integers(1, 5)) for u in range(80)}
    M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.2, 1.0))) for u in range(80)}
    members = [u for u in range(80) if u % 3 != 0 and u in adj]  # every third node is frozen outside
    merges = subgraph_hac_dicts(members, adj, size, M, eps)[0]
    assert merges, "expected at least one merge"
    gs = replay(members, adj, size, M, merges)[0]
    assert max(gs) <= (1 + eps) * (1 + 1e-9)
    naive = subgraph_hac_naive(members, adj, size, M, eps)[0]
    assert max(x[4] for x in naive) <= (1 + eps) * (1 + 1e-9)


def test_i3_an_unannounced_merge_still_marks_the_absorbed_sides_neighbours():
    # after (0, 1) merges without announcing, W^(2, c) is smaller than W^(2, 1) was: B^(2) must be refreshed,
    # else the edge (c, 2), of true goodness 1.0, is left unmerged
    adj = {0: {1: 0.5184, 2: 0.293}, 1: {0: 0.5184, 2: 0.3734}, 2: {0: 0.293, 1: 0.3734}}
    size = {0: 4, 1: 1, 2: 5}
    M = {0: 0.13991150426757967, 1: math.inf, 2: 0.18048971647395307}
    merges = subgraph_hac_dicts([0, 1, 2], adj, size, M, 0.5)[0]
    assert [m[:2] for m in merges] == [(0, 1), (0, 2)]
    assert [m[:2] for m in subgraph_hac_naive([0, 1, 2], adj, size, M, 0.5)[0]] == [(0, 1), (0, 2)]


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_i3_no_good_edge_left_in_a_partition(eps, er_graph, replay, adjacency):
    rng = np.random.default_rng(5)
    for seed in range(12):
        g = er_graph(70, 0.15, seed)
        adj = adjacency(g)
        size = {u: int(rng.integers(1, 4)) for u in range(70)}
        M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.3, 1.0))) for u in range(70)}
        members = [u for u in range(70) if u % 4 != 0 and u in adj]
        merges, _, _ = subgraph_hac_dicts(members, adj, size, M, eps)
        _, A, n, m = replay(members, adj, size, M, merges)
        inP = {u for u in A}

        def W(u, x):
            return A[u][x] / (n[u] * (n[x] if x in inP else size[x]))

        for a in A:
            for b in A[a]:
                if b in inP and a < b:
                    Ba = max(W(a, x) for x in A[a])
                    Bb = max(W(b, x) for x in A[b])
                    g_true = max(Ba, Bb) / min(W(a, b), m[a], m[b])
                    assert g_true > (1 + eps) / (1 + eps / 2) * (1 - 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_i4_subgraph_hac_depends_only_on_the_rows(seed, er_graph):
    # the same rows in another order (Spark delivers group rows in arbitrary order) give the same merges
    rng = np.random.default_rng(seed)
    g = er_graph(60, 0.2, seed)
    rows = list(zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist()))
    size = {u: int(rng.integers(1, 4)) for u in range(60)}
    M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.3, 1.0))) for u in range(60)}
    members = [u for u in range(60) if u % 5 != 0]

    def build(order):
        adj = {}
        for i in order:
            a, b, w = rows[i]
            adj.setdefault(a, {})[b] = w
            adj.setdefault(b, {})[a] = w
        return adj

    adj0 = build(range(len(rows)))
    members = [u for u in members if u in adj0]
    ref = subgraph_hac_dicts(members, adj0, size, M, 0.1)
    assert ref[0]
    for _ in range(3):
        adj = build(rng.permutation(len(rows)))
        shuffled_members = [int(u) for u in rng.permutation(members)]
        out = subgraph_hac_dicts(shuffled_members, adj, size, M, 0.1)
        assert out == ref


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 25), p=st.floats(0.15, 0.9), seed=st.integers(0, 10_000), frozen=st.integers(2, 6),
       prune=st.sampled_from([0.0, 0.05, 0.2]))
def test_kernel_equals_the_readable_reference_at_eps0(n, p, seed, frozen, prune, er_graph, adjacency):
    # at eps = 0 sizes are announced at every merge, so every merge of either is a reciprocal-best pair (g = 1)
    # and both build the same tree: the same merges, the same final sizes and M. Only the order of independent
    # pairs may differ (the kernel refreshes stale neighbours lazily, the reference at once), and with it the
    # grouping of the sums S(c, x): W agrees to the last few bits.
    rng = np.random.default_rng(seed)
    g = er_graph(n, p, rng)
    if g is None:
        return
    adj = adjacency(g)
    size = {u: int(rng.integers(1, 4)) for u in range(n)}
    M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.05, 1.0))) for u in range(n)}
    members = [u for u in range(n) if u % frozen != 0 and u in adj]
    fast = subgraph_hac_dicts(members, adj, size, M, 0.0, prune)
    slow = subgraph_hac_naive(members, adj, size, M, 0.0, prune)
    assert sorted(m[:2] for m in slow[0]) == sorted(m[:2] for m in fast[0])
    w_slow = {m[:2]: m[2] for m in slow[0]}
    assert all(fw == pytest.approx(w_slow[(a, b)], rel=1e-12) for a, b, fw, _ in fast[0])
    assert all(m[4] <= 1 + 1e-12 for m in slow[0])
    assert slow[1] == fast[1] and slow[2] == pytest.approx(fast[2], rel=1e-12)
    assert all(m[2] >= prune for m in fast[0])
