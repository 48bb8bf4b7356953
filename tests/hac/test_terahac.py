"""TeraHAC: eps = 0 equals exact HAC, the (1+eps) certificate, rounds, parameters and validation."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from teraml.datasets import load_digits, make_planted_partition_graph
from teraml.hac import Graph, TeraHAC, exact_hac
from teraml.hac._certificate import certify

THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)


@pytest.mark.parametrize("seed", range(6))
def test_q1_eps0_equals_exact_on_er(seed, er_graph):
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


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_eps0_is_exact_under_any_tie_order(seed, er_graph):
    # ties: all weights equal, so only the tie order decides which reciprocal pairs merge first
    g = er_graph(60, 0.1, 0, weight=0.5)
    m = TeraHAC(threshold=0.0, epsilon=0.0, random_state=seed).fit(g)
    c = certify(g, m.dendrogram_, eps=0.0)
    assert c["max_goodness"] <= 1 + 1e-9 and c["min_greedy_ratio"] >= 1 - 1e-9


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
def test_q4_certificate_on_digits_and_er(eps, er_graph, digits_graph, replay):
    g1, _ = digits_graph
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
        assert mt.dendrogram_.similarity.min() >= t / (1 + eps)  # and no merge below that line


@pytest.mark.parametrize("seed", range(6))
def test_eps0_with_a_threshold_equals_exact_hac_at_that_threshold(seed, er_graph):
    g = er_graph(120, 0.06, seed)
    for t in (0.3, 0.1, 0.03):
        d = exact_hac(g, threshold=t)
        m = TeraHAC(threshold=t, epsilon=0.0).fit(g)
        assert np.allclose(np.sort(d.similarity), np.sort(m.dendrogram_.similarity), rtol=1e-12, atol=0)
        assert adjusted_rand_score(d.flatten(t), m.labels_) == 1.0


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
def test_hypothesis_eps0_exact_and_relabel_invariance(n, p, seed, eps, er_graph):
    rng = np.random.default_rng(seed)
    g = er_graph(n, p, rng, low=1e-3)
    if g is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = TeraHAC(threshold=0.0, epsilon=eps).fit(g)
    if eps == 0:
        d = exact_hac(g)
        assert np.allclose(np.sort(d.similarity), np.sort(m.dendrogram_.similarity), rtol=1e-12)
    # shuffled edge rows give the same clusters
    perm = rng.permutation(g.n_edges)
    g2 = Graph.from_edges(g.src[perm], g.dst[perm], g.weight[perm], n_nodes=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m2 = TeraHAC(threshold=0.0, epsilon=eps).fit(g2)
    t = float(rng.uniform(0, 0.5))
    assert np.array_equal(m.dendrogram_.flatten(t), m2.dendrogram_.flatten(t))
    # relabelled ids give the same clusters (in the new ids)
    relabel = rng.permutation(n)
    g3 = Graph.from_edges(relabel[g.src], relabel[g.dst], g.weight, n_nodes=n)
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
        ({"threshold": 0.1, "n_clusters": 3}, "g", ValueError,
         "at most one of threshold or n_clusters may be given, got threshold=0.1, n_clusters=3"),
        ({"threshold": -0.2}, "g", ValueError,
         r"threshold must be a finite float >= 0 \(a similarity, not a distance\), got -0.2"),
        ({"threshold": 0.1, "epsilon": float("nan")}, "g", ValueError, "epsilon must be a finite float >= 0, got nan"),
        ({"threshold": 0.1, "engine": "dask"}, "g", ValueError, "engine must be 'local'"),
        ({"threshold": 0.1}, np.zeros((3, 3)), ValueError, "X has 3 all-zero rows; cosine similarity is undefined"),
        ({"threshold": 0.1, "affinity": "precomputed"}, np.zeros((3, 3)), ValueError,
         "graph has no edge with weight > 0 after cleaning"),
        ({"threshold": 0.1, "affinity": "knn"}, "g", TypeError,
         "X must be feature rows .* with affinity='knn', got Graph; pass affinity='precomputed'"),
        ({"threshold": 0.1}, sp.csr_array(np.eye(5, 7)), ValueError,
         r"similarity matrix must be square, got shape \(5, 7\); for sparse feature rows pass affinity='knn'"),
        ({"affinity": "rbf"}, "g", ValueError, "affinity must be 'auto', 'knn' or 'precomputed', got 'rbf'"),
        ({"n_neighbors": 0}, np.eye(4), ValueError, "n_neighbors must be an int >= 1, got 0"),
        ({"metric": "l1"}, np.eye(4), ValueError, "metric must be 'cosine' or 'euclidean', got 'l1'"),
        ({}, np.eye(1, 3), ValueError, r"Found array with 1 sample\(s\)"),
        ({}, np.array([[1.0, np.nan], [0, 1], [1, 1]]), ValueError, "X has 1 rows with NaN/inf"),
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
def test_validation(kwargs, X, exc, match, er_graph):
    g = er_graph(30, 0.2, 0) if isinstance(X, str) else X
    with pytest.raises(exc, match=match):
        TeraHAC(**kwargs).fit(g)


def test_epsilon_above_one_warns_and_max_rounds_stops(er_graph):
    g = er_graph(60, 0.1, 1)
    with pytest.warns(UserWarning, match="epsilon=2.0 > 1"):
        TeraHAC(threshold=0.0, epsilon=2.0).fit(g)
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_rounds=1"):
        m = TeraHAC(threshold=0.0, epsilon=0.0, max_rounds=1, affinity_levels=1).fit(g)
    assert m.n_rounds_ == 1


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


def test_a_merge_exactly_at_the_threshold_is_made_at_every_eps():
    # defect 4: W = t merged at eps > 0 and by flatten(t), but not at eps = 0
    g = Graph.from_edges([0, 2], [1, 3], [1.0, 1.0], n_nodes=4)
    for eps in (0.0, 0.1, 1.0):
        assert TeraHAC(threshold=1.0, epsilon=eps).fit(g).n_clusters_ == 2
    d = exact_hac(g, threshold=1.0)
    assert d.n_merges == 2 and d.flatten(1.0).max() + 1 == 2


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_n_clusters_gives_exactly_that_many(eps, er_graph):
    # defect 5: n_clusters=k gave far fewer clusters at eps > 0, and n_clusters = n gave n - 1
    g = er_graph(300, 0.03, 7)
    n_comp = TeraHAC(n_clusters=300, epsilon=eps).fit(g).n_connected_components_
    for k in (n_comp, n_comp + 1, 10, 50, 299, 300):
        if k >= n_comp:
            assert TeraHAC(n_clusters=k, epsilon=eps).fit(g).n_clusters_ == k
    lab = TeraHAC(n_clusters=300, epsilon=eps).fit(g).labels_
    assert np.array_equal(lab, np.arange(300))


def test_sklearn_attributes_and_the_dendrogram_recipe(digits_graph):
    # defect 7: children_, distances_, n_leaves_, n_connected_components_ with scikit-learn's meaning
    from scipy.cluster.hierarchy import dendrogram

    g, _ = digits_graph
    for kw in ({"n_clusters": 10}, {"threshold": 0.3}):
        m = TeraHAC(**kw).fit(g)
        n = g.n_nodes
        assert m.children_.shape == (n - 1, 2) and m.distances_.shape == (n - 1,) and m.n_leaves_ == n
        assert m.n_connected_components_ == 1
        assert np.array_equal(np.sort(m.children_.ravel()), np.arange(2 * n - 2))   # every node used once
        real = m.dendrogram_.n_merges
        assert np.allclose(m.distances_[:real], 1 - m.dendrogram_.similarity)
        counts = np.zeros(n - 1)
        for i, merge in enumerate(m.children_):
            counts[i] = sum(1 if c < n else counts[c - n] for c in merge)
        assert counts[-1] == n
        tree = dendrogram(np.column_stack([m.children_, m.distances_, counts]).astype(float), no_plot=True)
        assert sorted(int(x) for x in tree["ivl"]) == list(range(n))
    two = Graph.from_edges([0, 2], [1, 3], [0.5, 0.5], n_nodes=5)
    m = TeraHAC(threshold=0.1).fit(two)
    assert m.n_connected_components_ == 3 and m.children_.shape == (4, 2)
