"""Estimators that learn instance-level models from bag aggregates (Javanmard et al., ICLR 2024).

The learner sees features X, bag ids and, per bag a, the aggregate y~_a (mean of the clipped labels,
maybe plus DP noise), repeated on every row of the bag. With f_i = g(x_i'w + b) (g = identity for
``loss="squared"``, sigmoid for ``loss="log"``) and f̄_a the bag mean of the f_i:

    L_bag  = sum_a k_a l(y~_a, f̄_a)         L_inst = sum_i l(y~_a(i), f_i)
    L_rho  = (1 - rho) L_bag + rho L_inst + alpha ||w||^2       (intercept unpenalised)

For the squared loss, L_inst = L_bag + sum_i (f_i - f̄_a(i))^2 exactly, so rho weights a within-bag
variance penalty and the fit has the closed form (G_S + rho (G - G_S) + alpha P)^-1 c built from bag
means only. The log loss is fitted by L-BFGS from the convex rho = 1 solution. ``rho="auto"`` picks rho
by cross-validation over *bags* with a criterion that is unbiased for the mean instance loss on random
bags (DSQ for squared, pseudo-labels for log).

>>> import numpy as np
>>> from teraml.aggregate import AggregateRegressor, Aggregator, make_bags
>>> from teraml.datasets import make_aggregate_regression
>>> X, y, coef = make_aggregate_regression(2000, 5, snr=4.0, random_state=0)
>>> rel = Aggregator(y).release(make_bags(5, n_samples=2000, random_state=0))
>>> est = AggregateRegressor(rho="auto", random_state=0).fit(X, rel.y, bags=rel.bags)
>>> bool(np.abs(est.coef_ - coef).max() < 0.2)
True
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from teraml._validation import (
    BOOL,
    VERBOSE,
    Interval,
    Options,
    Satisfies,
    check_choice,
    check_float,
    check_int,
    check_params,
    check_random_state,
    check_same_length,
)
from teraml.aggregate.privacy import LabelDP, check_clip, check_epsilon, normalize_bags

__all__ = ["AggregateRegressor", "aggregated_loss", "suggest_bag_size", "interpolated_objective"]

_LOSSES = ("squared", "log")
_EPS = 1e-12


def _unit_grid(g) -> bool:
    """A non-empty 1-D array of values in [0, 1] (None: the default grid)."""
    if g is None:
        return True
    grid = np.asarray(g, dtype=np.float64)
    return grid.ndim == 1 and grid.size > 0 and bool(np.all((grid >= 0) & (grid <= 1)))


def _rho_grid(g) -> np.ndarray:
    """The grid of rho values ``rho="auto"`` searches (``rho_grid`` already checked)."""
    if g is None:
        return np.concatenate([[0.0], np.logspace(-3, 0, 20)])
    if np.ndim(g) == 0:
        return np.concatenate([[0.0], np.logspace(-3, 0, int(g) - 1)])
    return np.unique(np.asarray(g, dtype=np.float64))


def _n_rows(a) -> int:
    return int(np.shape(a)[0]) if np.ndim(a) else 0


class _Bagged:
    """Per-bag sufficient statistics of (Z, y~) for the rows kept (bag id >= 0)."""

    def __init__(self, Z, ybar, ids, m):
        self.Z, self.ids, self.m = Z, ids, m
        n = Z.shape[0]
        self.S = sp.csr_matrix((np.ones(n), (ids, np.arange(n))), shape=(m, n))   # bag indicator
        self.k = np.asarray(self.S.sum(axis=1)).ravel()
        self.ybar = ybar                                                          # (m,) bag aggregates

    def zbar(self):
        return self.Z.sums(self.S) / self.k[:, None]


class _Design:
    """The design [X, 1] (or X) without materialising the ones column: products, Gram, bag sums."""

    def __init__(self, X, intercept: bool):
        self.X, self.intercept = X, bool(intercept)
        self.d = X.shape[1]
        self.shape = (X.shape[0], self.d + int(self.intercept))

    def __getitem__(self, rows):
        return _Design(self.X[rows], self.intercept)

    def __matmul__(self, theta):
        out = np.asarray(self.X @ theta[: self.d]).ravel()
        return out + theta[self.d] if self.intercept else out

    matvec = __matmul__

    def rmatvec(self, g):
        xt = np.asarray(self.X.T @ g).ravel()
        return np.concatenate([xt, [g.sum()]]) if self.intercept else xt

    def gram(self):
        X = self.X
        G = X.T @ X
        G = G.toarray() if sp.issparse(G) else np.asarray(G)
        if not self.intercept:
            return G
        col = np.asarray(X.sum(axis=0)).ravel()
        out = np.empty((self.d + 1, self.d + 1))
        out[: self.d, : self.d] = G
        out[: self.d, self.d] = col
        out[self.d, : self.d] = col
        out[self.d, self.d] = X.shape[0]
        return out

    def sums(self, S):
        """S @ [X, 1] for a sparse (groups x rows) indicator S, dense."""
        sx = S @ self.X
        sx = sx.toarray() if sp.issparse(sx) else np.asarray(sx)
        if not self.intercept:
            return sx
        return np.hstack([sx, np.asarray(S.sum(axis=1)).reshape(-1, 1)])


def _design(X, fit_intercept):
    return _Design(X, fit_intercept)


def _gram(Z):
    return Z.gram()


def _solve(A, c):
    """Cholesky solve; least squares when A is singular or ill-conditioned (cond > 1e12)."""
    try:
        cho = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
        diag = np.abs(np.diag(cho[0]))
        if diag.min() <= 0 or (diag.max() / diag.min()) ** 2 > 1e12:
            raise np.linalg.LinAlgError("ill-conditioned")
        return scipy.linalg.cho_solve(cho, c, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(A, c, rcond=None)[0]


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _log_loss_terms(y, f):
    f = np.clip(f, _EPS, 1 - _EPS)
    return -(y * np.log(f) + (1 - y) * np.log1p(-f))


def _dsq(resid_bar, k, noise_var=None):
    """DSQ: an unbiased estimate of the mean instance squared loss from bag-mean residuals (random bags)."""
    v = 0.0 if noise_var is None else noise_var
    rhat = float((k * resid_bar).sum() / k.sum())
    return float(np.mean(k * (resid_bar**2 - v) - (k - 1) * rhat**2))


def _pseudo_log(ybar, k, f, ids):
    """Pseudo-label estimate of the mean instance log-loss: y'_a = k_a (y~_a - p) + p."""
    p = float((k * ybar).sum() / k.sum())
    yp = k * (ybar - p) + p
    return float(np.mean(_log_loss_terms(yp[ids], f)))


def interpolated_objective(theta, bag: _Bagged, rho, alpha, loss="log", fit_intercept=True, mean=False):
    """``(L_rho(theta), gradient)``: the objective :class:`AggregateRegressor` minimises.

    ``L_rho = (1 - rho) sum_a k_a l(y~_a, f̄_a) + rho sum_i l(y~_a(i), f_i) + alpha ||w||^2`` over the
    rows of ``bag`` (bags without rows contribute nothing; the intercept, the last entry of theta when
    ``fit_intercept``, is not penalised). ``loss="log"`` is what the L-BFGS fit evaluates;
    ``loss="squared"`` is the plain form whose minimiser the closed-form fit computes (tests check its
    gradient vanishes there). ``mean=True`` divides by the number of rows (same minimiser; L-BFGS
    tolerances are relative to it).
    """
    Z, ids, ybar, k, S = bag.Z, bag.ids, bag.ybar, bag.k, bag.S
    ok = k > 0
    kk = np.where(ok, k, 1.0)
    y_row = ybar[ids]
    p = Z.shape[1]
    pen = np.ones(p)
    if fit_intercept:
        pen[-1] = 0.0
    eta = Z.matvec(theta)
    f = _sigmoid(eta) if loss == "log" else eta
    val = 0.0
    grad_eta = np.zeros_like(f)
    if rho > 0:
        if loss == "log":
            val += rho * float(_log_loss_terms(y_row, f).sum())
            grad_eta += rho * (f - y_row)
        else:
            r = f - y_row
            val += rho * float(r @ r)
            grad_eta += rho * 2.0 * r
    if rho < 1:
        fbar = np.asarray(S @ f).ravel() / kk
        if loss == "log":
            fb = np.clip(fbar, _EPS, 1 - _EPS)
            val += (1 - rho) * float((k * _log_loss_terms(ybar, fb))[ok].sum())
            dfb = np.where(ok, (fb - ybar) / (fb * (1 - fb)), 0.0)        # d l / d fbar
            grad_eta += (1 - rho) * dfb[ids] * f * (1 - f)               # k_a * (1/k_a) cancels
        else:
            rb = np.where(ok, fbar - ybar, 0.0)
            val += (1 - rho) * float((k * rb * rb).sum())
            grad_eta += (1 - rho) * 2.0 * rb[ids]
    val += alpha * float((pen * theta * theta).sum())
    grad = Z.rmatvec(grad_eta) + 2 * alpha * pen * theta
    if mean:
        n_rows = max(1, Z.shape[0])
        return val / n_rows, grad / n_rows
    return val, grad


class AggregateRegressor(RegressorMixin, BaseEstimator):
    """Linear / logistic model trained from bag aggregates, interpolating bag- and instance-level loss.

    Parameters
    ----------
    loss : {"squared", "log"}
        ``"log"`` predicts probabilities (targets are bag label proportions in [0, 1]).
    rho : "auto" or float in [0, 1]
        0 = bag-level loss, 1 = instance-level (event-level) loss; ``"auto"`` cross-validates over
        whole bags with a criterion computed from aggregates only.
    alpha : float >= 0
        Ridge penalty ``alpha ||w||^2`` (intercept not penalised), as ``Ridge(alpha)`` /
        ``LogisticRegression(C=1/(2 alpha))``.
    fit_intercept : bool, default True
        Fit an unpenalised intercept.
    rho_grid : None, int >= 2 or 1-D array in [0, 1]
        The values ``rho="auto"`` tries: None = 0 and 20 log-spaced values in [1e-3, 1]; an int g =
        0 and g - 1 log-spaced values; an array = those values.
    cv : int >= 2, default 5
        Folds of whole bags for ``rho="auto"``.
    max_iter : int >= 1, default 500
        L-BFGS iterations per fit (``loss="log"``).
    tol : float > 0, default 1e-8
        L-BFGS gradient tolerance on the mean loss (``loss="log"``).
    random_state : None, int or numpy Generator
        Assigns bags to the cross-validation folds.
    verbose : bool, default False
        A progress bar over the cross-validation folds of ``rho="auto"``.

    ``fit(X, y, *, bags=None)``: ``y`` is the bag aggregate repeated on every row of its bag (an
    :class:`~teraml.aggregate.AggregateRelease`'s ``.y``); bag id -1 drops a row (its y may be NaN);
    ``bags=None`` is one bag per row (ordinary regression). ``bags`` is routed as metadata:
    ``est.set_fit_request(bags=True)`` makes ``GridSearchCV`` / ``cross_validate`` pass it, and then a
    missing ``bags`` is an error. Cross-validate by whole bags with the bag ids as the groups::

        sklearn.set_config(enable_metadata_routing=True)
        est = AggregateRegressor().set_fit_request(bags=True)
        cross_validate(est, X, release.y, cv=GroupKFold(5), params={"bags": release.bags, "groups": release.bags})

    Attributes: ``coef_``, ``intercept_``, ``rho_``, ``rho_grid_``, ``cv_scores_``, ``n_bags_``,
    ``n_iter_``, ``n_features_in_``.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = X @ [1.0, -2.0, 0.5]
    >>> AggregateRegressor(rho=1.0).fit(X, y).coef_.round(6).tolist()
    [1.0, -2.0, 0.5]
    """

    #: The checks of scikit-learn's ``check_estimator`` that cannot pass, with the reason (the library's one
    #: convention; tests/test_estimators.py passes it as ``expected_failed_checks``): none, every check passes.
    _expected_failed_checks: dict[str, str] = {}

    _parameter_constraints = {
        "loss": [Options(*_LOSSES)],
        "rho": [Options("auto"), Interval("float", 0, 1, text="a float in [0, 1] (0 = bag-level, 1 = instance-level)")],
        "alpha": [Interval("float", 0)],
        "fit_intercept": BOOL,
        "rho_grid": [Interval("int", 2), Satisfies(_unit_grid, "a 1-D array in [0, 1]")],
        "cv": [Interval("int", 2)],
        "max_iter": [Interval("int", 1)],
        "tol": [Interval("float", 0, closed="neither")],
        "verbose": VERBOSE,
    }

    def __init__(self, loss="squared", rho="auto", *, alpha=0.0, fit_intercept=True, rho_grid=None, cv=5,
                 max_iter=500, tol=1e-8, random_state=None, verbose=False):
        self.loss = loss
        self.rho = rho
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.rho_grid = rho_grid
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------------- input handling

    def _prepare(self, X, y, bags):
        X, y = self._validate(X, y)
        n = X.shape[0]
        if bags is None:
            ids, m = np.arange(n, dtype=np.int64), n
        else:
            check_same_length({"X": n, "y": y, "bags": _n_rows(bags)})
            ids, m = normalize_bags(bags)
        keep = ids >= 0
        yk = y[keep]
        bad = int((~np.isfinite(yk)).sum())
        if bad:
            raise ValueError(f"y must be finite on bagged rows; got {bad} non-finite values")
        idk = ids[keep]
        # y must be constant within each bag
        lo = np.full(m, np.inf)
        hi = np.full(m, -np.inf)
        np.minimum.at(lo, idk, yk)
        np.maximum.at(hi, idk, yk)
        spread = hi - lo
        tol = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
        if np.any(spread > tol):
            a = int(np.flatnonzero(spread > tol)[0])
            distinct = np.unique(yk[idk == a]).size
            orig = np.asarray(bags)[keep][idk == a][0] if bags is not None else a
            orig = orig.item() if hasattr(orig, "item") else orig
            raise ValueError(f"y must be constant within each bag (the bag's aggregate); bag {orig!r} has "
                             f"{distinct} distinct values")
        ybar = lo
        if self.loss == "log":
            out = (ybar < 0) | (ybar > 1)
            if out.any():
                warnings.warn(f"{int(out.sum())} bag targets outside [0, 1] for loss='log' were clipped",
                              UserWarning, stacklevel=3)
                ybar = np.clip(ybar, 0.0, 1.0)
        Z = _design(X if keep.all() else X[keep], self.fit_intercept)
        return Z, ybar, idk, m

    def _validate(self, X, y):
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        # rho='auto' cross-validates over bags: one row cannot be split (sklearn's "1 sample" message)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=np.float64, ensure_all_finite=True,
                          ensure_min_samples=2 if self.rho == "auto" else 1)
        y = column_or_1d(np.asarray(y, dtype=np.float64), warn=True)
        check_same_length({"X": X, "y": y})
        return X, y

    # ----------------------------------------------------------------------------------- squared loss

    def _stats(self, bag: _Bagged, sel=None):
        """(G, G_S, c) over the bags in ``sel`` (all when None)."""
        Z, ids = bag.Z, bag.ids
        if sel is not None:
            rows = sel[ids]
            Z, ids_r = Z[rows], ids[rows]
        else:
            ids_r = ids
        G = _gram(Z)
        S = sp.csr_matrix((np.ones(ids_r.size), (ids_r, np.arange(ids_r.size))), shape=(bag.m, ids_r.size))
        k = np.asarray(S.sum(axis=1)).ravel()
        sums = Z.sums(S)
        ok = k > 0
        zbar = np.zeros_like(sums)
        zbar[ok] = sums[ok] / k[ok, None]
        GS = (zbar * k[:, None]).T @ zbar
        c = (zbar * (k * np.nan_to_num(bag.ybar))[:, None]).sum(axis=0)
        return G, GS, c, int(ok.sum())

    def _theta_squared(self, G, GS, c, rho, n_bags, p):
        P = np.eye(p)
        if self.fit_intercept:
            P[-1, -1] = 0.0
        A = GS + rho * (G - GS) + self.alpha * P
        if rho == 0 and self.alpha == 0 and n_bags <= p:
            return None
        return _solve(A, c)

    # ----------------------------------------------------------------------------------- log loss

    def _theta_log(self, bag: _Bagged, rho, theta0, rows=None):
        """Minimise the log-loss L_rho by L-BFGS from ``theta0`` (on the rows ``rows`` when given)."""
        if rows is not None:
            bag = _Bagged(bag.Z[rows], bag.ybar, bag.ids[rows], bag.m)
        res = scipy.optimize.minimize(interpolated_objective, theta0,
                                      args=(bag, rho, self.alpha, "log", self.fit_intercept, True), jac=True,
                                      method="L-BFGS-B",
                                      options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-13})
        return res.x, int(res.nit)

    # ----------------------------------------------------------------------------------- fit / predict

    def fit(self, X, y, *, bags=None):
        """Fit from bag aggregates ``y`` (constant within each bag) and bag ids ``bags``."""
        check_params(self, self._parameter_constraints)
        if bags is None and self._bags_requested():
            raise ValueError("bags is requested (set_fit_request(bags=True)) but was not passed, so every row would "
                             "be its own bag; pass it with the data, e.g. cross_validate(est, X, y, cv=GroupKFold(), "
                             "params={'bags': bags, 'groups': bags})")
        grid = _rho_grid(self.rho_grid)
        Z, ybar, ids, m = self._prepare(X, y, bags)
        bag = _Bagged(Z, ybar, ids, m)
        p = Z.shape[1]
        self.n_bags_ = int(m)
        self.rho_grid_ = grid if self.rho == "auto" else np.array([float(self.rho)])
        totals = None
        if self.rho == "auto":
            if m < self.cv:
                raise ValueError(f"rho='auto' needs at least cv={self.cv} bags; got {m}")
            self.cv_scores_, totals = self._cv_scores(bag, grid, p)
            self.rho_ = float(grid[int(np.argmin(self.cv_scores_))])
        else:
            self.rho_ = float(self.rho)
            self.cv_scores_ = None
        rho = self.rho_
        if self.loss == "squared":
            G, GS, c, nb = totals if totals is not None else self._stats(bag)
            if rho == 0 and self.alpha == 0 and nb <= p:
                raise ValueError(f"rho=0 needs more bags ({nb}) than parameters ({p}); use rho > 0 or alpha > 0")
            theta = self._theta_squared(G, GS, c, rho, nb, p)
            self.n_iter_ = 1
        else:
            theta1, it1 = self._theta_log(bag, 1.0, np.zeros(p))
            if rho < 1:
                theta, it = self._theta_log(bag, rho, theta1)
                self.n_iter_ = it1 + it
            else:
                theta, self.n_iter_ = theta1, it1
        if self.fit_intercept:
            self.coef_, self.intercept_ = theta[:-1].copy(), float(theta[-1])
        else:
            self.coef_, self.intercept_ = theta.copy(), 0.0
        return self

    def _folds(self):
        from tqdm.auto import tqdm

        return tqdm(range(self.cv), desc="rho='auto' folds", disable=not self.verbose, leave=False)

    def _bags_requested(self) -> bool:
        """Whether metadata routing was told to pass ``bags`` to ``fit``."""
        request = self._get_metadata_request().fit.requests.get("bags")
        return request is True or isinstance(request, str)

    def _cv_scores(self, bag: _Bagged, grid, p):
        """Mean held-out criterion per grid value over ``cv`` folds of whole bags; also returns the
        full-data statistics (squared loss), so that the final refit costs no further pass over X."""
        rng = check_random_state("random_state", self.random_state)
        fold_of_bag = rng.permutation(np.arange(bag.m) % self.cv)
        scores = np.zeros((self.cv, grid.size))
        totals = None
        if self.loss == "squared":
            # one pass over the rows: per-fold Gram matrices of the rows sorted by fold
            fold_row = fold_of_bag[bag.ids]
            order = np.argsort(fold_row, kind="stable")
            counts = np.bincount(fold_row, minlength=self.cv)
            Zs = bag.Z[order]
            zbar = bag.zbar()
            kz = zbar * bag.k[:, None]
            Gf, GSf, cf = [], [], []
            start = 0
            for f in range(self.cv):
                Gf.append(_gram(Zs[start:start + counts[f]]))
                start += counts[f]
                fb = fold_of_bag == f
                GSf.append(kz[fb].T @ zbar[fb])
                cf.append((kz[fb] * bag.ybar[fb, None]).sum(axis=0))
            G_all, GS_all, c_all = sum(Gf), sum(GSf), sum(cf)
            totals = (G_all, GS_all, c_all, bag.m)
            for f in self._folds():
                test_bags = fold_of_bag == f
                G, GS, c = G_all - Gf[f], GS_all - GSf[f], c_all - cf[f]
                n_train = int((~test_bags).sum())
                zbar_t, k_t, y_t = zbar[test_bags], bag.k[test_bags], bag.ybar[test_bags]
                for j, rho in enumerate(grid):
                    theta = self._theta_squared(G, GS, c, rho, n_train, p)
                    if theta is None or not np.all(np.isfinite(theta)):
                        scores[f, j] = np.inf
                        continue
                    scores[f, j] = _dsq(y_t - zbar_t @ theta, k_t)
        else:
            for f in self._folds():
                test_bags = fold_of_bag == f
                rows_train = ~test_bags[bag.ids]
                rows_test = ~rows_train
                theta, _ = self._theta_log(bag, 1.0, np.zeros(p), rows_train)
                Zt = bag.Z[rows_test]
                ids_t = bag.ids[rows_test]
                tb = np.flatnonzero(test_bags)
                remap = -np.ones(bag.m, dtype=np.int64)
                remap[tb] = np.arange(tb.size)
                for j in np.argsort(-grid):  # rho = 1 first, then warm starts as rho decreases
                    theta, _ = self._theta_log(bag, float(grid[j]), theta, rows_train)
                    f_t = _sigmoid(Zt.matvec(theta))
                    scores[f, j] = _pseudo_log(bag.ybar[tb], bag.k[tb], f_t, remap[ids_t])
        with np.errstate(invalid="ignore"):
            return scores.mean(axis=0), totals

    def predict(self, X):
        """E[y | x]: the linear prediction (``squared``) or the probability (``log``)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=np.float64, reset=False)
        eta = np.asarray(X @ self.coef_).ravel() + self.intercept_
        return _sigmoid(eta) if self.loss == "log" else eta

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def aggregated_loss(y_true, y_pred, *, bags, loss="squared", noise_var=0.0) -> float:
    """Estimate of the mean *instance* loss of ``y_pred`` from bag aggregates ``y_true`` (random bags).

    Squared: DSQ, mean_a [k_a (r̄_a^2 - v_a) - (k_a - 1) r̂^2] with r̄_a the bag-mean residual.
    Log: the mean log-loss against pseudo-labels y'_a = k_a (y~_a - p̂) + p̂. Both are unbiased for a
    fixed predictor on held-out random bags. As a scorer:
    ``make_scorer(aggregated_loss, greater_is_better=False).set_score_request(bags=True)``.

    >>> import numpy as np
    >>> aggregated_loss(np.array([1.0, 1.0, 3.0, 3.0]), np.array([1.0, 1.0, 3.0, 3.0]), bags=np.array([0, 0, 1, 1]))
    0.0
    """
    check_choice("loss", loss, _LOSSES)
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    ids, m = normalize_bags(bags)
    check_same_length({"y_true": _n_rows(yt), "y_pred": _n_rows(yp), "bags": ids})
    keep = ids >= 0
    ids, yt, yp = ids[keep], yt[keep], yp[keep]
    k = np.bincount(ids, minlength=m).astype(np.float64)
    ybar = np.bincount(ids, weights=yt, minlength=m) / np.maximum(k, 1)
    ok = k > 0
    if loss == "squared":
        fbar = np.bincount(ids, weights=yp, minlength=m) / np.maximum(k, 1)
        v = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), (m,))
        return _dsq((ybar - fbar)[ok], k[ok], v[ok])
    remap = np.cumsum(ok) - 1
    return _pseudo_log(ybar[ok], k[ok], yp, remap[ids])


def suggest_bag_size(n_samples, n_features, *, epsilon, clip, snr=1.0, label_std=None, estimator="interpolating",
                     ks=(1, 2, 4, 8, 16, 32, 64), mechanism="laplace", delta=None):
    """The bag size with the smallest predicted excess risk under label DP: ``(k_star, risk)``.

    Uses isotropic-Gaussian risk formulas (our derivation, not the paper's): with label noise
    ``sigma^2 = label_std^2 / (1 + snr)``, signal ``||theta||^2 = snr sigma^2``, bag-mean DP noise
    variance ``v(k)`` and ``s^2 = sigma^2 + k v(k)``:

    * bag-level: ``s^2 d / (n/k - d - 1)`` (inf when there are too few bags);
    * instance-level: ``(1 - 1/k)^2 ||theta||^2 + s^2 d / (n k)``;
    * interpolating: the smaller of the two (an upper bound for the tuned estimator).

    ``risk`` is aligned with ``ks``; ties go to the smaller k. ``label_std`` defaults to Delta / 4.

    >>> k, risk = suggest_bag_size(5000, 50, epsilon=0.5, clip=(-4, 4), label_std=2 ** 0.5, estimator="instance")
    >>> k
    8
    """
    n = check_int("n_samples", n_samples, min_value=1)
    d = check_int("n_features", n_features, min_value=1)
    check_epsilon(epsilon)
    lo, hi = check_clip(clip)
    snr = check_float("snr", snr, min_value=0.0)
    check_choice("estimator", estimator, ("bag", "instance", "interpolating"))
    mech = LabelDP(epsilon, (lo, hi), mechanism=mechanism, delta=delta)
    ks_arr = np.asarray(ks)
    if ks_arr.ndim != 1 or ks_arr.size == 0 or not np.issubdtype(ks_arr.dtype, np.integer) or (ks_arr < 1).any():
        raise ValueError(f"ks must be a non-empty sequence of ints >= 1; got {ks!r}")
    label_std = check_float("label_std", label_std, min_value=0.0, min_inclusive=False, allow_none=True)
    std = (hi - lo) / 4 if label_std is None else label_std
    sigma2 = std * std / (1 + snr)
    theta2 = snr * sigma2
    kf = ks_arr.astype(np.float64)
    s2 = sigma2 + kf * mech.noise_var(kf)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = n / kf - d - 1
        bag = np.where(denom > 0, s2 * d / denom, np.inf)
    inst = (1 - 1 / kf) ** 2 * theta2 + s2 * d / (n * kf)
    risk = {"bag": bag, "instance": inst, "interpolating": np.minimum(bag, inst)}[estimator]
    return int(ks_arr[int(np.argmin(risk))]), risk
