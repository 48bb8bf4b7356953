"""Dendrogram: subtree flattening, cuts, scipy linkage export, save/load."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_cut_of_a_monotone_tree_equals_the_cut_at_a_level(er_graph):
    d = exact_hac(er_graph(120, 0.08, 3))
    assert d.is_monotone()
    ts = np.unique(d.similarity)[::-1]
    for k in range(d.n_components(), 121):
        level = next((d.flatten(t) for t in ts if d.flatten(t).max() + 1 == k), None)
        if level is not None:      # a level with exactly k clusters exists (no tie skips it)
            assert np.array_equal(d.cut(k), level)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), p=st.floats(0.05, 0.6), seed=st.integers(0, 10_000),
       eps=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_cut_gives_exactly_k_clusters(n, p, seed, eps, er_graph):
    # TeraHAC's (1+eps) dendrograms are non-monotone: no similarity level may give k clusters, merges still do
    from teraml.hac import TeraHAC

    g = er_graph(n, p, seed)
    if g is None:
        return
    d = TeraHAC(threshold=0.0, epsilon=eps).fit(g).dendrogram_
    for k in range(d.n_components(), n + 1):
        lab = d.cut(k)
        assert lab.max() + 1 == k and lab.min() == 0
        coarser = d.cut(max(d.n_components(), k - 1))          # one merge more: two clusters joined, none split
        pairs = {(a, b) for a, b in zip(lab.tolist(), coarser.tolist())}
        assert len({a for a, _ in pairs}) == len(pairs)


def test_cut_edges_singletons_forest_and_bad_k():
    d = Dendrogram(4, [0, 2], [1, 3], [0.9, 0.8])             # a forest of 2 trees
    assert d.cut(4).tolist() == [0, 1, 2, 3] and d.cut(3).tolist() == [0, 0, 1, 2]
    with pytest.warns(UserWarning, match="forest of 2 trees, more than n_clusters=1"):
        assert d.cut(1).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"n_clusters must be an int in \[1, 4\], got 5"):
        d.cut(5)
