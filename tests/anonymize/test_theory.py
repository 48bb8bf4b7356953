"""lookalike_risk: the Marchenko-Pastur pieces, fixed values, peaks, validation, and theory vs simulation (E1/E2)."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from teraml.anonymize import lookalike_risk
from teraml.anonymize._grouping import group_means
from teraml.anonymize._simulation import RCOND, least_squares, simulate_risk
from teraml.anonymize._theory import (
    _excess_risk,
    _excess_risk_anisotropic,
    _mp_m,
    _mp_mprime,
    lookalike_risk_loop,
)
from teraml.datasets import make_lookalike_regression


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small dense solves: one BLAS thread is fastest and stable on a loaded 2-core machine."""
    with threadpool_limits(1):
        yield

# ------------------------------------------------------------------------------------------ MP pieces


@pytest.mark.parametrize("g", [0.3, 0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("lam", [0.01, 0.1, 1.0, 5.0])
def test_mprime_is_minus_the_derivative_of_m(g, lam):
    h = 1e-5 * lam
    fd = (_mp_m(g, lam - h) - _mp_m(g, lam + h)) / (2 * h)
    assert float(_mp_mprime(g, lam)) == pytest.approx(float(fd), rel=1e-6)


def test_m_solves_the_mp_equation_and_known_limits():
    g = np.array([0.2, 0.5, 0.99, 1.0, 1.5, 3.0])
    for lam in (1e-6, 0.05, 1.0, 30.0):
        m = _mp_m(g, lam)
        np.testing.assert_allclose(g * lam * m**2 + (1 - g + lam) * m, 1.0, rtol=1e-9)
    np.testing.assert_allclose(_mp_m(g[:3], 0.0), 1 / (1 - g[:3]))             # int 1/s dMP
    np.testing.assert_allclose(_mp_mprime(g[:3], 0.0), 1 / (1 - g[:3]) ** 3)     # int 1/s^2 dMP


@pytest.mark.parametrize("g", [0.5, 2.0])
@pytest.mark.parametrize("lam", [0.0, 0.01, 0.1, 1.0])
def test_anisotropic_with_unit_eigenvalues_matches_the_formula(g, lam):
    n = 1000
    d = int(g * n)
    got = _excess_risk_anisotropic(np.ones(d), np.full(d, 1.3 / d), n, lam, 0.7)
    assert got == pytest.approx(float(_excess_risk(g, lam, 1.3, 0.7)), abs=1e-6)


def test_anisotropic_scaling_zero_eigenvalues_and_peak():
    rng = np.random.default_rng(0)
    e = rng.uniform(0.2, 3.0, 300)
    t = rng.uniform(0, 1, 300) / 100
    for lam in (0.0, 0.05):
        base = _excess_risk_anisotropic(e, t, 200, lam, 0.5)
        # Sigma -> c Sigma, theta -> theta / sqrt(c), lam -> c lam predicts the same
        assert _excess_risk_anisotropic(4 * e, t / 4, 200, 4 * lam, 0.5) == pytest.approx(base, rel=1e-9)
        # directions of zero variance change nothing
        padded = _excess_risk_anisotropic(np.r_[e, np.zeros(50)], np.r_[t, np.ones(50)], 200, lam, 0.5)
        assert padded == pytest.approx(base, rel=1e-12)
    with pytest.warns(RuntimeWarning, match="min-norm peak"):
        assert _excess_risk_anisotropic(e[:200], t[:200], 200, 0.0, 0.5) == np.inf


def test_anisotropic_matches_a_ridge_simulation():
    """Two eigenvalue levels: the recipe against 30 ridge fits at n = 400, d = 300."""
    n, d, lam, s2 = 400, 300, 0.1, 0.5
    e = np.where(np.arange(d) < d // 3, 4.0, 0.5)
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(d) / np.sqrt(d)
    risks = []
    for _ in range(30):
        X = rng.standard_normal((n, d)) * np.sqrt(e)
        y = X @ theta + np.sqrt(s2) * rng.standard_normal(n)
        delta = least_squares(X, y, lam) - theta
        risks.append(delta**2 @ e)
    assert np.mean(risks) == pytest.approx(_excess_risk_anisotropic(e, theta**2, n, lam, s2), rel=0.05)


# ------------------------------------------------------------------------------------------ fixed values

F = dict(frac_sensitive=0.5, nonsensitive_signal=1.0, noise=1.0)


@pytest.mark.parametrize("psi, full, look", [(0.5, 2.000, 2.667), (0.9, 10.000, 3.636), (1.5, 3.667, 8.000),
                                             (3.0, 2.833, 6.333)])
def test_fixed_values_min_norm_w1(psi, full, look):
    risk = lookalike_risk(psi, within_signal=1.0, **F)
    assert round(float(risk["full"]), 3) == full and round(float(risk["lookalike"]), 3) == look


def test_fixed_values_min_norm_w02_and_ridge():
    risk = lookalike_risk(0.5, within_signal=0.2, **F)
    assert round(float(risk["full"]), 3) == 2.000 and round(float(risk["lookalike"]), 3) == 1.600
    risk = lookalike_risk([0.5, 2.0], within_signal=0.2, lam=0.1, **F)
    assert risk["full"].round(3).tolist() == [1.610, 2.329]
    assert risk["lookalike"].round(3).tolist() == [1.509, 2.724]


@pytest.mark.parametrize("w, full, look", [(0.0, 1.618, 1.414), (1.0, 2.000, 2.562)])
def test_fixed_values_at_the_best_lambda(w, full, look):
    lams = np.logspace(-4, 2, 400)
    risks = [lookalike_risk(1.0, within_signal=w, lam=lam, **F) for lam in lams]
    assert round(min(float(r["full"]) for r in risks), 3) == full
    assert round(min(float(r["lookalike"]) for r in risks), 3) == look


def test_drop_formula_and_nan_without_between_signal():
    risk = lookalike_risk([0.5, 3.0], within_signal=0.2, between_signal=0.3, **F)
    # drop = ridge on x_ns with noise sigma^2 + w + beta
    s2 = 1.0 + 0.2 + 0.3
    np.testing.assert_allclose(risk["drop"], [s2 + s2 * 0.25 / 0.75, s2 + (1 - 1 / 1.5) + s2 / 0.5])
    assert np.isnan(lookalike_risk([0.5, 3.0])["drop"]).all()


def test_tiny_lambda_approaches_min_norm():
    psi = np.array([0.2, 0.5, 0.8, 0.9, 1.2, 1.5, 3.0, 6.0])
    kw = dict(frac_sensitive=0.5, within_signal=0.7, nonsensitive_signal=1.3, noise=0.8, between_signal=0.4)
    a, b = lookalike_risk(psi, lam=1e-8, **kw), lookalike_risk(psi, lam=0.0, **kw)
    for key in ("full", "lookalike", "drop"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-4)


def test_shapes_and_scalar_output():
    risk = lookalike_risk(0.5)
    assert all(isinstance(v, np.ndarray) and v.shape == () for v in risk.values())
    psi = np.linspace(0.1, 4.0, 12).reshape(3, 4)
    risk = lookalike_risk(psi, lam=0.2, between_signal=0.5)
    assert sorted(risk) == ["drop", "full", "lookalike"]
    assert all(v.shape == (3, 4) and v.dtype == np.float64 for v in risk.values())
    assert lookalike_risk(np.array([]))["full"].shape == (0,)


# ------------------------------------------------------------------------------------------ peaks


def test_min_norm_peaks_are_inf_with_one_warning():
    with pytest.warns(RuntimeWarning, match=r"infinite at psi = 1\b") as rec:
        risk = lookalike_risk(1.0)
    assert len(rec) == 1 and risk["full"] == np.inf and np.isfinite(risk["lookalike"])
    with pytest.warns(RuntimeWarning, match=r"psi = 1, 2") as rec:
        risk = lookalike_risk([0.5, 1.0, 2.0, 3.0], between_signal=0.5)
    assert len(rec) == 1
    assert np.isinf(risk["full"]).tolist() == [False, True, False, False]
    assert np.isinf(risk["lookalike"]).tolist() == [False, False, True, False]
    assert np.isinf(risk["drop"]).tolist() == [False, False, True, False]


def test_no_warning_with_ridge_or_without_noise():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        risk = lookalike_risk([1.0, 2.0], lam=0.01)
        assert np.isfinite(risk["full"]).all() and np.isfinite(risk["lookalike"]).all()
        # no noise term at all: the min-norm risk is the (finite) bias, 0 at g = 1
        risk = lookalike_risk([1.0, 2.0], within_signal=0.0, noise=0.0)
        assert risk["full"].tolist() == [0.0, 0.5] and risk["lookalike"].tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------------------ property


@settings(max_examples=300, deadline=None)
@given(psi=st.floats(0.01, 0.99), f=st.floats(0.02, 0.98), w=st.floats(0.0, 10.0), s2=st.floats(0.05, 10.0),
       r=st.floats(0.0, 5.0))
def test_lookalike_wins_iff_w_over_noise_below_psi_f_over_1_minus_psi(psi, f, w, s2, r):
    threshold = psi * f / (1 - psi)
    assume(abs(w / s2 - threshold) > 1e-6 * (1 + threshold))
    risk = lookalike_risk(psi, frac_sensitive=f, within_signal=w, nonsensitive_signal=r, noise=s2)
    assert (float(risk["lookalike"]) < float(risk["full"])) == (w / s2 < threshold)


# ------------------------------------------------------------------------------------------ loop reference


def test_loop_reference_equals_vectorized():
    rng = np.random.default_rng(3)
    for trial in range(12):
        shape = [(), (7,), (3, 5), (1, 2, 3)][trial % 4]
        psi = rng.uniform(0.05, 5.0, shape)
        kw = dict(frac_sensitive=rng.uniform(0.05, 0.95), within_signal=rng.uniform(0, 3),
                  nonsensitive_signal=rng.uniform(0, 3), noise=rng.uniform(0, 2),
                  lam=[0.0, 1e-3, 0.1, 2.0][trial % 4], between_signal=[None, 0.7][trial % 2])
        fast, slow = lookalike_risk(psi, **kw), lookalike_risk_loop(psi, **kw)
        for key in fast:
            assert fast[key].shape == slow[key].shape == np.shape(psi)
            np.testing.assert_allclose(fast[key], slow[key], rtol=1e-12)
    # peaks: same inf and the same single warning
    for fn in (lookalike_risk, lookalike_risk_loop):
        with pytest.warns(RuntimeWarning) as rec:
            out = fn([0.5, 1.0, 2.0], between_signal=0.2)
        assert len(rec) == 1 and np.isinf(out["full"][1]) and np.isinf(out["drop"][2])
    with pytest.raises(ValueError, match="^psi: "):
        lookalike_risk_loop(-1.0)


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(psi=0.0), ValueError, "psi: expected a finite float > 0 or an array of them, got 0.0"),
    (dict(psi=-1), ValueError, "psi: expected a finite float > 0 or an array of them, got -1"),
    (dict(psi=float("inf")), ValueError, "psi: expected a finite float > 0 or an array of them, got inf"),
    (dict(psi=[0.5, float("nan")]), ValueError,
     "psi: expected a finite float > 0 or an array of them, got nan at index 1"),
    (dict(psi=[[1.0, 2.0], [3.0, -2.0]]), ValueError,
     "psi: expected a finite float > 0 or an array of them, got -2.0 at index (1, 1)"),
    (dict(psi="1"), TypeError, "psi: expected a finite float > 0 or an array of them, got '1' (str)"),
    (dict(psi=True), TypeError, "psi: expected a finite float > 0 or an array of them, got True (bool)"),
    (dict(psi=None), TypeError, "psi: expected a finite float > 0 or an array of them, got None (NoneType)"),
    (dict(frac_sensitive=0.0), ValueError, "frac_sensitive: expected a float in (0, 1), got 0.0"),
    (dict(frac_sensitive=1), ValueError, "frac_sensitive: expected a float in (0, 1), got 1"),
    (dict(frac_sensitive="a"), TypeError, "frac_sensitive: expected a float in (0, 1), got 'a' (str)"),
    (dict(within_signal=-0.1), ValueError, "within_signal: expected a float >= 0, got -0.1"),
    (dict(nonsensitive_signal=-1.0), ValueError, "nonsensitive_signal: expected a float >= 0, got -1.0"),
    (dict(noise=float("nan")), ValueError, "noise: expected a float >= 0, got nan"),
    (dict(lam=-1e-3), ValueError, "lam: expected 0 or a float in [1e-30, 1e+100], got -0.001"),
    (dict(lam=None), TypeError, "lam: expected 0 or a float in [1e-30, 1e+100], got None (NoneType)"),
    # beyond these float64 cannot hold the closed form (m ~ lam^-1/2 at the peak): an error, not a NaN
    (dict(lam=1e-40), ValueError, "lam: expected 0 or a float in [1e-30, 1e+100], got 1e-40"),
    (dict(lam=1e101), ValueError, "lam: expected 0 or a float in [1e-30, 1e+100], got 1e+101"),
    (dict(between_signal=-2.0), ValueError, "between_signal: expected None or a float >= 0, got -2.0"),
])
def test_validation_messages(kwargs, exc, message):
    kwargs = {"psi": 0.5, **kwargs}
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        lookalike_risk(**kwargs)


# ------------------------------------------------------------------------------------------ pitfall 15


def test_min_norm_needs_a_relative_cutoff_on_a_lookalike_release():
    """The release's sensitive block has exact rank J; numpy's default pinv cut-off keeps its ~1e-17
    null singular values and the fit explodes, the relative 1e-10 cut-off gives the theory's risk."""
    blown = []
    for seed in range(3):
        X, y, info = make_lookalike_regression(300, 150, random_state=seed)
        d_s = info["sensitive"].size
        X_look = X.copy()
        means, _ = group_means(X[:, :d_s], info["labels"], int(info["labels"].max()) + 1)
        X_look[:, :d_s] = means[info["labels"]]
        assert np.linalg.matrix_rank(X_look[:, :d_s]) <= 4
        good = info["population_risk"](least_squares(X_look, y))
        theory = float(lookalike_risk(0.5, within_signal=info["w"], nonsensitive_signal=info["r"])["lookalike"])
        assert good == pytest.approx(theory, rel=0.2)
        assert info["population_risk"](np.linalg.pinv(X_look, rcond=RCOND) @ y) == pytest.approx(good, rel=1e-6)
        blown.append(info["population_risk"](np.linalg.pinv(X_look) @ y) / good)
    assert max(blown) > 1e6, blown


# ------------------------------------------------------------------------------------------ simulation: E1 / E2


def _sim(psi, w, lam, reps, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # theory at a min-norm peak, skipped below
        return simulate_risk(psi, n=400, frac_sensitive=0.5, n_clusters=4, within_signal=w,
                             nonsensitive_signal=1.0, noise=1.0, lam=lam, repetitions=reps, **kw)


def _rel_errors(out, lam):
    errs = []
    for design, peak in (("full", 1.0), ("look", 2.0), ("drop", 2.0)):
        for i, psi in enumerate(out["psi"]):
            if lam == 0 and abs(psi - peak) <= 0.15:
                continue
            theory = out[f"theory_{design}"][i]
            errs.append(abs(out[f"sim_{design}"][i] - theory) / theory)
    return np.array(errs)


@pytest.fixture(scope="module")
def sims():
    return {
        (1.0, 0.0): _sim([0.5, 0.8, 0.9, 3.0], 1.0, 0.0, 5),
        (1.0, 0.1): _sim([0.5, 0.9, 3.0], 1.0, 0.1, 5),
        (0.2, 0.1): _sim([0.8, 0.9, 1.0], 0.2, 0.1, 5),
    }


def test_e1_theory_matches_simulation_ci_subset(sims):
    errs = []
    for lam in (0.0, 0.1):
        out = sims[(1.0, lam)]
        keep = np.isin(out["psi"], [0.5, 0.9, 3.0])
        errs.append(_rel_errors({k: (v[keep] if v.ndim == 1 else v) for k, v in out.items()}, lam))
    errs = np.concatenate(errs)
    assert errs.size == 17                              # 18 points, min-norm full at psi = 0.9 skipped
    assert np.median(errs) <= 0.05 and errs.max() <= 0.15, errs


def test_e2_lookalike_over_full_ratios(sims):
    out = sims[(1.0, 0.0)]
    ratio = dict(zip(out["psi"].tolist(), (out["sim_look"] / out["sim_full"]).tolist(), strict=True))
    assert ratio[0.9] <= 0.5 and ratio[0.8] <= 0.8, ratio
    assert ratio[0.5] >= 1.15 and ratio[3.0] >= 1.5, ratio
    out = sims[(0.2, 0.1)]
    assert np.all(out["sim_look"] / out["sim_full"] <= 0.9), out["sim_look"] / out["sim_full"]


def test_simulation_result_layout_and_determinism(sims):
    out = sims[(1.0, 0.1)]
    assert out["psi"].tolist() == [0.5, 0.9, 3.0] and out["n_features"].tolist() == [200, 360, 1200]
    for key in ("sim_full", "sim_look", "sim_drop", "theory_full", "theory_look", "theory_drop"):
        assert out[key].shape == (3,) and out[key + "_reps"].shape == (3, 5)
        np.testing.assert_allclose(out[key], out[key + "_reps"].mean(axis=1))
    assert (out["n_groups_reps"] == 4).all()
    again = _sim([3.0, 0.5], 1.0, 0.1, 2)                 # same psi, same draws whatever the grid
    np.testing.assert_allclose(again["sim_look_reps"], out["sim_look_reps"][[2, 0], :2], rtol=1e-10)


def test_simulation_with_a_grouping_function():
    from sklearn.cluster import KMeans

    def kmeans(X_s, rng):
        return KMeans(4, n_init=10, random_state=int(rng.integers(2**31))).fit_predict(X_s)

    oracle = _sim([0.5, 3.0], 1.0, 0.0, 2)
    km = _sim([0.5, 3.0], 1.0, 0.0, 2, grouping=kmeans)
    np.testing.assert_allclose(km["sim_look"], oracle["sim_look"], rtol=0.05)
    np.testing.assert_allclose(km["sim_full"], oracle["sim_full"], rtol=1e-12)
    with pytest.raises(ValueError, match=r"^grouping: expected one label per row"):
        simulate_risk(0.5, n=50, repetitions=1, grouping=lambda X_s, rng: np.zeros(3))
    with pytest.raises(ValueError, match=r"^grouping: expected 'oracle' or a callable"):
        simulate_risk(0.5, n=50, repetitions=1, grouping="kmeans")


@pytest.mark.slow
def test_e1_full_grid():
    grid = [0.5, 0.8, 0.9, 1.2, 1.5, 3.0]
    errs = np.concatenate([_rel_errors(_sim(grid, w, lam, 10), lam) for w in (1.0, 0.2) for lam in (0.0, 0.1)])
    assert errs.size == 4 * 18 - 2
    assert np.median(errs) <= 0.05 and errs.max() <= 0.15, errs


@pytest.mark.slow
def test_e1_kmeans_labels_close_to_oracle():
    from sklearn.cluster import KMeans

    def kmeans(X_s, rng):
        return KMeans(4, n_init=10, random_state=int(rng.integers(2**31))).fit_predict(X_s)

    grid = [0.5, 0.8, 1.2, 3.0]
    oracle, km = _sim(grid, 1.0, 0.0, 10), _sim(grid, 1.0, 0.0, 10, grouping=kmeans)
    assert np.all(np.abs(km["sim_look"] / oracle["sim_look"] - 1) <= 0.05)
