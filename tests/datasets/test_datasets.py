import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml import datasets as ds


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [("digits", (1797, 64), 10), ("breast_cancer", (569, 30), 2), ("wine", (178, 13), 3), ("diabetes", (442, 10), None)],
)
def test_bundled_loaders(name, shape, n_classes):
    X, y = ds.load(name)
    X2, y2 = getattr(ds, f"load_{name}")()
    assert X.shape == shape and y.shape == (shape[0],)
    assert X.dtype == np.float64 and np.isfinite(X).all()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    if n_classes:
        assert len(np.unique(y)) == n_classes


def test_stdlib_text_splits():
    train, val = ds.stdlib_text("train"), ds.stdlib_text()
    assert val == train  # default split is train
    val = ds.stdlib_text("validation")
    assert isinstance(train, bytes) and isinstance(val, bytes)
    assert len(train) > 1_000_000 and len(val) > 100_000
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.2
    files = ds.stdlib_files()
    rels = [r for r, _ in files]
    assert rels == sorted(rels)
    assert not any(part in ("test", "tests", "idle_test", "site-packages") for r in rels for part in r.split("/"))
    for rel, split in files:
        assert (split == "validation") == (zlib.crc32(rel.encode()) % 10 == 0)
    assert train.count(ds._text.SEPARATOR) == sum(s == "train" for _, s in files) - 1


def test_stdlib_text_bad_split():
    with pytest.raises(ValueError, match="split must be one of 'train', 'validation'; got 'test'"):
        ds.stdlib_text("test")
    with pytest.raises(TypeError, match="split must be one of"):
        ds.stdlib_text(1)


def test_unigram_entropy():
    assert ds.unigram_entropy(b"aaaa") == 0.0
    assert ds.unigram_entropy(bytes(range(256))) == pytest.approx(8.0)
    assert 4.0 < ds.unigram_entropy(ds.stdlib_text("validation")) < 6.0
    with pytest.raises(ValueError, match="data must be non-empty"):
        ds.unigram_entropy(b"")
    with pytest.raises(TypeError, match="data must be bytes or a uint8 numpy array; got str"):
        ds.unigram_entropy("abc")


def test_load_errors():
    with pytest.raises(ValueError, match="needs a download"):
        ds.load("mnist")
    with pytest.raises(ValueError, match="needs a download"):
        ds.load("fetch_california_housing")
    with pytest.raises(ValueError, match="name must be one of .*; got 'nope'"):
        ds.load("nope")
    with pytest.raises(TypeError, match="name must be a str"):
        ds.load(3)
    X, _ = ds.load("make_gaussian_mixture", n_samples=10, random_state=0)
    assert X.shape == (10, 2)
    assert "stdlib_text" in ds.available()


def test_gaussian_mixture_deterministic_and_separated():
    X1, y1 = ds.make_gaussian_mixture(300, 3, 4, cluster_std=0.1, random_state=5)
    X2, y2 = ds.make_gaussian_mixture(300, 3, 4, cluster_std=0.1, random_state=5)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    pred = KMeans(4, n_init=10, random_state=0).fit_predict(X1)
    assert adjusted_rand_score(y1, pred) > 0.99


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_samples": -3}, ValueError, r"n_samples must be an int >= 1; got -3"),
        ({"n_samples": 2.5}, TypeError, r"n_samples must be an int >= 1; got float"),
        ({"n_components": 0}, ValueError, r"n_components must be an int >= 1; got 0"),
        ({"cluster_std": -1.0}, ValueError, r"cluster_std must be a float >= 0; got -1.0"),
        ({"weights": [1, 2]}, ValueError, r"weights must be 3 non-negative numbers"),
        ({"random_state": "a"}, TypeError, r"random_state must be None, an int >= 0"),
    ],
)
def test_gaussian_mixture_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ds.make_gaussian_mixture(**kwargs)


def test_planted_partition_graph():
    src, dst, w, labels = ds.make_planted_partition_graph(2000, 20, random_state=1)
    assert labels.shape == (2000,) and np.bincount(labels).min() == 100
    assert (src < dst).all() and np.unique(src * 2000 + dst).size == src.size
    same = labels[src] == labels[dst]
    assert (w[same].max() <= 1.0) and (w[~same].max() < 0.5)
    # in-block edges dominate and every node has at least in_neighbors in-block neighbours
    assert same.mean() > 0.75
    deg_in = np.bincount(np.concatenate([src[same], dst[same]]), minlength=2000)
    assert deg_in.min() >= 8
    src2, dst2, w2, labels2 = ds.make_planted_partition_graph(2000, 20, random_state=1)
    np.testing.assert_array_equal(w, w2)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 120), blocks=st.integers(1, 6), k=st.integers(0, 4), out=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_planted_partition_graph_properties(n, blocks, k, out, seed):
    blocks = min(blocks, n)
    if k > n // blocks - 1:
        with pytest.raises(ValueError, match="in_neighbors must be <="):
            ds.make_planted_partition_graph(n, blocks, in_neighbors=k, out_neighbors=out, random_state=seed)
        return
    src, dst, w, labels = ds.make_planted_partition_graph(n, blocks, in_neighbors=k, out_neighbors=out,
                                                          random_state=seed)
    assert (src < dst).all() and (dst < n).all() and (src >= 0).all()
    assert np.unique(src.astype(np.int64) * n + dst).size == src.size
    assert ((w > 0) & (w <= 1)).all()
    assert set(np.unique(labels)) == set(range(blocks))


def test_planted_partition_graph_bad_input():
    with pytest.raises(ValueError, match="n_blocks must be an int in \\[1, 10\\]; got 11"):
        ds.make_planted_partition_graph(10, 11)
    with pytest.raises(ValueError, match="n_nodes must be an int >= 2; got -5"):
        ds.make_planted_partition_graph(-5)
    with pytest.raises(ValueError, match="in_neighbors must be <= 4"):
        ds.make_planted_partition_graph(100, 20, in_neighbors=8)
