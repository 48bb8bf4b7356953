"""LookAlikeAnonymizer: sensitive columns replaced by the mean of a group of at least k look-alike rows."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from teraml._validation import (
    BOOL,
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    check_columns,
    check_param,
    check_params,
    check_same_length,
    param_error,
)
from teraml.anonymize._check import min_multiplicity
from teraml.anonymize._grouping import group_means, kd_split, kmeans_repaired, mdav

logger = logging.getLogger(__name__)

#: ``method="auto"`` uses MDAV up to this many rows and the kd split above it.
AUTO_MDAV_MAX_ROWS = 20_000

GUARANTEE = ("Only the sensitive columns are k-anonymous: every released sensitive tuple is shared by at least "
             "k rows. The other columns and the labels are released as they are, so the table as a whole is "
             "not k-anonymous. This is not differential privacy: k-1 known group members reveal the k-th, and "
             "two releases of overlapping data can be intersected.")


def _check_numeric_frame(X) -> None:
    """TypeError for a DataFrame column that is not numeric (categories must be encoded first)."""
    for name, dtype in zip(X.columns, X.dtypes):
        kind = getattr(dtype, "kind", "O")
        if kind not in "biuf":
            shown = "category" if str(dtype) == "category" else str(dtype)
            raise param_error("X", f"column {name!r} has dtype {shown}; expected numeric (encode categories "
                                   "first)", wrong_type=True)


class LookAlikeAnonymizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Replace each row's sensitive columns by the mean of its group of at least ``k`` look-alike rows.

    Rows are grouped on the ``cluster_on`` columns (z-scored when ``standardize``) by MDAV (groups of
    exactly k, the last k..2k-1), a recursive kd split (groups of k..2k-1, much faster) or k-means
    repaired to sizes >= k. Each group's mean of the **raw** sensitive columns is computed once and
    given to every member, so members carry bit-identical values and the sensitive block is exactly
    k-anonymous. Other columns and the row order are unchanged, so ``make_pipeline(anonymizer,
    model)`` lines y up and each CV fold anonymizes only its own training rows.

    Guarantee: only the sensitive columns are k-anonymous; this is not differential privacy (k-1
    known members reveal the k-th; releases can be intersected).

    Parameters
    ----------
    sensitive_features : list of str or int
        Column names (DataFrame ``X``) or integer indices of the sensitive columns.
    k : int, default=10
        Minimum group size; 1 performs no anonymization (warns).
    method : {"auto", "mdav", "kd", "kmeans"}, default="auto"
        ``"auto"`` is MDAV up to 20,000 rows and kd above. MDAV: O(n^2 d / k); kd: O(n log n d).
    n_clusters : int, optional
        Number of k-means clusters (``method="kmeans"`` only); default ``max(1, n // (2k))``.
    cluster_on : {"sensitive", "all", "nonsensitive"}, default="sensitive"
        The columns that define look-alikes.
    standardize : bool, default=True
        z-score the clustering columns (constant columns get scale 1); means stay in raw units.
    new_rows : {"raw", "centroid"}, default="raw"
        What :meth:`transform` does with new rows: keep them, or give them the sensitive mean of the
        group whose clustering-space centroid is nearest.
    random_state : None, int, numpy Generator or RandomState
        Seeds k-means and the shuffle of :meth:`release`.
    verbose : bool or int, default=False
        Progress bar (tqdm) over the groups, and log lines.

    Attributes
    ----------
    labels_ : ndarray (n,)  group of each training row, in training row order.
    centroids_ : ndarray (J, d_s)  each group's mean of the raw sensitive columns (the released values).
    z_centroids_ : ndarray (J, d_z)  each group's centroid in the scaled clustering space.
    group_sizes_ : ndarray (J,)
    n_clusters_ : int
    k_achieved_ : int  exact k-anonymity of the released sensitive block (>= k).
    information_loss_ : float  within-group / total sum of squares of the std-scaled sensitive block.
    sensitive_idx_ : ndarray  positions of the sensitive columns.
    cluster_idx_ : ndarray  positions of the clustering columns.
    mean_, scale_ : ndarray (d_z,)  the clustering columns' training means and scales.
    method_ : str  the method used (``"auto"`` resolved).
    n_features_in_, feature_names_in_

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from teraml.anonymize import LookAlikeAnonymizer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = X @ [1.0, 2.0, 0.5, 0.0, -1.0] + rng.normal(size=200)
    >>> anon = LookAlikeAnonymizer([0, 1], k=10).fit(X)
    >>> int(anon.group_sizes_.min()), anon.k_achieved_ >= 10
    (10, True)
    >>> model = make_pipeline(LookAlikeAnonymizer([0, 1], k=10), RidgeCV()).fit(X, y)
    """

    #: ``check_estimator(LookAlikeAnonymizer([0], k=2))`` checks that cannot pass, with the reason.
    #: No option is silently ignored, so the checks that set ``n_clusters`` (a k-means-only parameter) on the
    #: default method get its error; and ``fit_transform`` releases the training rows' own group means while
    #: ``transform`` treats rows as new ones, so the two differ by design (as with ``TargetEncoder``).
    _expected_failed_checks: dict[str, str] = {
        **{name: "the check sets n_clusters, which only method='kmeans' uses; the default method raises "
                 "'n_clusters: only used with method='kmeans'' instead of silently ignoring it" for name in (
            "check_dont_overwrite_parameters", "check_methods_sample_order_invariance",
            "check_methods_subset_invariance", "check_fit2d_1feature", "check_fit2d_predict1d")},
        **{name: "fit_transform gives each training row its own group's mean; transform treats rows as new ones "
                 "(new_rows='raw' keeps them), so fit_transform(X) != fit(X).transform(X) by design" for name in (
            "check_transformer_general", "check_transformer_data_not_an_array")},
    }

    _parameter_constraints = {
        "k": [Interval("int", 1, text="an integer >= 1")],
        "method": [Options("auto", "mdav", "kd", "kmeans")],
        "cluster_on": [Options("sensitive", "all", "nonsensitive")],
        "standardize": BOOL,
        "new_rows": [Options("raw", "centroid")],
        "random_state": [None, Interval("int", 0), InstanceOf((np.random.Generator, np.random.RandomState)),
                         "None, an int >= 0, a numpy Generator or a RandomState"],
        "verbose": VERBOSE,
    }

    def __init__(self, sensitive_features, *, k=10, method="auto", n_clusters=None, cluster_on="sensitive",
                 standardize=True, new_rows="raw", random_state=None, verbose=False):
        self.sensitive_features = sensitive_features
        self.k = k
        self.method = method
        self.n_clusters = n_clusters
        self.cluster_on = cluster_on
        self.standardize = standardize
        self.new_rows = new_rows
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------ checks

    def _validate_input(self, X, *, reset: bool) -> np.ndarray:
        if hasattr(X, "columns") and hasattr(X, "dtypes"):
            _check_numeric_frame(X)
        X = validate_data(self, X, reset=reset, ensure_all_finite=True, dtype=[np.float64, np.float32],
                          ensure_min_samples=1)
        if X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        return X

    def _check_params(self, X: np.ndarray) -> dict:
        p = check_params(self, self._parameter_constraints, form="expected")
        n, d = X.shape
        names = list(getattr(self, "feature_names_in_", range(d)))
        p["sensitive_idx"] = np.asarray(check_columns(
            "sensitive_features", self.sensitive_features, names, by_name=hasattr(self, "feature_names_in_")),
            dtype=np.int64)
        if p["k"] > n:
            raise param_error("k", f"expected k <= n_samples = {n}, got k = {p['k']}")
        method = p["method"]
        if self.n_clusters is not None and method != "kmeans":
            raise param_error("n_clusters", f"only used with method='kmeans', got {self.n_clusters!r} with "
                                            f"method={method!r}")
        if method == "auto":
            method = "mdav" if n <= AUTO_MDAV_MAX_ROWS else "kd"
        p["method"] = method
        if method == "kmeans":
            hi = max(1, n // p["k"])
            p["n_clusters"] = (max(1, n // (2 * p["k"])) if self.n_clusters is None else check_param(
                "n_clusters", self.n_clusters, [Interval("int", 1, hi)], form="expected",
                expected=f"an integer in [1, n_samples // k] = [1, {hi}]"))
        others = np.setdiff1d(np.arange(d), p["sensitive_idx"])
        if p["cluster_on"] == "nonsensitive" and others.size == 0:
            raise param_error("cluster_on", "'nonsensitive' needs a non-sensitive column; X has none")
        p["cluster_idx"] = {"sensitive": p["sensitive_idx"], "all": np.arange(d),
                            "nonsensitive": others}[p["cluster_on"]]
        return p

    def _seed(self):
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(0, 2**31 - 1))
        return rs

    # ------------------------------------------------------------------------------------------ fit

    def _fit(self, X) -> np.ndarray:
        X = self._validate_input(X, reset=True)
        p = self._check_params(X)
        n = X.shape[0]
        k = p["k"]
        if k == 1:
            warnings.warn("k=1 performs no anonymization", UserWarning, stacklevel=3)
        Z = X[:, p["cluster_idx"]].astype(np.float64)
        mean = Z.mean(axis=0)
        scale = Z.std(axis=0)
        scale[~(scale > 0)] = 1.0
        if not p["standardize"]:
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        Zs = (Z - mean) / scale

        progress = None
        if p["verbose"] and p["method"] in ("mdav", "kd"):
            from tqdm.auto import tqdm
            progress = tqdm(total=max(1, n // k), desc=f"look-alike groups ({p['method']})", leave=False)
        try:
            if p["method"] == "mdav":
                labels = mdav(Zs, k, progress=progress)
            elif p["method"] == "kd":
                labels = kd_split(Zs, k, progress=progress)
            else:
                labels = kmeans_repaired(Zs, k, p["n_clusters"], self._seed(), verbose=bool(p["verbose"]))
        finally:
            if progress is not None:
                progress.close()

        J = int(labels.max()) + 1
        S = p["sensitive_idx"]
        means, sizes = group_means(X[:, S], labels, J)
        self.centroids_ = means.astype(X.dtype)
        self.z_centroids_, _ = group_means(Zs, labels, J)
        self.labels_ = labels
        self.group_sizes_ = sizes
        self.n_clusters_ = J
        self.sensitive_idx_ = S
        self.cluster_idx_ = p["cluster_idx"]
        self.mean_, self.scale_ = mean, scale
        self.method_ = p["method"]

        Xt = X.copy()
        Xt[:, S] = self.centroids_[labels]          # one gather: members share bit-identical means
        self.k_achieved_ = min_multiplicity(Xt[:, S])
        if self.k_achieved_ < k:
            raise RuntimeError(f"look-alike release is only {self.k_achieved_}-anonymous on the sensitive "
                               f"columns (k = {k}); this is a bug, please report it")
        XS = X[:, S].astype(np.float64)
        sd = XS.std(axis=0)
        sd[~(sd > 0)] = 1.0
        total = float(np.sum(((XS - XS.mean(axis=0)) / sd) ** 2))
        within = float(np.sum(((XS - means[labels]) / sd) ** 2))
        self.information_loss_ = within / total if total > 0 else 0.0
        if p["new_rows"] == "raw" and J - 1 < S.shape[0] and k > 1:
            warnings.warn(f"only {max(J - 1, 0)} of {S.shape[0]} sensitive coefficient directions are "
                          "identifiable; predictions on raw features may extrapolate; use new_rows='centroid' "
                          "or more groups", UserWarning, stacklevel=3)
        if p["verbose"]:
            logger.info("look-alike %s: %d rows in %d groups (sizes %d..%d), k achieved %d, information loss %.4f",
                        self.method_, n, J, sizes.min(), sizes.max(), self.k_achieved_, self.information_loss_)
        return Xt

    def fit(self, X, y=None):
        """Group the rows of ``X`` (n, d) and compute each group's sensitive means; ``y`` is ignored."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit and return the release: X with each row's sensitive columns set to its own group's mean.

        Same shape, column order and row order as ``X`` (float32 stays float32, anything else becomes
        float64). Not equal to ``fit(X).transform(X)``, which treats the rows as new ones.
        """
        return self._fit(X)

    def transform(self, X):
        """Rows not seen in ``fit``: unchanged (``new_rows="raw"``) or given their nearest group's means.

        ``"centroid"`` finds the nearest group centroid in the scaled clustering space (in chunks:
        O(m J d_z) time, bounded memory) and sets the sensitive columns to that group's means.
        """
        check_is_fitted(self, "labels_")
        new_rows = check_param("new_rows", self.new_rows, self._parameter_constraints["new_rows"], form="expected")
        X = self._validate_input(X, reset=False)
        out = X.copy()
        if new_rows == "centroid":
            Z = (X[:, self.cluster_idx_].astype(np.float64) - self.mean_) / self.scale_
            C = self.z_centroids_
            c2 = np.einsum("ij,ij->i", C, C)
            step = max(1, 2**22 // max(1, C.shape[0]))
            nearest = np.empty(X.shape[0], dtype=np.int64)
            for a in range(0, X.shape[0], step):
                block = Z[a:a + step]
                nearest[a:a + step] = np.argmin(c2[None, :] - 2.0 * block @ C.T, axis=1)
            out[:, self.sensitive_idx_] = self.centroids_[nearest]
        return out

    def release(self, X, y=None, *, shuffle=True):
        """Fit and return ``(X_rel, y_rel, report)``: the release, rows shuffled together with y.

        Shuffling (seeded by ``random_state``) removes the row order, which can re-identify people; a
        DataFrame's index is dropped for the same reason. ``y_rel`` is None without y. ``report`` has
        ``k``, ``k_achieved``, ``n_groups``, ``group_sizes``, ``information_loss``, ``method``,
        ``sensitive_features`` and ``guarantee`` (what is and is not protected).

        >>> import numpy as np
        >>> X = np.arange(40.0).reshape(20, 2); y = np.arange(20.0)
        >>> Xr, yr, report = LookAlikeAnonymizer([0], k=5, random_state=0).release(X, y)
        >>> bool(np.all(Xr[:, 1] - 1 == 2 * yr)), report["k_achieved"]
        (True, 5)
        """
        shuffle = check_param("shuffle", shuffle, BOOL, form="expected")
        is_frame = hasattr(X, "columns") and hasattr(X, "iloc")
        if y is not None:
            check_same_length({"X": X, "y": y})
        Xt = self._fit(X)
        n = Xt.shape[0]
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            order = rs.permutation(n)
        else:
            order = np.random.default_rng(rs).permutation(n)
        if not shuffle:
            order = np.arange(n)
        X_rel = Xt[order]
        if is_frame:
            import pandas as pd
            X_rel = pd.DataFrame(X_rel, columns=list(X.columns))
        y_rel = None
        if y is not None:
            if hasattr(y, "iloc"):
                y_rel = y.iloc[order].reset_index(drop=True)
            else:
                y_rel = np.asarray(y)[order]
        names = list(getattr(self, "feature_names_in_", range(Xt.shape[1])))
        report = {
            "k": int(self.k),
            "k_achieved": int(self.k_achieved_),
            "n_groups": int(self.n_clusters_),
            "group_sizes": self.group_sizes_.tolist(),
            "information_loss": float(self.information_loss_),
            "method": self.method_,
            "sensitive_features": [names[i] if isinstance(names[i], str) else int(names[i])
                                   for i in self.sensitive_idx_],
            "guarantee": GUARANTEE,
        }
        return X_rel, y_rel, report

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
