"""make_lookalike_regression: the clustered-sensitive-features regression model of the look-alike theory."""

import re

import numpy as np
import pytest

from teraml import datasets as ds


def test_shapes_dtypes_and_sensitive_columns_first():
    X, y, info = ds.make_lookalike_regression(300, 40, frac_sensitive=0.25, n_clusters=3, random_state=0)
    assert X.shape == (300, 40) and y.shape == (300,) and X.dtype == y.dtype == np.float64
    assert info["sensitive"].tolist() == list(range(10)) and info["sensitive"].dtype == np.int64
    assert info["labels"].shape == (300,) and info["labels"].dtype == np.int64
    assert set(info["labels"].tolist()) == {0, 1, 2}
    assert info["coef"].shape == (40,) and info["centers"].shape == (3, 10)
    # S = centre of the row's cluster + N(0, I); N is N(0, I) without cluster structure
    z = X[:, :10] - info["centers"][info["labels"]]
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)
    xn = X[:, 10:]
    assert abs(xn.mean()) < 0.05 and xn.std() == pytest.approx(1.0, abs=0.05)
    group_means = np.array([xn[info["labels"] == c].mean() for c in range(3)])
    assert np.abs(group_means).max() < 0.1
    assert sorted(info) == ["beta", "centers", "coef", "labels", "population_risk", "r", "sensitive", "w"]


def test_defaults_and_load():
    X, y, info = ds.make_lookalike_regression(random_state=1)
    assert X.shape == (400, 400) and info["sensitive"].size == 200 and info["centers"].shape == (4, 200)
    X2, y2, info2 = ds.load("lookalike_regression", random_state=1)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert "lookalike_regression" in ds.available() and "make_lookalike_regression" in ds.__all__


def test_determinism():
    a = ds.make_lookalike_regression(100, 20, random_state=7)
    b = ds.make_lookalike_regression(100, 20, random_state=np.random.default_rng(7))
    for u, v in zip(a[:2], b[:2], strict=True):
        np.testing.assert_array_equal(u, v)
    for key in ("labels", "coef", "centers"):
        np.testing.assert_array_equal(a[2][key], b[2][key])
    assert not np.array_equal(ds.make_lookalike_regression(100, 20, random_state=8)[0], a[0])


@pytest.mark.parametrize("d, f, d_s", [(10, 0.01, 1), (10, 0.99, 9), (2, 0.5, 1), (2, 0.9, 1), (7, 0.5, 4),
                                       (400, 0.5, 200), (3, 0.5, 2)])
def test_sensitive_count_is_rounded_and_clamped(d, f, d_s):
    X, _, info = ds.make_lookalike_regression(20, d, frac_sensitive=f, random_state=0)
    assert info["sensitive"].tolist() == list(range(d_s)) and info["centers"].shape == (4, d_s)
    assert X.shape == (20, d)


def test_realized_signals_and_population_risk():
    X, y, info = ds.make_lookalike_regression(500, 60, frac_sensitive=0.5, within_signal=0.7,
                                              nonsensitive_signal=1.3, noise=0.4, center_scale=2.0,
                                              random_state=3)
    coef, mu = info["coef"], info["centers"]
    assert info["w"] == pytest.approx(coef[:30] @ coef[:30], rel=1e-12)
    assert info["r"] == pytest.approx(coef[30:] @ coef[30:], rel=1e-12)
    assert info["beta"] == pytest.approx(np.mean((mu @ coef[:30]) ** 2), rel=1e-12)
    risk = info["population_risk"]
    assert risk(coef) == pytest.approx(0.4, abs=1e-12)                       # the noise variance
    assert risk(np.zeros(60)) == pytest.approx(0.4 + info["beta"] + info["w"] + info["r"], rel=1e-12)
    # noise is a variance: the residual of the true coefficients
    assert np.var(y - X @ coef) == pytest.approx(0.4, rel=0.15)
    # exact risk vs Monte Carlo on fresh raw test points of the same model
    rng = np.random.default_rng(0)
    coef_hat = coef + rng.normal(0, 0.2, 60)
    m = 200_000
    c = rng.integers(0, 4, m)
    Xt = np.column_stack([mu[c] + rng.standard_normal((m, 30)), rng.standard_normal((m, 30))])
    yt = Xt @ coef + np.sqrt(0.4) * rng.standard_normal(m)
    assert np.mean((yt - Xt @ coef_hat) ** 2) == pytest.approx(risk(coef_hat), rel=0.02)
    with pytest.raises(ValueError, match="coef_hat must have 60 entries; got 3"):
        risk(np.zeros(3))


def test_signal_scales_in_expectation():
    draws = [ds.make_lookalike_regression(5, 100, frac_sensitive=0.3, within_signal=2.0, nonsensitive_signal=0.5,
                                          center_scale=1.5, random_state=s)[2] for s in range(300)]
    assert np.mean([i["w"] for i in draws]) == pytest.approx(2.0, rel=0.05)
    assert np.mean([i["r"] for i in draws]) == pytest.approx(0.5, rel=0.05)
    # E beta = center_scale^2 * within_signal
    assert np.mean([i["beta"] for i in draws]) == pytest.approx(1.5**2 * 2.0, rel=0.15)
    assert ds.make_lookalike_regression(5, 10, center_scale=0.0, random_state=0)[2]["beta"] == 0.0


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(n_samples=0), ValueError, "n_samples must be an int >= 1; got 0"),
    (dict(n_samples=2.5), TypeError, "n_samples must be an int >= 1; got float 2.5"),
    (dict(n_features=1), ValueError, "n_features must be an int >= 2; got 1"),
    (dict(frac_sensitive=0.0), ValueError, "frac_sensitive must be a float in (0, 1); got 0.0"),
    (dict(frac_sensitive=1.0), ValueError, "frac_sensitive must be a float in (0, 1); got 1.0"),
    (dict(n_clusters=0), ValueError, "n_clusters must be an int >= 1; got 0"),
    (dict(within_signal=-1.0), ValueError, "within_signal must be a float >= 0; got -1.0"),
    (dict(nonsensitive_signal=float("inf")), ValueError, "nonsensitive_signal must be a float >= 0; got inf"),
    (dict(noise=-0.5), ValueError, "noise must be a float >= 0; got -0.5"),
    (dict(center_scale="big"), TypeError, "center_scale must be a float >= 0; got str 'big'"),
    (dict(random_state=-1), ValueError,
     "random_state must be None, an int >= 0 or a numpy.random.Generator; got -1"),
])
def test_validation(kwargs, exc, message):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        ds.make_lookalike_regression(**{"n_samples": 10, "n_features": 4, **kwargs})
