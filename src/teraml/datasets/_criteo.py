"""A seeded click-through-rate task shaped like Criteo's display-advertising data (numpy only)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from teraml._validation import Interval, check_bool, check_float, check_int, check_param, check_random_state

__all__ = ["make_criteo_like"]

# Fixed parts of the task (the public arguments set the rest).
_VOCAB_MIN, _VOCAB_MAX = 5, 20_000      # raw vocabulary sizes, log-uniform
_N_EFFECT_FIELDS = 8                    # categorical fields with a value effect
_EFFECT_SD = 0.5
_N_CROSSES = 4                          # hashed crosses of two categorical fields
_CROSS_BUCKETS = 997
_CROSS_SD = 0.4
_N_WEIGHTED_DENSE = 5                   # dense fields with a linear weight
_DENSE_SD = 0.5
_TANH_SCALE = 0.8
_TEACHER_ROWS = 200_000                 # the teacher's own sample: standardization constants and intercept
_TEACHER_TAG = 0x7EAC4E                 # keeps the teacher's stream apart from a sampling seed of equal value
_BUCKETS_TEXT = "an int >= 1 that fits in int64"


def _mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on a uint64 array (in place, wrapping arithmetic): a fast, well-spread hash."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * t)  # no overflow for any finite t


@dataclass(frozen=True, eq=False)
class _Teacher:
    """Everything that defines the task; a pure function of the teacher seed and the shape arguments."""

    cdf: tuple            # per categorical field: the truncated-Zipf CDF over popularity ranks
    raw_of_rank: tuple    # per categorical field: the permutation rank -> raw value
    salt: np.ndarray      # (n_categorical,) uint64, per-field hashing salt
    effect_fields: np.ndarray
    effects: tuple        # per effect field: (vocab,) effect of each raw value
    cross_pairs: np.ndarray   # (n_crosses, 2) field indices
    cross_salt: np.ndarray    # (n_crosses,) uint64
    cross_effects: np.ndarray  # (n_crosses, 997)
    mu: np.ndarray        # (n_dense,) log-normal location of the counts
    sigma: np.ndarray     # (n_dense,) log-normal scale of the counts
    weight_fields: np.ndarray
    weights: np.ndarray
    tanh_fields: np.ndarray   # (2,)
    center: np.ndarray    # (n_dense,) standardization constants of the observed log1p counts
    scale: np.ndarray
    intercept: float

    @property
    def cat_needed(self) -> list[int]:
        return sorted(set(self.effect_fields.tolist()) | set(self.cross_pairs.ravel().tolist()))

    @property
    def dense_needed(self) -> list[int]:
        return sorted(set(self.weight_fields.tolist()) | set(self.tanh_fields.tolist()))

    def draw_raw(self, j: int, rng: np.random.Generator, n: int) -> np.ndarray:
        """Raw values of categorical field ``j``: truncated-Zipf ranks mapped through the field's permutation."""
        rank = np.searchsorted(self.cdf[j], rng.random(n), side="right")
        return self.raw_of_rank[j][rank]

    def draw_dense(self, k: int, rng: np.random.Generator, n: int, missing_rate: float) -> np.ndarray:
        """log1p of ``floor(exp(N(mu, sigma)))`` counts of dense field ``k``, missing values set to count 0."""
        counts = np.floor(np.exp(self.mu[k] + self.sigma[k] * rng.standard_normal(n)))
        counts[rng.random(n) < missing_rate] = 0.0
        return np.log1p(counts)

    def score(self, raw: dict, dense: dict, center=None, scale=None) -> np.ndarray:
        """The logit without the intercept, from raw categorical values and observed log1p dense values."""
        center = self.center if center is None else center
        scale = self.scale if scale is None else scale
        n = len(next(iter(raw.values())))
        s = np.zeros(n)
        for j, table in zip(self.effect_fields.tolist(), self.effects, strict=True):
            s += table[raw[j]]
        for c, (a, b) in enumerate(self.cross_pairs.tolist()):
            key = raw[a].astype(np.uint64) * np.uint64(self.cdf[b].size) + raw[b].astype(np.uint64)
            key ^= self.cross_salt[c]
            s += self.cross_effects[c][(_mix64(key) % np.uint64(_CROSS_BUCKETS)).astype(np.intp)]
        for k, w in zip(self.weight_fields.tolist(), self.weights.tolist(), strict=True):
            s += w * ((dense[k] - center[k]) / scale[k])
        k1, k2 = self.tanh_fields.tolist()
        z1 = (dense[k1] - center[k1]) / scale[k1]
        z2 = (dense[k2] - center[k2]) / scale[k2]
        s += _TANH_SCALE * np.tanh(z1 * z2)
        return s


@functools.lru_cache(maxsize=16)
def _teacher(teacher_seed: int, n_dense: int, n_categorical: int, ctr: float, missing_rate: float,
             zipf_a: float) -> _Teacher:
    rng = np.random.default_rng(np.random.SeedSequence([_TEACHER_TAG, teacher_seed]))
    # categorical fields: vocabularies, popularity order, salts
    vocab = np.exp(rng.uniform(np.log(_VOCAB_MIN), np.log(_VOCAB_MAX), n_categorical))
    vocab = np.clip(np.rint(vocab), _VOCAB_MIN, _VOCAB_MAX).astype(np.int64)
    cdfs, perms = [], []
    for v in vocab.tolist():
        w = np.arange(1, v + 1, dtype=np.float64) ** -zipf_a
        cdf = np.cumsum(w)
        cdf /= cdf[-1]
        cdf[-1] = 1.0
        cdfs.append(cdf)
        perms.append(rng.permutation(v).astype(np.int32))
    salt = rng.integers(0, 2**63, size=n_categorical, dtype=np.int64).astype(np.uint64)
    effect_fields = np.sort(rng.choice(n_categorical, min(_N_EFFECT_FIELDS, n_categorical), replace=False))
    effects = tuple(rng.normal(0.0, _EFFECT_SD, vocab[j]) for j in effect_fields.tolist())
    first, second = np.triu_indices(n_categorical, 1)
    pick = rng.choice(first.size, _N_CROSSES, replace=first.size < _N_CROSSES)
    cross_pairs = np.stack([first[pick], second[pick]], axis=1)
    cross_salt = rng.integers(0, 2**63, size=_N_CROSSES, dtype=np.int64).astype(np.uint64)
    cross_effects = rng.normal(0.0, _CROSS_SD, (_N_CROSSES, _CROSS_BUCKETS))
    # dense fields
    mu = rng.uniform(0.0, 4.0, n_dense)
    sigma = rng.uniform(0.5, 1.5, n_dense)
    weight_fields = np.sort(rng.choice(n_dense, min(_N_WEIGHTED_DENSE, n_dense), replace=False))
    weights = rng.normal(0.0, _DENSE_SD, weight_fields.size)
    tanh_fields = rng.choice(n_dense, 2, replace=False)
    partial = _Teacher(tuple(cdfs), tuple(perms), salt, effect_fields, effects, cross_pairs, cross_salt,
                       cross_effects, mu, sigma, weight_fields, weights, tanh_fields,
                       np.zeros(n_dense), np.ones(n_dense), 0.0)
    # the teacher's own sample (same distribution as every draw) fixes the standardization and the intercept
    raw = {j: partial.draw_raw(j, rng, _TEACHER_ROWS) for j in partial.cat_needed}
    dense = {k: partial.draw_dense(k, rng, _TEACHER_ROWS, missing_rate) for k in partial.dense_needed}
    center, scale = np.zeros(n_dense), np.ones(n_dense)
    for k, x in dense.items():
        center[k] = x.mean()
        scale[k] = x.std() if x.std() > 0 else 1.0
    s = partial.score(raw, dense, center, scale)
    target = np.log(ctr) - np.log1p(-ctr)
    lo, hi = target - s.max() - 1.0, target - s.min() + 1.0   # mean sigmoid(s + b) is < ctr at lo, > ctr at hi
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        if _sigmoid(s + mid).mean() < ctr:
            lo = mid
        else:
            hi = mid
    teacher = _Teacher(tuple(cdfs), tuple(perms), salt, effect_fields, effects, cross_pairs, cross_salt,
                       cross_effects, mu, sigma, weight_fields, weights, tanh_fields, center, scale,
                       0.5 * (lo + hi))
    for arr in (*teacher.cdf, *teacher.raw_of_rank, *teacher.effects, salt, effect_fields, cross_pairs,
                cross_salt, cross_effects, mu, sigma, weight_fields, weights, tanh_fields, center, scale):
        arr.setflags(write=False)  # the cached teacher is shared between calls
    return teacher


def make_criteo_like(
    n_samples: int = 80_000,
    *,
    n_dense: int = 13,
    n_categorical: int = 26,
    hash_buckets: int = 200,
    ctr: float = 0.25,
    missing_rate: float = 0.1,
    zipf_a: float = 1.2,
    teacher_seed: int = 0,
    random_state=None,
    return_proba: bool = False,
):
    """A click-through-rate task shaped like Criteo's: count features, hashed categorical ids, a 0/1 click.

    The task (the "teacher") is a pure function of ``teacher_seed`` and the shape arguments; ``random_state``
    only draws rows from it, so two calls with the same teacher and different ``random_state`` give fresh
    samples of the same task.

    * **Categorical field j**: a raw vocabulary of ``V_j`` values, ``V_j`` log-uniform in [5, 20000]; a row's
      value has popularity rank ``r`` with probability proportional to ``r ** -zipf_a`` (Zipf truncated at
      ``V_j``), the ranks are mapped to raw values by a fixed random permutation, and the raw value is
      hashed with a per-field salt into ``[0, hash_buckets)``. Distinct raw values may share a bucket.
    * **Dense field k**: a count ``floor(exp(N(mu_k, sigma_k)))`` with ``mu_k ~ U(0, 4)`` and
      ``sigma_k ~ U(0.5, 1.5)``; with probability ``missing_rate`` the count is missing and reported as 0.
      The feature is ``log1p(count)``.
    * **Click**: ``y ~ Bernoulli(p)``, ``p = sigmoid(b + sum of)``:

      - effects ``N(0, 0.5)`` of the raw value of 8 categorical fields (keyed by the raw value, so hash
        collisions hide part of the signal);
      - 4 crosses of two categorical fields, the raw pair hashed into 997 buckets with effects
        ``N(0, 0.4)``;
      - weights ``N(0, 0.5)`` on 5 standardized dense features, plus ``0.8 tanh(z_1 z_2)`` of two
        standardized dense features (standardized with constants of the teacher, so the task does not
        depend on ``n_samples``);
      - the intercept ``b``, bisected so that the mean of ``p`` over the teacher's own 200,000-row sample
        equals ``ctr``.

      The fields of each term are chosen by the teacher. With fewer than 8 categorical or 5 dense fields,
      all of them carry effects or weights. Dense terms use the observed feature (a missing count is a
      0), so ``p`` is a function of ``X_dense`` and the raw categorical values. ``hash_buckets`` changes
      only ``X_cat``: the same teacher and ``random_state`` give the same ``X_dense``, ``y`` and ``p``. At the defaults the mean binary entropy of ``p`` (the Bayes
      log-loss) is about 0.386, against 0.562 for the best constant predictor (the entropy of ``ctr``);
      other teacher seeds give 0.32 to 0.40, mostly through the draw of the 5 dense weights.

    Parameters
    ----------
    n_samples : int >= 1
    n_dense : int >= 2, number of dense (count) fields
    n_categorical : int >= 2, number of categorical fields
    hash_buckets : int >= 1, ids per categorical field after hashing
    ctr : float in (0, 1), the mean click probability
    missing_rate : float in [0, 1), probability that a dense count is missing (reported as count 0)
    zipf_a : float > 0, the Zipf exponent of category popularity (larger: more skewed)
    teacher_seed : int >= 0, seed of the task
    random_state : None, int >= 0 or numpy.random.Generator, seed of the rows
    return_proba : bool, also return ``p``

    Returns
    -------
    X_dense : (n_samples, n_dense) float32, log1p counts
    X_cat : (n_samples, n_categorical) int64 in ``[0, hash_buckets)``
    y : (n_samples,) int8 in {0, 1}
    p : (n_samples,) float64, the true click probability (only with ``return_proba=True``)

    Time and memory are O(n_samples * (n_dense + n_categorical)) plus a fixed cost for the teacher
    (cached for repeated calls); no array of size n_samples x vocabulary is formed.

    >>> X_dense, X_cat, y, p = make_criteo_like(5000, random_state=0, return_proba=True)
    >>> X_dense.shape, X_dense.dtype, X_cat.shape, X_cat.dtype, y.dtype
    ((5000, 13), dtype('float32'), (5000, 26), dtype('int64'), dtype('int8'))
    >>> bool(X_cat.min() >= 0 and X_cat.max() < 200), abs(float(p.mean()) - 0.25) < 0.02
    (True, True)
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_dense = check_int("n_dense", n_dense, min_value=2)
    n_categorical = check_int("n_categorical", n_categorical, min_value=2)
    hash_buckets = check_param("hash_buckets", hash_buckets, [Interval("int", 1, 2**63 - 1, text=_BUCKETS_TEXT)])
    ctr = check_float("ctr", ctr, min_value=0.0, max_value=1.0, min_inclusive=False, max_inclusive=False)
    missing_rate = check_float("missing_rate", missing_rate, min_value=0.0, max_value=1.0, max_inclusive=False)
    zipf_a = check_float("zipf_a", zipf_a, min_value=0.0, min_inclusive=False)
    teacher_seed = check_int("teacher_seed", teacher_seed, min_value=0)
    rng = check_random_state("random_state", random_state)
    return_proba = check_bool("return_proba", return_proba)

    teacher = _teacher(teacher_seed, n_dense, n_categorical, ctr, missing_rate, zipf_a)
    cat_needed, dense_needed = set(teacher.cat_needed), set(teacher.dense_needed)
    X_cat = np.empty((n_samples, n_categorical), dtype=np.int64)
    raw = {}
    for j in range(n_categorical):
        values = teacher.draw_raw(j, rng, n_samples)
        bucket_of_raw = _mix64(np.arange(teacher.cdf[j].size, dtype=np.uint64) ^ teacher.salt[j])
        X_cat[:, j] = (bucket_of_raw % np.uint64(hash_buckets)).astype(np.int64)[values]
        if j in cat_needed:
            raw[j] = values
    X_dense = np.empty((n_samples, n_dense), dtype=np.float32)
    dense = {}
    for k in range(n_dense):
        x = teacher.draw_dense(k, rng, n_samples, missing_rate)
        X_dense[:, k] = x
        if k in dense_needed:
            dense[k] = x
    p = _sigmoid(teacher.score(raw, dense) + teacher.intercept)
    y = (rng.random(n_samples) < p).astype(np.int8)
    if return_proba:
        return X_dense, X_cat, y, p
    return X_dense, X_cat, y
