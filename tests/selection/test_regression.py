"""leverage_scores (against the hat matrix) and SubsampledLinearRegression (samplers, intercept, E3 sanity)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression

from teraml.datasets import make_leverage_regression
from teraml.selection._reference import leverage_scores_naive
from teraml.selection.regression import SubsampledLinearRegression, leverage_scores


@pytest.fixture(scope="module")
def e3():
    """E3's data (n = 2e4, d = 10) and the full least-squares loss with an intercept."""
    A, b, _ = make_leverage_regression(random_state=0)
    Z = np.column_stack([A, np.ones(A.shape[0])])
    theta = np.linalg.lstsq(Z, b, rcond=None)[0]
    r = Z @ theta - b
    return A, b, float(r @ r)


def excess(A, b, opt, coef, intercept):
    """loss / OPT - 1 on the full data."""
    r = A @ coef + intercept - b
    return float(r @ r) / opt - 1.0


# ------------------------------------------------------------------------------------------ leverage scores


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_exact_leverage_equals_the_hat_matrix(n, d, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, size=d)
    h = leverage_scores(A)
    assert h.shape == (n,) and h.dtype == np.float64
    np.testing.assert_allclose(h, leverage_scores_naive(A), rtol=0, atol=1e-10)
    assert h.sum() == pytest.approx(np.linalg.matrix_rank(A), abs=1e-10)
    if n > d:
        np.testing.assert_allclose(h, np.diag(A @ np.linalg.inv(A.T @ A) @ A.T), rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", ["dependent_column", "zero_column", "wide", "repeated_rows", "zero"])
def test_exact_leverage_of_rank_deficient_matrices(case):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 5))
    if case == "dependent_column":
        A[:, 3] = 2 * A[:, 0] - A[:, 1]
    elif case == "zero_column":
        A[:, 2] = 0.0
    elif case == "wide":
        A = rng.standard_normal((4, 9))
    elif case == "repeated_rows":
        A = np.repeat(rng.standard_normal((3, 5)), 10, axis=0)
    else:
        A = np.zeros((6, 3))
    h = leverage_scores(A)
    rank = np.linalg.matrix_rank(A)
    assert h.sum() == pytest.approx(rank, abs=1e-10)
    np.testing.assert_allclose(h, leverage_scores_naive(A), rtol=0, atol=1e-10)
    assert np.all(h >= -1e-12) and np.all(h <= 1 + 1e-12)
    if case != "zero":
        np.testing.assert_allclose(leverage_scores(A, method="sketch", random_state=0).sum(), rank, rtol=0.5)


def test_sketched_leverage_ranks_like_the_exact_one_on_e3(e3):
    A, b, _ = e3
    U = np.column_stack([A - A.mean(axis=0), b - b.mean()])
    exact = leverage_scores(U)
    sketch = leverage_scores(U, method="sketch", random_state=0)
    assert spearmanr(exact, sketch).statistic >= 0.9
    assert np.abs(sketch / exact - 1).max() < 1.0       # a constant-factor approximation, row by row
    np.testing.assert_array_equal(sketch, leverage_scores(U, method="sketch", random_state=0))
    small = leverage_scores(U, method="sketch", sketch_size=200, random_state=1)
    assert spearmanr(exact, small).statistic >= 0.8


def test_sketched_leverage_with_the_gaussian_projection():
    # d = 80 > ceil(8 ln 3000) = 65: the Gaussian projection is applied (unbiased per row, given R)
    A, _, _ = make_leverage_regression(3000, 80, random_state=1)
    exact = leverage_scores(A)
    runs = np.array([leverage_scores(A, method="sketch", random_state=s) for s in range(3)])
    assert spearmanr(exact, runs[0]).statistic >= 0.9
    assert runs.mean(axis=0).sum() == pytest.approx(80, rel=0.3)


def test_leverage_validation():
    with pytest.raises(ValueError, match=r"^method must be 'exact' or 'sketch'; got 'qr'$"):
        leverage_scores(np.eye(3), method="qr")
    with pytest.raises(ValueError, match=r"^A must be 2-D with at least 1 row and 1 column; got shape \(3,\)$"):
        leverage_scores(np.ones(3))
    with pytest.raises(ValueError, match=r"^A must be 2-D with at least 1 row and 1 column; got shape \(0, 2\)$"):
        leverage_scores(np.ones((0, 2)))
    with pytest.raises(ValueError, match=r"^A must contain only finite values; got NaN or inf$"):
        leverage_scores(np.array([[1.0], [np.inf]]))
    with pytest.raises(TypeError, match=r"^A must be an array-like of numbers; got str$"):
        leverage_scores("A")
    with pytest.raises(ValueError, match=r"^sketch_size must be None or an int >= 1; got 0$"):
        leverage_scores(np.eye(3), method="sketch", sketch_size=0)
    with pytest.raises(ValueError, match=r"^random_state must be None, an int >= 0 or a numpy.random.Generator"):
        leverage_scores(np.eye(3), method="sketch", random_state=-2)


# ------------------------------------------------------------------------------------------ regression


SAMPLERS = [{}, {"sensitivity_score": "loss"}, {"sampler": "leverage"}, {"sampler": "uniform"}]


@pytest.mark.parametrize("kw", SAMPLERS, ids=repr)
def test_every_sampler_recovers_a_noiseless_model(kw):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 4)) * [1, 2, 3, 4]
    y = X @ [1.0, -2.0, 0.5, 3.0] - 7.0
    est = SubsampledLinearRegression(120, random_state=0, **kw).fit(X, y)
    np.testing.assert_allclose(est.coef_, [1.0, -2.0, 0.5, 3.0], atol=1e-9)
    assert est.intercept_ == pytest.approx(-7.0, abs=1e-9)
    np.testing.assert_allclose(est.predict(X[:5]), y[:5], atol=1e-8)
    assert est.n_features_in_ == 4
    sel = est.selection_
    assert sel.n_total == 3000 and np.all(np.diff(sel.indices) > 0) and np.all(sel.weights > 0)
    drawn = sel.role == "sample"
    m = 120 - (np.sum(sel.role == "representative") if kw.get("sensitivity_score") == "loss" else 0)
    assert sel.counts[drawn].sum() == m


def test_selection_weights_per_sampler():
    A, b, _ = make_leverage_regression(2000, 3, random_state=2)
    uni = SubsampledLinearRegression(100, sampler="uniform", random_state=0).fit(A, b).selection_
    assert len(uni) == 100 and np.all(uni.weights == 20.0)
    lev = SubsampledLinearRegression(100, sampler="leverage", random_state=0).fit(A, b).selection_
    h = leverage_scores(np.column_stack([A - A.mean(axis=0), b - b.mean()]))
    np.testing.assert_allclose(lev.probabilities, h[lev.indices] / h.sum(), rtol=1e-12)
    np.testing.assert_allclose(lev.weights, lev.counts / (100 * lev.probabilities), rtol=1e-12)
    loss = SubsampledLinearRegression(100, sensitivity_score="loss", random_state=0).fit(A, b).selection_
    reps = loss.role == "representative"
    assert reps.sum() == 10 and np.all(loss.weights[reps] == 1.0) and loss.n_loss_queries == 10
    assert np.all(np.isfinite(loss.losses[reps]))


def test_all_rows_and_no_intercept():
    A, b, _ = make_leverage_regression(300, 3, random_state=3)
    for kw in ({}, {"sampler": "leverage"}, {"sensitivity_score": "loss"}):
        full = SubsampledLinearRegression(300, **kw).fit(A, b)        # n_samples >= n: every row, weight 1
        ols = LinearRegression().fit(A, b)
        np.testing.assert_allclose(full.coef_, ols.coef_, rtol=1e-9)
        assert full.intercept_ == pytest.approx(ols.intercept_, rel=1e-9)
        assert len(full.selection_) == 300 and np.all(full.selection_.weights == 1.0)
    no = SubsampledLinearRegression(10**6, fit_intercept=False).fit(A, b)
    np.testing.assert_allclose(no.coef_, LinearRegression(fit_intercept=False).fit(A, b).coef_, rtol=1e-9)
    assert no.intercept_ == 0.0


def test_a_fixed_seed_reproduces_the_fit():
    A, b, _ = make_leverage_regression(2000, 3, random_state=4)
    for kw in SAMPLERS:
        a = SubsampledLinearRegression(80, random_state=7, **kw).fit(A, b)
        c = SubsampledLinearRegression(80, random_state=7, **kw).fit(A, b)
        np.testing.assert_array_equal(a.coef_, c.coef_)
        np.testing.assert_array_equal(a.selection_.indices, c.selection_.indices)


def test_e3_sensitivity_beats_uniform_and_nears_leverage(e3):
    # E3 at m = 300, 7 seeds: median loss / OPT - 1 (the benchmark runs 60 repetitions and 3 data seeds)
    A, b, opt = e3
    med = {}
    for name, kw in zip(("sensitivity", "loss", "leverage", "uniform"), SAMPLERS):
        fits = [SubsampledLinearRegression(300, random_state=s, **kw).fit(A, b) for s in range(7)]
        med[name] = float(np.median([excess(A, b, opt, f.coef_, f.intercept_) for f in fits]))
    # measured: sensitivity 0.0054, loss 0.0080, leverage 0.0045, uniform 0.099
    assert med["sensitivity"] <= 0.25 * med["uniform"]
    assert med["loss"] <= 0.25 * med["uniform"]
    assert med["sensitivity"] <= 3.5 * med["leverage"]


def test_intercept_from_full_data_means_beats_fitting_it_on_the_sample(e3):
    A, b, opt = e3
    centred, on_sample = [], []
    for s in range(7):
        est = SubsampledLinearRegression(300, random_state=s).fit(A, b)
        centred.append(excess(A, b, opt, est.coef_, est.intercept_))
        sel = est.selection_
        Z = np.column_stack([A[sel.indices], np.ones(len(sel))]) * np.sqrt(sel.weights)[:, None]
        theta = np.linalg.lstsq(Z, b[sel.indices] * np.sqrt(sel.weights), rcond=None)[0]
        on_sample.append(excess(A, b, opt, theta[:-1], theta[-1]))
    # measured medians: 0.0054 centred against 0.022 on the sample
    assert np.median(centred) < 0.5 * np.median(on_sample)


def test_regression_validation():
    X, y = np.random.default_rng(0).standard_normal((50, 2)), np.zeros(50)
    cases = [
        ({"n_samples": 0}, ValueError, r"^n_samples must be an int >= 1; got 0$"),
        ({"n_samples": 2.5}, TypeError, r"^n_samples must be an int >= 1; got float 2.5$"),
        ({"sampler": "random"}, ValueError,
         r"^sampler must be 'sensitivity', 'leverage' or 'uniform'; got 'random'$"),
        ({"sensitivity_score": "l2"}, ValueError, r"^sensitivity_score must be 'loss' or 'kmeans'; got 'l2'$"),
        ({"n_clusters": 0}, ValueError, r"^n_clusters must be None or an int >= 1; got 0$"),
        ({"fit_intercept": 1}, TypeError, r"^fit_intercept must be a bool; got int 1$"),
        ({"random_state": -1}, ValueError, r"^random_state must be None, an int >= 0 or a numpy"),
        ({"sensitivity_score": "loss", "n_clusters": 10}, ValueError,
         r"^n_samples must be >= n_clusters \+ 1 = 11 for sensitivity_score='loss'; got 10$"),
    ]
    for kw, exc, msg in cases:
        params = {"n_samples": 10, **kw}
        with pytest.raises(exc, match=msg):
            SubsampledLinearRegression(**params).fit(X, y)
    with pytest.raises(ValueError, match=r"n_clusters must be an integer in \[1, 50\]; got 60"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SubsampledLinearRegression(20, n_clusters=60).fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        SubsampledLinearRegression(10).fit(np.full((5, 2), np.nan), np.zeros(5))
    with pytest.raises(NotFittedError):
        SubsampledLinearRegression(10).predict(X)


def test_leverage_matches_statsmodels_hat_matrix_diagonal():
    sm = pytest.importorskip("statsmodels.api")
    from statsmodels.stats.outliers_influence import OLSInfluence

    A, b, _ = make_leverage_regression(3000, 6, random_state=2)
    Ac = sm.add_constant(A)
    hat = OLSInfluence(sm.OLS(b, Ac).fit()).hat_matrix_diag
    np.testing.assert_allclose(leverage_scores(Ac), hat, rtol=1e-8, atol=1e-12)
