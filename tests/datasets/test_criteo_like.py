"""make_criteo_like: a seeded CTR task (log1p counts, hashed Zipf categories, Bernoulli clicks from a teacher)."""

import re

import numpy as np
import pytest

from teraml import datasets as ds

BAYES_AT_DEFAULTS = 0.386   # measured: mean binary entropy of p at the defaults (teacher_seed=0)
NO_COLLISION = 2**40        # so many buckets that hashed ids stand for raw values


def entropy(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return float(np.mean(-p * np.log(p) - (1 - p) * np.log1p(-p)))


@pytest.fixture(scope="module")
def default_sample():
    return ds.make_criteo_like(random_state=0, return_proba=True)


def test_shapes_dtypes_ranges(default_sample):
    X_dense, X_cat, y, p = default_sample
    assert X_dense.shape == (80_000, 13) and X_dense.dtype == np.float32
    assert X_cat.shape == (80_000, 26) and X_cat.dtype == np.int64
    assert y.shape == p.shape == (80_000,) and y.dtype == np.int8 and p.dtype == np.float64
    assert X_cat.min() >= 0 and X_cat.max() < 200
    assert set(np.unique(y).tolist()) == {0, 1}
    assert np.all((p > 0) & (p < 1))
    # log1p of integer counts: non-negative, and expm1 gives back integers
    assert X_dense.min() == 0.0 and np.isfinite(X_dense).all()
    counts = np.expm1(X_dense.astype(np.float64))
    assert np.all(np.abs(counts - np.rint(counts)) <= 1e-3 * np.maximum(counts, 1.0))


def test_ctr_and_log_losses_at_defaults(default_sample):
    _, _, y, p = default_sample
    assert abs(y.mean() - 0.25) <= 0.01 and abs(p.mean() - 0.25) <= 0.01
    bayes = entropy(p)
    constant = entropy(np.full(1, y.mean()))
    assert abs(bayes - BAYES_AT_DEFAULTS) <= 0.02
    assert constant == pytest.approx(0.562, abs=0.01)
    assert bayes < constant - 0.1
    # p is the probability the labels are drawn with: the log-loss of p on y is its mean entropy
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert loss == pytest.approx(bayes, abs=0.01)
    # and it is calibrated: clicks per decile of p match the mean p of the decile
    edges = np.quantile(p, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for d in range(10):
        rows = decile == d
        assert abs(y[rows].mean() - p[rows].mean()) < 0.02


def test_return_proba_and_load(default_sample):
    X_dense, X_cat, y = ds.make_criteo_like(random_state=0)
    for a, b in zip((X_dense, X_cat, y), default_sample[:3]):
        np.testing.assert_array_equal(a, b)
    loaded = ds.load("criteo_like", n_samples=500, random_state=3, return_proba=True)
    direct = ds.make_criteo_like(500, random_state=3, return_proba=True)
    assert len(loaded) == 4
    for a, b in zip(loaded, direct):
        np.testing.assert_array_equal(a, b)
    assert "criteo_like" in ds.available() and "make_criteo_like" in ds.__all__


def test_determinism():
    a = ds.make_criteo_like(3000, random_state=7, return_proba=True)
    b = ds.make_criteo_like(3000, random_state=np.random.default_rng(7), return_proba=True)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = ds.make_criteo_like(3000, random_state=8, return_proba=True)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_same_teacher_new_random_state_is_a_new_sample_of_the_same_task():
    kw = dict(n_dense=2, n_categorical=2, hash_buckets=NO_COLLISION, teacher_seed=4, return_proba=True)
    samples = [ds.make_criteo_like(20_000, random_state=s, **kw) for s in (1, 2)]
    # equal inputs (ids stand for raw values here) have equal p, within and across samples
    rows = np.concatenate([np.column_stack([s[0].astype(np.float64), s[1]]) for s in samples])
    p = np.concatenate([s[3] for s in samples])
    _, group = np.unique(rows, axis=0, return_inverse=True)
    group = group.ravel()
    lo = np.full(group.max() + 1, np.inf)
    hi = np.full(group.max() + 1, -np.inf)
    np.minimum.at(lo, group, p)
    np.maximum.at(hi, group, p)
    size = np.bincount(group)
    assert (size > 1).sum() > 100  # many repeated inputs to compare
    assert np.array_equal(lo, hi)
    a, b = samples
    assert not np.array_equal(a[1], b[1])


def test_same_teacher_gives_similar_statistics():
    a = ds.make_criteo_like(40_000, random_state=1, return_proba=True)
    b = ds.make_criteo_like(40_000, random_state=2, return_proba=True)
    np.testing.assert_allclose(a[0].mean(axis=0), b[0].mean(axis=0), atol=0.05)
    for j in range(26):
        ca, cb = np.bincount(a[1][:, j], minlength=200), np.bincount(b[1][:, j], minlength=200)
        assert ca.argmax() == cb.argmax()
        np.testing.assert_allclose(ca / 40_000, cb / 40_000, atol=0.015)
    assert entropy(a[3]) == pytest.approx(entropy(b[3]), abs=0.01)
    assert a[3].mean() == pytest.approx(b[3].mean(), abs=0.01)


def test_different_teacher_seed_is_a_different_task():
    a = ds.make_criteo_like(20_000, random_state=1, return_proba=True)
    b = ds.make_criteo_like(20_000, random_state=1, teacher_seed=1, return_proba=True)
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    assert not np.allclose(a[3], b[3])
    # other vocabularies: the most frequent bucket of the fields differs
    top_a = [np.bincount(a[1][:, j]).argmax() for j in range(26)]
    top_b = [np.bincount(b[1][:, j]).argmax() for j in range(26)]
    assert top_a != top_b
    # both are calibrated to the same ctr
    assert abs(a[3].mean() - 0.25) < 0.015 and abs(b[3].mean() - 0.25) < 0.015


def test_hash_buckets_only_change_the_ids():
    a = ds.make_criteo_like(5000, random_state=3, return_proba=True)
    b = ds.make_criteo_like(5000, hash_buckets=7, random_state=3, return_proba=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    assert b[1].max() < 7
    one = ds.make_criteo_like(100, hash_buckets=1, random_state=3)[1]
    assert not one.any()


def test_missing_rate():
    X0 = ds.make_criteo_like(40_000, missing_rate=0.0, random_state=5)[0]
    X3 = ds.make_criteo_like(40_000, missing_rate=0.3, random_state=5)[0]
    # the same draws, with missing counts reported as log1p(0) = 0
    changed = X0 != X3
    assert (X3[changed] == 0).all()
    present = X0 != 0
    assert (X3[present] == 0).mean() == pytest.approx(0.3, abs=0.01)
    for k in range(13):
        assert (X3[present[:, k], k] == 0).mean() == pytest.approx(0.3, abs=0.03)
    Xd = ds.make_criteo_like(40_000, random_state=5)[0]
    assert (Xd[present] == 0).mean() == pytest.approx(0.1, abs=0.01)


def test_zipf_skew():
    X_cat = ds.make_criteo_like(80_000, hash_buckets=NO_COLLISION, random_state=6)[1]
    n_ok = 0
    for j in range(26):
        counts = np.sort(np.unique(X_cat[:, j], return_counts=True)[1])[::-1]
        assert counts[0] >= 3 * np.median(counts)
        if counts.size >= 100:
            assert counts[0] >= 50 * np.median(counts)
        if counts.size >= 10:
            # truncated Zipf: count of rank r is proportional to r ** -1.2
            ranks = np.arange(1, 11)
            slope = np.polyfit(np.log(ranks), np.log(counts[:10]), 1)[0]
            assert slope == pytest.approx(-1.2, abs=0.15)
            n_ok += 1
    assert n_ok >= 20
    # a larger exponent concentrates the categories more
    steep = ds.make_criteo_like(20_000, zipf_a=2.0, random_state=6)[1]
    flat = ds.make_criteo_like(20_000, zipf_a=0.5, random_state=6)[1]
    top = [(np.bincount(x[:, 0]).max() / 20_000) for x in (flat, steep)]
    assert top[1] > top[0] + 0.2


def test_smallest_shapes():
    X_dense, X_cat, y, p = ds.make_criteo_like(1, n_dense=2, n_categorical=2, random_state=0, return_proba=True)
    assert X_dense.shape == (1, 2) and X_cat.shape == (1, 2) and y.shape == p.shape == (1,)
    _, _, y, p = ds.make_criteo_like(20_000, n_dense=3, n_categorical=3, ctr=0.05, random_state=0,
                                     return_proba=True)
    assert abs(p.mean() - 0.05) < 0.01 and abs(y.mean() - 0.05) < 0.01


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"n_samples": 0}, ValueError, "n_samples must be an int >= 1; got 0"),
    ({"n_samples": 2.5}, TypeError, "n_samples must be an int >= 1; got float 2.5"),
    ({"n_dense": 1}, ValueError, "n_dense must be an int >= 2; got 1"),
    ({"n_categorical": 1}, ValueError, "n_categorical must be an int >= 2; got 1"),
    ({"hash_buckets": 0}, ValueError, "hash_buckets must be an int >= 1 that fits in int64; got 0"),
    ({"hash_buckets": 2**63}, ValueError, "hash_buckets must be an int >= 1 that fits in int64; got 9223372036854775808"),
    ({"ctr": 0.0}, ValueError, "ctr must be a float in (0, 1); got 0.0"),
    ({"ctr": 1}, ValueError, "ctr must be a float in (0, 1); got 1"),
    ({"ctr": "0.2"}, TypeError, "ctr must be a float in (0, 1); got str '0.2'"),
    ({"missing_rate": 1.0}, ValueError, "missing_rate must be a float in [0, 1); got 1.0"),
    ({"missing_rate": -0.1}, ValueError, "missing_rate must be a float in [0, 1); got -0.1"),
    ({"zipf_a": 0.0}, ValueError, "zipf_a must be a float > 0; got 0.0"),
    ({"zipf_a": float("nan")}, ValueError, "zipf_a must be a float > 0; got nan"),
    ({"teacher_seed": -1}, ValueError, "teacher_seed must be an int >= 0; got -1"),
    ({"teacher_seed": None}, TypeError, "teacher_seed must be an int >= 0; got NoneType None"),
    ({"random_state": -1}, ValueError,
     "random_state must be None, an int >= 0 or a numpy.random.Generator; got -1"),
    ({"return_proba": "yes"}, TypeError, "return_proba must be a bool; got str 'yes'"),
])
def test_validation_messages(kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message) + "$"):
        ds.make_criteo_like(**{"n_samples": 10, **kwargs})
