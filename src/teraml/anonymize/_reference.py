"""Slow, readable references for the tests: MDAV as a plain loop, and the exact 1-D optimum.

>>> import numpy as np
>>> mdav([[0.], [1.], [2.], [10.], [11.], [12.]], 3)
[0, 0, 0, 1, 1, 1]
>>> optimal_sse_1d([0., 1., 2., 10., 11., 12.], 3)
4.0
"""

from __future__ import annotations

import numpy as np


def mdav(Z, k: int) -> list[int]:
    """MDAV with Python loops over rows: the oracle of :func:`teraml.anonymize._grouping.mdav`.

    Same rule and the same tie-breaking (lowest row index), so the two agree up to floating noise.
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0]
    remaining = list(range(n))
    labels = [-1] * n
    group = 0

    def dist(i, point):
        diff = Z[i] - point
        return float(np.einsum("i,i->", diff, diff))

    def farthest(point):
        best, best_d = None, -1.0
        for i in remaining:                  # ascending, so the first maximum is the lowest index
            d = dist(i, point)
            if d > best_d:
                best, best_d = i, d
        return best

    def form_group(center):
        nonlocal group
        others = sorted((dist(i, Z[center]), i) for i in remaining if i != center)
        members = [center] + [i for _, i in others[: k - 1]]
        for i in members:
            labels[i] = group
            remaining.remove(i)
        group += 1

    while len(remaining) >= 3 * k:
        r = farthest(Z[remaining].mean(axis=0))
        form_group(r)
        s = farthest(Z[r])
        form_group(s)
    if len(remaining) >= 2 * k:
        form_group(farthest(Z[remaining].mean(axis=0)))
    for i in list(remaining):
        labels[i] = group
    return labels


def optimal_sse_1d(x, k: int) -> float:
    """The smallest within-group sum of squares of 1-D values cut into groups of k..2k-1 rows.

    An optimal partition of sorted values is contiguous, and a group of 2k or more rows can be split
    without raising the SSE, so a dynamic programme over the sorted values with group sizes k..2k-1 is
    exact: O(n k) with prefix sums.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.shape[0]
    if n < 2 * k:
        return float(np.sum((x - x.mean()) ** 2))
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])

    def sse(a, b):                           # rows a..b-1
        m = b - a
        return (s2[b] - s2[a]) - (s1[b] - s1[a]) ** 2 / m

    best = [np.inf] * (n + 1)
    best[0] = 0.0
    for end in range(k, n + 1):
        for size in range(k, 2 * k):
            start = end - size
            if start >= 0 and best[start] < np.inf:
                best[end] = min(best[end], best[start] + sse(start, end))
    return float(max(best[n], 0.0))


def group_means(values, labels) -> np.ndarray:
    """Per-row group means by a loop over groups: the oracle of the scatter-add and gather."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    out = np.empty_like(values)
    for g in np.unique(labels):
        members = labels == g
        out[members] = values[members].mean(axis=0)
    return out
