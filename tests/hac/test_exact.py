"""exact_hac: the sequential exact reference, against scipy dense UPGMA and by its invariants."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from teraml.datasets import load_digits, make_planted_partition_graph
from teraml.hac import Graph, exact_hac


def scipy_upgma(g):
    S = g.to_sparse().toarray()
    C = S.max() + 1.0
    D = C - S
    np.fill_diagonal(D, 0.0)
    return linkage(squareform(D, checks=False), "average"), C


@pytest.mark.parametrize("seed", range(20))
def test_exact_hac_equals_dense_upgma(seed, er_graph):
    g = er_graph(seed=seed)
    d = exact_hac(g)
    Z, C = scipy_upgma(g)
    ref = np.sort(C - Z[:, 2])
    ref = ref[ref > 1e-12]
    ours = np.sort(d.similarity)
    assert ours.size == ref.size
    assert np.allclose(ours, ref, rtol=1e-9, atol=0)
    for t in (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01):
        ref_labels = fcluster(Z, C - t, criterion="distance")
        assert adjusted_rand_score(ref_labels, d.flatten(t)) == 1.0


def test_exact_hac_digits_knn():
    X, _ = load_digits()
    g = Graph.from_points(X, n_neighbors=10)
    d = exact_hac(g)
    Z, C = scipy_upgma(g)
    for t in (0.5, 0.3, 0.2, 0.1, 0.05):
        assert adjusted_rand_score(fcluster(Z, C - t, criterion="distance"), d.flatten(t)) == 1.0


def test_exact_hac_recovers_planted_partition():
    src, dst, w, labels = make_planted_partition_graph(1000, 20, random_state=0)
    d = exact_hac(Graph.from_edges(src, dst, w, n_nodes=1000))
    assert d.is_monotone()
    assert adjusted_rand_score(labels, d.cut(20)) == 1.0


def test_threshold_and_forest():
    g = Graph.from_edges([0, 2], [1, 3], [0.9, 0.2])
    d = exact_hac(g, threshold=0.5)
    assert d.n_merges == 1 and d.flatten(0.5).tolist() == [0, 0, 1, 2]
    full = exact_hac(g)
    assert full.n_merges == 2 and full.n_components() == 2
    with pytest.warns(UserWarning, match="forest of 2 trees, more than n_clusters=1"):
        assert full.cut(1).tolist() == [0, 0, 1, 1]
    Z = full.to_linkage()
    assert Z.shape == (3, 4) and Z[2, 2] == pytest.approx(max(0.1, 0.8) + 1.0) and Z[2, 3] == 4


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), p=st.floats(0.05, 0.6), seed=st.integers(0, 10_000))
def test_properties_partition_and_reducibility(n, p, seed, er_graph):
    g = er_graph(n, p, seed)
    if g is None:
        return
    d = exact_hac(g)
    assert d.is_monotone()  # exact average linkage is reducible: similarities never increase
    seen = np.zeros(n + d.n_merges, dtype=int)
    np.add.at(seen, d.left, 1)
    np.add.at(seen, d.right, 1)
    assert seen.max() <= 1  # every node merged at most once
    for t in (0.0, 0.3, 0.7):
        labels = d.flatten(t)
        assert labels.min() == 0 and set(labels.tolist()) == set(range(labels.max() + 1))
