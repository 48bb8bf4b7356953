import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from teraml.datasets import load_digits, make_planted_partition_graph
from teraml.hac import Dendrogram, Graph, exact_hac


def er_graph(n=200, p=0.05, seed=0):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    return Graph.from_edges(iu[0][keep], iu[1][keep], rng.uniform(0.01, 1, keep.sum()), n_nodes=n)


def scipy_upgma(g):
    S = g.to_sparse().toarray()
    C = S.max() + 1.0
    D = C - S
    np.fill_diagonal(D, 0.0)
    return linkage(squareform(D, checks=False), "average"), C


@pytest.mark.parametrize("seed", range(20))
def test_exact_hac_equals_dense_upgma(seed):
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


def test_subtree_flattening_on_non_monotone_tree():
    # merge 2 (node 5) has similarity 0.95 > its child's 0.6: subtree semantics groups all under node 5
    d = Dendrogram(4, [0, 2, 4], [1, 3, 5], [0.9, 0.6, 0.95])
    assert not d.is_monotone()
    assert d.flatten(0.8).tolist() == [0, 0, 0, 0]
    with pytest.warns(UserWarning, match="not monotone"):
        d.to_linkage()


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_dendrogram_save_load(tmp_path, suffix):
    d = exact_hac(er_graph(60, 0.1, 1))
    d.save(tmp_path / f"d{suffix}")
    e = Dendrogram.load(tmp_path / f"d{suffix}")
    for c in ("left", "right", "similarity", "size", "round", "node_ids"):
        assert np.array_equal(getattr(d, c), getattr(e, c)), c
    assert e.n_leaves == d.n_leaves
    with pytest.raises(ValueError, match="path must end in .npz or .parquet, got"):
        d.save(tmp_path / "d.txt")


def test_monotone_check_and_forest_linkage_scale():
    # a forest of 20000 singletons plus a few merges: the filler merges must be linear, not quadratic
    n = 20000
    d = Dendrogram(n, [0, 2], [1, 3], [0.9, 0.8])
    Z = d.to_linkage()
    from scipy.cluster.hierarchy import is_valid_linkage

    assert is_valid_linkage(Z) and Z[-1, 3] == n
    assert d.is_monotone()
    assert not Dendrogram(3, [0, 3], [1, 2], [0.2, 0.9]).is_monotone()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), p=st.floats(0.05, 0.6), seed=st.integers(0, 10_000))
def test_properties_partition_and_reducibility(n, p, seed):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    if not keep.any():
        return
    g = Graph.from_edges(iu[0][keep], iu[1][keep], rng.uniform(0.01, 1, keep.sum()), n_nodes=n)
    d = exact_hac(g)
    assert d.is_monotone()  # exact average linkage is reducible: similarities never increase
    seen = np.zeros(n + d.n_merges, dtype=int)
    np.add.at(seen, d.left, 1)
    np.add.at(seen, d.right, 1)
    assert seen.max() <= 1  # every node merged at most once
    for t in (0.0, 0.3, 0.7):
        labels = d.flatten(t)
        assert labels.min() == 0 and set(labels.tolist()) == set(range(labels.max() + 1))


def test_graph_cleaning_and_io(tmp_path):
    with pytest.warns(UserWarning, match="dropped 1 self-loops and 1 zero-weight edges"):
        g = Graph.from_edges(["b", "a", "a", "c", "c"], ["a", "b", "a", "b", "a"], [0.3, 0.5, 1.0, 0.0, 0.7])
    assert g.node_ids.tolist() == ["a", "b", "c"] and g.n_edges == 2
    assert g.weight.tolist() == [0.5, 0.7] and g.report["duplicate_rows"] == 1
    g2 = Graph.from_edges([0, 1], [1, 0], [0.3, 0.5], duplicates="sum")
    assert g2.weight.tolist() == [0.8]
    for suffix in ("csv", "parquet"):
        if suffix == "parquet":
            pytest.importorskip("pyarrow")
        p = tmp_path / f"e.{suffix}"
        g.write(p)
        h = Graph.read(p)
        assert h.node_ids.tolist() == g.node_ids.tolist() and np.allclose(h.weight, g.weight)
    S = g.to_sparse()
    assert (S != S.T).nnz == 0
    assert Graph.from_sparse(sp.csr_matrix(S)).n_edges == 2


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: Graph.from_edges([0], [1], [-0.31]), ValueError,
         r"weight must be >= 0 \(0 means no edge\); found 1 negative values, min -0.31 \(first at row 0\)"),
        (lambda: Graph.from_edges([0, 1], [1, 2], [0.1, np.nan]), ValueError,
         r"weight must be finite; found 1 NaN/inf values \(first at row 1\)"),
        (lambda: Graph.from_edges([0, 1], [1, 2], np.array([0.1, None], dtype=object)), ValueError,
         r"weight has 1 missing values \(first at row 1\)"),
        (lambda: Graph.from_edges([0], [1], np.array(["x"])), TypeError, "weight must be numeric, got dtype string"),
        (lambda: Graph.from_edges([0, 1], [1, 0], [0.3, 0.5], duplicates="error"), ValueError,
         r"1 node pairs appear with different weights, e.g. \(0, 1\): 0.3 vs 0.5; use duplicates='max' or 'sum'"),
        (lambda: Graph.from_edges([0.0], [3.5], [1.0]), TypeError, "node ids must be all integers or all strings, got float 3.5"),
        (lambda: Graph.from_edges([0], [130], [1.0], n_nodes=100), ValueError, r"node ids must be in \[0, n_nodes=100\), got max 130"),
        (lambda: Graph.from_edges([0, 1], [0, 1], [1.0, 1.0]), ValueError,
         r"graph has no edge with weight > 0 after cleaning \(dropped 2 self-loops, 0 zero weights\)"),
        (lambda: Graph.from_sparse(sp.csr_matrix((5, 7))), ValueError, r"similarity matrix must be square, got shape \(5, 7\)"),
        (lambda: Graph.from_points(np.array([[1.0, 0], [0, 0], [1, 1]])), ValueError,
         "X has 1 all-zero rows; cosine similarity is undefined"),
        (lambda: Graph.from_points(np.array([[1.0, np.nan], [0, 1], [1, 1]])), ValueError, "X has 1 rows with NaN/inf"),
        (lambda: exact_hac(Graph.from_edges([0], [1], [1.0]), threshold=-0.2), ValueError,
         r"threshold must be a finite float >= 0 \(a similarity, not a distance\), got -0.2"),
        (lambda: exact_hac(np.zeros((3, 3))), TypeError, "graph must be a teraml.hac.Graph, got numpy.ndarray"),
    ],
)
def test_validation_messages(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cleaning warnings precede some errors
        with pytest.raises(exc, match=match):
            call()


def test_csv_missing_column(tmp_path):
    p = tmp_path / "edges.csv"
    p.write_text("a,b,w\n0,1,0.5\n")
    with pytest.raises(ValueError, match=r"edges.csv lacks column 'src'; found \['a', 'b', 'w'\]; pass columns=/--weight-col"):
        Graph.read(p)
    g = Graph.read(p, columns=("a", "b", "w"))
    assert g.n_edges == 1


def test_cut_bisection_equals_linear_scan():
    from teraml.hac import TeraHAC

    g = er_graph(120, 0.08, 3)
    for d in (exact_hac(g), TeraHAC(threshold=0.0, epsilon=0.5).fit(g).dendrogram_):
        ts = np.unique(d.similarity)[::-1]
        for k in (d.n_components(), d.n_components() + 3, 40, 119):
            k = min(k, 120)
            expected = None
            for t in ts:
                lab = d.flatten(t)
                if lab.max() + 1 <= k:
                    expected = lab
                    break
            assert expected is not None and np.array_equal(d.cut(k), expected)
