"""The slow, readable reference of sensitivity sampling: dense distances and plain loops, for n <= a few hundred.

It takes the clustering's centres as given (the clustering itself is scikit-learn's) and recomputes every
other step of :class:`teraml.selection.SensitivitySampler` literally as the paper states it; the tests compare
the fast chunked path with it. The baselines and leverage scores have theirs here too, each with the fast
path's signature, doing the plainest thing that is obviously right:

* :func:`kcenter_greedy_naive`: the full n x n distance matrix, then per pick the max over rows of the min
  over chosen rows (O(budget n^2) with the matrix, O(n^2) memory);
* :func:`leverage_scores_naive`: the diagonal of the hat matrix ``A (A^T A)^+ A^T`` (``A pinv(A)``, O(n^2));
* :func:`uncertainty_naive`: a Python loop over rows and a stable sort of the scores.

>>> import numpy as np
>>> kcenter_greedy_naive(np.array([[0.0], [2.0], [9.0], [10.0]]), 2, initial=[0]).tolist()
[3, 1]
>>> leverage_scores_naive(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])).round(4).tolist()
[1.0, 0.5, 0.5]
>>> uncertainty_naive(np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]]), 2, method="entropy").tolist()
[1, 0]
>>> X = np.array([[0.0], [1.0], [10.0], [12.0]])
>>> ref = reference_sensitivity(X, np.array([[0.4], [11.0]]), losses=lambda r: np.array([1.0, 2.0]))
>>> ref["labels"].tolist(), ref["representatives"].tolist(), ref["lam"]    # lam = (1 + 2) / (1 + 4)
([0, 0, 1, 1], [0, 2], 0.6)
>>> ref["p"].round(4).tolist()       # v = 1 + 0.6 * 1 and 2 + 0.6 * 4 on the free rows 1 and 3
[0.0, 0.2667, 0.0, 0.7333]
"""

from __future__ import annotations

import math

import numpy as np

from teraml._validation import check_random_state

__all__ = ["reference_sensitivity", "kcenter_greedy_naive", "leverage_scores_naive", "uncertainty_naive"]


def reference_sensitivity(X, centers, *, losses=None, score="loss", z=2.0, lam="balanced", normalize="global",
                          uniform_mix=0.0) -> dict:
    """labels, representatives, D, delta, lam, L and p of one clustering, by brute force.

    ``losses(representative_rows) -> L`` is called once (``score="loss"``).
    """
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(centers, dtype=np.float64)
    n, k = X.shape[0], C.shape[0]
    # nearest centre by the direct difference; ties to the lower centre
    labels = []
    for i in range(n):
        best, arg = math.inf, -1
        for j in range(k):
            d2 = float(np.sum((X[i] - C[j]) ** 2))
            if d2 < best:
                best, arg = d2, j
        labels.append(arg)
    # drop empty clusters, relabel in order
    used = sorted(set(labels))
    relabel = {j: t for t, j in enumerate(used)}
    labels = np.array([relabel[j] for j in labels])
    C = C[used]
    k = len(used)
    D = np.array([float(np.sum((X[i] - C[labels[i]]) ** 2)) ** (z / 2) for i in range(n)])
    sizes = np.array([int(np.sum(labels == j)) for j in range(k)])
    out = {"labels": labels, "centers": C, "D": D, "sizes": sizes}
    if score == "kmeans":
        phi = float(sum(D))
        cost = [float(sum(D[i] for i in range(n) if labels[i] == j)) for j in range(k)]
        s = np.zeros(n)
        for i in range(n):
            j = labels[i]
            if normalize == "global":
                s[i] = (D[i] / phi if phi > 0 else 0.0) + 1.0 / sizes[j]
            else:
                s[i] = (D[i] / cost[j] if cost[j] > 0 else 0.0) + 1.0 / sizes[j]
        out.update(representatives=np.empty(0, dtype=np.int64), lam=0.0, p=_mix(s, np.ones(n, bool), uniform_mix))
        return out
    # representative: the member nearest its centre, ties to the lower row
    reps = []
    for j in range(k):
        members = [i for i in range(n) if labels[i] == j]
        reps.append(min(members, key=lambda i: (float(np.sum((X[i] - C[j]) ** 2)), i)))
    reps = np.array(reps, dtype=np.int64)
    delta = np.array([float(np.sum((X[i] - X[reps[labels[i]]]) ** 2)) ** (z / 2) for i in range(n)])
    L = np.asarray(losses(reps.copy()), dtype=np.float64)
    free = np.ones(n, dtype=bool)
    free[reps] = False
    La = np.array([L[labels[i]] for i in range(n)])
    if lam == "balanced":
        num = sum(La[i] for i in range(n) if free[i])
        den = sum(delta[i] for i in range(n) if free[i])
        lam_used = float(num / den) if den > 0 else 0.0
    else:
        lam_used = float(lam)
    v = delta.copy() if not np.any(L > 0) else La + lam_used * delta
    out.update(representatives=reps, delta=delta, L=L, lam=lam_used, p=_mix(v, free, uniform_mix))
    return out


def _mix(v, free, alpha):
    n_free = int(free.sum())
    p = np.zeros(v.size)
    if n_free == 0:
        return p
    total = sum(v[i] for i in range(v.size) if free[i])
    for i in range(v.size):
        if free[i]:
            q = v[i] / total if total > 0 else 1.0 / n_free
            p[i] = (1 - alpha) * q + alpha / n_free
    return p







def kcenter_greedy_naive(X, budget, *, initial=None, random_state=None) -> np.ndarray:
    """Farthest-first traversal on the dense distance matrix (squared, from direct differences, float64).

    The first pick without ``initial`` is ``random_state``'s ``integers(n)``, as in the fast path.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    D = np.empty((n, n))
    for i in range(n):
        diff = X - X[i]
        D[i] = np.einsum("ij,ij->i", diff, diff)
    chosen = [] if initial is None else [int(i) for i in initial]
    picks = []
    for _ in range(budget):
        if not chosen:
            j = int(check_random_state("random_state", random_state).integers(n))
        else:
            best, j = -math.inf, -1
            for i in range(n):
                if i in chosen:
                    continue
                d = min(D[i, c] for c in chosen)
                if d > best:            # strict: ties keep the lower index
                    best, j = d, i
        chosen.append(j)
        picks.append(j)
    return np.array(picks, dtype=np.int64)


def leverage_scores_naive(A, *, rtol: float | None = None) -> np.ndarray:
    """``diag(A pinv(A))``, the hat matrix's diagonal (``A (A^T A)^-1 A^T`` when A has full column rank).

    ``rtol``: pinv's cutoff relative to the largest singular value (default ``max(n, d) * eps``).
    """
    A = np.asarray(A, dtype=np.float64)
    if rtol is None:
        rtol = max(A.shape) * np.finfo(np.float64).eps
    H = A @ np.linalg.pinv(A, rtol=rtol)
    return np.diag(H).copy()


def uncertainty_naive(probs, budget, *, method="margin") -> np.ndarray:
    """Scores row by row (each row sorted descending), then indices by decreasing score, ties to the lower."""
    scores = []
    for row in np.asarray(probs, dtype=np.float64):
        p = sorted(row.tolist(), reverse=True)
        if method == "margin":
            scores.append(-(p[0] - (p[1] if len(p) > 1 else 0.0)))
        elif method == "entropy":
            scores.append(-sum(q * math.log(q) for q in p if q > 0))
        else:
            scores.append(1.0 - p[0])
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return np.array(order[:budget], dtype=np.int64)
