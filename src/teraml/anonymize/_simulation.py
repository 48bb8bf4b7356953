"""Monte Carlo check of :func:`~teraml.anonymize.lookalike_risk`: simulated risk of full, look-alike and dropped fits.

Used by the tests (statistical check E1/E2) and by ``teraml bench anonymize`` (B1, B2). Each repetition draws
data from :func:`teraml.datasets.make_lookalike_regression`, builds three training designs from it

* full: ``X`` as drawn;
* look-alike: the sensitive block replaced by the mean of each row's group (oracle cluster labels or a
  grouping function), computed once per group and gathered, so members carry identical values;
* drop: the sensitive block deleted (its coefficients count as 0),

fits least squares without an intercept on each (min-norm at ``lam = 0``, else ridge with per-sample
``lam``) and evaluates the exact population risk at fresh raw test points. The theory is evaluated at the
same repetition's realized ``d / n``, ``d_s / d``, ``w``, ``r`` and ``beta``, and averaged like the
simulation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from teraml._validation import (
    Interval,
    Options,
    Satisfies,
    check_array,
    check_param,
    param_error,
)
from teraml.anonymize._grouping import group_means
from teraml.anonymize._theory import lookalike_risk
from teraml.datasets import make_lookalike_regression

__all__ = ["simulate_risk", "least_squares", "RCOND"]

#: Relative singular-value cut-off of every min-norm fit. A look-alike release is exactly rank-deficient
#: (its sensitive block has rank <= J) but its SVD carries singular values near 1e-14 in the null
#: directions; ``np.linalg.pinv``'s default cut-off keeps them and the fit explodes.
RCOND = 1e-10


def least_squares(X, y, lam: float = 0.0, *, rcond: float = RCOND) -> np.ndarray:
    """Least squares without an intercept: min-norm at ``lam = 0``, else ridge with per-sample ``lam``.

    Ridge is ``(X^T X / n + lam I)^{-1} X^T y / n`` (``Ridge(alpha=n * lam, fit_intercept=False)``), solved
    in the ``n x n`` dual ``X^T (X X^T / n + lam I)^{-1} y / n`` when ``d > n``. Min-norm is
    ``np.linalg.lstsq`` (SVD, ``O(n d min(n, d))``) with a **relative** cut-off ``rcond``.

    >>> X = np.array([[1.0, 1.0], [2.0, 2.0]])       # rank 1
    >>> least_squares(X, np.array([2.0, 4.0])).round(6).tolist()
    [1.0, 1.0]
    """
    n, d = X.shape
    if lam == 0.0:
        return np.linalg.lstsq(X, y, rcond=rcond)[0]
    if d <= n:
        return np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)
    return X.T @ np.linalg.solve(X @ X.T / n + lam * np.eye(n), y / n)


def simulate_risk(psi, *, n=400, frac_sensitive=0.5, n_clusters=4, within_signal=1.0, nonsensitive_signal=1.0,
                  noise=1.0, lam=0.0, repetitions=10, grouping="oracle", random_state=0) -> dict:
    """Simulated and theoretical test risk of full, look-alike and dropped least squares, per ``psi``.

    For each ``psi`` and repetition: data from ``make_lookalike_regression(n, round(psi * n), ...)``
    seeded by ``(random_state, repetition, d, n)`` (so a ``psi`` gets the same draws whatever the other
    values of the grid, and every ``lam`` sees the same data), three fits (:func:`least_squares`) and their
    exact population risks; the theory at the realized parameters.

    Parameters
    ----------
    psi : float or 1-D array of floats > 0
        ``d / n`` values (``d = max(2, round(psi * n))``).
    grouping : ``"oracle"`` or callable
        ``"oracle"`` groups rows by their true cluster; a callable ``grouping(X_s, rng) -> labels`` gets
        the raw sensitive block ``(n, d_s)`` and a seeded ``numpy.random.Generator`` and returns one label
        per row (e.g. MDAV or k-means groups).
    Other parameters are those of ``make_lookalike_regression`` and ``lam`` (per sample, 0 = min-norm).

    Returns
    -------
    dict of float64 arrays: ``"psi"`` (P,) as given, ``"n_features"`` (P,), ``"sim_full"``, ``"sim_look"``,
    ``"sim_drop"``, ``"theory_full"``, ``"theory_look"``, ``"theory_drop"`` (P,) averaged over
    repetitions, the same keys with ``"_reps"`` appended (P, repetitions), and ``"n_groups_reps"``
    (P, repetitions). Cost per repetition: three least-squares fits, ``O(n d min(n, d))``.

    >>> out = simulate_risk([0.5], n=100, repetitions=2)
    >>> out["sim_full_reps"].shape, bool(abs(out["sim_full"][0] / out["theory_full"][0] - 1) < 0.3)
    ((1, 2), True)
    """
    psi_arr = check_array("psi", np.atleast_1d(np.asarray(psi, dtype=np.float64)), ndim=1)
    if np.any(psi_arr <= 0):
        raise param_error("psi", f"expected values > 0, got {float(psi_arr.min())!r}")
    n = check_param("n", n, [Interval("int", 2)], form="expected")
    n_clusters = check_param("n_clusters", n_clusters, [Interval("int", 1)], form="expected")
    repetitions = check_param("repetitions", repetitions, [Interval("int", 1)], form="expected")
    lam = check_param("lam", lam, [Interval("float", 0)], form="expected")
    seed = check_param("random_state", random_state, [Interval("int", 0)], form="expected")
    grouping = check_param("grouping", grouping,
                           [Options("oracle"), Satisfies(callable, "a callable grouping(X_s, rng) -> labels")],
                           form="expected")
    shape = (psi_arr.size, repetitions)
    keys = ("sim_full", "sim_look", "sim_drop", "theory_full", "theory_look", "theory_drop")
    reps = {k: np.empty(shape) for k in keys}
    n_groups = np.empty(shape)
    n_features = np.empty(psi_arr.size)
    for i, p in enumerate(psi_arr):
        d = max(2, round(float(p) * n))
        n_features[i] = d
        for rep in range(repetitions):
            ss = np.random.SeedSequence([seed, rep, d, n])
            data_ss, group_ss = ss.spawn(2)
            X, y, info = make_lookalike_regression(
                n, d, frac_sensitive=frac_sensitive, n_clusters=n_clusters, within_signal=within_signal,
                nonsensitive_signal=nonsensitive_signal, noise=noise, random_state=np.random.default_rng(data_ss))
            d_s = info["sensitive"].size
            labels = _labels(grouping, X[:, :d_s], info["labels"], np.random.default_rng(group_ss))
            n_groups[i, rep] = np.unique(labels).size
            X_look = X.copy()
            _, labels = np.unique(labels, return_inverse=True)
            means, _ = group_means(X[:, :d_s], labels, int(labels.max()) + 1)
            X_look[:, :d_s] = means[labels]
            risk = info["population_risk"]
            reps["sim_full"][i, rep] = risk(least_squares(X, y, lam))
            reps["sim_look"][i, rep] = risk(least_squares(X_look, y, lam))
            coef_drop = np.zeros(d)
            coef_drop[d_s:] = least_squares(X[:, d_s:], y, lam)
            reps["sim_drop"][i, rep] = risk(coef_drop)
            theory = lookalike_risk(d / n, frac_sensitive=d_s / d, within_signal=info["w"],
                                    nonsensitive_signal=info["r"], noise=noise, lam=lam,
                                    between_signal=info["beta"])
            reps["theory_full"][i, rep] = theory["full"]
            reps["theory_look"][i, rep] = theory["lookalike"]
            reps["theory_drop"][i, rep] = theory["drop"]
    out = {"psi": psi_arr, "n_features": n_features}
    for k in keys:
        out[k] = reps[k].mean(axis=1)
        out[k + "_reps"] = reps[k]
    out["n_groups_reps"] = n_groups
    return out


def _labels(grouping: str | Callable, X_s: np.ndarray, oracle: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if not callable(grouping):  # "oracle"
        return oracle
    labels = np.asarray(grouping(X_s, rng))
    if labels.shape != (X_s.shape[0],):
        raise param_error("grouping", f"expected one label per row, shape ({X_s.shape[0]},), got shape {labels.shape}")
    return labels
