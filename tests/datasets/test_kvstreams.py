"""make_clusterable_kv_stream and make_needle_kv_stream: seeded KV streams for KV-cache compression."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from teraml import datasets as ds


def literal_schedule(n, c0, beta):
    """The opening rule as written: token j opens a cluster while the clusters so far are < c0 (j+1)^beta."""
    m, opens = 0, []
    for j in range(n):
        opens.append(m < c0 * (j + 1) ** beta)
        m += opens[-1]
    return np.array(opens)


def greedy_labels(keys, delta):
    """Greedy clustering: join the nearest cluster whose centre (its first key) is within delta, else open one."""
    centres, labels = [], []
    for k in keys.astype(np.float64):
        if centres:
            d2 = np.sum((np.asarray(centres) - k) ** 2, axis=1)
            i = int(np.argmin(d2))
            if d2[i] <= delta**2:
                labels.append(i)
                continue
        centres.append(k)
        labels.append(len(centres) - 1)
    return np.array(labels)


@pytest.fixture(scope="module")
def stream2000():
    return ds.make_clusterable_kv_stream(2000, 64, seed=3)


def test_shapes_dtypes_and_groups():
    s = ds.make_clusterable_kv_stream(300, 8, batch=2, kv_heads=3, seed=0)
    assert isinstance(s, ds.ClusterableKVStream)
    for a in (s.keys, s.values, s.queries):
        assert a.shape == (2, 3, 300, 8) and a.dtype == np.float32 and a.flags.c_contiguous
        assert np.isfinite(a).all()
    m = math.ceil(2.0 * math.sqrt(300))
    assert s.labels.shape == (2, 3, 300) and s.labels.dtype == np.int64
    assert s.centres.shape == (2, 3, m, 8) and s.centres.dtype == np.float32
    assert s.n_clusters.shape == (2, 3) and s.n_clusters.dtype == np.int64 and (s.n_clusters == m).all()
    assert s.delta == 0.5
    # the groups are independent streams, not copies
    assert not np.array_equal(s.keys[0, 0], s.keys[1, 2])
    assert not np.array_equal(s.labels[0, 0], s.labels[0, 1])


def test_determinism_by_seed():
    a = ds.make_clusterable_kv_stream(500, 16, batch=2, seed=7)
    b = ds.make_clusterable_kv_stream(500, 16, batch=2, seed=7)
    c = ds.make_clusterable_kv_stream(500, 16, batch=2, seed=8)
    g = ds.make_clusterable_kv_stream(500, 16, batch=2, seed=np.random.default_rng(7))
    for name in ("keys", "values", "queries", "labels", "centres"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(getattr(a, name), getattr(g, name))
    assert not np.array_equal(a.keys, c.keys)
    n1 = ds.make_needle_kv_stream(3000, 16, n_needles=10, seed=4)
    n2 = ds.make_needle_kv_stream(3000, 16, n_needles=10, seed=4)
    for name in ("keys", "values", "positions", "queries", "codes"):
        np.testing.assert_array_equal(getattr(n1, name), getattr(n2, name))
    assert not np.array_equal(n1.positions, ds.make_needle_kv_stream(3000, 16, n_needles=10, seed=5).positions)


@pytest.mark.parametrize("c0, beta", [(2.0, 0.5), (1.0, 0.0), (0.3, 1.0), (5.0, 0.9), (10.0, 1.0), (0.7, 0.25)])
def test_opening_schedule_follows_the_rule(c0, beta):
    n = 700
    s = ds.make_clusterable_kv_stream(n, 2, c0=c0, beta=beta, seed=1)
    opens = literal_schedule(n, c0, beta)
    labels = s.labels[0, 0]
    assert s.n_clusters.item() == opens.sum() == labels.max() + 1
    # token j opens cluster #(clusters before j); every other token joins a cluster already open
    opened_before = np.concatenate([[0], np.cumsum(opens)[:-1]])
    np.testing.assert_array_equal(labels[opens], opened_before[opens])
    assert (labels[~opens] < opened_before[~opens]).all()


@pytest.mark.parametrize("n, m", [(1024, 64), (4096, 128), (16384, 256), (65536, 512)])
def test_number_of_clusters_is_two_sqrt_n(n, m):
    s = ds.make_clusterable_kv_stream(n, 2, seed=0)
    assert s.n_clusters.item() == m == len(np.unique(s.labels))
    assert abs(s.n_clusters.item() - 2.0 * math.sqrt(n)) <= 1


def test_polya_draw_is_proportional_to_cluster_size():
    # beta = 0, c0 = 2: two clusters, then a Polya urn started at (1, 1): the share of cluster 0 tends
    # to Uniform(0, 1) (variance 1/12), where a uniform choice of cluster would give about 0.5 +- 0.035
    s = ds.make_clusterable_kv_stream(400, 1, beta=0.0, c0=2.0, batch=600, seed=0)
    share = (s.labels[:, 0] == 0).mean(axis=1)
    assert (s.n_clusters == 2).all()
    assert abs(share.mean() - 0.5) < 0.04
    assert abs(share.var() - 1 / 12) < 0.015
    assert np.histogram(share, bins=5, range=(0, 1))[0].min() > 80  # about 120 in each fifth


def test_keys_in_balls_and_centres_separated(stream2000):
    s, delta = stream2000, stream2000.delta
    keys, labels, centres = s.keys[0, 0].astype(np.float64), s.labels[0, 0], s.centres[0, 0].astype(np.float64)
    dist = np.linalg.norm(keys - centres[labels], axis=1)
    assert dist.max() <= delta / 2 + 1e-5
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(centres), 1)]
    assert gaps.min() > 2 * delta
    assert abs(np.linalg.norm(centres, axis=1).mean() - 3.0) < 0.2  # key_radius


def test_greedy_clustering_recovers_the_true_clusters_in_any_order(stream2000):
    s = stream2000
    keys, labels = s.keys[0, 0], s.labels[0, 0]
    np.testing.assert_array_equal(greedy_labels(keys, s.delta), labels)
    order = np.random.default_rng(0).permutation(len(keys))
    found = greedy_labels(keys[order], s.delta)
    assert found.max() + 1 == s.n_clusters.item()
    # the same partition: each found cluster is exactly one true cluster
    pairs = set(zip(found.tolist(), labels[order].tolist()))
    assert len(pairs) == s.n_clusters.item()


def test_offsets_are_uniform_in_the_ball_not_on_the_sphere():
    # in d = 2 the squared relative radius of a uniform point in the disc is Uniform(0, 1)
    s = ds.make_clusterable_kv_stream(4000, 2, delta=0.2, key_radius=50.0, seed=2)
    r = np.linalg.norm(s.keys[0, 0].astype(np.float64) - s.centres[0, 0][s.labels[0, 0]], axis=1) / 0.1
    assert r.max() <= 1 + 1e-3
    assert abs(np.mean(r**2) - 0.5) < 0.03 and abs(np.var(r**2) - 1 / 12) < 0.01


def test_values_and_queries(stream2000):
    s = stream2000
    q, k = s.queries[0, 0].astype(np.float64), s.keys[0, 0].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 2.0, rtol=1e-5)
    cos = np.sum(q * k, axis=1) / (2.0 * np.linalg.norm(k, axis=1))
    assert cos.min() > 0.97 and cos.mean() > 0.99  # noise of relative size 0.1
    log_norm = np.log(np.linalg.norm(s.values[0, 0], axis=1))
    assert abs(log_norm.std() - 0.5) < 0.05  # one lognormal scale (sigma 0.5) per token
    plain = ds.make_clusterable_kv_stream(2000, 64, value_lognorm_sigma=0.0, seed=3).values
    assert abs(plain.var() - 1.0) < 0.02 and abs(plain.mean()) < 0.01


def test_make_65536_tokens_fast():
    import time

    ds.make_clusterable_kv_stream(1024, 64)
    t = time.perf_counter()
    s = ds.make_clusterable_kv_stream(65536, 64, seed=0)
    assert time.perf_counter() - t < 2.0
    assert s.n_clusters.item() == 512


@pytest.fixture(scope="module")
def needles():
    return ds.make_needle_kv_stream(seed=0)


def test_needle_stream_layout(needles):
    s = needles
    assert isinstance(s, ds.NeedleKVStream)
    assert s.keys.shape == s.values.shape == (1, 1, 16384, 64) and s.keys.dtype == s.values.dtype == np.float32
    assert s.queries.shape == (1, 1, 50, 64) and s.queries.dtype == np.float32
    assert s.codes.shape == (50, 64) and s.codes.dtype == np.float32
    assert s.positions.shape == (50,) and s.positions.dtype == np.int64
    assert (np.diff(s.positions) > 0).all() and s.positions.min() >= 0 and s.positions.max() < 16384 - 600
    assert s.n_needles == 50 and s.chance == pytest.approx(0.02)
    np.testing.assert_array_equal(np.abs(s.codes), 1.0)
    assert len(np.unique(s.codes, axis=0)) == 50
    np.testing.assert_array_equal(s.values[0, 0, s.positions], s.codes)
    nk = s.keys[0, 0, s.positions].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(nk, axis=1), 3.0, rtol=1e-5)
    np.testing.assert_allclose(s.queries[0, 0], nk * (5.0 / 3.0), rtol=1e-5, atol=1e-6)
    # every other token is the background stream
    bg = ds.make_clusterable_kv_stream(16384, 64, seed=np.random.default_rng(0))
    rest = np.setdiff1d(np.arange(16384), s.positions)
    np.testing.assert_array_equal(s.keys[0, 0, rest], bg.keys[0, 0, rest])
    np.testing.assert_array_equal(s.values[0, 0, rest], bg.values[0, 0, rest])


def test_needle_background_options_and_small_d():
    s = ds.make_needle_kv_stream(1000, 3, n_needles=8, exclude_last=0, delta=0.2, c0=1.0, seed=1)
    assert len(np.unique(s.codes, axis=0)) == 8  # all 2^3 codes, distinct
    assert s.score(s.codes) == 1.0
    t = ds.make_needle_kv_stream(500, 16, n_needles=500, exclude_last=0, seed=1)
    np.testing.assert_array_equal(t.positions, np.arange(500))


def test_score(needles):
    s = needles
    assert s.score(s.codes) == 1.0
    assert s.score(s.codes[None, None]) == 1.0
    assert s.score(3.0 * s.codes + 0.5 * np.random.default_rng(0).standard_normal(s.codes.shape)) == 1.0
    assert s.score(np.roll(s.codes, 1, axis=0)) == 0.0
    assert s.score(np.zeros_like(s.codes)) == 0.0
    rng = np.random.default_rng(1)
    mean = np.mean([s.score(rng.standard_normal(s.codes.shape)) for _ in range(300)])
    assert abs(mean - s.chance) < 0.006  # standard error about 0.0011


def test_exact_attention_retrieves_every_needle(needles):
    s = needles
    logits = s.queries[0, 0].astype(np.float64) @ s.keys[0, 0].astype(np.float64).T
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    out = (w / w.sum(axis=1, keepdims=True)) @ s.values[0, 0].astype(np.float64)
    assert s.score(out) == 1.0
    # the most recent window alone (no needle in it) scores about chance
    tail = slice(16384 - 600, None)
    w = np.exp(logits[:, tail] - logits[:, tail].max(axis=1, keepdims=True))
    assert s.score((w / w.sum(axis=1, keepdims=True)) @ s.values[0, 0, tail]) <= 0.1


def test_score_rejects_bad_outputs(needles):
    message = "outputs must have shape (50, 64) (or (1, 1, 50, 64)); got shape (50, 63)"
    with pytest.raises(ValueError, match=re.escape(message)):
        needles.score(np.zeros((50, 63)))
    with pytest.raises(ValueError, match=re.escape("outputs must have shape (50, 64)")):
        needles.score(np.zeros((2, 1, 50, 64)))
    with pytest.raises(ValueError, match="outputs must be 2-D or 4-D; got a 1-D array"):
        needles.score(np.zeros(64))
    with pytest.raises(ValueError, match="outputs must contain only finite values"):
        needles.score(np.full((50, 64), np.nan))
    with pytest.raises(TypeError, match="outputs must be an array-like of numbers; got str"):
        needles.score("codes")


KV = ds.make_clusterable_kv_stream
NEEDLE = ds.make_needle_kv_stream
SEEDS = "None, an int >= 0 or a numpy.random.Generator"


@pytest.mark.parametrize(
    "fn, kwargs, exc, message",
    [
        (KV, {"n": 0}, ValueError, "n must be an int >= 1; got 0"),
        (KV, {"n": 10.0}, TypeError, "n must be an int >= 1; got float 10.0"),
        (KV, {"n": 10, "d": 0}, ValueError, "d must be an int >= 1; got 0"),
        (KV, {"n": 10, "beta": 1.5}, ValueError, "beta must be a float in [0, 1]; got 1.5"),
        (KV, {"n": 10, "beta": "0.5"}, TypeError, "beta must be a float in [0, 1]; got str '0.5'"),
        (KV, {"n": 10, "c0": 0.0}, ValueError, "c0 must be a float > 0; got 0.0"),
        (KV, {"n": 10, "key_radius": -1.0}, ValueError, "key_radius must be a float > 0; got -1.0"),
        (KV, {"n": 10, "delta": -0.1}, ValueError, "delta must be a float >= 0; got -0.1"),
        (KV, {"n": 10, "delta": float("nan")}, ValueError, "delta must be a float >= 0; got nan"),
        (KV, {"n": 10, "value_lognorm_sigma": -1}, ValueError, "value_lognorm_sigma must be a float >= 0; got -1"),
        (KV, {"n": 10, "batch": 0}, ValueError, "batch must be an int >= 1; got 0"),
        (KV, {"n": 10, "kv_heads": True}, TypeError, "kv_heads must be an int >= 1; got bool True"),
        (KV, {"n": 10, "seed": -1}, ValueError, f"seed must be {SEEDS}; got -1"),
        (NEEDLE, {"n": 0}, ValueError, "n must be an int >= 1; got 0"),
        (NEEDLE, {"d": 0}, ValueError, "d must be an int >= 1; got 0"),
        (NEEDLE, {"n_needles": 0}, ValueError, "n_needles must be an int >= 1; got 0"),
        (NEEDLE, {"exclude_last": -1}, ValueError, "exclude_last must be an int >= 0; got -1"),
        (NEEDLE, {"n": 100, "exclude_last": 100}, ValueError, "exclude_last must be an int < n = 100; got 100"),
        (NEEDLE, {"n": 100, "exclude_last": 60}, ValueError,
         "n_needles must be an int <= n - exclude_last = 40; got 50"),
        (NEEDLE, {"n": 1000, "d": 4}, ValueError,
         "n_needles must be an int <= 2^d = 16 (the +-1 codes are distinct); got 50"),
        (NEEDLE, {"needle_key_norm": 0}, ValueError, "needle_key_norm must be a float > 0; got 0"),
        (NEEDLE, {"needle_query_norm": "5"}, TypeError, "needle_query_norm must be a float > 0; got str '5'"),
        (NEEDLE, {"seed": 1.5}, TypeError, f"seed must be {SEEDS}; got float 1.5"),
        (NEEDLE, {"delta": -1.0}, ValueError, "delta must be a float >= 0; got -1.0"),
        (NEEDLE, {"batch": 2}, TypeError,
         "batch: unexpected keyword argument: the background takes only beta, c0, key_radius, delta, "
         "value_lognorm_sigma (one stream: batch = kv_heads = 1)"),
        (NEEDLE, {"sigma": 1.0}, TypeError, "sigma: unexpected keyword argument"),
    ],
)
def test_bad_inputs_raise(fn, kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        fn(**kwargs)


def test_import_does_not_load_torch():
    code = ("import sys, teraml, teraml.datasets; teraml.datasets.make_needle_kv_stream(2000, 8, n_needles=5); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
