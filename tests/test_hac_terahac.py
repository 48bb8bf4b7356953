import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from teraml.datasets import load_digits, make_planted_partition_graph
from teraml.hac import Graph, TeraHAC, exact_hac
from teraml.hac._certificate import certify
from teraml.hac._kernels import _tie_ranks
from teraml.hac._peers import _rac_graph, _scc, dendrogram_purity, parents_of
from teraml.hac.terahac import _affinity_partition, _subgraph_hac_dicts, _subgraph_hac_naive


def er_graph(n=200, p=0.05, seed=0):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    return Graph.from_edges(iu[0][keep], iu[1][keep], rng.uniform(0.01, 1, keep.sum()), n_nodes=n)


THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)


@pytest.mark.parametrize("seed", range(6))
def test_q1_eps0_equals_exact_on_er(seed):
    g = er_graph(seed=seed)
    d = exact_hac(g)
    m = TeraHAC(threshold=0.0, epsilon=0.0).fit(g)
    assert np.allclose(np.sort(d.similarity), np.sort(m.dendrogram_.similarity), rtol=1e-12, atol=0)
    for t in THRESHOLDS:
        assert adjusted_rand_score(d.flatten(t), m.dendrogram_.flatten(t)) == 1.0


def test_q1_eps0_equals_exact_on_digits_and_rounds():
    X, y = load_digits()
    g = Graph.from_points(X, n_neighbors=10)
    d = exact_hac(g)
    m = TeraHAC(threshold=0.0, epsilon=0.0).fit(g)
    for t in THRESHOLDS:
        assert adjusted_rand_score(d.flatten(t), m.dendrogram_.flatten(t)) == 1.0
    m1 = TeraHAC(threshold=0.0, epsilon=0.1).fit(g)
    assert m1.n_rounds_ <= 20  # R1
    assert len(m1.round_stats_) == m1.n_rounds_ and m1.round_stats_[0]["merges"] > 0


def _replay(members, adj, size, M, merges):
    """Replay merges on an exact state (frozen neighbours keep their sizes): the true goodness of each merge
    and the final (adjacency, sizes, M) of the partition's clusters."""
    inP = set(members)
    A = {u: dict(adj[u]) for u in members}
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}

    def W(u, x):
        return A[u][x] / (n[u] * (n[x] if x in inP else size[x]))

    gs = []
    for a, b, *_ in merges:
        Ba = max(W(a, x) for x in A[a])
        Bb = max(W(b, x) for x in A[b])
        w = W(a, b)
        gs.append(max(Ba, Bb) / min(w, m[a], m[b]))
        c, o = (a, b) if a < b else (b, a)
        m[c] = min(m[a], m[b], w)
        for x, s in A[o].items():
            if x != c:
                A[c][x] = A[c].get(x, 0.0) + s
        A[c].pop(o, None)
        n[c] = n[a] + n[b]
        for x in list(A[o]):
            if x != c and x in A:
                s = A[x].pop(o)
                A[x][c] = A[x].get(c, 0.0) + s
        del A[o], n[o], m[o]
    assert set(A) <= inP
    return gs, A, n, m


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_i2_every_merge_is_good_with_a_frozen_boundary(eps, seed):
    rng = np.random.default_rng(seed)
    g = er_graph(80, 0.15, seed)
    adj = {}
    for a, b, w in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist()):
        adj.setdefault(a, {})[b] = w
        adj.setdefault(b, {})[a] = w
    size = {u: int(rng.integers(1, 5)) for u in range(80)}
    M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.2, 1.0))) for u in range(80)}
    members = [u for u in range(80) if u % 3 != 0 and u in adj]  # every third node is frozen outside
    merges = _subgraph_hac_dicts(members, adj, size, M, eps)[0]
    assert merges, "expected at least one merge"
    gs = _replay(members, adj, size, M, merges)[0]
    assert max(gs) <= (1 + eps) * (1 + 1e-9)
    naive = _subgraph_hac_naive(members, adj, size, M, eps)
    assert max(x[4] for x in naive) <= (1 + eps) * (1 + 1e-9)


def _partition(active, best, B, cap):
    active = np.asarray(active)
    best_arr = np.full(active.max() + 1, -1, dtype=np.int64)
    Barr = np.zeros(active.max() + 1)
    for u in active:
        best_arr[u], Barr[u] = best[u], B[u]
    order = active[np.lexsort((active, -Barr[active]))]
    part = _affinity_partition(order.astype(np.int64), best_arr, cap, best_arr.size)
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
    assert _tie_ranks(5).tolist() == [0, 1, 2, 3, 4]
    r1, r2, r3 = _tie_ranks(1000, 7), _tie_ranks(1000, 7), _tie_ranks(1000, 8)
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    assert np.array_equal(np.sort(r1), np.arange(1000))


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_eps0_is_exact_under_any_tie_order(seed):
    # ties: all weights equal, so only the tie order decides which reciprocal pairs merge first
    n = 60
    rng = np.random.default_rng(0)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < 0.1
    g = Graph.from_edges(iu[0][keep], iu[1][keep], np.full(keep.sum(), 0.5), n_nodes=n)
    m = TeraHAC(threshold=0.0, epsilon=0.0, random_state=seed).fit(g)
    c = certify(g, m.dendrogram_, eps=0.0)
    assert c["max_goodness"] <= 1 + 1e-9 and c["min_greedy_ratio"] >= 1 - 1e-9


def _merge_table(m):
    d = m.dendrogram_
    return d.left, d.right, d.similarity, d.size, d.round


def test_n_jobs_gives_identical_merges():
    src, dst, w, _ = make_planted_partition_graph(3000, 20, random_state=1)
    g = Graph.from_edges(src, dst, w, n_nodes=3000)
    a = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=1).fit(g)
    b = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=2).fit(g)
    c = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=-1).fit(g)
    assert a.n_rounds_ == b.n_rounds_ == c.n_rounds_
    for x, y, z in zip(_merge_table(a), _merge_table(b), _merge_table(c)):
        assert np.array_equal(x, y) and np.array_equal(x, z)  # bit-identical, similarities included
    assert max(s["partitions"] for s in a.round_stats_) > 1


def _digits_graph():
    X, y = load_digits()
    return Graph.from_points(X, n_neighbors=10), y


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
def test_q4_certificate_on_digits_and_er(eps):
    g1, _ = _digits_graph()
    for g in (g1, er_graph(200, 0.05, 3)):
        m = TeraHAC(threshold=0.0, epsilon=eps).fit(g)
        c = certify(g, m.dendrogram_, eps)
        assert c["max_w_error"] <= 1e-12                       # recorded W is the exact W (pitfall 5)
        assert c["max_goodness"] <= (1 + eps) * (1 + 1e-9)      # every merge is good
        assert c["min_greedy_ratio"] >= (1 - 1e-9) / (1 + eps)  # greedy replay is (1+eps)-approximate
        t = 0.05
        mt = TeraHAC(threshold=t, epsilon=eps).fit(g)
        ct = certify(g, mt.dendrogram_, eps, threshold=t)
        assert ct["max_goodness"] <= (1 + eps) * (1 + 1e-9)
        assert ct["min_greedy_ratio"] >= (1 - 1e-9) / (1 + eps)
        assert ct["max_root_w"] <= t / (1 + eps)                # active down to t/(1+eps) (pitfall 8)
        assert mt.dendrogram_.similarity.min() > t / (1 + eps)  # and no merge below that line


def test_certificate_catches_a_bad_merge():
    # the naive rule "W(a,b) >= B(a)/(1+eps)" alone (pitfall 3) is not a certificate: a dendrogram that merges
    # a light pair first fails the check
    g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.1, 0.9, 0.8], n_nodes=4)
    from teraml.hac import Dendrogram

    bad = Dendrogram(4, [0, 4, 5], [1, 2, 3], [0.1, 0.45, 0.8 / 3])
    c = certify(g, bad, eps=0.1)
    assert c["max_goodness"] == pytest.approx(9.0) and c["min_greedy_ratio"] < 1 / 1.1
    good = exact_hac(g)
    assert certify(g, good, eps=0.0)["max_goodness"] == pytest.approx(1.0)


def test_i3_an_unannounced_merge_still_marks_the_absorbed_sides_neighbours():
    # after (0, 1) merges without announcing, W^(2, c) is smaller than W^(2, 1) was: B^(2) must be refreshed,
    # else the edge (c, 2), of true goodness 1.0, is left unmerged
    adj = {0: {1: 0.5184, 2: 0.293}, 1: {0: 0.5184, 2: 0.3734}, 2: {0: 0.293, 1: 0.3734}}
    size = {0: 4, 1: 1, 2: 5}
    M = {0: 0.13991150426757967, 1: math.inf, 2: 0.18048971647395307}
    merges = _subgraph_hac_dicts([0, 1, 2], adj, size, M, 0.5)[0]
    assert [m[:2] for m in merges] == [(0, 1), (0, 2)]
    assert [m[:2] for m in _subgraph_hac_naive([0, 1, 2], adj, size, M, 0.5)] == [(0, 1), (0, 2)]


@pytest.mark.parametrize("seed", range(6))
def test_eps0_with_a_threshold_equals_exact_hac_at_that_threshold(seed):
    g = er_graph(120, 0.06, seed)
    for t in (0.3, 0.1, 0.03):
        d = exact_hac(g, threshold=t)
        m = TeraHAC(threshold=t, epsilon=0.0).fit(g)
        assert np.allclose(np.sort(d.similarity), np.sort(m.dendrogram_.similarity), rtol=1e-12, atol=0)
        assert adjusted_rand_score(d.flatten(t), m.labels_) == 1.0


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_i3_no_good_edge_left_in_a_partition(eps):
    rng = np.random.default_rng(5)
    for seed in range(12):
        g = er_graph(70, 0.15, seed)
        adj = {}
        for a, b, w in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist()):
            adj.setdefault(a, {})[b] = w
            adj.setdefault(b, {})[a] = w
        size = {u: int(rng.integers(1, 4)) for u in range(70)}
        M = {u: (math.inf if size[u] == 1 else float(rng.uniform(0.3, 1.0))) for u in range(70)}
        members = [u for u in range(70) if u % 4 != 0 and u in adj]
        merges, _, _ = _subgraph_hac_dicts(members, adj, size, M, eps)
        _, A, n, m = _replay(members, adj, size, M, merges)
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


def test_rounds_vs_rac_r2_r3():
    n = 1000
    path = Graph.from_edges(np.arange(n - 1), np.arange(1, n), np.arange(1, n) / n, n_nodes=n)  # D4
    rac_d, rac_rounds = _rac_graph(path)
    m = TeraHAC(threshold=0.0, epsilon=0.1).fit(path)
    assert rac_rounds / m.n_rounds_ >= 100                    # R2 (pilot 510 vs 1)
    g1, _ = _digits_graph()
    d_rac, r1 = _rac_graph(g1)
    m1 = TeraHAC(threshold=0.0, epsilon=0.1).fit(g1)
    assert r1 / m1.n_rounds_ >= 2.5                           # R3 (pilot 21/7)
    # RAC is exact average linkage
    assert np.allclose(np.sort(d_rac.similarity), np.sort(exact_hac(g1).similarity), rtol=1e-12)


def test_scc_affinity_and_purity():
    g1, y = _digits_graph()
    d = exact_hac(g1)
    p_exact = dendrogram_purity(parents_of(d), y)
    parent, rounds = _scc(g1, tau_min=d.similarity.min())
    assert 1 <= rounds <= 50 and parent.size > g1.n_nodes
    p_scc = dendrogram_purity(parent, y)
    parent_a, _ = _scc(g1, affinity=True)
    p_aff = dendrogram_purity(parent_a, y)
    assert 0.5 < p_aff <= 1 and 0.5 < p_scc <= 1 and 0.5 < p_exact <= 1
    # purity of a perfect tree is 1, of a random pairing below
    assert dendrogram_purity(parents_of(d), np.zeros(g1.n_nodes)) == 1.0


def test_planted_partition_and_threshold_labels():
    src, dst, w, labels = make_planted_partition_graph(1000, 20, random_state=0)
    g = Graph.from_edges(src, dst, w, n_nodes=1000)
    m = TeraHAC(threshold=0.05, epsilon=0.1).fit(g)
    assert adjusted_rand_score(labels, m.labels_) == 1.0 and m.n_clusters_ == 20
    k = TeraHAC(n_clusters=20, epsilon=0.1).fit(g.to_sparse())
    assert adjusted_rand_score(labels, k.labels_) == 1.0
    small = TeraHAC(threshold=0.05, max_partition_size=8).fit(g)
    assert adjusted_rand_score(labels, small.labels_) == 1.0
    assert max(s["max_partition"] for s in small.round_stats_) <= 8
    single = TeraHAC(threshold=0.05, partitioner="single").fit(g)
    assert adjusted_rand_score(labels, single.labels_) == 1.0


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 30), p=st.floats(0.1, 0.7), seed=st.integers(0, 5000),
       eps=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]))
def test_hypothesis_eps0_exact_and_relabel_invariance(n, p, seed, eps):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    if not keep.any():
        return
    w = rng.uniform(1e-3, 1, keep.sum())
    g = Graph.from_edges(iu[0][keep], iu[1][keep], w, n_nodes=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = TeraHAC(threshold=0.0, epsilon=eps).fit(g)
    if eps == 0:
        d = exact_hac(g)
        assert np.allclose(np.sort(d.similarity), np.sort(m.dendrogram_.similarity), rtol=1e-12)
    # shuffled edge rows give the same clusters
    perm = rng.permutation(keep.sum())
    g2 = Graph.from_edges(iu[0][keep][perm], iu[1][keep][perm], w[perm], n_nodes=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m2 = TeraHAC(threshold=0.0, epsilon=eps).fit(g2)
    t = float(rng.uniform(0, 0.5))
    assert np.array_equal(m.dendrogram_.flatten(t), m2.dendrogram_.flatten(t))
    # relabelled ids give the same clusters (in the new ids)
    relabel = rng.permutation(n)
    g3 = Graph.from_edges(relabel[iu[0][keep]], relabel[iu[1][keep]], w, n_nodes=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m3 = TeraHAC(threshold=t, epsilon=eps, n_jobs=2, max_partition_size=4).fit(g3)
        m4 = TeraHAC(threshold=t, epsilon=eps, n_jobs=1, max_partition_size=4).fit(g3)
        m5 = TeraHAC(threshold=t, epsilon=eps, partitioner="single").fit(g)
        m6 = TeraHAC(threshold=t, epsilon=eps).fit(g)
        m7 = TeraHAC(threshold=t, epsilon=eps).fit(g3)
    assert np.array_equal(m3.dendrogram_.similarity, m4.dendrogram_.similarity)  # n_jobs 1 vs 2
    if eps == 0:
        # with eps > 0 ids break structural ties (a mutual-best pair has B(u) = B(v) and g = 1), so relabelling
        # may legitimately change the partitions and the merge order; at eps = 0 the result is exact HAC
        assert adjusted_rand_score(m6.labels_, m7.labels_[relabel]) == 1.0
    for mm, gg in ((m, g), (m3, g3), (m5, g), (m7, g3)):
        c = certify(gg, mm.dendrogram_, eps, threshold=mm.threshold_)
        assert c["max_goodness"] <= (1 + eps) * (1 + 1e-9)
        assert c["min_greedy_ratio"] >= (1 - 1e-9) / (1 + eps)
        assert c["max_root_w"] <= mm.threshold_ / (1 + eps)


@pytest.mark.parametrize(
    "kwargs, X, exc, match",
    [
        ({}, "g", ValueError, "exactly one of threshold or n_clusters must be given, got threshold=None, n_clusters=None"),
        ({"threshold": -0.2}, "g", ValueError,
         r"threshold must be a finite float >= 0 \(a similarity, not a distance\), got -0.2"),
        ({"threshold": 0.1, "epsilon": float("nan")}, "g", ValueError, "epsilon must be a finite float >= 0, got nan"),
        ({"threshold": 0.1, "engine": "dask"}, "g", ValueError, "engine must be 'local'"),
        ({"threshold": 0.1}, np.zeros((3, 3)), TypeError,
         "X must be a Graph or a square scipy.sparse matrix, got numpy.ndarray; for points use Graph.from_points"),
        ({"threshold": 0.1, "max_rounds": 0}, "g", ValueError, "max_rounds must be an int >= 1, got 0"),
        ({"threshold": 0.1, "n_jobs": 0}, "g", ValueError, "n_jobs must be None, -1 or an int >= 1, got 0"),
        ({"threshold": 0.1, "random_state": -3}, "g", ValueError, "random_state must be None or an int >= 0, got -3"),
        ({"threshold": 0.1, "partitioner": "louvain"}, "g", ValueError,
         "partitioner must be 'affinity' or 'single', got 'louvain'"),
        ({"threshold": 0.1, "max_partition_size": 1}, "g", ValueError,
         "max_partition_size must be an int >= 2 or None, got 1"),
        ({"n_clusters": 0}, "g", ValueError, "n_clusters must be an int >= 1, got 0"),
        ({"threshold": 0.1, "affinity_levels": 0}, "g", ValueError, "affinity_levels must be an int >= 1, got 0"),
    ],
)
def test_validation(kwargs, X, exc, match):
    g = er_graph(30, 0.2, 0) if isinstance(X, str) else X
    with pytest.raises(exc, match=match):
        TeraHAC(**kwargs).fit(g)


def test_epsilon_above_one_warns_and_max_rounds_stops():
    g = er_graph(60, 0.1, 1)
    with pytest.warns(UserWarning, match="epsilon=2.0 > 1"):
        TeraHAC(threshold=0.0, epsilon=2.0).fit(g)
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_rounds=1"):
        m = TeraHAC(threshold=0.0, epsilon=0.0, max_rounds=1, affinity_levels=1).fit(g)
    assert m.n_rounds_ == 1


@pytest.mark.parametrize("seed", range(4))
def test_i4_subgraph_hac_depends_only_on_the_rows(seed):
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
    ref = _subgraph_hac_dicts(members, adj0, size, M, 0.1)
    assert ref[0]
    for _ in range(3):
        adj = build(rng.permutation(len(rows)))
        shuffled_members = [int(u) for u in rng.permutation(members)]
        out = _subgraph_hac_dicts(shuffled_members, adj, size, M, 0.1)
        assert out == ref


def test_affinity_levels_grow_partitions_within_the_cap_and_cut_rounds():
    src, dst, w, labels = make_planted_partition_graph(4000, 20, random_state=2)
    g = Graph.from_edges(src, dst, w, n_nodes=4000)
    runs = {L: TeraHAC(threshold=0.0, affinity_levels=L).fit(g) for L in (1, 2, 3)}
    assert runs[3].n_rounds_ < runs[1].n_rounds_
    assert runs[3].round_stats_[0]["max_partition"] > runs[1].round_stats_[0]["max_partition"]
    capped = TeraHAC(threshold=0.0, affinity_levels=3, max_partition_size=40).fit(g)
    assert max(s["max_partition"] for s in capped.round_stats_) <= 40
    for m in (*runs.values(), capped):
        assert adjusted_rand_score(labels, m.dendrogram_.cut(20)) == 1.0
        c = certify(g, m.dendrogram_, 0.1)
        assert c["max_goodness"] <= 1.1 * (1 + 1e-9)
