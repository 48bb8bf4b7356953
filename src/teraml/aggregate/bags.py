"""Bag construction: random bags and optimal prior-sorted bags (PriorBoost, ICML 2024).

All bags have size ``k`` except one of size ``k + (n mod k)``: the remainder is never dropped.
``method="prior"`` solves 1-D k-means on a prior score under these size constraints: sort the scores
stably and cut them into runs of ``k``; when ``n mod k = r > 0``, the one bag of size ``k + r`` is
placed where it makes the total within-bag sum of squares smallest (prefix sums, O(n)).

>>> import numpy as np
>>> make_bags(3, method="prior", scores=np.array([0.1, 5.0, 0.2, 4.9, 0.3, 5.1, 9.0]))
array([0, 1, 0, 1, 0, 1, 1])
"""

from __future__ import annotations

import numpy as np

from teraml._validation import check_choice, check_int, check_random_state

__all__ = ["make_bags", "bag_sse"]


def _run_sse(prefix1: np.ndarray, prefix2: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Within-run sum of squares of sorted scores s[start:stop] via prefix sums."""
    cnt = (stop - start).astype(np.float64)
    s1 = prefix1[stop] - prefix1[start]
    s2 = prefix2[stop] - prefix2[start]
    return np.maximum(s2 - s1 * s1 / cnt, 0.0)


def bag_sse(scores, bags) -> float:
    """Total within-bag sum of squares of ``scores`` for bag ids ``bags`` (rows with id -1 ignored).

    >>> bag_sse(np.array([0.0, 1.0, 10.0, 11.0]), np.array([0, 0, 1, 1]))
    1.0
    """
    s = np.asarray(scores, dtype=np.float64)
    b = np.asarray(bags)
    keep = b >= 0
    s, b = s[keep], b[keep]
    if s.size == 0:
        return 0.0
    n1 = np.bincount(b, weights=s)
    n2 = np.bincount(b, weights=s * s)
    c = np.bincount(b).astype(np.float64)
    nz = c > 0
    return float(np.maximum(n2[nz] - n1[nz] ** 2 / c[nz], 0.0).sum())


def make_bags(k, *, method="random", n_samples=None, scores=None, random_state=None) -> np.ndarray:
    """Bag ids (int64, 0..m-1) for ``n`` rows in ``m = n // k`` bags of size ``k`` (one of ``k + n mod k``).

    Parameters
    ----------
    k : int >= 1
        Bag size.
    method : {"random", "prior"}
        ``"random"``: a uniformly random partition (needs ``n_samples``). ``"prior"``: the optimal
        size-constrained 1-D k-means partition of ``scores`` (shape ``(n_samples,)``); bag 0 holds the
        smallest scores. When k divides n, any increasing transform of the scores (e.g. a sigmoid)
        gives the same bags; with a remainder, the larger bag is placed where the SSE in the given
        scale is smallest.
    n_samples : int, optional
        Number of rows (inferred from ``scores`` for ``"prior"``).
    scores : array of shape (n_samples,), optional
        Prior predictions for ``"prior"``.
    random_state : None, int or numpy Generator
        For ``"random"``.

    >>> ids = make_bags(4, n_samples=10, random_state=0)
    >>> sorted(np.bincount(ids).tolist())
    [4, 6]
    """
    k = check_int("k", k, min_value=1)
    check_choice("method", method, ("random", "prior"))
    if method == "random":
        if n_samples is None:
            raise ValueError("method='random' needs n_samples; got None")
        n = check_int("n_samples", n_samples, min_value=1)
        if k > n:
            raise ValueError(f"k must be <= n_samples ({n}); got k={k}")
        rng = check_random_state("random_state", random_state)
        m = n // k
        ids = np.minimum(np.arange(n) // k, m - 1).astype(np.int64)
        return ids[rng.permutation(n)]
    s = None if scores is None else np.asarray(scores)
    if s is None or s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"method='prior' needs scores of shape (n_samples,); got {scores!r}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"method='prior' needs scores of shape (n_samples,); got {scores!r} (non-finite values)")
    n = s.size
    if n_samples is not None and n_samples != n:
        raise ValueError(f"method='prior' needs scores of shape (n_samples,); got shape {s.shape} for n_samples={n_samples}")
    if k > n:
        raise ValueError(f"k must be <= n_samples ({n}); got k={k}")
    # a stable sort; quicksort is ~4x faster and equals it whenever no two scores tie
    order = np.argsort(s)
    ss = s[order]
    if np.any(ss[1:] == ss[:-1]):
        order = np.argsort(s, kind="stable")
        ss = s[order]
    m, r = n // k, n % k
    pos_bag = np.minimum(np.arange(n) // k, m - 1)      # big bag last
    if r and m > 1:
        p1 = np.concatenate([[0.0], np.cumsum(ss)])
        p2 = np.concatenate([[0.0], np.cumsum(ss * ss)])
        j = np.arange(m)
        # bags before the big one: offset-0 runs; after it: runs shifted by r
        starts0 = np.arange(m) * k
        sse0 = _run_sse(p1, p2, starts0, starts0 + k)            # run i of the offset-0 cut
        startsr = np.arange(m) * k + r
        sser = _run_sse(p1, p2, startsr, startsr + k)            # run i of the offset-r cut
        before = np.concatenate([[0.0], np.cumsum(sse0)])[j]     # runs 0..j-1 at offset 0
        after_all = np.concatenate([np.cumsum(sser[::-1])[::-1], [0.0]])
        after = after_all[j + 1]                                 # runs j+1..m-1 at offset r
        big = _run_sse(p1, p2, j * k, j * k + k + r)
        best = int(np.argmin(before + big + after))
        pos = np.arange(n)
        pos_bag = np.where(pos < best * k, pos // k,
                           np.where(pos < best * k + k + r, best, (pos - r) // k))
    ids = np.empty(n, dtype=np.int64)
    ids[order] = pos_bag
    return ids
