"""Seeded key/value streams for KV-cache compression: clusterable keys and needle retrieval (numpy only).

Both generators return float32 numpy arrays laid out as a decoder's cache, ``(batch, kv_heads, n, d)``;
torch users convert with ``torch.from_numpy``. Queries are meant to be used as given, already scaled:
attention weights are ``softmax(K q)`` with no ``1/sqrt(d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teraml._validation import check_array, check_float, check_int, check_random_state, param_error

__all__ = ["ClusterableKVStream", "NeedleKVStream", "make_clusterable_kv_stream", "make_needle_kv_stream"]

# Relative size of a query's perturbation: ``q_j = 2 unit(k_j + e_j)``, ``e_j ~ N(0, (0.1 ||k_j||)^2 / d I)``.
_QUERY_NOISE = 0.1
# Norm of every query of :func:`make_clusterable_kv_stream`.
_QUERY_NORM = 2.0
_BACKGROUND_PARAMS = ("beta", "c0", "key_radius", "delta", "value_lognorm_sigma")


@dataclass(frozen=True, eq=False)
class ClusterableKVStream:
    """The output of :func:`make_clusterable_kv_stream` (every array is a numpy array).

    Attributes
    ----------
    keys, values, queries : (batch, kv_heads, n, d) float32
    labels : (batch, kv_heads, n) int64, the true cluster of each token; clusters are numbered
        ``0 .. m-1`` in the order they open, so a greedy clustering that numbers its clusters as it
        opens them reproduces ``labels`` exactly.
    centres : (batch, kv_heads, m, d) float32, the cluster centres (not keys of the stream).
    n_clusters : (batch, kv_heads) int64, the true m of each group; the opening schedule depends only on
        the token index, so every group has the same m.
    delta : float, the cluster diameter the stream was made with (the greedy threshold that recovers it).
    """

    keys: np.ndarray
    values: np.ndarray
    queries: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    n_clusters: np.ndarray
    delta: float


@dataclass(frozen=True, eq=False)
class NeedleKVStream:
    """The output of :func:`make_needle_kv_stream`.

    Attributes
    ----------
    keys, values : (1, 1, n, d) float32, background tokens with the needles written in.
    positions : (n_needles,) int64, the needles' token positions, ascending, all ``< n - exclude_last``.
    queries : (1, 1, n_needles, d) float32, the query of each needle, in the order of ``positions``.
    codes : (n_needles, d) float32, each needle's value: distinct +-1 vectors (norm ``sqrt(d)``).
    """

    keys: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    queries: np.ndarray
    codes: np.ndarray

    @property
    def n_needles(self) -> int:
        return int(self.positions.shape[0])

    @property
    def chance(self) -> float:
        """Accuracy of outputs unrelated to the codes: ``1 / n_needles``."""
        return 1.0 / self.n_needles

    def score(self, outputs) -> float:
        """Retrieval accuracy of attention outputs for :attr:`queries`.

        ``outputs`` is ``(n_needles, d)`` (or ``(1, 1, n_needles, d)``), row i the output for query i.
        Needle i counts as retrieved when, among all needle codes, its own has the largest cosine
        with output i (a zero output retrieves nothing). Returns the fraction retrieved, in [0, 1];
        outputs unrelated to the codes score about :attr:`chance` ``= 1 / n_needles``.
        """
        k, d = self.codes.shape
        out = check_array("outputs", outputs, ndim=(2, 4), dtype=np.float64)
        if out.ndim == 4 and out.shape[:2] == (1, 1):
            out = out[0, 0]
        if out.shape != (k, d):
            raise ValueError(f"outputs must have shape ({k}, {d}) (or (1, 1, {k}, {d})); "
                             f"got shape {out.shape}")
        # every code has norm sqrt(d), so the largest cosine is the largest dot product
        dots = out @ self.codes.astype(np.float64).T
        hit = (np.argmax(dots, axis=1) == np.arange(k)) & (np.linalg.norm(out, axis=1) > 0)
        return float(np.mean(hit))


def _opening_schedule(n: int, c0: float, beta: float) -> np.ndarray:
    """(n,) bool: token j opens a cluster iff the clusters before it number fewer than ``c0 (j+1)^beta``.

    With ``c_j = ceil(c0 (j+1)^beta)`` (nondecreasing) the count after token j is
    ``m_{j+1} = min(m_j + 1, c_j)``, that is ``j + min(1, min_{i<=j} (c_i - i))``.
    """
    j = np.arange(n, dtype=np.float64)
    target = np.ceil(c0 * (j + 1.0) ** beta)
    m_after = j + np.minimum(1.0, np.minimum.accumulate(target - j))
    return np.diff(m_after, prepend=0.0) > 0.5


def make_clusterable_kv_stream(
    n: int,
    d: int = 64,
    *,
    beta: float = 0.5,
    c0: float = 2.0,
    key_radius: float = 3.0,
    delta: float = 0.5,
    value_lognorm_sigma: float = 0.5,
    batch: int = 1,
    kv_heads: int = 1,
    seed=0,
) -> ClusterableKVStream:
    """A stream of keys that m clusters of diameter ``delta`` cover, with ``m = ceil(c0 n^beta)``.

    Each of the ``batch * kv_heads`` groups is an independent stream of ``n`` tokens ``j = 0 .. n-1``:

    * **clusters**: token j opens a new cluster while the clusters so far number fewer than
      ``c0 (j+1)^beta``; otherwise it joins an existing cluster chosen with probability proportional to
      its current size (a Polya urn). The defaults give ``m = 2 sqrt(n)``: 64 / 128 / 256 / 512 clusters
      at n = 1024 / 4096 / 16384 / 65536.
    * **keys**: centres ``~ N(0, key_radius^2 / d I)`` (norm about ``key_radius``), and
      ``k_j = centre + x`` with x uniform in the ball of radius ``delta / 2``. Every cluster thus has
      diameter <= delta; centres of the defaults (``key_radius = 3``, d = 64) lie about 4.2 apart,
      more than ``2 delta`` with overwhelming probability, so a greedy clustering with threshold
      ``delta`` finds exactly the true clusters in any order.
    * **values**: ``v_j = g_j exp(value_lognorm_sigma z_j)``, g_j ~ N(0, I), one z_j ~ N(0, 1) per token.
    * **queries**: ``q_j = 2 (k_j + e_j) / ||k_j + e_j||`` with ``e_j ~ N(0, (0.1 ||k_j||)^2 / d I)``:
      norm 2, within about 0.1 rad of the key's direction.

    Parameters
    ----------
    n : int >= 1, tokens per group.
    d : int >= 1, head dimension.
    beta : float in [0, 1], growth exponent of the number of clusters.
    c0 : float > 0, growth constant.
    key_radius : float > 0, typical norm of a centre.
    delta : float >= 0, cluster diameter.
    value_lognorm_sigma : float >= 0, spread of the log of the value scales.
    batch, kv_heads : int >= 1, independent groups.
    seed : None, int >= 0 or numpy.random.Generator.

    Returns
    -------
    ClusterableKVStream with ``keys``, ``values``, ``queries`` (batch, kv_heads, n, d) float32,
    ``labels`` (batch, kv_heads, n) int64, ``centres`` (batch, kv_heads, m, d) float32,
    ``n_clusters`` (batch, kv_heads) int64 and ``delta``. Time and memory O(batch kv_heads n d).

    >>> s = make_clusterable_kv_stream(1024, 16, batch=2, seed=0)
    >>> s.keys.shape, s.keys.dtype, s.labels.shape, s.n_clusters.tolist()
    ((2, 1, 1024, 16), dtype('float32'), (2, 1, 1024), [[64], [64]])
    >>> bool(np.allclose(np.linalg.norm(s.queries, axis=-1), 2.0))
    True
    """
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=1)
    beta = check_float("beta", beta, min_value=0.0, max_value=1.0)
    c0 = check_float("c0", c0, min_value=0.0, min_inclusive=False)
    key_radius = check_float("key_radius", key_radius, min_value=0.0, min_inclusive=False)
    delta = check_float("delta", delta, min_value=0.0)
    value_lognorm_sigma = check_float("value_lognorm_sigma", value_lognorm_sigma, min_value=0.0)
    batch = check_int("batch", batch, min_value=1)
    kv_heads = check_int("kv_heads", kv_heads, min_value=1)
    rng = check_random_state("seed", seed)
    groups = batch * kv_heads

    opens = _opening_schedule(n, c0, beta)
    m = int(opens.sum())
    cluster_of_opener = np.cumsum(opens) - 1  # the id of the cluster token j opens (where it opens one)

    # Polya urn: joining a cluster with probability proportional to its size is joining the cluster of
    # a uniformly drawn earlier token. Link each joiner to that token and follow links to an opener.
    idx = np.arange(n)
    parent = np.floor(rng.random((groups, n)) * idx).astype(np.int64)
    parent = np.where(opens, idx, np.minimum(parent, idx - 1))
    flat = (parent + (np.arange(groups) * n)[:, None]).ravel()
    while True:  # pointer doubling: O(log depth) passes, depth O(log n)
        nxt = flat[flat]
        if np.array_equal(nxt, flat):
            break
        flat = nxt
    labels = cluster_of_opener[flat.reshape(groups, n) % n].astype(np.int64)

    # float32 throughout (centres drawn in float64): the offsets' norms stay within 1e-6 of exact
    f32, tiny = np.float32, np.finfo(np.float32).tiny
    centres = (rng.standard_normal((groups, m, d)) * (key_radius / np.sqrt(d))).astype(f32)
    keys = rng.standard_normal((groups, n, d), dtype=f32)
    radius = 0.5 * delta * rng.random((groups, n, 1)) ** (1.0 / d)  # uniform in the ball, not on its sphere
    keys *= (radius / np.maximum(np.linalg.norm(keys, axis=-1, keepdims=True), tiny)).astype(f32)
    keys += np.take_along_axis(centres, labels[..., None], axis=1)

    values = rng.standard_normal((groups, n, d), dtype=f32)
    values *= np.exp(value_lognorm_sigma * rng.standard_normal((groups, n, 1))).astype(f32)

    queries = rng.standard_normal((groups, n, d), dtype=f32)
    queries *= (_QUERY_NOISE / np.sqrt(d)) * np.linalg.norm(keys, axis=-1, keepdims=True)
    queries += keys
    queries *= _QUERY_NORM / np.maximum(np.linalg.norm(queries, axis=-1, keepdims=True), tiny)

    def shaped(a, dtype=np.float32):
        return np.ascontiguousarray(a.reshape(batch, kv_heads, *a.shape[1:]), dtype=dtype)

    return ClusterableKVStream(
        keys=shaped(keys),
        values=shaped(values),
        queries=shaped(queries),
        labels=shaped(labels, np.int64),
        centres=shaped(centres),
        n_clusters=np.full((batch, kv_heads), m, dtype=np.int64),
        delta=delta,
    )


def make_needle_kv_stream(
    n: int = 16384,
    d: int = 64,
    *,
    n_needles: int = 50,
    exclude_last: int = 600,
    needle_key_norm: float = 3.0,
    needle_query_norm: float = 5.0,
    seed=0,
    **background,
) -> NeedleKVStream:
    """Needle retrieval: a few tokens whose value must be read back through attention, in a clusterable stream.

    The background is one :func:`make_clusterable_kv_stream` ``(n, d, **background)`` stream (its
    keyword arguments ``beta``, ``c0``, ``key_radius``, ``delta``, ``value_lognorm_sigma`` pass
    through). Then ``n_needles`` positions, drawn uniformly without replacement from
    ``[0, n - exclude_last)`` (none among the last ``exclude_last`` tokens, so a recent window cannot
    hold them), are overwritten: needle i has a random unit direction u_i, key ``needle_key_norm u_i``
    and as value a random +-1 code (distinct codes, norm ``sqrt(d)``); its query is
    ``needle_query_norm u_i``. Exact attention puts almost all of a needle query's weight on its needle
    (logit ``3 * 5 = 15`` against about ``N(0, 15^2 / d)`` elsewhere at the defaults), so its output is
    close to the needle's code; :meth:`NeedleKVStream.score` reads it back by the largest cosine among
    all codes. Chance accuracy is ``1 / n_needles`` (2 % at the default 50 needles).

    Parameters
    ----------
    n : int >= 1; d : int >= 1.
    n_needles : int >= 1, at most ``n - exclude_last`` and at most ``2^d`` (the codes are distinct).
    exclude_last : int >= 0.
    needle_key_norm, needle_query_norm : float > 0.
    seed : None, int >= 0 or numpy.random.Generator (the background and the needles both draw from it).

    Returns
    -------
    NeedleKVStream with ``keys``, ``values`` (1, 1, n, d) float32, ``positions`` (n_needles,) int64,
    ``queries`` (1, 1, n_needles, d) float32, ``codes`` (n_needles, d) float32 and ``score(outputs)``.

    >>> s = make_needle_kv_stream(4096, 32, n_needles=20, exclude_last=100, seed=0)
    >>> s.keys.shape, s.queries.shape, s.codes.shape, bool(s.positions.max() < 4096 - 100)
    ((1, 1, 4096, 32), (1, 1, 20, 32), (20, 32), True)
    >>> logits = s.queries[0, 0].astype(np.float64) @ s.keys[0, 0].T.astype(np.float64)
    >>> w = np.exp(logits - logits.max(axis=1, keepdims=True))
    >>> s.score((w / w.sum(axis=1, keepdims=True)) @ s.values[0, 0]), s.chance
    (1.0, 0.05)
    """
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=1)
    n_needles = check_int("n_needles", n_needles, min_value=1)
    exclude_last = check_int("exclude_last", exclude_last, min_value=0)
    needle_key_norm = check_float("needle_key_norm", needle_key_norm, min_value=0.0, min_inclusive=False)
    needle_query_norm = check_float("needle_query_norm", needle_query_norm, min_value=0.0, min_inclusive=False)
    for name in background:
        if name not in _BACKGROUND_PARAMS:
            raise param_error(name, "unexpected keyword argument: the background takes only "
                                    f"{', '.join(_BACKGROUND_PARAMS)} (one stream: batch = kv_heads = 1)",
                              wrong_type=True)
    if exclude_last >= n:
        raise ValueError(f"exclude_last must be an int < n = {n}; got {exclude_last}")
    if n_needles > n - exclude_last:
        raise ValueError(f"n_needles must be an int <= n - exclude_last = {n - exclude_last}; got {n_needles}")
    if d < 64 and n_needles > 2**d:
        raise ValueError(f"n_needles must be an int <= 2^d = {2**d} (the +-1 codes are distinct); "
                         f"got {n_needles}")
    rng = check_random_state("seed", seed)

    bg = make_clusterable_kv_stream(n, d, seed=rng, **background)
    keys, values = bg.keys.copy(), bg.values.copy()

    positions = np.sort(rng.choice(n - exclude_last, size=n_needles, replace=False)).astype(np.int64)
    u = rng.standard_normal((n_needles, d))
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    codes = np.where(rng.random((n_needles, d)) < 0.5, -1.0, 1.0)
    while True:  # redraw repeated codes (only likely for small d)
        _, first = np.unique(codes, axis=0, return_index=True)
        repeated = np.setdiff1d(np.arange(n_needles), first)
        if repeated.size == 0:
            break
        codes[repeated] = np.where(rng.random((repeated.size, d)) < 0.5, -1.0, 1.0)

    keys[0, 0, positions] = needle_key_norm * u
    values[0, 0, positions] = codes
    return NeedleKVStream(
        keys=keys,
        values=values,
        positions=positions,
        queries=(needle_query_norm * u).astype(np.float32)[None, None],
        codes=codes.astype(np.float32),
    )
