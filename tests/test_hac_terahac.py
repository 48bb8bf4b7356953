import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from teraml.datasets import load_digits, make_planted_partition_graph
from teraml.hac import Graph, TeraHAC, exact_hac
from teraml.hac.terahac import _affinity_partition, _subgraph_hac, _subgraph_hac_naive


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


def _replay_true_g(members, adj, size, M, merges):
    """True goodness of each merge, replayed on an exact state (frozen neighbours keep their sizes)."""
    inP = set(members)
    A = {u: dict(adj[u]) for u in members}
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}

    def W(u, x):
        return A[u][x] / (n[u] * (n[x] if x in inP else size[x]))

    out = []
    for a, b, *_ in merges:
        Ba = max(W(a, x) for x in A[a])
        Bb = max(W(b, x) for x in A[b])
        w = W(a, b)
        out.append(max(Ba, Bb) / min(w, m[a], m[b]))
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
        del A[o]
    return out


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
    merges = _subgraph_hac(members, adj, size, M, eps)[0]
    assert merges, "expected at least one merge"
    gs = _replay_true_g(members, adj, size, M, merges)
    assert max(gs) <= (1 + eps) * (1 + 1e-9)
    naive = _subgraph_hac_naive(members, adj, size, M, eps)
    assert max(x[4] for x in naive) <= (1 + eps) * (1 + 1e-9)


def test_affinity_partition_counts_only_real_unions():
    # a chain of mutual-best pairs: sizes must not inflate (google/graph-mining defect)
    active = [0, 1, 2, 3]
    best = {0: 1, 1: 0, 2: 3, 3: 2}
    B = {0: 1.0, 1: 1.0, 2: 0.9, 3: 0.9}
    part = _affinity_partition(active, best, B, cap=2)
    assert part == {0: 0, 1: 0, 2: 2, 3: 2}
    best = {0: 1, 1: 2, 2: 3, 3: 2}
    assert len(set(_affinity_partition(active, best, B, cap=4).values())) == 1
    assert len(set(_affinity_partition(active, best, B, cap=3).values())) == 2


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
        m = TeraHAC(threshold=0.0, epsilon=0.0, max_rounds=1).fit(g)
    assert m.n_rounds_ == 1
