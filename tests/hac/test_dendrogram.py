"""Dendrogram: subtree flattening, cuts, scipy linkage export, save/load."""


import numpy as np
import pytest

from teraml.hac import Dendrogram, exact_hac


def test_subtree_flattening_on_non_monotone_tree():
    # merge 2 (node 5) has similarity 0.95 > its child's 0.6: subtree semantics groups all under node 5
    d = Dendrogram(4, [0, 2, 4], [1, 3, 5], [0.9, 0.6, 0.95])
    assert not d.is_monotone()
    assert d.flatten(0.8).tolist() == [0, 0, 0, 0]
    with pytest.warns(UserWarning, match="not monotone"):
        d.to_linkage()


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_dendrogram_save_load(tmp_path, suffix, er_graph):
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


def test_cut_bisection_equals_linear_scan(er_graph):
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
