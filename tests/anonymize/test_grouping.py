"""The grouping methods against the loop MDAV and the exact 1-D optimum."""

import numpy as np
import pytest

from teraml.anonymize import LookAlikeAnonymizer
from teraml.anonymize import _reference as ref
from teraml.anonymize._grouping import _nearest, group_means, kd_split, kmeans_repaired, mdav


def _sse_1d(x, labels):
    return float(sum(np.sum((x[labels == g] - x[labels == g].mean()) ** 2) for g in np.unique(labels)))


def _same_partition(a, b):
    """Equal up to relabelling: the pairs (a_i, b_i) define a bijection."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("seed", range(20))
def test_mdav_equals_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 201))
    d = int(rng.integers(1, 5))
    k = int(rng.integers(1, max(2, n // 3) + 1))
    Z = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d)
    assert _same_partition(mdav(Z, k), np.asarray(ref.mdav(Z, k)))


def test_mdav_breaks_ties_by_the_lowest_index():
    # all rows equal: every distance ties, so groups are consecutive runs of row indices
    Z = np.zeros((9, 2))
    assert mdav(Z, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(mdav(Z, 3), ref.mdav(Z, 3))
    assert kd_split(np.zeros((8, 1)), 2).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # argpartition alone would return any 2 of the 5 tied zeros; the rule takes the lowest positions
    d = np.array([3.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert sorted(_nearest(d, 2).tolist()) == [1, 2]
    assert sorted(_nearest(d, 4).tolist()) == [1, 2, 4, 5]


@pytest.mark.parametrize("method", ["mdav", "kd"])
@pytest.mark.parametrize("flip", [False, True])
def test_exact_case_two_clusters(method, flip):
    xs = np.array([0.0, 1, 2, 10, 11, 12])
    if flip:
        xs = -xs[::-1]
    X = np.column_stack([xs, np.arange(6.0) * 7])
    out = LookAlikeAnonymizer([0], k=3, method=method).fit_transform(X)
    want = np.array([1.0, 1, 1, 11, 11, 11])
    assert np.array_equal(out[:, 0], -want[::-1] if flip else want)
    assert np.array_equal(out[:, 1], X[:, 1])


def test_kd_leaves_have_k_to_2k_minus_1_rows_and_split_on_the_widest_column():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(1000, 3)) * [1.0, 5.0, 2.0]
    labels = kd_split(Z, 7)
    sizes = np.bincount(labels)
    assert sizes.min() >= 7 and sizes.max() <= 13
    # the first split is the median of column 1 (the widest): the left half holds the 500 smallest values
    left = np.argsort(Z[:, 1], kind="stable")[:500]
    first_leaves = set(labels[left].tolist())
    assert first_leaves.isdisjoint(set(labels[np.setdiff1d(np.arange(1000), left)].tolist()))


def test_kmeans_repair_loops_until_every_group_has_k():
    rng = np.random.default_rng(1)
    # one big blob and many isolated points: k-means gives singletons, which the repair must merge
    Z = np.vstack([rng.normal(size=(60, 2)) * 0.1, rng.normal(size=(8, 2)) * 50])
    labels = kmeans_repaired(Z, 10, 6, 0)
    sizes = np.bincount(labels)
    assert sizes.min() >= 10
    assert sorted(set(labels.tolist())) == list(range(sizes.shape[0]))


def test_group_means_equal_the_loop_reference():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(300, 4)) * 1e3
    labels = rng.integers(0, 17, size=300)
    means, counts = group_means(values, labels, 17)
    np.testing.assert_allclose(means[labels], ref.group_means(values, labels), rtol=1e-12)
    assert counts.sum() == 300


# ------------------------------------------------------------------------------------------ 1-D optimum


def test_microaggregation_optimum_equals_the_dp():
    microaggregation = pytest.importorskip("microaggregation")
    rng = np.random.default_rng(3)
    for n, k in [(30, 3), (100, 5), (257, 4)]:
        x = rng.normal(size=n)
        # the peer assumes sorted input (unsorted, it returns the SSE of contiguous runs of the given order)
        assert microaggregation.calculate_sse_dynamic(np.sort(x)[:, None], k) == pytest.approx(
            ref.optimal_sse_1d(x, k), rel=1e-9)
    assert microaggregation.calculate_sse_dynamic(x[:, None], 4) > 2 * ref.optimal_sse_1d(x, 4)


@pytest.mark.parametrize("method", ["mdav", "kd", "kmeans"])
def test_no_method_beats_the_1d_optimum(method):
    rng = np.random.default_rng(4)
    for seed in range(5):
        x = rng.normal(size=120) * (seed + 1)
        k = 3 + seed
        anon = LookAlikeAnonymizer([0], k=k, method=method, random_state=seed).fit(x[:, None])
        assert _sse_1d(x, anon.labels_) >= ref.optimal_sse_1d(x, k) * (1 - 1e-9)


@pytest.mark.parametrize("n", [100, 300, 1000])
@pytest.mark.parametrize("k", [3, 5, 10])
def test_mdav_is_within_30_percent_of_the_1d_optimum_in_median(n, k):
    ratios = []
    for seed in range(10):
        x = np.random.default_rng(seed).normal(size=n)
        ratios.append(_sse_1d(x, mdav(x[:, None], k)) / ref.optimal_sse_1d(x, k))
    assert np.median(ratios) <= 1.3, ratios


def test_mdav_is_not_optimal_on_two_modes():
    # fixed-size groups straddle the gap between modes: the documented reason to promise only sizes
    x = np.concatenate([np.zeros(7), np.full(7, 100.0)])
    assert ref.optimal_sse_1d(x, 5) == 0.0          # two groups of 7, one per mode
    assert _sse_1d(x, mdav(x[:, None], 5)) > 1000   # MDAV: a group of 5 zeros, then 2 zeros with the 7 hundreds
