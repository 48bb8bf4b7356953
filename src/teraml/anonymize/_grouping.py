"""The three ways of cutting rows into groups of at least k: MDAV, a recursive kd split, size-repaired k-means.

Every function takes the clustering matrix ``Z`` (n x d_z, float64, already scaled) and returns
``labels`` (int64, 0..J-1, groups numbered in the order they were formed). Ties always go to the lowest
row index (and, for kd, the lowest column), never to ``argpartition``'s arbitrary order, so a run is a
pure function of its input.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def _nearest(d: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` smallest entries of ``d``; among equal values the lowest positions win."""
    if m >= d.shape[0]:
        return np.arange(d.shape[0])
    part = np.argpartition(d, m - 1)[:m]
    t = d[part].max()
    less = np.flatnonzero(d < t)
    equal = np.flatnonzero(d == t)[: m - less.shape[0]]
    return np.concatenate([less, equal])


def _sq_dist(Z: np.ndarray, z: np.ndarray) -> np.ndarray:
    diff = Z - z
    return np.einsum("ij,ij->i", diff, diff)


def mdav(Z: np.ndarray, k: int, *, progress=None) -> np.ndarray:
    """Maximum Distance to Average Vector grouping (Domingo-Ferrer and Torra), fixed groups of ``k``.

    While at least 3k rows remain: the row r farthest from the remaining rows' mean takes its k-1
    nearest rows, then the row farthest from r does the same. With 2k..3k-1 rows left, one more group
    forms around the row farthest from the mean; the rest (k..2k-1 rows) is the last group. Squared
    Euclidean distances, one vector per step: O(n^2 d / k) time, O(n d) memory, never an n x n matrix.

    >>> mdav(np.array([[0.], [1.], [2.], [10.], [11.], [12.]]), 3).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    n = Z.shape[0]
    labels = np.empty(n, dtype=np.int64)
    rows = np.arange(n)          # remaining rows, ascending, so position order is index order
    ZR = np.ascontiguousarray(Z, dtype=np.float64)
    group = 0

    def take(center_pos: int) -> None:
        nonlocal rows, ZR, group
        d = _sq_dist(ZR, ZR[center_pos])
        d[center_pos] = -1.0      # the centre always belongs to its own group
        sel = _nearest(d, k)
        labels[rows[sel]] = group
        group += 1
        keep = np.ones(rows.shape[0], dtype=bool)
        keep[sel] = False
        rows, ZR = rows[keep], ZR[keep]
        if progress is not None:
            progress.update(1)

    while rows.shape[0] >= 3 * k:
        far = int(np.argmax(_sq_dist(ZR, ZR.mean(axis=0))))
        r = ZR[far].copy()
        take(far)
        take(int(np.argmax(_sq_dist(ZR, r))))
    if rows.shape[0] >= 2 * k:
        take(int(np.argmax(_sq_dist(ZR, ZR.mean(axis=0)))))
    if rows.shape[0]:
        labels[rows] = group
        if progress is not None:
            progress.update(1)
    return labels


def kd_split(Z: np.ndarray, k: int, *, progress=None) -> np.ndarray:
    """Recursive median split: every node of m >= 2k rows halves on its widest column.

    The widest column has the largest max - min (ties: lowest column); rows are ordered by (value, row
    index) and the first floor(m/2) go left. Every leaf has k..2k-1 rows (all n rows when n < 2k).
    Leaves are numbered left to right. O(n (d + log n) log(n/k)) time, O(n) extra memory.

    >>> kd_split(np.array([[0.], [1.], [2.], [10.], [11.], [12.]]), 3).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    n = Z.shape[0]
    labels = np.empty(n, dtype=np.int64)
    stack = [np.arange(n)]
    group = 0
    while stack:
        rows = stack.pop()
        m = rows.shape[0]
        if m < 2 * k:
            labels[rows] = group
            group += 1
            if progress is not None:
                progress.update(1)
            continue
        block = Z[rows]
        col = int(np.argmax(block.max(axis=0) - block.min(axis=0)))
        order = rows[np.lexsort((rows, block[:, col]))]
        half = m // 2
        stack.append(order[half:])    # popped second: right subtree after the left one
        stack.append(order[:half])
    return labels


def kmeans_repaired(Z: np.ndarray, k: int, n_clusters: int, random_state, *, verbose: bool = False) -> np.ndarray:
    """``KMeans(n_clusters, n_init=10)`` on Z, then merge groups smaller than k until none is left.

    Each repair step merges the smallest group (ties: lowest label) into the group with the nearest
    centroid (ties: lowest label) and recomputes that centroid from its members. J falls by one per
    step, so the loop ends; with J <= n // k it usually ends at once. Labels are renumbered 0..J'-1
    in order of first appearance.
    """
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit(Z)
    labels = km.labels_.astype(np.int64)
    centers = {j: km.cluster_centers_[j] for j in range(n_clusters)}
    sizes = {j: int(c) for j, c in enumerate(np.bincount(labels, minlength=n_clusters))}
    for j in [j for j, s in sizes.items() if s == 0]:     # KMeans can leave a centre without members
        del centers[j], sizes[j]
    merges = 0
    while len(sizes) > 1 and min(sizes.values()) < k:
        small = min(sizes, key=lambda j: (sizes[j], j))
        others = [j for j in sorted(sizes) if j != small]
        dist = [float(np.sum((centers[j] - centers[small]) ** 2)) for j in others]
        into = others[int(np.argmin(dist))]
        labels[labels == small] = into
        sizes[into] += sizes.pop(small)
        del centers[small]
        centers[into] = Z[labels == into].mean(axis=0)
        merges += 1
    if merges and verbose:
        logger.info("k-means repair: merged %d undersized group(s); %d groups remain", merges, len(sizes))
    _, first = np.unique(labels, return_index=True)
    remap = np.empty(labels.max() + 1, dtype=np.int64)
    remap[labels[np.sort(first)]] = np.arange(first.shape[0])
    return remap[labels]


def group_means(values: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Each group's column means (computed once per group, float64 sums) and its size.

    Members then share one bit-identical mean by a gather ``means[labels]``; recomputing the mean per
    row would differ in the last bit and break exact-match k-anonymity checks.
    """
    counts = np.bincount(labels, minlength=n_groups)
    sums = np.empty((n_groups, values.shape[1]), dtype=np.float64)
    for j in range(values.shape[1]):
        sums[:, j] = np.bincount(labels, weights=values[:, j], minlength=n_groups)
    return sums / counts[:, None], counts
