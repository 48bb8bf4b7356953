"""Rebuilt baselines for the aggregate-learning benchmark (private).

* EasyLLP (Busa-Fekete et al., NeurIPS 2023): debiased pseudo-labels y'_a = k_a (y~_a - p) + p on every
  row of bag a, then an ordinary instance-level fit.
* LLP-EM (llp-learn's ``EM``, rebuilt since llp-learn 1.6.0 cannot install beside numpy 2): alternate a
  logistic fit and, in each bag, labelling the round(p_a k_a) top-scored rows positive; without
  llp-learn's defect of labelling a whole zero-positive bag positive.
* Agarwal et al. style feature bags: equal-size k-means on the features (greedy capacity assignment);
  LLP-Bench style feature-value bags: rows grouped by a binned feature, cut into bags of k.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, Ridge

from teraml.aggregate.privacy import normalize_bags

__all__ = ["easyllp_fit", "LLPEM", "feature_kmeans_bags", "feature_value_bags", "pseudo_labels"]


def pseudo_labels(y_release, bags):
    """EasyLLP pseudo-labels per row (NaN where the bag id is -1)."""
    ids, m = normalize_bags(bags)
    keep = ids >= 0
    k = np.bincount(ids[keep], minlength=m).astype(np.float64)
    ybar = np.bincount(ids[keep], weights=y_release[keep], minlength=m) / np.maximum(k, 1)
    p = float((k * ybar).sum() / k.sum())
    out = np.full(ids.shape, np.nan)
    out[keep] = (k * (ybar - p) + p)[ids[keep]]
    return out


class _RealTargetLogistic:
    """Logistic regression on real-valued targets (convex for any target value)."""

    def __init__(self, alpha=1e-4):
        self.alpha = alpha

    def fit(self, X, t):
        Z = np.hstack([X, np.ones((X.shape[0], 1))])

        def fun(theta):
            eta = Z @ theta
            val = float((t * np.logaddexp(0, -eta) + (1 - t) * np.logaddexp(0, eta)).sum())
            f = 0.5 * (1 + np.tanh(0.5 * eta))
            grad = Z.T @ (f - t) + 2 * self.alpha * np.r_[theta[:-1], 0.0]
            return val + self.alpha * float(theta[:-1] @ theta[:-1]), grad

        theta = scipy.optimize.minimize(fun, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B").x
        self.coef_, self.intercept_ = theta[:-1], theta[-1]
        return self

    def predict(self, X):
        return 0.5 * (1 + np.tanh(0.5 * (X @ self.coef_ + self.intercept_)))


def easyllp_fit(X, y_release, bags, *, loss="squared", alpha=1e-4):
    """EasyLLP: fit on debiased pseudo-labels (ridge for squared, logistic for log)."""
    t = pseudo_labels(np.asarray(y_release, dtype=np.float64), bags)
    keep = np.isfinite(t)
    if loss == "squared":
        return Ridge(alpha=alpha).fit(X[keep], t[keep])
    return _RealTargetLogistic(alpha).fit(X[keep], t[keep])


class LLPEM:
    """LLP-EM for binary labels from bag proportions (rebuilt; see module docstring)."""

    def __init__(self, max_iter=100, C=1.0, random_state=0):
        self.max_iter, self.C, self.random_state = max_iter, C, random_state

    def fit(self, X, y_release, bags):
        ids, m = normalize_bags(bags)
        keep = ids >= 0
        X, ids, yr = X[keep], ids[keep], np.asarray(y_release, dtype=np.float64)[keep]
        k = np.bincount(ids, minlength=m)
        prop = np.bincount(ids, weights=yr, minlength=m) / np.maximum(k, 1)
        n_pos = np.rint(np.clip(prop, 0, 1) * k).astype(int)
        # start: each bag's majority label
        labels = (prop[ids] >= 0.5).astype(int)
        prev_flips = None
        order_in_bag = np.argsort(ids, kind="stable")
        starts = np.concatenate([[0], np.cumsum(k)])
        self.model_ = LogisticRegression(C=self.C, max_iter=1000)
        it = 0
        for it in range(self.max_iter):  # noqa: B007
            if labels.min() == labels.max():
                labels = labels.copy()
                labels[0] = 1 - labels[0]
            self.model_.fit(X, labels)
            score = self.model_.decision_function(X)
            new = np.zeros_like(labels)
            for a in range(m):
                rows = order_in_bag[starts[a]:starts[a + 1]]
                if n_pos[a] > 0:  # llp-learn labels a zero-positive bag all positive (index -1); not here
                    top = rows[np.argsort(-score[rows], kind="stable")[: n_pos[a]]]
                    new[top] = 1
            flips = int((new != labels).sum())
            labels = new
            if prev_flips is not None and abs(prev_flips - flips) < 0.05 * X.shape[0]:
                break
            prev_flips = flips
        self.n_iter_ = it + 1
        self.model_.fit(X, labels) if labels.min() != labels.max() else None
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)[:, 1]

    def predict(self, X):
        return (self.predict_proba(X) >= 0.5).astype(int)


def feature_kmeans_bags(X, k, random_state=0):
    """Equal-size bags from k-means on the features: n // k clusters, greedy nearest-centre assignment
    under a capacity of k (the last bag takes the remainder)."""
    n = X.shape[0]
    m = n // k
    km = KMeans(n_clusters=m, n_init=1, random_state=random_state).fit(X)
    d2 = ((X[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(-1) if n * m <= 4e7 else None
    if d2 is None:
        return km.labels_.astype(np.int64)
    cap = np.full(m, k)
    cap[-1] += n - m * k
    bags = np.full(n, -1, dtype=np.int64)
    for flat in np.argsort(d2, axis=None, kind="stable"):
        i, c = divmod(int(flat), m)
        if bags[i] < 0 and cap[c] > 0:
            bags[i] = c
            cap[c] -= 1
    return bags


def feature_value_bags(X, k, feature=0, n_bins=16):
    """LLP-Bench style bags: rows grouped by a quantile bin of one feature, each group cut into bags of k."""
    x = X[:, feature]
    edges = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])
    group = np.searchsorted(edges, x)
    bags = np.full(X.shape[0], -1, dtype=np.int64)
    nxt = 0
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        mg = max(1, rows.size // k)
        ids = np.minimum(np.arange(rows.size) // k, mg - 1)
        bags[rows] = ids + nxt
        nxt += mg
    return bags
