"""TeraHAC as a scikit-learn clusterer: fit on points (the k-NN graph), precomputed graphs, pipelines.

The check_estimator contract itself is in tests/test_estimators.py.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from teraml.hac import Graph, TeraHAC


def _same_graph(a: Graph, b: Graph) -> bool:
    return (a.n_nodes == b.n_nodes and np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)
            and np.allclose(a.weight, b.weight, rtol=1e-12, atol=0))


def test_pipeline_on_digits_beside_sklearn_average_linkage():
    X, y = load_digits(return_X_y=True)
    models = {
        "TeraHAC": TeraHAC(n_clusters=10),
        "average, cosine": AgglomerativeClustering(n_clusters=10, linkage="average", metric="cosine"),
        "average, euclidean": AgglomerativeClustering(n_clusters=10, linkage="average"),
    }
    ari = {name: adjusted_rand_score(y, make_pipeline(StandardScaler(), m).fit_predict(X)) for name, m in models.items()}
    # measured: TeraHAC 0.743, cosine 0.587, euclidean 0.000 (one giant cluster: average linkage chains)
    assert ari["TeraHAC"] >= 0.70
    assert ari["TeraHAC"] > max(ari["average, cosine"], ari["average, euclidean"]) + 0.1, ari
    pipe = make_pipeline(StandardScaler(), TeraHAC(n_clusters=10)).fit(X)
    model = pipe[-1]
    assert model.affinity_ == "knn" and model.n_features_in_ == 64 and model.graph_.n_nodes == len(X)
    assert model.n_clusters_ == 10 and np.array_equal(np.unique(model.labels_), np.arange(10))


def test_points_path_is_the_graph_path():
    # fit(X) on points is exactly TeraHAC on Graph.from_points(X): nothing in the graph path changes
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) + np.repeat(rng.normal(scale=4, size=(5, 6)), 60, axis=0)
    for metric in ("cosine", "euclidean"):
        g = Graph.from_points(X, n_neighbors=8, metric=metric)
        a = TeraHAC(n_clusters=5, n_neighbors=8, metric=metric).fit(X)
        b = TeraHAC(n_clusters=5).fit(g)
        c = TeraHAC(n_clusters=5).fit(g.to_sparse())
        assert _same_graph(a.graph_, g) and b.graph_ is g and b.affinity_ == c.affinity_ == "precomputed"
        assert np.array_equal(a.labels_, b.labels_) and np.array_equal(a.labels_, c.labels_)
        assert np.array_equal(a.children_, b.children_) and np.allclose(a.distances_, b.distances_)
        assert not hasattr(b, "n_features_in_")


def test_sparse_feature_rows_need_affinity_knn_and_match_dense():
    rng = np.random.default_rng(1)
    X = rng.random((120, 30))
    X[X < 0.7] = 0
    X[:, 0] += 0.1   # no all-zero row
    dense = TeraHAC(n_clusters=4, affinity="knn").fit(X)
    for fmt in (sp.csr_array, sp.csc_matrix, sp.coo_array):
        sparse = TeraHAC(n_clusters=4, affinity="knn").fit(fmt(X))
        assert _same_graph(dense.graph_, sparse.graph_) and np.array_equal(dense.labels_, sparse.labels_)
    with pytest.raises(ValueError, match="for sparse feature rows pass affinity='knn'"):
        TeraHAC(n_clusters=4).fit(sp.csr_array(X))
    Xn = sp.csr_array(X)
    Xn.data[3] = np.nan
    with pytest.raises(ValueError, match="X has 1 rows with NaN/inf"):
        TeraHAC(n_clusters=4, affinity="knn").fit(Xn)


def test_precomputed_dense_similarity_matches_sparse():
    rng = np.random.default_rng(2)
    S = rng.random((40, 40))
    S[S < 0.8] = 0
    S = np.maximum(S, S.T)
    np.fill_diagonal(S, 1.0)   # the diagonal of a similarity matrix: self-loops, dropped
    a = TeraHAC(threshold=0.1, affinity="precomputed").fit(S)
    b = TeraHAC(threshold=0.1).fit(sp.csr_array(S))
    assert a.affinity_ == "precomputed" and a.n_features_in_ == 40
    assert _same_graph(a.graph_, b.graph_) and np.array_equal(a.labels_, b.labels_)
    with pytest.raises(ValueError, match=r"similarity matrix must be square, got shape \(40, 39\)"):
        TeraHAC(threshold=0.1, affinity="precomputed").fit(S[:, :39])
    assert TeraHAC(affinity="precomputed").__sklearn_tags__().input_tags.pairwise
    assert not TeraHAC().__sklearn_tags__().input_tags.pairwise


def test_no_cut_gives_components_and_the_full_tree():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(30, 3)) + 50, rng.normal(size=(30, 3)) - 50])
    m = TeraHAC(n_neighbors=5, metric="euclidean").fit(X)   # two far blobs: two 5-NN components
    assert m.threshold_ == 0.0 and m.n_clusters_ == m.n_connected_components_ == 2
    assert m.dendrogram_.n_merges == len(X) - 2
    k = TeraHAC(n_clusters=2, n_neighbors=5, metric="euclidean").fit(X)
    assert np.array_equal(m.labels_, k.labels_)
    assert np.array_equal(m.dendrogram_.cut(2), k.labels_)


def test_fewer_points_than_neighbours_gives_the_complete_graph():
    X = np.random.default_rng(4).normal(size=(5, 3))
    m = TeraHAC(n_clusters=2, n_neighbors=10, metric="euclidean").fit(X)
    assert m.graph_.n_edges == 10 and m.n_clusters_ == 2


def test_refit_on_graph_forgets_the_array_shape():
    X = np.random.default_rng(5).normal(size=(30, 4))
    m = TeraHAC(n_clusters=3).fit(X)
    assert m.n_features_in_ == 4
    m.fit(Graph.from_points(X))
    assert not hasattr(m, "n_features_in_") and m.affinity_ == "precomputed"


@settings(max_examples=25, deadline=None)
@given(X=arrays(np.float64, st.tuples(st.integers(3, 40), st.integers(1, 4)),
                elements=st.floats(-100, 100, allow_nan=False, width=32)),
       k=st.integers(1, 6), nn=st.integers(1, 12), eps=st.sampled_from([0.0, 0.1, 0.5]))
def test_points_property(X, k, nn, eps):
    # on any points: labels are 0..c-1 with c = max(k, components) clusters (capped at n), and fit(X) equals
    # the precomputed run on the graph it built (n_clusters > n is an error: capped here)
    k = min(k, len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a cut below the number of components warns
        m = TeraHAC(n_clusters=k, n_neighbors=nn, metric="euclidean", epsilon=eps).fit(X)
        p = TeraHAC(n_clusters=k, epsilon=eps).fit(m.graph_)
    n = len(X)
    assert m.labels_.shape == (n,) and m.labels_.dtype == np.int64
    expected = max(k, m.n_connected_components_)
    assert m.n_clusters_ == expected and np.array_equal(np.unique(m.labels_), np.arange(expected))
    assert np.array_equal(m.labels_, p.labels_)
    assert m.graph_.n_nodes == n and np.all(m.graph_.weight > 0) and np.all(m.graph_.weight <= 1)
