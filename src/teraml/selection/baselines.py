"""The baselines sensitivity sampling is measured against: uniform, k-center greedy and uncertainty scores.

* :func:`uniform`: ``budget`` rows without replacement, each weighted ``n / budget``; the fair uniform
  baseline gets the same number of items as the method it is compared with (k + m).
* :func:`kcenter_greedy`: the greedy 2-approximation of k-center (Sener & Savarese, ICLR 2018, "core-set"
  active learning): repeatedly take the row farthest from everything chosen so far. It picks outliers
  first, which hurts on noisy data.
* :func:`uncertainty`: margin, entropy or least-confidence ranking of a model's predicted probabilities,
  most uncertain first. It needs a prediction for every row (n inferences), not k + m.

>>> import numpy as np
>>> from teraml.selection.baselines import kcenter_greedy, uncertainty, uniform
>>> uniform(10, 4, random_state=0).weights.tolist()
[2.5, 2.5, 2.5, 2.5]
>>> X = np.array([[0.0], [2.0], [9.0], [10.0]])
>>> kcenter_greedy(X, 2, initial=[0]).tolist()       # farthest from row 0, then farthest from {0, 3}
[3, 1]
>>> uncertainty(np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]]), 2).tolist()
[1, 2]
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from teraml._validation import (
    Interval,
    Options,
    check_array,
    check_int,
    check_param,
    check_random_state,
)
from teraml.selection._selection import Selection

__all__ = ["uniform", "lightweight_coreset", "kcenter_greedy", "uncertainty", "uncertainty_scores",
           "UNCERTAINTY_METHODS", "ROW_SUM_TOL"]

#: The uncertainty scores :func:`uncertainty` knows (``method``).
UNCERTAINTY_METHODS = ("margin", "entropy", "least_confidence")
#: How far a row of ``probs`` may sum from 1 (float32 ``predict_proba`` output drifts by ~1e-7 per class).
ROW_SUM_TOL = 1e-4
#: Elements of X per chunk of :func:`kcenter_greedy`: 2 MiB of float64, so that a chunk stays in cache.
_KCENTER_CHUNK = 2**18


def _budget(budget, high: int) -> int:
    """``budget`` as an int in [1, high], with the spec's message."""
    return check_param("budget", budget, [Interval("int", 1, high), f"an integer in [1, {high}]"])


def uniform(n, budget, *, random_state=None) -> Selection:
    """``budget`` distinct rows of ``range(n)``, uniformly without replacement, as a :class:`Selection`.

    Every row gets weight ``n / budget`` (so ``sum(weights * loss[indices])`` is unbiased for the total loss),
    probability ``budget / n``, count 1 and role ``"sample"``; no loss is known yet (``losses`` is NaN,
    ``n_loss_queries`` 0). Time and memory O(budget) beyond numpy's sampler (which is O(budget) for
    ``budget`` much smaller than ``n``).

    >>> s = uniform(1000, 3, random_state=1)
    >>> s.indices.dtype, len(s), float(s.weights.sum())
    (dtype('int64'), 3, 1000.0)
    """
    n = check_int("n", n, min_value=1)
    budget = _budget(budget, n)
    rng = check_random_state("random_state", random_state)
    idx = np.sort(rng.choice(n, size=budget, replace=False)).astype(np.int64)
    return Selection(indices=idx, weights=np.full(budget, n / budget), counts=np.ones(budget, dtype=np.int64),
                     probabilities=np.full(budget, budget / n), role=np.full(budget, "sample"),
                     losses=np.full(budget, np.nan), n_total=n, n_loss_queries=0)


def lightweight_coreset(X, budget, *, random_state=None) -> Selection:
    """The lightweight coreset of Bachem, Lucic & Krause (KDD 2018): ``budget`` i.i.d. draws with
    ``q_i = 1 / (2n) + D_i / (2 Phi)``, D_i the squared distance to the data mean and Phi their sum, merged and
    weighted ``count / (budget q_i)`` (as :class:`Selection`; unbiased for any sum over the rows). One pass, no
    clustering: the k-means coreset peer of sensitivity sampling.

    >>> X = np.array([[0.0], [0.0], [0.0], [10.0]])
    >>> s = lightweight_coreset(X, 50, random_state=0)
    >>> float(s.probabilities[s.indices == 3][0])          # 1/8 + (56.25 / 75) / 2
    0.5
    """
    from teraml.selection.sensitivity import check_X

    X = check_X(X)
    n = X.shape[0]
    m = check_param("budget", budget, [Interval("int", 1), "an integer >= 1"])
    rng = check_random_state("random_state", random_state)
    mu = np.zeros(X.shape[1])
    step = max(1, _KCENTER_CHUNK // X.shape[1])
    for s in range(0, n, step):
        mu += np.asarray(X[s:s + step], dtype=np.float64).sum(axis=0)
    mu /= n
    D = np.empty(n)
    for s in range(0, n, step):
        diff = np.asarray(X[s:s + step], dtype=np.float64) - mu
        D[s:s + diff.shape[0]] = np.einsum("ij,ij->i", diff, diff)
    phi = float(D.sum())
    q = 0.5 / n + (0.5 * D / phi if phi > 0 else 0.5 / n)
    idx, counts = np.unique(rng.choice(n, size=m, replace=True, p=q / q.sum()), return_counts=True)
    return Selection(indices=idx.astype(np.int64), weights=counts / (m * q[idx]), counts=counts.astype(np.int64),
                     probabilities=q[idx], role=np.full(idx.size, "sample"), losses=np.full(idx.size, np.nan),
                     n_total=n, n_loss_queries=0)


def _check_initial(initial, n: int) -> np.ndarray:
    """``initial`` as distinct int64 row indices in [0, n) (None or empty: none)."""
    if initial is None:
        return np.empty(0, dtype=np.int64)
    arr = check_array("initial", initial, ndim=1, dtype=None, min_rows=0)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"initial must be an array of int row indices; got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise ValueError(f"initial must hold row indices in [0, {n}); got {int(arr[bad][0])}")
    if np.unique(arr).size != arr.size:
        repeats = arr.size - np.unique(arr).size
        raise ValueError(f"initial must hold distinct row indices; got {repeats} repeats")
    return arr.astype(np.int64)


def kcenter_greedy(X, budget, *, initial=None, random_state=None) -> np.ndarray:
    """Greedy k-center (farthest-first traversal): ``budget`` row indices of ``X`` in the order picked.

    Starting from the rows ``initial`` (already chosen, e.g. a labelled pool; they are not returned and do not
    count in ``budget``) or, without them, from one uniformly random row, repeatedly pick the row whose
    Euclidean distance to its nearest chosen row is largest (ties to the lower index). This is Gonzalez's
    2-approximation of the k-center objective ``max_i min_c |x_i - x_c|``, the "core-set" active learning
    baseline of Sener & Savarese (ICLR 2018). ``budget`` is in [1, n - len(initial)].

    X (n, d) may be float32 or float64 (a memmap works, it is read in chunks and never copied whole).
    Time O(budget * n * d); memory O(n) beyond X (two float64 arrays). Distances are float64: a fast
    ``|x|^2 - 2 x.c + |c|^2`` pass finds the rows whose nearest-chosen distance can change, and those are
    recomputed from direct differences, so the result equals the plain algorithm on exact distances.

    Returns
    -------
    (budget,) int64: the picks, first picked first.

    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0], [2.0, 0.0]])
    >>> kcenter_greedy(X, 3, initial=[0]).tolist()      # rows 1 and 2 tie at distance 1: the lower wins
    [3, 4, 1]
    """
    from teraml.selection.sensitivity import check_X

    X = check_X(X)
    n, d = X.shape
    start = _check_initial(initial, n)
    budget = _budget(budget, n - start.size)
    rng = check_random_state("random_state", random_state)
    step = max(1, _KCENTER_CHUNK // d)
    # float64 squared norms and the running squared distance to the nearest chosen row (-inf once chosen)
    sq = np.empty(n, dtype=np.float64)
    for s in range(0, n, step):
        xb = np.asarray(X[s:s + step], dtype=np.float64)
        sq[s:s + xb.shape[0]] = np.einsum("ij,ij->i", xb, xb)
    nearest = np.full(n, np.inf)
    # the Gram-form distance is within (2d + 6) eps (|x|^2 + |c|^2) of the true one; with this margin a row
    # skipped by the fast test can never have its direct-difference distance at or below its current minimum
    slack = 8.0 * (d + 4) * np.finfo(np.float64).eps

    def add(j: int) -> None:
        c = np.asarray(X[j], dtype=np.float64)
        cc = float(c @ c)
        for s in range(0, n, step):
            xb = np.asarray(X[s:s + step], dtype=np.float64)
            e = s + xb.shape[0]
            cur = nearest[s:e]
            approx = sq[s:e] + cc - 2.0 * (xb @ c)
            maybe = np.flatnonzero(approx <= cur + slack * (sq[s:e] + cc))
            if maybe.size:
                diff = xb[maybe] - c
                cur[maybe] = np.minimum(cur[maybe], np.einsum("ij,ij->i", diff, diff))
        nearest[j] = -np.inf

    for j in start:
        add(int(j))
    picks = np.empty(budget, dtype=np.int64)
    for t in range(budget):
        j = int(rng.integers(n)) if (t == 0 and start.size == 0) else int(np.argmax(nearest))
        picks[t] = j
        add(j)
    return picks


def _check_probs(probs) -> np.ndarray:
    """``probs`` as a 2-D float64 array of rows in [0, 1] summing to 1 (within :data:`ROW_SUM_TOL`)."""
    P = check_array("probs", probs, ndim=None, min_rows=0, finite=False)
    if P.ndim == 2 and P.shape[0] >= 1 and P.shape[1] >= 1:
        with np.errstate(invalid="ignore"):
            dev = np.abs(P.sum(axis=1) - 1.0)
        worst = float(np.nan if np.isnan(dev).any() else dev.max())
    else:
        worst = float("nan")
    if not worst <= ROW_SUM_TOL:
        raise ValueError(f"probs must be 2-D with rows summing to 1; got shape {P.shape}, "
                         f"max |row sum - 1| = {worst:.3g}")
    if P.min() < 0 or P.max() > 1:
        bad = float(P.min()) if P.min() < 0 else float(P.max())
        raise ValueError(f"probs must be probabilities in [0, 1]; got {bad:.3g}")
    return P


def uncertainty_scores(P: np.ndarray, method: str) -> np.ndarray:
    """The uncertainty score of each row of a checked ``probs`` (higher = more uncertain).

    margin ``-(p(1) - p(2))`` (the two largest; ``p(2) = 0`` with one class), entropy ``-sum p log p``
    (``0 log 0 = 0``; summed over the sorted row, so that it does not depend on the column order) and
    least confidence ``1 - p(1)``.

    >>> P = np.array([[0.7, 0.2, 0.1]])
    >>> [round(float(uncertainty_scores(P, m)[0]), 4) for m in UNCERTAINTY_METHODS]
    [-0.5, 0.8018, 0.3]
    """
    if method == "entropy":
        return -xlogy(np.sort(P, axis=1), np.sort(P, axis=1)).sum(axis=1)
    if P.shape[1] == 1:
        top1, top2 = P[:, 0], np.zeros(P.shape[0])
    else:
        two = -np.partition(-P, 1, axis=1)[:, :2]   # the two largest, largest first
        top1, top2 = two[:, 0], two[:, 1]
    if method == "margin":
        return -(top1 - top2)
    return 1.0 - top1


def uncertainty(probs, budget, *, method="margin") -> np.ndarray:
    """The ``budget`` most uncertain rows of predicted class probabilities, most uncertain first.

    ``probs`` (n, n_classes): one probability row per item (e.g. ``predict_proba``), each summing to 1.
    Scores (higher = more uncertain, picked first): ``"margin"`` ``-(p(1) - p(2))``, ``"entropy"``
    ``-sum_c p_c log p_c`` (0 log 0 = 0) and ``"least_confidence"`` ``1 - p(1)``, where p(1) >= p(2) are
    a row's two largest probabilities. Ties go to the lower index. With two classes the three rank alike.
    Time O(n c + n log n).

    Returns
    -------
    (budget,) int64 row indices.

    >>> P = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    >>> uncertainty(P, 1, method="margin").tolist(), uncertainty(P, 1, method="entropy").tolist()
    ([0], [1])
    """
    P = _check_probs(probs)
    budget = _budget(budget, P.shape[0])
    method = check_param("method", method, [Options(*UNCERTAINTY_METHODS, phrase="or")])
    score = uncertainty_scores(P, method)
    return np.argsort(-score, kind="stable")[:budget].astype(np.int64)
