"""Label-DP release of bag aggregates, with a per-row privacy ledger.

Adjacency: one label replaced; features, bag membership and bag sizes are public. Labels are clipped
to ``clip = (lo, hi)``, so a bag mean has sensitivity ``Delta / k_a`` with ``Delta = hi - lo``.
Mechanisms: Laplace (scale ``Delta_a / epsilon``) and the analytic Gaussian mechanism of Balle & Wang
(2018): the smallest sigma with ``Phi(D/2s - e s/D) - e^e Phi(-D/2s - e s/D) <= delta``, found by
bisection (the classic ``sqrt(2 ln(1.25/delta))/epsilon`` is invalid for epsilon >= 1).
Bags are disjoint, so one release is (epsilon, delta)-label-DP; across releases the ledger composes
per row (basic composition) and reports the worst row.

Caveats: the floating-point noise is not hardened (Mironov 2012); a fixed ``random_state`` makes the
noise reproducible; rows released without noise have no DP guarantee.

>>> import numpy as np
>>> agg = Aggregator(np.arange(8.0), mechanism=LabelDP(1.0, (0, 8)), random_state=0)
>>> rel = agg.release(np.array([0, 0, 0, 0, 1, 1, 1, 1]))
>>> rel.bag_sizes.tolist(), rel.epsilon
([4, 4], 1.0)
>>> agg.ledger.total()
(1.0, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy.special import log_ndtr, ndtr

from teraml._validation import (
    InstanceOf,
    Interval,
    Satisfies,
    check_array,
    check_bool,
    check_choice,
    check_float,
    check_param,
    check_random_state,
    is_int,
)

__all__ = ["LabelDP", "Aggregator", "AggregateRelease", "PrivacyLedger", "PrivacyWarning", "normalize_bags",
           "analytic_gaussian_sigma", "check_epsilon", "check_clip"]


class PrivacyWarning(UserWarning):
    """A privacy protection was switched off on request (e.g. ``allow_reaggregation=True``)."""


# ----------------------------------------------------------------------------------------- mechanisms


def _finite_pair(clip) -> bool:
    if len(clip) != 2:
        return False
    lo, hi = float(clip[0]), float(clip[1])
    return math.isfinite(lo) and math.isfinite(hi) and lo < hi


_CLIP = [Satisfies(_finite_pair, "a pair (lo, hi) of finite floats, lo < hi")]


def check_epsilon(epsilon) -> float:
    """A label-DP epsilon: a finite float > 0."""
    return check_float("epsilon", epsilon, min_value=0.0, min_inclusive=False)


def check_clip(clip) -> tuple[float, float]:
    """A clipping range: a pair (lo, hi) of finite floats with lo < hi, returned as floats."""
    clip = check_param("clip", clip, _CLIP)
    return float(clip[0]), float(clip[1])


def _check_delta(mechanism, delta):
    text = "None for 'laplace', in (0, 1) for 'gaussian'"
    if mechanism == "laplace":
        return check_param("delta", delta, [Satisfies(lambda d: d is None, text)])
    # None is the usual value of delta, so for 'gaussian' it is a bad value (ValueError), not a bad type
    missing = Satisfies(lambda d: False, text, types=type(None))
    return check_param("delta", delta, [Interval("float", 0, 1, closed="neither"), missing, text])


def _gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """delta(sigma) of the Gaussian mechanism (Balle & Wang 2018, Theorem 8)."""
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon + log_ndtr(-a - b)))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest sigma for which the Gaussian mechanism is (epsilon, delta)-DP (bisection on log sigma).

    >>> s = analytic_gaussian_sigma(1.0, 1e-5)
    >>> abs(_gaussian_delta(s, 1.0) - 1e-5) < 1e-9
    True
    """
    lo, hi = 1e-6, 1.0
    while _gaussian_delta(hi, epsilon) > delta:
        hi *= 2.0
    while _gaussian_delta(lo, epsilon) <= delta:
        lo /= 2.0
    llo, lhi = math.log(lo), math.log(hi)
    for _ in range(200):
        mid = 0.5 * (llo + lhi)
        if _gaussian_delta(math.exp(mid), epsilon) > delta:
            llo = mid
        else:
            lhi = mid
        if lhi - llo < 1e-13:
            break
    return math.exp(lhi) * sensitivity


@dataclasses.dataclass(frozen=True)
class LabelDP:
    """A label-DP mechanism for bag means: ``LabelDP(epsilon, clip, mechanism="laplace", delta=None)``.

    ``scale(sizes)`` is the noise scale per bag (Laplace b or Gaussian sigma) and ``noise_var(sizes)``
    its variance (``2 b^2`` or ``sigma^2``).

    >>> LabelDP(0.5, (-4, 4)).scale([4, 8]).tolist()
    [4.0, 2.0]
    """

    epsilon: float
    clip: tuple
    mechanism: str = "laplace"
    delta: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "clip", check_clip(self.clip))
        object.__setattr__(self, "mechanism", check_choice("mechanism", self.mechanism, ("laplace", "gaussian"),
                                                           phrase="or"))
        object.__setattr__(self, "delta", _check_delta(self.mechanism, self.delta))

    @property
    def sensitivity(self) -> float:
        """Delta = hi - lo: the sensitivity of a sum of clipped labels."""
        return self.clip[1] - self.clip[0]

    def _unit_scale(self) -> float:
        if self.mechanism == "laplace":
            return 1.0 / self.epsilon
        return analytic_gaussian_sigma(self.epsilon, self.delta, 1.0)

    def scale(self, sizes) -> np.ndarray:
        """Noise scale of each bag mean (sensitivity Delta / k_a)."""
        k = np.asarray(sizes, dtype=np.float64)
        if np.any(k < 1):
            raise ValueError(f"sizes must be >= 1; got {sizes!r}")
        return self._unit_scale() * self.sensitivity / k

    def noise_var(self, sizes) -> np.ndarray:
        """Variance of the noise added to each bag mean."""
        s = self.scale(sizes)
        return 2.0 * s * s if self.mechanism == "laplace" else s * s

    def sample(self, sizes, rng: np.random.Generator) -> np.ndarray:
        """One noise draw per bag."""
        s = self.scale(sizes)
        if self.mechanism == "laplace":
            return rng.laplace(0.0, s)
        return rng.normal(0.0, s)


# ----------------------------------------------------------------------------------------- releases


_BAG_IDS = "bags must hold integer or string ids (>= 0, or -1 to leave a row out)"


def _id_kind(x) -> str | None:
    if x is None:
        return None
    if isinstance(x, str):
        return "str"
    if is_int(x):
        return "int"
    return "float" if isinstance(x, (float, np.floating)) else type(x).__name__


def _object_bag_ids(b: np.ndarray) -> np.ndarray:
    """An object array of ids as int64, float64 or str; None and mixed kinds (1 and "1") are refused."""
    vals = b.tolist()
    kinds = [_id_kind(x) for x in vals]
    if None in kinds:
        raise ValueError(f"{_BAG_IDS}; got None at row {kinds.index(None)}")
    distinct = sorted(set(kinds))
    if len(distinct) > 1:
        examples = " and ".join(repr(vals[kinds.index(k)]) for k in distinct)
        raise ValueError(f"{_BAG_IDS}, all of one kind; got {examples}")
    kind = distinct[0] if distinct else "int"
    if kind not in ("int", "str", "float"):
        raise ValueError(f"{_BAG_IDS}; got {kind} {vals[0]!r}")
    return np.array(vals, dtype={"int": np.int64, "str": str, "float": np.float64}[kind])


def normalize_bags(bags, n: int | None = None) -> tuple[np.ndarray, int]:
    """Map bag ids (ints >= 0 or strings; -1 leaves a row out) to 0..m-1 in sorted id order (O(n) for ints).

    Ids are all integers or all strings; ``None`` and the string ``"-1"`` are refused (the integer -1 is
    the one way to leave a row out).

    >>> normalize_bags(np.array([7, 7, -1, 3]))
    (array([ 1,  1, -1,  0]), 2)
    """
    b = np.asarray(bags)
    if b.ndim != 1:
        raise ValueError(f"bags must be a 1-D array of ids (one per row); got shape {b.shape}")
    if n is not None and b.shape[0] != n:
        raise ValueError(f"bags must have one id per row ({n}); got {b.shape[0]}")
    if b.dtype == object:
        b = _object_bag_ids(b)
    if b.dtype.kind in "US":
        vals = b.astype(str)
        if (vals == "-1").any():
            raise ValueError(f"{_BAG_IDS}; got the string '-1' at row {int(np.flatnonzero(vals == '-1')[0])}: "
                             "with string ids, leave a row out by giving it no bag, or use integer ids and -1")
        uniq, inv = np.unique(vals, return_inverse=True)
        return inv.astype(np.int64), int(uniq.size)
    if b.dtype.kind == "f":
        if not np.all(np.isfinite(b)) or np.any(b != np.round(b)):
            bad = float(b[~np.isfinite(b) | (b != np.round(b))][0])
            raise ValueError(f"{_BAG_IDS}; got {bad!r}")
        b = b.astype(np.int64)
    elif b.dtype.kind not in "iu":
        raise ValueError(f"{_BAG_IDS}; got dtype {b.dtype}")
    b = b.astype(np.int64, copy=False)
    if b.size and b.min() < -1:
        raise ValueError(f"{_BAG_IDS}; got {int(b[b < -1][0])!r}")
    keep = b >= 0
    if not keep.any():
        return np.full(b.shape, -1, dtype=np.int64), 0
    top = int(b.max())
    if top <= 4 * b.size + 1024:  # O(n): relabel through a presence table
        present = np.bincount(b[keep], minlength=top + 1) > 0
        rank = np.cumsum(present) - 1
        out = np.where(keep, rank[np.maximum(b, 0)], -1).astype(np.int64)
        return out, int(present.sum())
    uniq, inv = np.unique(b[keep], return_inverse=True)
    out = np.full(b.shape, -1, dtype=np.int64)
    out[keep] = inv
    return out, int(uniq.size)


@dataclasses.dataclass(frozen=True)
class AggregateRelease:
    """One release of bag aggregates.

    ``bags`` are ids 0..m-1 (-1 = row not released); ``bag_means`` the (noisy) means of the clipped
    labels; ``noise_var`` the variance of each mean's noise (0 without a mechanism). ``y`` broadcasts
    the means to the rows (NaN where the id is -1), the input the estimators take.
    """

    bags: np.ndarray
    bag_means: np.ndarray
    bag_sizes: np.ndarray
    noise_var: np.ndarray
    mechanism: str | None
    epsilon: float
    delta: float
    clip: tuple | None
    n_clipped: int

    @property
    def y(self) -> np.ndarray:
        out = np.full(self.bags.shape, np.nan)
        keep = self.bags >= 0
        out[keep] = self.bag_means[self.bags[keep]]
        return out

    def privacy_statement(self) -> str:
        """What this release discloses, in words."""
        sizes = self.bag_sizes
        size_text = f"{sizes.min()}-{sizes.max()}" if sizes.size and sizes.min() != sizes.max() else (
            f"{sizes[0]}" if sizes.size else "none")
        if self.mechanism is None:
            return (f"Release of {sizes.size} bag means over {int(sizes.sum())} rows (bag sizes {size_text}) "
                    "without noise: no differential-privacy guarantee (epsilon = inf).")
        lo, hi = self.clip
        delta = 0.0 if self.delta is None else self.delta
        return (f"Release of {sizes.size} bag means over {int(sizes.sum())} rows (bag sizes {size_text}), "
                f"labels clipped to [{lo:g}, {hi:g}] ({self.n_clipped} clipped), {self.mechanism} noise with "
                f"sensitivity Delta/k_a = {hi - lo:g}/k_a: ({self.epsilon:g}, {delta:g})-label-DP under "
                "replace-one-label adjacency (bags disjoint, so parallel composition within the release; "
                "features, membership and sizes public).")


class PrivacyLedger:
    """Per-row accounting of every release: basic composition per row, the worst row reported.

    >>> led = PrivacyLedger(4)
    >>> led.record(np.array([0, 0, 1, 1]), "laplace", 1.0, 0.0, (0, 1), np.array([2, 2]))
    >>> led.record(np.array([0, 0, -1, -1]), "laplace", 0.5, 0.0, (0, 1), np.array([2]))
    >>> led.epsilon_per_sample().tolist(), led.total()
    ([1.5, 1.5, 1.0, 1.0], (1.5, 0.0))
    """

    def __init__(self, n_samples: int):
        self.n_samples = int(n_samples)
        self.records: list[dict] = []
        self._eps = np.zeros(self.n_samples)
        self._delta = np.zeros(self.n_samples)
        self._count = np.zeros(self.n_samples, dtype=np.int64)
        self._noiseless = np.zeros(self.n_samples, dtype=np.int64)

    def record(self, bags, mechanism, epsilon, delta, clip, sizes) -> None:
        rows = np.asarray(bags) >= 0
        self.records.append({"rows": int(rows.sum()), "mechanism": mechanism, "epsilon": float(epsilon),
                             "delta": float(delta), "clip": clip, "bag_sizes": np.asarray(sizes).tolist()})
        self._eps[rows] += epsilon
        self._delta[rows] += delta
        self._count[rows] += 1
        if mechanism is None:
            self._noiseless[rows] += 1

    def epsilon_per_sample(self) -> np.ndarray:
        """epsilon_i = sum of the epsilons of the releases that contain row i (inf after a noiseless one)."""
        return self._eps.copy()

    def delta_per_sample(self) -> np.ndarray:
        return self._delta.copy()

    def total(self) -> tuple[float, float]:
        """(max_i epsilon_i, max_i delta_i): the guarantee of everything released so far."""
        if not self.records:
            return 0.0, 0.0
        return float(self._eps.max()), float(self._delta.max())

    def reaggregated_noiseless(self) -> int:
        """Rows released more than once with at least one noiseless release: their labels can be solved for."""
        return int(((self._count > 1) & (self._noiseless > 0)).sum())

    def summary(self) -> dict:
        eps, delta = self.total()
        return {
            "n_releases": len(self.records),
            "n_rows": self.n_samples,
            "rows_released": int((self._count > 0).sum()),
            "max_releases_per_row": int(self._count.max()) if self.n_samples else 0,
            "epsilon": eps,
            "delta": delta,
            "mechanisms": sorted({str(r["mechanism"]) for r in self.records}),
            "noiseless_reaggregated_rows": self.reaggregated_noiseless(),
        }

    def statement(self) -> str:
        """Everything released so far and the resulting guarantee, in words."""
        s = self.summary()
        lines = [f"{s['n_releases']} release(s) over {s['rows_released']} of {s['n_rows']} rows; "
                 f"at most {s['max_releases_per_row']} release(s) per row."]
        for i, r in enumerate(self.records, 1):
            sizes = r["bag_sizes"]
            size_text = f"{min(sizes)}-{max(sizes)}" if sizes else "none"
            if r["mechanism"] is None:
                lines.append(f"  release {i}: {r['rows']} rows, bag sizes {size_text}, no noise (epsilon = inf).")
            else:
                lo, hi = r["clip"]
                lines.append(f"  release {i}: {r['rows']} rows, bag sizes {size_text}, {r['mechanism']} noise, "
                             f"epsilon {r['epsilon']:g}, delta {r['delta']:g}, clip [{lo:g}, {hi:g}], "
                             f"sensitivity Delta/k_a = {hi - lo:g}/k_a.")
        lines.append(f"Total: ({s['epsilon']:g}, {s['delta']:g})-label-DP, replace-one-label adjacency; basic "
                     "(sequential) composition over the releases that contain a row, parallel composition over "
                     "disjoint bags; the worst row is reported.")
        lines.append("Assumptions: bags were formed without looking at labels (priors built from earlier "
                     "releases are post-processing); bag membership and sizes are public.")
        if s["noiseless_reaggregated_rows"]:
            lines.append(f"Warning: {s['noiseless_reaggregated_rows']} rows were aggregated more than once with a "
                         "noiseless release involved: their labels can be reconstructed.")
        return "\n".join(lines)


class Aggregator:
    """Releases bag means of ``y`` (optionally under label DP) and keeps a :class:`PrivacyLedger`.

    ``y`` may hold NaN on rows that are never released (bag id -1); a released row must be finite.

    A row may be released again only if every release involving it is noisy; otherwise the labels can
    be solved for from the stacked bag sums. ``allow_reaggregation=True`` overrides this, with a
    :class:`PrivacyWarning`, and the ledger records epsilon = inf. Calling the aggregator is
    ``release``, so it can serve as a PriorBoost oracle.

    >>> agg = Aggregator(np.ones(6))
    >>> agg(np.array([0, 0, 0, 1, 1, 1])).bag_means.tolist()
    [1.0, 1.0]
    """

    def __init__(self, y, *, mechanism=None, allow_reaggregation=False, random_state=None):
        self.y = check_array("y", y, ndim=1, finite=False)   # finite where released: checked by release()
        self.mechanism = check_param("mechanism", mechanism, [InstanceOf(LabelDP), None])
        self.allow_reaggregation = check_bool("allow_reaggregation", allow_reaggregation)
        self._rng = check_random_state("random_state", random_state)
        self.ledger = PrivacyLedger(y.shape[0])
        self._warned = False

    def release(self, bags) -> AggregateRelease:
        """Release the (noisy) means of the clipped labels of each bag."""
        n = self.y.shape[0]
        ids, m = normalize_bags(bags, n)
        keep = ids >= 0
        bad = int((~np.isfinite(self.y[keep])).sum())
        if bad:
            raise ValueError(f"y must be finite on bagged rows; got {bad} non-finite values")
        led = self.ledger
        again = keep & (led._count > 0)
        if again.any():
            risky = again & ((led._noiseless > 0) | (self.mechanism is None))
            c = int(risky.sum())
            if c:
                if not self.allow_reaggregation:
                    raise ValueError(
                        f"{c} rows would be aggregated again with a noiseless release involved, which lets labels "
                        "be solved for; add a DP mechanism or pass allow_reaggregation=True")
                if not self._warned:
                    self._warned = True
                    times = int(led._count[risky].max()) + 1
                    warnings.warn(
                        f"allow_reaggregation=True: labels aggregated {times} times without noise can be solved "
                        "for after about k+1 rounds; ledger records epsilon=inf", PrivacyWarning, stacklevel=2)
        y = self.y
        n_clipped = 0
        if self.mechanism is not None:
            lo, hi = self.mechanism.clip
            outside = keep & ((y < lo) | (y > hi))
            n_clipped = int(outside.sum())
            if n_clipped:
                frac = n_clipped / max(1, int(keep.sum()))
                warnings.warn(f"{frac:.1%} of labels lie outside clip=({lo:g}, {hi:g}) and were clipped",
                              UserWarning, stacklevel=2)
            y = np.clip(y, lo, hi)
        sizes = np.bincount(ids[keep], minlength=m).astype(np.int64)
        sums = np.bincount(ids[keep], weights=y[keep], minlength=m)
        means = sums / np.maximum(sizes, 1)
        if self.mechanism is not None and m:
            means = means + self.mechanism.sample(sizes, self._rng)
            noise_var = self.mechanism.noise_var(sizes)
            eps, delta, name, clip = self.mechanism.epsilon, self.mechanism.delta or 0.0, self.mechanism.mechanism, \
                self.mechanism.clip
        else:
            noise_var = np.zeros(m)
            eps, delta, name, clip = math.inf, 0.0, None, None
        led.record(ids, name, eps, delta, clip, sizes)
        return AggregateRelease(ids, means, sizes, noise_var, name, eps, delta, clip, n_clipped)

    __call__ = release
