"""Asymptotic test risk of least squares trained on full, look-alike and sensitive-dropped data.

The model (proportional regime, ``n, d -> inf`` with ``psi = d / n`` fixed):

* the sensitive block is ``x_s = mu_c + z`` with ``c`` uniform over a fixed number ``J`` of
  clusters, ``z ~ N(0, I)`` and ``||mu_l||^2`` proportional to ``d_s``; the other block is
  ``x_ns ~ N(0, I)``, independent;
* ``y = <x, theta> + eps`` with ``eps ~ N(0, sigma^2)``;
* ``w = ||theta_s||^2``, ``r = ||theta_ns||^2``, ``beta = (1/J) sum_l <mu_l, theta_s>^2``;
* ridge minimizes ``(1/n) ||y - X theta||^2 + lam ||theta||^2`` (``lam -> 0`` is min-norm least
  squares); the risk is ``E (y - <x, theta_hat>)^2`` at a fresh raw test point.

With ``f = d_s / d``, ``gamma = psi (1 - f)`` and the Marchenko-Pastur excess risk ``E(g, lam; r2, s2)``
of isotropic ridge with ``d / n = g``, signal ``r2`` and noise ``s2``:

* ``R_full = sigma^2 + E(psi, lam; w + r, sigma^2)``;
* ``R_look = sigma^2 + w + E(gamma, lam; r, sigma^2 + w)``;
* ``R_drop = sigma^2 + w + beta + E(gamma, lam; r, sigma^2 + w + beta)``.

The look-alike release replaces the sensitive block by its cluster means: its ``J`` cluster effects cost
an ``O(1/d)`` penalty and are fitted for free, while ``<z, theta_s>`` turns into noise, so the release is
ridge on ``x_ns`` with noise ``sigma^2 + w``. These formulas are teraml's own derivation, validated by
simulation; they assume a fixed ``J`` (a grouping with ``J`` proportional to ``n``, as MDAV with a fixed
``k``, is only approximately covered).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import brentq

from teraml._validation import (
    Interval,
    Options,
    check_array,
    check_param,
    describe,
    is_real,
    param_error,
    type_name,
)

__all__ = ["lookalike_risk"]

#: ``|g - 1|`` below this counts as the min-norm interpolation peak.
_PEAK_TOL = 1e-12

_NONNEG = [Interval("float", 0)]
_PSI_TEXT = "a finite float > 0 or an array of them"


# ------------------------------------------------------------------------------------------ Marchenko-Pastur


def _mp_m(g, lam):
    """Stieltjes transform ``m = int 1 / (s + lam) dMP_g(s)`` of the Marchenko-Pastur law of ratio ``g``.

    ``m = [-(1 - g + lam) + sqrt((1 - g + lam)^2 + 4 g lam)] / (2 g lam)``, evaluated in the rationalized
    form ``2 / (a + sqrt(a^2 + 4 g lam))`` when ``a = 1 - g + lam > 0`` (no cancellation; this also gives
    ``1 / (1 - g)`` at ``lam = 0``, ``g < 1``). ``inf`` where the law has an atom at 0 and ``lam = 0``.
    Vectorized over ``g`` and ``lam``.

    >>> float(_mp_m(0.5, 0.0)), round(float(_mp_m(2.0, 1.0)), 6)
    (2.0, 0.707107)
    """
    g = np.asarray(g, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    a = 1.0 - g + lam
    root = np.sqrt(a * a + 4.0 * g * lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = 2.0 / (a + root)
        direct = (root - a) / (2.0 * g * lam)
    return np.where(a > 0, stable, direct)


def _mp_mprime(g, lam):
    """``m' = int 1 / (s + lam)^2 dMP_g(s)`` (that is ``-dm/dlam``): ``-(g m^2 + m) / (-2 g lam m - lam - 1 + g)``.

    >>> float(_mp_mprime(0.5, 0.0))  # 1 / (1 - g)^3
    8.0
    """
    g = np.asarray(g, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    m = _mp_m(g, lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(g * m * m + m) / (-2.0 * g * lam * m - lam - 1.0 + g)


def _excess_risk(g, lam, signal, noise):
    """Excess risk ``E(g, lam; r2, s2) = r2 lam^2 m' + s2 g (m - lam m')`` of isotropic ridge, vectorized over ``g``.

    ``g = d / n``, ``lam`` the per-sample ridge penalty (>= 0), ``signal = r2 = ||theta||^2`` and
    ``noise = s2``. At ``lam = 0`` (min-norm) the closed forms ``s2 g / (1 - g)`` (``g < 1``) and
    ``r2 (1 - 1/g) + s2 / (g - 1)`` (``g > 1``) are used; at ``g = 1`` the result is ``inf`` (``0`` when
    ``s2 = 0``), without a warning. For ``lam > 0`` and ``g > 1`` the same quantity is evaluated through
    the companion law (``d x d`` nonzero spectrum = ``g`` times ``MP_{1/g}``):
    ``E = r2 [(1 - 1/g) + (1/g) l^2 m'_{1/g}(l)] + (s2/g) [m_{1/g}(l) - l m'_{1/g}(l)]`` with ``l = lam / g``,
    which avoids the cancellation of ``m - lam m'`` at small ``lam``.

    >>> float(_excess_risk(0.5, 0.0, 1.0, 1.0)), float(_excess_risk(2.0, 0.0, 1.0, 1.0))
    (1.0, 1.5)
    """
    g = np.asarray(g, dtype=np.float64)
    lam = float(lam)
    r2 = np.asarray(signal, dtype=np.float64)
    s2 = np.asarray(noise, dtype=np.float64)
    peak = np.abs(g - 1.0) <= _PEAK_TOL
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if lam == 0.0:
            under = s2 * g / (1.0 - g)
            over = r2 * (1.0 - 1.0 / g) + s2 / (g - 1.0)
            out = np.where(g < 1.0, under, over)
            return np.where(peak, np.where(s2 > 0, np.inf, 0.0), out)
        # g <= 1: the formula as written; g > 1: the companion law of ratio 1/g at lam/g
        small = g <= 1.0
        h = np.where(small, g, 1.0 / g)
        lh = np.where(small, lam, lam / g)
        m = _mp_m(h, lh)
        mp = _mp_mprime(h, lh)
        direct = r2 * lam * lam * mp + s2 * g * (m - lam * mp)
        companion = r2 * ((1.0 - h) + h * lh * lh * mp) + s2 * h * (m - lh * mp)
        return np.where(small, direct, companion)


def _excess_risk_scalar(g: float, lam: float, r2: float, s2: float) -> float:
    """:func:`_excess_risk` for one ``g`` in plain ``math`` (the reference of the vectorized path)."""
    if abs(g - 1.0) <= _PEAK_TOL and lam == 0.0:
        return math.inf if s2 > 0 else 0.0
    if lam == 0.0:
        return s2 * g / (1.0 - g) if g < 1.0 else r2 * (1.0 - 1.0 / g) + s2 / (g - 1.0)
    if g <= 1.0:
        h, lh = g, lam
    else:
        h, lh = 1.0 / g, lam / g
    a = 1.0 - h + lh
    root = math.sqrt(a * a + 4.0 * h * lh)
    m = 2.0 / (a + root)  # a > 0 here since h <= 1 and lh > 0
    mp = -(h * m * m + m) / (-2.0 * h * lh * m - lh - 1.0 + h)
    if g <= 1.0:
        return r2 * lam * lam * mp + s2 * g * (m - lam * mp)
    return r2 * ((1.0 - h) + h * lh * lh * mp) + s2 * h * (m - lh * mp)


def _excess_risk_anisotropic(eigenvalues, theta_sq, n, lam, noise) -> float:
    """Excess risk of ridge on anisotropic Gaussian features ``N(0, Sigma)`` (deterministic equivalent).

    ``eigenvalues`` are the ``e_i`` of ``Sigma`` (>= 0), ``theta_sq`` the squared coordinates of the true
    coefficients in the eigenbasis, ``n`` the number of training rows, ``lam`` the per-sample penalty and
    ``noise`` the noise variance ``s2``:

    1. ``kappa`` solves ``kappa - lam = (kappa / n) sum e_i / (e_i + kappa)`` (``brentq`` on
       ``[lam, max(1e6, lam + sum e / n)]``); at ``lam = 0``, ``kappa = 0`` when at most ``n`` eigenvalues
       are positive, else it solves ``1 = (1/n) sum e_i / (e_i + kappa)``;
    2. ``df2 = (1/n) sum e_i^2 / (e_i + kappa)^2``;
    3. ``E = [kappa^2 sum e_i theta_i^2 / (e_i + kappa)^2 + s2 df2] / (1 - df2)``.

    ``inf`` and a ``RuntimeWarning`` at a min-norm peak (``df2 = 1``, as with exactly ``n`` positive
    eigenvalues) unless both the bias and ``s2`` are 0. Cost ``O(d)`` per root-finding step (plus the eigendecomposition of ``Sigma``
    by the caller, ``O(d^3)`` once). With ``e = 1`` it equals :func:`_excess_risk` at ``g = d / n``.

    >>> round(_excess_risk_anisotropic([1.0] * 200, [1 / 200] * 200, 100, 0.0, 1.0), 12)
    1.5
    """
    e = check_array("eigenvalues", eigenvalues, ndim=1, min_rows=0)
    t = check_array("theta_sq", theta_sq, ndim=1, min_rows=0)
    if e.shape != t.shape:
        raise param_error("theta_sq", f"expected {e.shape[0]} values (one per eigenvalue), got {t.shape[0]}")
    if np.any(e < 0):
        raise param_error("eigenvalues", f"expected values >= 0, got {describe(float(e.min()))}")
    n = check_param("n", n, [Interval("int", 1)], form="expected")
    # outside [1e-30, 1e100] the closed form under- or overflows in float64 (m ~ lam^-1/2 at the peak)
    lam = check_param("lam", lam, [Options(0), Interval("float", LAM_MIN, LAM_MAX)], form="expected",
                      expected=f"0 or a float in [{LAM_MIN:g}, {LAM_MAX:g}]")
    s2 = check_param("noise", noise, _NONNEG, form="expected")
    pos = e > 0
    ep, tp = e[pos], t[pos]
    if lam > 0:
        def h(kappa):
            return kappa - lam - kappa / n * np.sum(ep / (ep + kappa))

        hi = max(1e6, lam + ep.sum() / n)
        kappa = lam if h(lam) >= 0 else brentq(h, lam, hi, xtol=1e-300, rtol=1e-15, maxiter=500)
    elif ep.size <= n:
        kappa = 0.0
    else:
        def q(kappa):
            return np.sum(ep / (ep + kappa)) / n - 1.0

        kappa = brentq(q, 0.0, ep.sum() / n, xtol=1e-300, rtol=1e-15, maxiter=500)
    df2 = float(np.sum((ep / (ep + kappa)) ** 2)) / n
    bias = kappa * kappa * float(np.sum(ep * tp / (ep + kappa) ** 2)) if kappa > 0 else 0.0
    if df2 >= 1.0 - _PEAK_TOL:
        if bias > 0 or s2 > 0:
            warnings.warn("_excess_risk_anisotropic: infinite risk at a min-norm peak (as many positive "
                          "eigenvalues as samples); use lam > 0", RuntimeWarning, stacklevel=2)
            return math.inf
        return 0.0
    return (bias + s2 * df2) / (1.0 - df2)


# ------------------------------------------------------------------------------------------ public


#: The per-sample penalties the closed form evaluates faithfully in float64 (besides 0, min-norm).
LAM_MIN, LAM_MAX = 1e-30, 1e100


def _check_inputs(psi, frac_sensitive, within_signal, nonsensitive_signal, noise, lam, between_signal):
    """Validate :func:`lookalike_risk`'s arguments; return ``(psi as a float64 array, scalar params)``."""
    if is_real(psi):
        arr = np.asarray(check_param("psi", psi, [Interval("float", 0, closed="neither", text=_PSI_TEXT)],
                                     form="expected"), dtype=np.float64)
    else:
        try:
            raw = np.asarray(psi)
        except (TypeError, ValueError):
            raw = None
        if raw is None or raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.number) \
                or np.iscomplexobj(raw):
            raise param_error("psi", f"expected {_PSI_TEXT}, got {describe(psi)} ({type_name(psi)})",
                              wrong_type=True)
        arr = raw.astype(np.float64)
        bad = ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), arr.shape) if arr.ndim else ()
            index = tuple(int(i) for i in first)
            where = f" at index {index[0] if len(index) == 1 else index}" if arr.ndim else ""
            raise param_error("psi", f"expected {_PSI_TEXT}, got {describe(float(arr[first]))}{where}")
    f = check_param("frac_sensitive", frac_sensitive, [Interval("float", 0, 1, closed="neither")], form="expected")
    w = check_param("within_signal", within_signal, _NONNEG, form="expected")
    r = check_param("nonsensitive_signal", nonsensitive_signal, _NONNEG, form="expected")
    s2 = check_param("noise", noise, _NONNEG, form="expected")
    # outside [1e-30, 1e100] the closed form under- or overflows in float64 (m ~ lam^-1/2 at the peak)
    lam = check_param("lam", lam, [Options(0), Interval("float", LAM_MIN, LAM_MAX)], form="expected",
                      expected=f"0 or a float in [{LAM_MIN:g}, {LAM_MAX:g}]")
    beta = check_param("between_signal", between_signal, [None] + _NONNEG, form="expected")
    return arr, (f, w, r, s2, lam, beta)


def _warn_peak(psi: np.ndarray, infinite: np.ndarray) -> None:
    if infinite.any():
        values = np.unique(psi[infinite])
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        warnings.warn(
            f"lookalike_risk: the min-norm risk is infinite at psi = {shown} (interpolation peak, d/n = 1 "
            "for the full data or d_ns/n = 1 for the release); use lam > 0 for a finite ridge risk",
            RuntimeWarning, stacklevel=3,
        )


def lookalike_risk(psi, *, frac_sensitive=0.5, within_signal=1.0, nonsensitive_signal=1.0, noise=1.0, lam=0.0,
                   between_signal=None) -> dict:
    """Asymptotic test risk of least squares on full, look-alike and sensitive-dropped training data.

    Model: ``n`` rows, ``d = psi n`` features of which a share ``f = frac_sensitive`` is sensitive.
    The sensitive block is ``x_s = mu_c + z`` (cluster ``c`` uniform over a fixed number ``J`` of
    centres ``mu_l`` with ``||mu_l||^2`` proportional to ``d_s``, ``z ~ N(0, I)``), the rest is
    ``x_ns ~ N(0, I)``, and ``y = <x, theta> + eps`` with ``eps ~ N(0, noise)``. The look-alike
    release replaces each row's sensitive block by its cluster's mean; "drop" deletes it. The risk is
    ``E (y - <x, theta_hat>)^2`` at a fresh **raw** test point, as ``n, d -> inf``:

    * ``full = noise + E(psi, lam; w + r, noise)``;
    * ``lookalike = noise + w + E(gamma, lam; r, noise + w)``;
    * ``drop = noise + w + beta + E(gamma, lam; r, noise + w + beta)``,

    with ``w = within_signal = ||theta_s||^2``, ``r = nonsensitive_signal = ||theta_ns||^2``,
    ``beta = between_signal = (1/J) sum_l <mu_l, theta_s>^2``, ``gamma = psi (1 - f)`` and ``E`` the
    Marchenko-Pastur excess risk of isotropic ridge (min-norm at ``lam = 0``:
    ``s2 g / (1 - g)`` for ``g < 1``, ``r2 (1 - 1/g) + s2 / (g - 1)`` for ``g > 1``).

    Consequences: min-norm ``full`` diverges at ``psi = 1`` while ``lookalike`` does not, so look-alike
    wins near ``psi = 1``; for ``psi < 1`` it wins iff ``w / noise < psi f / (1 - psi)``. Its own peak
    is at ``gamma = 1`` (``gamma + J / n = 1`` at finite ``n``).

    Scaling: ``lam`` is per sample (ridge minimizes ``(1/n) ||y - X theta||^2 + lam ||theta||^2``), so
    it matches ``sklearn.linear_model.Ridge(alpha=n * lam, fit_intercept=False)``; ``lam = 0`` is
    min-norm least squares, ``LinearRegression(fit_intercept=False)``. No intercept is fitted.

    The formulas are teraml's own derivation (not a theorem of the paper), validated by simulation at
    ``n = 400``; they assume a fixed number of clusters ``J``. A grouping whose ``J`` grows with ``n``
    (MDAV with a fixed ``k`` has ``J ~ n / k``) is only approximately covered.

    Parameters
    ----------
    psi : float or array-like of floats > 0
        ``d / n``. Fully vectorized: ``O(1)`` work per value.
    frac_sensitive : float in (0, 1)
        ``f = d_s / d``.
    within_signal, nonsensitive_signal : float >= 0
        ``w = ||theta_s||^2`` and ``r = ||theta_ns||^2``.
    noise : float >= 0
        The noise variance ``sigma^2``.
    lam : float >= 0
        Per-sample ridge penalty; 0 is min-norm least squares.
    between_signal : float >= 0 or None
        ``beta``; only ``"drop"`` needs it (NaN when None).

    Returns
    -------
    dict with ``"full"``, ``"lookalike"``, ``"drop"``: float64 arrays of ``psi``'s shape (0-d arrays for a
    scalar ``psi``). At a min-norm peak (``g = 1`` with a positive noise term) the value is ``inf`` and
    one ``RuntimeWarning`` is issued per call.

    Raises
    ------
    ValueError, TypeError
        Naming the parameter: ``psi`` must be finite and > 0, ``frac_sensitive`` in (0, 1), the others >= 0.

    Examples
    --------
    >>> from teraml.anonymize import lookalike_risk
    >>> risk = lookalike_risk([0.5, 0.9, 3.0])     # min-norm, f = 1/2, w = r = noise = 1
    >>> risk["full"].round(3).tolist(), risk["lookalike"].round(3).tolist()
    ([2.0, 10.0, 2.833], [2.667, 3.636, 6.333])
    >>> round(float(lookalike_risk(0.5, within_signal=0.2, between_signal=0.2)["drop"]), 3)
    1.867
    """
    arr, (f, w, r, s2, lam, beta) = _check_inputs(psi, frac_sensitive, within_signal, nonsensitive_signal,
                                                  noise, lam, between_signal)
    gamma = arr * (1.0 - f)
    full = s2 + _excess_risk(arr, lam, w + r, s2)
    look = s2 + w + _excess_risk(gamma, lam, r, s2 + w)
    if beta is None:
        drop = np.full(arr.shape, np.nan)
    else:
        drop = s2 + w + beta + _excess_risk(gamma, lam, r, s2 + w + beta)
    _warn_peak(arr, np.isinf(full) | np.isinf(look) | np.isinf(drop))
    return {"full": np.asarray(full, dtype=np.float64), "lookalike": np.asarray(look, dtype=np.float64),
            "drop": np.asarray(drop, dtype=np.float64)}


def lookalike_risk_loop(psi, *, frac_sensitive=0.5, within_signal=1.0, nonsensitive_signal=1.0, noise=1.0,
                         lam=0.0, between_signal=None) -> dict:
    """:func:`lookalike_risk` as a plain per-``psi`` loop of scalar ``math`` code (the reference).

    Same signature, validation, warning and results; used to test the vectorized path and to time it.

    >>> float(lookalike_risk_loop(0.5)["lookalike"]) == float(lookalike_risk(0.5)["lookalike"])
    True
    """
    arr, (f, w, r, s2, lam, beta) = _check_inputs(psi, frac_sensitive, within_signal, nonsensitive_signal,
                                                  noise, lam, between_signal)
    full = np.empty(arr.shape)
    look = np.empty(arr.shape)
    drop = np.full(arr.shape, np.nan)
    for idx in np.ndindex(arr.shape):
        p = float(arr[idx])
        gamma = p * (1.0 - f)
        full[idx] = s2 + _excess_risk_scalar(p, lam, w + r, s2)
        look[idx] = s2 + w + _excess_risk_scalar(gamma, lam, r, s2 + w)
        if beta is not None:
            drop[idx] = s2 + w + beta + _excess_risk_scalar(gamma, lam, r, s2 + w + beta)
    _warn_peak(arr, np.isinf(full) | np.isinf(look) | np.isinf(drop))
    return {"full": full, "lookalike": look, "drop": drop}
