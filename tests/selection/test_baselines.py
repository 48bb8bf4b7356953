"""Baselines: uniform, k-center greedy (against its O(B n^2) reference) and the uncertainty scores."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.selection._reference import kcenter_greedy_naive, uncertainty_naive
from teraml.selection.baselines import kcenter_greedy, uncertainty, uniform

METHODS = ("margin", "entropy", "least_confidence")


# ------------------------------------------------------------------------------------------ uniform


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 500), frac=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_uniform_is_a_valid_selection(n, frac, seed):
    budget = max(1, round(frac * n))
    s = uniform(n, budget, random_state=seed)
    assert s.indices.dtype == np.int64 and s.indices.shape == (budget,)
    assert np.all(np.diff(s.indices) > 0) and s.indices.min() >= 0 and s.indices.max() < n
    np.testing.assert_array_equal(s.weights, np.full(budget, n / budget))
    np.testing.assert_array_equal(s.probabilities, np.full(budget, budget / n))
    np.testing.assert_array_equal(s.counts, np.ones(budget))
    assert set(s.role.tolist()) == {"sample"} and np.isnan(s.losses).all()
    assert s.n_total == n and s.n_loss_queries == 0
    assert s.weights.sum() == pytest.approx(n)
    np.testing.assert_array_equal(uniform(n, budget, random_state=seed).indices, s.indices)


def test_uniform_is_unbiased_and_exact_when_everything_is_taken():
    losses = np.random.default_rng(0).exponential(size=50)
    full = uniform(50, 50, random_state=0)
    assert full.estimate_mean(losses[full.indices])[0] == pytest.approx(losses.mean())
    est = [uniform(50, 5, random_state=s) for s in range(4000)]
    means = np.array([s.estimate_mean(losses[s.indices])[0] for s in est])
    # without replacement, Var = (1 - f) S^2 / m
    se = np.sqrt((1 - 5 / 50) * losses.var(ddof=1) / 5 / len(est))
    assert abs(means.mean() - losses.mean()) < 4 * se
    counts = np.bincount(np.concatenate([s.indices for s in est]), minlength=50)
    assert counts.min() > 0.7 * counts.mean()


def test_uniform_validation():
    with pytest.raises(ValueError, match=r"^n must be an int >= 1; got 0$"):
        uniform(0, 1)
    with pytest.raises(ValueError, match=r"^budget must be an integer in \[1, 10\]; got 11$"):
        uniform(10, 11)
    with pytest.raises(ValueError, match=r"^budget must be an integer in \[1, 10\]; got 0$"):
        uniform(10, 0)
    with pytest.raises(TypeError, match=r"^budget must be an integer in \[1, 10\]; got float 2.0$"):
        uniform(10, 2.0)
    with pytest.raises(ValueError, match=r"^random_state must be None, an int >= 0 or a numpy.random.Generator"):
        uniform(10, 2, random_state=-1)


# ------------------------------------------------------------------------------------------ k-center greedy


def max_min_distance(X, chosen):
    """The k-center objective: the largest distance of a row to its nearest chosen row."""
    d = np.linalg.norm(X[:, None, :] - X[chosen][None, :, :], axis=2)
    return float(d.min(axis=1).max())


@pytest.mark.parametrize("seed", range(3))
def test_kcenter_equals_brute_force_at_n200(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 5)) * rng.uniform(0.5, 3, size=5)
    np.testing.assert_array_equal(kcenter_greedy(X, 40, random_state=seed),
                                  kcenter_greedy_naive(X, 40, random_state=seed))
    init = rng.choice(200, size=7, replace=False)
    np.testing.assert_array_equal(kcenter_greedy(X, 40, initial=init),
                                  kcenter_greedy_naive(X, 40, initial=init))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 4), seed=st.integers(0, 2**16), frac=st.floats(0, 1),
       n_init=st.integers(0, 3), spread=st.sampled_from([1, 2, 1000]))
def test_kcenter_equals_brute_force_on_grids_with_ties(n, d, seed, frac, n_init, spread):
    # small integer coordinates: exact float64 distances, many exact ties and duplicate rows
    rng = np.random.default_rng(seed)
    X = rng.integers(-spread, spread + 1, size=(n, d)).astype(np.float64)
    init = rng.choice(n, size=min(n_init, n - 1), replace=False)
    budget = max(1, round(frac * (n - init.size)))
    got = kcenter_greedy(X, budget, initial=init, random_state=seed)
    np.testing.assert_array_equal(got, kcenter_greedy_naive(X, budget, initial=init, random_state=seed))
    assert np.unique(got).size == budget and not np.isin(got, init).any()


def test_kcenter_max_min_distance_never_increases():
    X = np.random.default_rng(1).standard_normal((300, 3))
    picks = kcenter_greedy(X, 30, random_state=0)
    radii = [max_min_distance(X, picks[:t]) for t in range(1, 31)]
    assert all(b <= a for a, b in zip(radii, radii[1:]))
    # the greedy 2-approximation: at most twice the radius of any other 30 centres, e.g. random ones
    assert radii[-1] <= 2 * max_min_distance(X, np.random.default_rng(2).choice(300, 30, replace=False)) + 1e-12


def test_kcenter_float32_memmap_and_reproducibility(tmp_path):
    X = np.random.default_rng(3).standard_normal((500, 6)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = kcenter_greedy(mm, 25, random_state=5)
    np.testing.assert_array_equal(a, kcenter_greedy(X.astype(np.float64), 25, random_state=5))
    np.testing.assert_array_equal(a, kcenter_greedy_naive(X, 25, random_state=5))
    assert a.dtype == np.int64
    # duplicates: every row picked once, farthest first, then the zero-distance copies in index order
    D = np.repeat(np.array([[0.0], [5.0]]), 3, axis=0)   # rows 0-2 at 0, rows 3-5 at 5
    assert kcenter_greedy(D, 5, initial=[1]).tolist() == [3, 0, 2, 4, 5]


def test_kcenter_validation():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"^X must be 2-D with at least 1 row and 1 column; got shape \(3,\)$"):
        kcenter_greedy(np.zeros(3), 1)
    with pytest.raises(ValueError, match=r"^X must be finite; found NaN or inf in row 4$"):
        kcenter_greedy(np.where(np.arange(10)[:, None] == 4, np.nan, X), 1)
    with pytest.raises(TypeError, match=r"^X must be a numeric array-like; got dtype <U1$"):
        kcenter_greedy([["a"]], 1)
    with pytest.raises(ValueError, match=r"^budget must be an integer in \[1, 10\]; got 11$"):
        kcenter_greedy(X, 11)
    with pytest.raises(ValueError, match=r"^budget must be an integer in \[1, 8\]; got 9$"):
        kcenter_greedy(X, 9, initial=[0, 5])
    with pytest.raises(ValueError, match=r"^initial must hold row indices in \[0, 10\); got 10$"):
        kcenter_greedy(X, 1, initial=[3, 10])
    with pytest.raises(ValueError, match=r"^initial must hold distinct row indices; got 1 repeats$"):
        kcenter_greedy(X, 1, initial=[3, 3])
    with pytest.raises(TypeError, match=r"^initial must be an array of int row indices; got dtype float64$"):
        kcenter_greedy(X, 1, initial=[0.0])
    with pytest.raises(ValueError, match=r"^initial must be 1-D; got a 2-D array of shape \(1, 1\)$"):
        kcenter_greedy(X, 1, initial=[[0]])


# ------------------------------------------------------------------------------------------ uncertainty


def test_uncertainty_margin_and_entropy_disagree_on_the_spec_example():
    P = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    assert uncertainty(P, 2, method="margin").tolist() == [0, 1]             # margin 0 < 0.1
    assert uncertainty(P, 2, method="entropy").tolist() == [1, 0]            # 1.09 > log 2
    assert uncertainty(P, 2, method="least_confidence").tolist() == [1, 0]   # 1 - 0.4 > 1 - 0.5
    assert uncertainty(P, 1).tolist() == [0]                                 # margin is the default


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 33))
def test_binary_inputs_rank_alike_under_all_three(data, n):
    # p = k / 64 (exact, as is 1 - p) with distinct |p - 1/2|, and the columns in either order
    k = data.draw(st.lists(st.integers(0, 32), min_size=n, max_size=n, unique=True))
    p = np.array(k) / 64.0
    flip = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    p = np.where(flip, 1.0 - p, p)
    P = np.column_stack([p, 1.0 - p])
    ranks = [uncertainty(P, n, method=m).tolist() for m in METHODS]
    assert ranks[0] == ranks[1] == ranks[2]
    assert ranks[0] == np.argsort(np.abs(p - 0.5), kind="stable").tolist()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 6), seed=st.integers(0, 2**16), method=st.sampled_from(METHODS),
       zeros=st.booleans())
def test_uncertainty_equals_the_row_loop(n, c, seed, method, zeros):
    rng = np.random.default_rng(seed)
    W = rng.exponential(size=(n, c))
    if zeros:
        W[rng.random((n, c)) < 0.3] = 0.0
        W[W.sum(axis=1) == 0, 0] = 1.0
    P = W / W.sum(axis=1, keepdims=True)
    got = uncertainty(P, n, method=method)
    np.testing.assert_array_equal(got, uncertainty_naive(P, n, method=method))
    # invariant to the order of the classes; the top of the ranking is the prefix
    np.testing.assert_array_equal(uncertainty(P[:, rng.permutation(c)], n, method=method), got)
    np.testing.assert_array_equal(uncertainty(P, max(1, n // 2), method=method), got[: max(1, n // 2)])


def test_uncertainty_ties_go_to_the_lower_index_and_zero_log_zero():
    P = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.9, 0.0, 0.1], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    for m in METHODS:
        assert uncertainty(P, 5, method=m).tolist() == [1, 3, 0, 2, 4]
    assert uncertainty(np.ones((3, 1)), 3).tolist() == [0, 1, 2]
    assert uncertainty(np.array([[0.5, 0.5, 0.0]]), 1, method="entropy").tolist() == [0]


def test_uncertainty_validation():
    with pytest.raises(ValueError, match=r"^probs must be 2-D with rows summing to 1; got shape \(2,\), "
                                         r"max \|row sum - 1\| = nan$"):
        uncertainty(np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match=r"^probs must be 2-D with rows summing to 1; got shape \(2, 2\), "
                                         r"max \|row sum - 1\| = 0.2$"):
        uncertainty(np.array([[0.5, 0.5], [0.6, 0.6]]), 1)
    with pytest.raises(ValueError, match=r"^probs must be 2-D with rows summing to 1; got shape \(0, 3\)"):
        uncertainty(np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match=r"^probs must be 2-D with rows summing to 1; got shape \(1, 2\), "
                                         r"max \|row sum - 1\| = nan$"):
        uncertainty(np.array([[np.nan, 0.5]]), 1)
    with pytest.raises(ValueError, match=r"^probs must be probabilities in \[0, 1\]; got -0.5$"):
        uncertainty(np.array([[1.5, -0.5]]), 1)
    with pytest.raises(TypeError, match=r"^probs must be an array-like of numbers; got str$"):
        uncertainty("probs", 1)
    with pytest.raises(ValueError, match=r"^budget must be an integer in \[1, 2\]; got 3$"):
        uncertainty(np.full((2, 2), 0.5), 3)
    with pytest.raises(ValueError, match=r"^method must be 'margin', 'entropy' or 'least_confidence'; "
                                         r"got 'random'$"):
        uncertainty(np.full((2, 2), 0.5), 1, method="random")
    with pytest.raises(TypeError, match=r"^method must be 'margin', 'entropy' or 'least_confidence'; got int 1$"):
        uncertainty(np.full((2, 2), 0.5), 1, method=1)


def test_lightweight_coreset_is_unbiased_and_checked():
    from teraml.selection.baselines import lightweight_coreset

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1, 5, 0.2]
    loss = np.abs(X[:, 1]) + 0.1
    est = np.array([lightweight_coreset(X, 40, random_state=r).estimate_mean(
        loss[lightweight_coreset(X, 40, random_state=r).indices])[0] for r in range(3000)])
    assert abs(est.mean() - loss.mean()) <= 4 * est.std(ddof=1) / np.sqrt(est.size)
    s = lightweight_coreset(X, 40, random_state=1)
    assert s.counts.sum() == 40 and np.all(s.probabilities >= 0.5 / 300)
    with pytest.raises(ValueError, match="budget must be an integer >= 1; got 0"):
        lightweight_coreset(X, 0)
