"""Clustering-based sensitivity sampling (Axiotis et al., ICML 2024): a small weighted subset whose weighted
loss stands in for the whole dataset's.

Cluster the embeddings; take each cluster's *representative* (the member nearest its centre) whole and query
its loss once; every other item i gets the upper bound ``v_i = L_a(i) + lam * |e_i - e_r(a(i))|^z`` of its loss
(Hoelder continuity, measured to a data point, so it holds exactly), and ``m`` draws with p proportional to v,
weighted ``count / (m p)``, complete an unbiased estimate of the total loss. ``score="kmeans"`` is the classic
loss-free k-means coreset sensitivity ``D_i / Phi + 1 / |C_a(i)|`` instead (no loss queries).

>>> import numpy as np
>>> from teraml.selection import select
>>> X = np.random.default_rng(0).normal(size=(2000, 8))
>>> losses = np.abs(X[:, 0]) + 0.1
>>> sel = select(X, 100, loss_fn=lambda idx: losses[idx], random_state=0)
>>> len(sel) <= 100, sel.n_loss_queries          # k = 20 representatives queried, 80 draws
(True, 20)
>>> mean, se = sel.estimate_mean(losses[sel.indices])
>>> bool(abs(mean - losses.mean()) < 4 * se)
True
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from teraml._validation import (
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    check_array,
    check_param,
    check_params,
    type_name,
)
from teraml.selection._cluster import (
    assign,
    assign_torch,
    check_clusterer,
    distance_to,
    drop_empty,
    fit_centers,
    power_z,
    representatives,
)
from teraml.selection._selection import Selection

__all__ = ["select", "SensitivitySampler", "Selection", "sensitivity_probabilities", "check_X", "default_n_clusters",
           "split_random_state", "check_select_params", "kmeans_scores", "warn_k_vs_m", "warn_zero_losses",
           "warn_uniform_fallback", "warn_small_probabilities", "check_clustering_cost", "check_losses"]

#: The warning threshold of pitfall 2: min(p) * |F| below this means some weights are huge.
TINY_P = 1e-3


def default_n_clusters(budget: int) -> int:
    """``min(1000, max(1, budget // 5))``."""
    return min(1000, max(1, budget // 5))


def check_X(X):
    """The embeddings as a 2-D float32/float64 array (an ndarray or memmap of a float dtype is used as is, without
    a copy), checked finite chunk by chunk."""
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"X must be a numeric array-like; got {type_name(X)}")
    if hasattr(X, "tocsr") and hasattr(X, "nnz"):
        raise TypeError(f"X must be a dense numeric array (or memmap): sparse input is not supported; got "
                        f"{type_name(X)}")
    if not (isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64)):
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError):
            raise TypeError(f"X must be a numeric array-like; got {type_name(X)}") from None
        if arr.dtype == object:   # numbers held as Python objects are fine; text is not
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"X must be a numeric array-like; got dtype {arr.dtype}") from None
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise TypeError(f"X must be a numeric array-like; got dtype {arr.dtype}")
        X = arr.astype(np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be 2-D with at least 1 row and 1 column; got shape {X.shape}")
    step = max(1, (16 * 2**20) // (X.shape[1] * X.dtype.itemsize))
    for s in range(0, X.shape[0], step):
        ok = np.isfinite(X[s:s + step]).all(axis=1)
        if not ok.all():
            raise ValueError(f"X must be finite; found NaN or inf in row {s + int(np.argmin(ok))}")
    return X


def split_random_state(random_state):
    """(clustering seed as an int, sampling SeedSequence): two independent streams from one seed."""
    if isinstance(random_state, np.random.Generator):
        a, b = random_state.spawn(2)
        return int(a.integers(2**31 - 1)), np.random.SeedSequence(int(b.integers(2**63 - 1)))
    ss = np.random.SeedSequence(random_state)
    a, b = ss.spawn(2)
    return int(a.generate_state(1)[0] % (2**31 - 1)), b


def sensitivity_probabilities(labels, D, delta, sizes, take_all, *, score, L=None, lam="balanced",
                              normalize="global", uniform_mix=0.0) -> tuple[np.ndarray, float]:
    """The sampling distribution p over all rows (0 on the take-all rows) and the lam used.

    ``score="loss"``: v_i = L[a(i)] + lam * delta_i on the free rows (lam "balanced": sum L[a] / sum delta over
    them, 0 if that sum is 0); all L = 0 gives p proportional to delta. ``score="kmeans"``: s_i = D_i / Phi +
    1 / |C_a(i)| (``normalize="global"``) or D_i / cost(C_a(i)) + 1 / |C_a(i)| (``"cluster"``; a zero-cost
    cluster keeps its size term). Then p = (1 - uniform_mix) v / sum v + uniform_mix / |F|; all-zero scores
    fall back to uniform. Sums are float64.
    """
    n = labels.size
    free = ~take_all
    n_free = int(free.sum())
    p = np.zeros(n, dtype=np.float64)
    if n_free == 0:
        return p, 0.0
    lam_used = 0.0
    if score == "loss":
        La = L[labels[free]]
        dl = delta[free]
        if lam == "balanced":
            den = float(dl.sum(dtype=np.float64))
            lam_used = float(La.sum(dtype=np.float64)) / den if den > 0 else 0.0
        else:
            lam_used = float(lam)
        if not np.any(L > 0):
            warn_zero_losses(stacklevel=3)
            v = dl.copy()
        else:
            v = La + lam_used * dl
    else:
        phi = float(D.sum(dtype=np.float64))
        costs = np.bincount(labels, weights=D, minlength=sizes.size) if normalize == "cluster" else None
        v = kmeans_scores(labels[free], D[free], sizes, normalize=normalize, phi=phi, costs=costs)
    total = float(v.sum(dtype=np.float64))
    if total <= 0:
        warn_uniform_fallback(stacklevel=3)
        q = np.full(n_free, 1.0 / n_free)
    else:
        q = v / total
    p[free] = (1.0 - uniform_mix) * q + uniform_mix / n_free
    return p, lam_used


def kmeans_scores(labels, D, sizes, *, normalize, phi=0.0, costs=None) -> np.ndarray:
    """The loss-free score of rows with cluster ``labels`` and distances ``D``: D / phi + 1 / sizes[label]
    (``normalize="global"``; phi = the whole data's clustering cost, 0 drops the first term) or
    D / costs[label] + 1 / sizes[label] (``"cluster"``; a zero-cost cluster keeps its size term). Unnormalised:
    the caller divides by the sum over all rows. Works on any subset of rows (a chunk, a Spark batch) given the
    whole data's ``sizes``, ``phi`` and ``costs``."""
    size_term = 1.0 / sizes[labels]
    if normalize == "global":
        return (D / phi if phi > 0 else 0.0) + size_term
    c = costs[labels]
    return np.divide(D, c, out=np.zeros_like(D), where=c > 0) + size_term


def warn_k_vs_m(k: int, m: int, *, stacklevel: int = 3) -> None:
    """Warn when k > m / 3 (the size term dominates; pitfall 8)."""
    if k > m / 3:
        warnings.warn(f"n_clusters={k} > m/3 with m={m} draws: the size term dominates and sampling degrades "
                      "towards stratified-uniform; use fewer clusters or a larger budget", UserWarning,
                      stacklevel=stacklevel + 1)


def warn_zero_losses(*, stacklevel: int = 3) -> None:
    """Warn that every representative loss is 0 (p then follows the distance term alone)."""
    warnings.warn("all representative losses are 0: sampling proportional to the distance term alone",
                  UserWarning, stacklevel=stacklevel + 1)


def warn_uniform_fallback(*, stacklevel: int = 3) -> None:
    """Warn that every score is 0 (p then is uniform over the free rows)."""
    warnings.warn("all scores are 0: sampling falls back to uniform", UserWarning, stacklevel=stacklevel + 1)


def warn_small_probabilities(min_p: float, n_free: int, n_zero: int, *, stacklevel: int = 3) -> None:
    """Warn about free items that can never be drawn (p = 0) or whose p is tiny (min(p) |F| < TINY_P)."""
    if n_free == 0:
        return
    if n_zero:
        warnings.warn(f"{n_zero} items have probability 0 (lam=0 and a representative loss of 0): they can "
                      "never be drawn, so the estimate leaves them out; use lam='balanced' or uniform_mix > 0",
                      UserWarning, stacklevel=stacklevel + 1)
    elif min_p * n_free < TINY_P:
        warnings.warn(f"min(p) * |F| = {min_p * n_free:.3g} < {TINY_P:g}: some items have a tiny probability and "
                      "would get huge weights; consider uniform_mix=0.05", UserWarning, stacklevel=stacklevel + 1)


def check_clustering_cost(phi: float, delta_total: float | None, centers: np.ndarray, n: int, *,
                          stacklevel: int = 3) -> None:
    """An overflow error when Phi or sum(delta) is not finite; a warning when Phi = 0 with more rows than
    clusters (every row on its centre: the distance terms vanish)."""
    if not (np.isfinite(phi) and (delta_total is None or np.isfinite(delta_total))):
        big = float(np.abs(centers).max())
        raise ValueError(f"squared distances overflow float64 (X and its centres reach {big:.3g}); rescale X, "
                         "e.g. divide it by its largest absolute value")
    if phi == 0 and n > centers.shape[0]:
        warnings.warn("every row coincides with its cluster centre (clustering cost 0): the distance terms "
                      "vanish and sampling is uniform within clusters", UserWarning, stacklevel=stacklevel + 1)


_SELECT_PARAMS = ("score", "n_clusters", "z", "lam", "normalize", "uniform_mix", "clusterer", "random_state",
                  "verbose")


def check_select_params(budget, n_rows: int | None = None, /, *, caller: str = "select", **params) -> dict:
    """:func:`select`'s parameters (all but ``X`` and ``loss_fn``), checked as ``select`` checks them.

    Returns the checked values (``budget``, ``score``, ``n_clusters``, ``z``, ``lam``, ``normalize``,
    ``uniform_mix``, ``clusterer``, ``random_state``, ``verbose``). With ``n_rows``, ``budget`` and
    ``n_clusters`` are checked against it and ``n_clusters`` gets its default; without, only the parameters
    that do not depend on the data are. A key ``select`` does not take is a ``TypeError`` naming ``caller``.
    """
    unknown = sorted(set(params) - set(_SELECT_PARAMS))
    if unknown:
        raise TypeError(f"{caller} got unexpected parameters {unknown}; it takes {', '.join(_SELECT_PARAMS)}")
    sampler = SensitivitySampler(budget, **params)
    if n_rows is None:
        p = check_params(sampler, sampler._parameter_constraints)
        p["clusterer"] = check_clusterer(sampler.clusterer)
        return p
    return sampler._check(n_rows)


class SensitivitySampler(BaseEstimator):
    """Sensitivity sampling from one clustering: ``fit`` clusters and scores once, ``sample`` draws (again).

    Parameters
    ----------
    budget : int >= 1. Items to select: k representatives + m = budget - k draws (``score="loss"``), or m =
        budget draws (``"kmeans"``). Duplicates are merged, so the unique count can be smaller.
    score : "loss" (default; the paper's loss-aware score, ``loss_fn`` called once on the k representatives) or
        "kmeans" (the loss-free k-means coreset sensitivity; no loss queries).
    n_clusters : int or None. k; None gives min(1000, max(1, budget // 5)). Warns when k > m / 3.
    z : float >= 1, default 2. The Hoelder exponent: distances enter as |.|^z (the clustering always minimises
        squared distance; z = 1 is a heuristic k-median that resists outliers).
    lam : "balanced" (both terms of v carry equal mass; makes p invariant to the scale of X) or a float >= 0.
    normalize : "global" or "cluster" (``score="kmeans"`` only).
    uniform_mix : float in [0, 1). Mixes in the uniform distribution (caps the weights at 1 / (m mix / |F|)).
    clusterer : "auto" (KMeans up to 2e5 in-memory rows, MiniBatchKMeans above and for memmaps), "kmeans",
        "minibatch", "torch" (teraml[torch]; CUDA when available) or an estimator with ``cluster_centers_``
        (used as is when fitted, else cloned and fitted).
    random_state : None, int >= 0 or numpy Generator. Spawns separate clustering and sampling streams.
    verbose : bool. A progress bar over the assignment pass and the stage times.

    Fitted: ``cluster_centers_``, ``labels_``, ``cluster_sizes_``, ``representatives_`` (int64 rows; empty for
    ``"kmeans"``), ``representative_losses_``, ``probabilities_`` (per row, 0 on representatives),
    ``clustering_cost_`` (Phi_k = sum |e_i - c_a(i)|^z), ``lam_``, ``n_clusters_`` (after dropping empty
    clusters), ``n_loss_queries_``, ``n_features_in_``, ``timings_`` (seconds per stage).

    >>> import numpy as np
    >>> X = np.random.default_rng(1).normal(size=(500, 4))
    >>> sampler = SensitivitySampler(50, score="kmeans", n_clusters=5, random_state=0).fit(X)
    >>> a, b = sampler.sample(), sampler.sample(random_state=7)     # one clustering, two draws
    >>> int(a.counts.sum()), int(b.counts.sum()), np.array_equal(a.indices, sampler.sample().indices)
    (50, 50, True)
    """

    #: scikit-learn's ``check_estimator(SensitivitySampler(10, score="kmeans"))`` checks that cannot pass, with the
    #: reason (the library's convention; tests/test_estimators.py passes it as ``expected_failed_checks``).
    #: SensitivitySampler is a sampler, not a model: its ``fit(X, loss_fn)`` takes the loss oracle where the checks
    #: pass ``y``; cloning, parameters and repr follow scikit-learn.
    _expected_failed_checks: dict[str, str] = {
        **{name: "fit(X, loss_fn) takes a loss oracle (a callable) as its second argument, where the check "
                 "passes y (an array)" for name in (
            "check_dict_unchanged", "check_dont_overwrite_parameters", "check_estimators_dtypes",
            "check_estimators_fit_returns_self", "check_estimators_nan_inf", "check_estimators_overwrite_params",
            "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit2d_1feature",
            "check_fit2d_predict1d", "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
            "check_positive_only_tag_during_fit", "check_dtype_object",
            "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_n_features_in",
            "check_n_features_in_after_fitting", "check_pipeline_consistency", "check_readonly_memmap_input")},
        "check_estimators_empty_data_messages": "X with 0 columns raises the library's message 'X must be 2-D with at "
                                                "least 1 row and 1 column; got shape (12, 0)', not scikit-learn's",
        "check_complex_data": "complex X raises the library's TypeError 'X must be a numeric array-like; got dtype "
                              "complex128', not scikit-learn's ValueError",
        "check_fit2d_1sample": "one row raises 'budget must be an integer in [1, 1]; got 10' (the budget cannot exceed "
                               "the rows), not a message about the number of samples",
    }

    def __init__(self, budget, *, score="loss", n_clusters=None, z=2.0, lam="balanced", normalize="global",
                 uniform_mix=0.0, clusterer="auto", random_state=None, verbose=False):
        self.budget = budget
        self.score = score
        self.n_clusters = n_clusters
        self.z = z
        self.lam = lam
        self.normalize = normalize
        self.uniform_mix = uniform_mix
        self.clusterer = clusterer
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "score": [Options("loss", "kmeans", phrase="or")],
        "z": [Interval("float", 1, text="a finite float >= 1")],
        "lam": [Options("balanced"), Interval("float", 0), "'balanced' or a finite float >= 0"],
        "normalize": [Options("global", "cluster", phrase="or")],
        "uniform_mix": [Interval("float", 0, 1, closed="left")],
        "random_state": [None, Interval("int", 0), InstanceOf(np.random.Generator),
                         "None, an int >= 0 or a numpy.random.Generator"],
        "verbose": VERBOSE,
    }

    # ------------------------------------------------------------------------------------------ fit

    def _check(self, n: int) -> dict:
        budget = self.budget
        p = check_params(self, self._parameter_constraints)
        p["budget"] = check_param("budget", budget, [Interval("int", 1, n), f"an integer in [1, {n}]"])
        k = self.n_clusters
        if k is None:
            k = min(default_n_clusters(p["budget"]), n)
        else:
            k = check_param("n_clusters", k, [Interval("int", 1, n), f"an integer in [1, {n}]"])
        if p["score"] == "loss" and p["budget"] < k + 1:
            raise ValueError(f"budget must be >= n_clusters + 1 = {k + 1} for score='loss'; got {p['budget']}")
        p["n_clusters"] = k
        p["clusterer"] = check_clusterer(self.clusterer)
        return p

    def fit(self, X, loss_fn=None):
        """Cluster ``X`` (n, d), query ``loss_fn`` once on the k representatives (``score="loss"``) and compute the
        sampling probabilities. ``loss_fn(indices: int64 array) -> losses (k,) >= 0``."""
        X = check_X(X)
        p = self._check(X.shape[0])
        if p["score"] == "loss" and loss_fn is None:
            raise ValueError("score='loss' needs loss_fn(indices) -> losses; pass loss_fn or use score='kmeans'")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be a callable loss_fn(indices) -> losses; got {type_name(loss_fn)}")
        self._cluster(X, p)
        L = self._query(loss_fn) if p["score"] == "loss" else None
        self._score(p, L)
        self._loss_fn = loss_fn if p["score"] == "loss" else None
        return self

    def _fit_clustering(self, X) -> dict:
        """Validate and cluster only (the first step of a two-step run: the representatives, no loss query)."""
        X = check_X(X)
        p = self._check(X.shape[0])
        self._cluster(X, p)
        return p

    def _cluster(self, X, p) -> None:
        from tqdm.auto import tqdm

        n = X.shape[0]
        k, budget, score = p["n_clusters"], p["budget"], p["score"]
        m = budget - k if score == "loss" else budget
        warn_k_vs_m(k, m, stacklevel=3)
        t = {}
        seed, self._sample_seq = split_random_state(self.random_state)
        t0 = time.perf_counter()
        centers, backend = fit_centers(X, k, p["clusterer"], seed, verbose=bool(self.verbose))
        t["cluster"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with tqdm(total=n, desc="assign", unit="row", disable=not self.verbose, leave=False) as bar:
            assigner = assign_torch if backend == "torch" else assign
            labels, sqdist = assigner(X, centers, progress=bar.update)
        labels, centers, sizes = drop_empty(labels, centers)
        k = centers.shape[0]
        D = power_z(sqdist, p["z"])
        t["assign"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if score == "loss":
            reps = representatives(labels, sqdist, k)
            delta = distance_to(X, reps, labels, p["z"])
        else:
            reps, delta = np.empty(0, dtype=np.int64), None
        t["distances"] = time.perf_counter() - t0
        self._adopt(labels=labels, centers=centers, sizes=sizes, reps=reps, D=D, delta=delta, p=p, backend=backend,
                    timings=t)
        check_clustering_cost(self.clustering_cost_, None if delta is None else float(delta.sum(dtype=np.float64)),
                              centers, n, stacklevel=3)

    def _adopt(self, *, labels, centers, sizes, reps, D, delta, p, backend, timings) -> None:
        """Set the fitted clustering (from a fit, or from the state file of a two-step run)."""
        self.cluster_centers_ = centers
        self.labels_ = labels
        self.cluster_sizes_ = sizes
        self.representatives_ = reps
        self.clustering_cost_ = float(D.sum(dtype=np.float64))
        self.n_clusters_ = int(centers.shape[0])
        self.n_features_in_ = int(centers.shape[1])
        self.backend_ = backend
        self._D, self._delta, self._p = D, delta, p
        self.timings_ = timings

    def _query(self, loss_fn) -> np.ndarray:
        reps = self.representatives_
        t0 = time.perf_counter()
        got = check_array("loss_fn's result", loss_fn(reps.copy()), ndim=None, finite=False)
        self.timings_["loss_fn"] = time.perf_counter() - t0
        return check_losses(got, reps.size)

    def _score(self, p, L) -> None:
        t0 = time.perf_counter()
        take_all = np.zeros(self.labels_.size, dtype=bool)
        take_all[self.representatives_] = True
        prob, lam = sensitivity_probabilities(self.labels_, self._D, self._delta, self.cluster_sizes_, take_all,
                                              score=p["score"], L=L, lam=p["lam"], normalize=p["normalize"],
                                              uniform_mix=p["uniform_mix"])
        free = ~take_all
        if free.any():
            warn_small_probabilities(float(prob[free].min()), int(free.sum()), int(np.sum(prob[free] == 0)),
                                     stacklevel=3)
        self.representative_losses_ = L if L is not None else np.empty(0)
        self.probabilities_ = prob
        self.lam_ = lam
        self.n_loss_queries_ = 0 if L is None else int(L.size)
        self._take_all = take_all
        self.timings_["score"] = time.perf_counter() - t0

    def __getstate__(self):   # the loss function is not pickled (a lambda cannot be)
        state = super().__getstate__()
        state.pop("_loss_fn", None)
        return state

    # ------------------------------------------------------------------------------------------ sample

    def sample(self, *, n_samples=None, random_state=None) -> Selection:
        """Draw a :class:`Selection`: the representatives whole (weight 1) plus ``n_samples`` i.i.d. draws
        (default: the budget's m) proportional to ``probabilities_``, merged, weight ``count / (m p)``.

        Without ``random_state`` the fitted sampling stream is restarted, so repeated calls give the same draw;
        pass ``random_state`` to re-draw from the same clustering.
        """
        if not hasattr(self, "probabilities_"):
            raise NotFittedError("This SensitivitySampler instance is not fitted yet: call fit(X, loss_fn) before "
                                 "sample()")
        p = self._p
        k = self.representatives_.size
        if n_samples is None:
            m = p["budget"] - k   # k: the representatives kept (empty clusters dropped); 0 for score="kmeans"
        else:
            m = check_param("n_samples", n_samples, [Interval("int", 0)])
        rng = np.random.default_rng(self._sample_seq if random_state is None else random_state)
        prob = self.probabilities_
        if m > 0 and prob.sum() > 0:
            draws = rng.choice(prob.size, size=m, replace=True, p=prob)
            idx, counts = np.unique(draws, return_counts=True)
        else:
            m = 0
            idx, counts = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        reps = self.representatives_
        L = self.representative_losses_
        n_s = idx.size
        indices = np.concatenate([reps, idx.astype(np.int64)])
        weights = np.concatenate([np.ones(k), counts / (m * prob[idx]) if m else np.empty(0)])
        cnt = np.concatenate([np.ones(k, dtype=np.int64), counts.astype(np.int64)])
        probs = np.concatenate([np.ones(k), prob[idx]])
        role = np.array(["representative"] * k + ["sample"] * n_s, dtype=object)
        losses = np.concatenate([L if L.size else np.full(k, np.nan), np.full(n_s, np.nan)])
        order = np.argsort(indices, kind="stable")
        sel = Selection(indices[order], weights[order], cnt[order], probs[order], role[order].astype(str),
                        losses[order], n_total=int(prob.size), n_loss_queries=int(self.n_loss_queries_))
        object.__setattr__(sel, "_loss_source", getattr(self, "_loss_fn", None))
        return sel

    # ------------------------------------------------------------------------------------------ state

    def _state(self) -> dict:
        """What finishing a two-step run needs (no X): arrays and parameters."""
        return {"labels": self.labels_, "D": self._D, "delta": self._delta if self._delta is not None
                else np.empty(0), "centers": self.cluster_centers_, "sizes": self.cluster_sizes_,
                "representatives": self.representatives_}

    def _finish(self, state: dict, losses: np.ndarray) -> SensitivitySampler:
        """Score from a saved clustering ``state`` and the representatives' ``losses`` (no re-clustering)."""
        n = state["labels"].size
        p = self._check(n)
        _, self._sample_seq = split_random_state(self.random_state)
        self._adopt(labels=state["labels"].astype(np.int32), centers=state["centers"], sizes=state["sizes"],
                    reps=state["representatives"].astype(np.int64), D=state["D"],
                    delta=state["delta"] if state["delta"].size else None, p=p, backend="state file", timings={})
        self._score(p, check_losses(np.asarray(losses, dtype=np.float64), self.representatives_.size))
        return self


def check_losses(got: np.ndarray, k: int) -> np.ndarray:
    """The k representative losses: finite and >= 0."""
    got = np.asarray(got)
    if got.shape == (k, 1):
        got = got[:, 0]
    if got.shape != (k,) or not np.issubdtype(got.dtype, np.number):
        bad = got.size if got.ndim != 1 or got.size != k else k
        raise ValueError(f"loss_fn must return {k} finite losses >= 0; got shape {got.shape}, {bad} invalid")
    got = got.astype(np.float64)
    bad = int(np.sum(~np.isfinite(got)) + np.sum(np.isfinite(got) & (got < 0)))
    if bad:
        raise ValueError(f"loss_fn must return {k} finite losses >= 0; got shape {got.shape}, {bad} invalid")
    return got


def select(X, budget, *, loss_fn=None, score="loss", n_clusters=None, z=2.0, lam="balanced", normalize="global",
           uniform_mix=0.0, clusterer="auto", random_state=None, verbose=False) -> Selection:
    """Select a weighted subset of ``budget`` items of ``X`` by sensitivity sampling: the one entry point.

    Equal to ``SensitivitySampler(budget, ...).fit(X, loss_fn).sample()``; see :class:`SensitivitySampler` for
    the parameters. ``loss_fn(indices) -> losses`` is called once, on the k cluster representatives.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(1000, 5))
    >>> sel = select(X, 60, score="kmeans", random_state=0)     # loss-free preselection
    >>> sel.n_loss_queries, int(sel.counts.sum())
    (0, 60)
    """
    return SensitivitySampler(budget, score=score, n_clusters=n_clusters, z=z, lam=lam, normalize=normalize,
                              uniform_mix=uniform_mix, clusterer=clusterer, random_state=random_state,
                              verbose=verbose).fit(X, loss_fn).sample()

