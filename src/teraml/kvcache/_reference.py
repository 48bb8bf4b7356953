"""Slow, readable references for SubGen: a per-token float64 loop over one stream (one sequence, one kv-head).

The fast path (:class:`teraml.kvcache.SubGenKV`) is tested against these: the greedy clustering (no
randomness) must match bit for bit, and the estimators must have the same laws.
"""

from __future__ import annotations

import math
import random
from collections import deque

import numpy as np

__all__ = ["greedy_clusters", "exact_attention", "ReferenceSubGen"]


def greedy_clusters(keys, delta: float):
    """Greedy clustering of ``keys`` (n, d) in order: a key joins the nearest centre within ``delta`` (lowest
    index on ties), else it becomes a centre. Returns (centre token indices, counts, assignment).

    >>> greedy_clusters(np.array([[0.0], [0.1], [5.0]]), 0.5)
    ([0, 2], [2, 1], [0, 0, 1])
    """
    keys = np.asarray(keys, dtype=np.float64)
    centres: list[int] = []
    counts: list[int] = []
    assign: list[int] = []
    for j, k in enumerate(keys):
        best, best_i = math.inf, -1
        for i, c in enumerate(centres):
            d2 = float(((keys[c] - k) ** 2).sum())
            if d2 < best:
                best, best_i = d2, i
        if best_i >= 0 and best <= delta * delta:
            counts[best_i] += 1
            assign.append(best_i)
        else:
            centres.append(j)
            counts.append(1)
            assign.append(len(centres) - 1)
    return centres, counts, assign


def exact_attention(q, keys, values, scale: float):
    """softmax(scale * K q)^T V in float64 for one query (d,) over (n, d) keys and values."""
    q = np.asarray(q, np.float64) * scale
    logits = np.asarray(keys, np.float64) @ q
    w = np.exp(logits - logits.max())
    return w @ np.asarray(values, np.float64) / w.sum()


class ReferenceSubGen:
    """Algorithm 1 (plus the exact sinks and recent window of the ``"llm"`` preset), one token at a time, in
    float64 Python loops, with a fixed ``delta`` and no budget.

    >>> ref = ReferenceSubGen(2, delta=0.1, t=2, s=None, value_estimator="cluster", seed=0)
    >>> for x in ([1.0, 0.0], [0.0, 1.0]):
    ...     ref.insert(x, x)
    >>> np.allclose(ref.attend([0.0, 0.0]), [0.5, 0.5])
    True
    """

    def __init__(self, d, *, delta, t, s, value_estimator, recent_window=0, n_sink=0, scale=1.0, seed=0):
        self.d, self.delta, self.t, self.s = d, float(delta), t, s
        self.value_estimator, self.w, self.n_sink, self.scale = value_estimator, recent_window, n_sink, scale
        self.rng = random.Random(seed)
        self.centres: list[np.ndarray] = []
        self.counts: list[int] = []
        self.slots: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self.b_slots: list[tuple[np.ndarray, np.ndarray]] = []
        self.mu = 0.0
        self.sinks: list[tuple[np.ndarray, np.ndarray]] = []
        self.window: deque = deque()

    def insert(self, k, v):
        k, v = np.asarray(k, np.float64), np.asarray(v, np.float64)
        if len(self.sinks) < self.n_sink:
            self.sinks.append((k, v))
            return
        self.window.append((k, v))
        if len(self.window) > self.w:
            self._sketch(*self.window.popleft())

    def _sketch(self, k, v):
        best, best_i = math.inf, -1
        for i, c in enumerate(self.centres):
            d2 = float(((c - k) ** 2).sum())
            if d2 < best:
                best, best_i = d2, i
        if best_i >= 0 and best <= self.delta ** 2:
            self.counts[best_i] += 1
            for slot in range(self.t):
                if self.rng.random() < 1.0 / self.counts[best_i]:
                    self.slots[best_i][slot] = (k, v)
        else:
            self.centres.append(k)
            self.counts.append(1)
            self.slots.append([(k, v)] * self.t)
        if self.value_estimator == "l2":
            nv2 = float((v ** 2).sum())
            self.mu += nv2
            if not self.b_slots:
                self.b_slots = [(k, v)] * self.s if nv2 > 0 else []
            else:
                for slot in range(self.s):
                    if self.rng.random() < nv2 / self.mu:
                        self.b_slots[slot] = (k, v)

    def estimate(self, q):
        """(N^, Z^) for query ``q`` (scaled by ``scale``), exact tokens included; no shared maximum (the
        reference trades overflow safety for plainness)."""
        q = np.asarray(q, np.float64) * self.scale
        num, den = np.zeros(self.d), 0.0
        for k, v in list(self.sinks) + list(self.window):
            e = math.exp(float(k @ q))
            num += e * v
            den += e
        for n_i, slots in zip(self.counts, self.slots):
            for k, v in slots:
                e = math.exp(float(k @ q))
                den += n_i / self.t * e
                if self.value_estimator == "cluster":
                    num += n_i / self.t * e * v
        if self.value_estimator == "l2":
            for k, v in self.b_slots:
                nv2 = float((v ** 2).sum())
                if nv2 > 0:
                    num += self.mu / self.s * math.exp(float(k @ q)) * v / nv2
        return num, den

    def attend(self, q):
        num, den = self.estimate(q)
        return num / den if den > 0 else np.zeros(self.d)
