"""Same-budget baselines for KV-cache compression: exact, sink + window (StreamingLLM), H2O, uniform
(Algorithm R) and key-norm (KnormPress), each a :class:`~teraml.kvcache._common.StreamingKV`.

Each keeps at most ``budget`` tokens (2 * budget stored vectors) per (sequence, kv-head), with weights
(1, 1): attention is exact softmax over the kept tokens (self-normalised).
"""

from __future__ import annotations

import math

import torch

from teraml._validation import Interval, check_param
from teraml.kvcache._common import (
    StreamingKV,
    check_budget_param,
    check_method,
    check_queries,
    fold_queries,
)

__all__ = ["ExactKV", "SinkWindowKV", "H2OKV", "UniformKV", "KeyNormKV", "METHODS", "make_kv"]

_SEP = ", "                                      # the spec's error form: "{name} must be {expected}, got {value!r}"


class ExactKV(StreamingKV):
    """The full cache: every token, exact attention (the reference row).

    >>> import torch
    >>> kv = ExactKV(8).update(torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8))
    >>> kv.attend(torch.randn(1, 4, 1, 8)).shape, int(kv.stored_vectors().sum())
    (torch.Size([1, 4, 1, 8]), 20)
    """

    method = "exact"
    _PARAM_NAMES = ("scale",)

    def __init__(self, head_dim, *, scale=None, device=None, dtype=torch.float32):
        super().__init__(head_dim, scale=scale, device=device, dtype=dtype, seed=None)

    def _reset_state(self):
        self.keys = self.values = None

    def _init_state(self):
        self.keys = torch.zeros(self.batch, self.kv_heads, 0, self.head_dim, dtype=self.dtype, device=self.device)
        self.values = torch.zeros_like(self.keys)

    def _insert(self, keys, values, queries):
        self.keys = torch.cat([self.keys, keys.to(self.dtype)], dim=2)
        self.values = torch.cat([self.values, values.to(self.dtype)], dim=2)

    def weighted_set(self):
        w = torch.ones(self.keys.shape[:3], dtype=torch.float32, device=self.device)
        return self.keys, self.values, w, w

    def stored_vectors(self):
        return torch.full((self.batch, self.kv_heads), 2 * self.keys.shape[2], dtype=torch.long)

    def _state_tensors(self):
        return {"keys": self.keys, "values": self.values}


# --------------------------------------------------------------------------------------------- kept tokens


def _select(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-group selection along dim 2: ``x`` (b, h, C, ...), ``idx`` (b, h, L) -> (b, h, L, ...). One
    ``index_select`` of whole rows of the flattened tensor (on CPU several times faster than ``gather`` with
    an expanded index, or ``where``)."""
    b, h, C = x.shape[:3]
    rest = x.shape[3:]
    offs = torch.arange(b * h, device=x.device).view(b, h, 1) * C
    out = x.reshape(b * h * C, *rest).index_select(0, (idx + offs).reshape(-1))
    return out.view(b, h, idx.shape[2], *rest)


class _KeptTokensKV(StreamingKV):
    """Shared storage of the eviction baselines: per group, up to ``budget`` exact tokens with weights (1, 1).

    State (every tensor has leading dims (batch, kv_heads), so :meth:`reorder` works): ``keys``, ``values``
    (b, Hkv, L, d) at the storage dtype and ``pos`` (b, Hkv, L) int64, the stream position of each kept token
    (-1 would mark an empty slot, weight 0). Every method here fills its slots: L = min(budget, seen).
    """

    def __init__(self, head_dim, *, budget, scale=None, device=None, dtype=torch.float32, seed=None):
        self.budget = check_budget_param(budget, allow_none=False)
        super().__init__(head_dim, scale=scale, device=device, dtype=dtype, seed=seed)

    @property
    def _ct(self):
        """The dtype of scores and norms: float64 for float64 storage, else float32."""
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def _reset_state(self):
        self.keys = self.values = self.pos = None

    def _init_state(self):
        self.keys = torch.zeros(self.batch, self.kv_heads, 0, self.head_dim, dtype=self.dtype, device=self.device)
        self.values = torch.zeros_like(self.keys)
        self.pos = torch.zeros(self.batch, self.kv_heads, 0, dtype=torch.long, device=self.device)

    def _candidates(self, keys, values, seen=None):
        """The stored tokens followed by the new ones (stream positions from ``seen``, default ``self.seen``):
        keys, values (b, h, L + n, d) and positions (b, h, L + n)."""
        n = keys.shape[2]
        seen = self.seen if seen is None else seen
        p = torch.arange(seen, seen + n, dtype=torch.long, device=self.device)
        return (torch.cat([self.keys, keys.to(self.dtype)], dim=2),
                torch.cat([self.values, values.to(self.dtype)], dim=2),
                torch.cat([self.pos, p.expand(self.batch, self.kv_heads, n)], dim=2))

    def _keep(self, cands, idx=None, drop=None):
        """Keep candidates (tensors with leading (b, h, C)) by sorted indices ``idx`` (b, h, L), or all but
        ``drop`` (b, h) when C = L + 1. Returns the kept tensors in the same order."""
        if drop is not None:
            ar = torch.arange(cands[0].shape[2] - 1, device=self.device)
            idx = ar + (ar >= drop.unsqueeze(-1))
        return [_select(x, idx) for x in cands]

    def kept_positions(self) -> torch.Tensor:
        """Stream positions (0-based) of the kept tokens, (b, Hkv, L) int64; -1 marks an empty slot. Storage
        order: stream order for every method but ``uniform`` (reservoir slots)."""
        if self.batch is None:
            return torch.zeros(0, 0, 0, dtype=torch.long)
        return self.pos.clone()

    def weighted_set(self):
        w = (self.pos >= 0).to(torch.float32)
        return self.keys, self.values, w, w

    def stored_vectors(self):
        return 2 * (self.pos >= 0).sum(dim=-1).to(device="cpu", dtype=torch.long)

    def _state_tensors(self):
        return {"keys": self.keys, "values": self.values, "pos": self.pos}


class SinkWindowKV(_KeptTokensKV):
    """StreamingLLM: the first ``n_sink`` tokens (attention sinks) plus the ``budget - n_sink`` most recent.

    Every group keeps the same positions, in stream order; positions are not re-indexed (rotated keys stay
    as they were stored). Attention is exact softmax over the kept tokens. Memory: 2 * min(budget, seen)
    stored vectors per group; an update of n tokens costs O((budget + n) d) (slices and one concatenation).

    >>> import torch
    >>> kv = SinkWindowKV(8, budget=6, n_sink=2).update(torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8))
    >>> kv.kept_positions()[0, 0].tolist(), int(kv.stored_vectors().max())
    ([0, 1, 6, 7, 8, 9], 12)
    """

    method = "sink_window"
    _PARAM_NAMES = ("budget", "n_sink", "scale")

    def __init__(self, head_dim, *, budget, n_sink=4, scale=None, device=None, dtype=torch.float32):
        budget = check_budget_param(budget, allow_none=False)
        n_sink = check_param("n_sink", n_sink, [Interval("int", 0)], sep=_SEP)
        self.n_sink = check_param("n_sink", n_sink, [Interval("int", 0, budget, text=f"an int <= budget={budget}")],
                                  sep=_SEP)
        super().__init__(head_dim, budget=budget, scale=scale, device=device, dtype=dtype)

    def _insert(self, keys, values, queries):
        n, seen, L, k0 = keys.shape[2], self.seen, self.keys.shape[2], self.n_sink
        total = seen + n
        first = max(total - (self.budget - k0), k0)    # kept: positions < n_sink and >= first
        a = min(seen, k0)                              # stored: sinks in [0, a), then positions seen - L + col
        old_from = min(L, max(a, first - seen + L))
        ns = max(0, min(n, k0 - seen))                 # new sinks: [0, ns); new window: [new_from, n)
        new_from = min(n, max(ns, first - seen))
        pos = torch.arange(seen, total, dtype=torch.long, device=self.device).expand(self.batch, self.kv_heads, n)

        def pick(old, new):
            return torch.cat([old[:, :, :a], old[:, :, old_from:], new[:, :, :ns], new[:, :, new_from:]], dim=2)

        self.keys = pick(self.keys, keys.to(self.dtype))
        self.values = pick(self.values, values.to(self.dtype))
        self.pos = pick(self.pos, pos)


class KeyNormKV(_KeptTokensKV):
    """KnormPress: keep the ``budget`` tokens of smallest key norm ||k|| (ties: the older token stays).

    The kept set is the ``budget`` smallest norms among all tokens seen, whatever the chunking; groups keep
    different tokens, in stream order. The norms (float32; float64 for float64 storage) are kept beside the
    tokens. An update of n tokens costs O((budget + n)(d + log(budget + n))); a one-token step O(budget d).

    >>> import torch
    >>> k = torch.tensor([3.0, 1.0, 4.0, 0.5, 2.0]).reshape(1, 1, 5, 1) * torch.ones(1, 1, 1, 4)
    >>> KeyNormKV(4, budget=3).update(k, torch.randn(1, 1, 5, 4)).kept_positions().tolist()
    [[[1, 3, 4]]]
    """

    method = "key_norm"
    _PARAM_NAMES = ("budget", "scale")

    def __init__(self, head_dim, *, budget, scale=None, device=None, dtype=torch.float32):
        super().__init__(head_dim, budget=budget, scale=scale, device=device, dtype=dtype)

    def _reset_state(self):
        super()._reset_state()
        self.norms = None

    def _init_state(self):
        super()._init_state()
        self.norms = torch.zeros(self.batch, self.kv_heads, 0, dtype=self._ct, device=self.device)

    def _state_tensors(self):
        return {**super()._state_tensors(), "norms": self.norms}

    def _insert(self, keys, values, queries):
        k, v, p = self._candidates(keys, values)
        nrm = torch.linalg.vector_norm(k[:, :, self.keys.shape[2]:].to(self._ct), dim=-1)
        nrm = torch.cat([self.norms, nrm], dim=2)
        C, B = k.shape[2], self.budget
        if C <= B:
            self.keys, self.values, self.pos, self.norms = k, v, p, nrm
        elif C == B + 1:                               # one eviction: the largest norm, the newest of ties
            cols = torch.arange(C, device=self.device)
            top = nrm == nrm.amax(dim=-1, keepdim=True)
            drop = torch.where(top, cols, -1).argmax(dim=-1)
            self.keys, self.values, self.pos, self.norms = self._keep((k, v, p, nrm), drop=drop)
        else:
            idx = torch.argsort(nrm, dim=-1, stable=True)[..., :B].sort(dim=-1).values
            self.keys, self.values, self.pos, self.norms = self._keep((k, v, p, nrm), idx=idx)


class UniformKV(_KeptTokensKV):
    """Uniform eviction: Algorithm R reservoir sampling, a uniform sample without replacement of
    min(budget, seen) tokens among those seen, self-normalised (weights (1, 1)).

    Token i (0-based) fills slot i while i < budget; afterwards it replaces slot j ~ U{0, ..., i} if
    j < budget. Every group draws independently from ``self.generator`` (seeded by ``seed``, one float64
    uniform per token past the budget): the same seed and the same chunking give the same state. An update of
    n tokens is vectorised (the last token drawn for a slot wins): O(n + budget d). Slots are not in stream
    order (see :meth:`kept_positions`).

    >>> import torch
    >>> k, v = torch.randn(2, 3, 50, 8), torch.randn(2, 3, 50, 8)
    >>> a = UniformKV(8, budget=10, seed=0).update(k, v)
    >>> b = UniformKV(8, budget=10, seed=0).update(k, v)
    >>> bool(torch.equal(a.kept_positions(), b.kept_positions())), int(a.stored_vectors().max())
    (True, 20)
    """

    method = "uniform"
    _PARAM_NAMES = ("budget", "scale")

    def __init__(self, head_dim, *, budget, seed=None, scale=None, device=None, dtype=torch.float32):
        super().__init__(head_dim, budget=budget, scale=scale, device=device, dtype=dtype, seed=seed)

    def _insert(self, keys, values, queries):
        b, h, n, d = keys.shape
        B, seen = self.budget, self.seen
        L, L_new = self.keys.shape[2], min(B, seen + n)
        i = torch.arange(seen, seen + n, device=self.device)                # stream indices of the chunk
        slot = i.expand(b, h, n).clone()
        n_fill = max(0, min(n, B - seen))
        if n_fill < n:                                 # j ~ U{0..i}; kept when j < B, else to a dummy slot
            u = torch.rand(b, h, n - n_fill, generator=self.generator, device=self.device, dtype=torch.float64)
            ii = i[n_fill:].to(torch.float64)
            j = torch.minimum(torch.floor(u * (ii + 1)), ii).to(torch.long)
            slot[..., n_fill:] = torch.where(j < B, j, torch.full_like(j, L_new))
        last = torch.full((b, h, L_new + 1), -1, dtype=torch.long, device=self.device)
        t = torch.arange(n, device=self.device).expand(b, h, n)
        last.scatter_reduce_(2, slot, t, reduce="amax", include_self=True)   # the last writer of each slot
        last = last[..., :L_new]
        # slot s takes candidate L + last[s] (a new token) if written, else keeps stored entry s (s < L then)
        idx = torch.where(last >= 0, last + L, torch.arange(L_new, device=self.device))
        self.keys, self.values, self.pos = self._keep(self._candidates(keys, values), idx=idx)


class H2OKV(_KeptTokensKV):
    """H2O (heavy-hitter oracle): the ``ceil(budget * recent_fraction)`` most recent tokens plus the tokens of
    largest accumulated attention mass, ``budget`` in all.

    A token's score is the sum of the softmax probabilities it receives, while it is kept, from the queries
    of its group (the g = H / Hkv query heads of its kv head, folded as GQA). The query of position i, given
    to :meth:`update` as ``queries`` (b, H, n, d), attends causally over the kept tokens and the new tokens
    up to i; its mass is added before the eviction of step i. :meth:`observe` adds the mass of queries over
    the kept tokens without inserting any (the decoding queries of an attention function; do not give the
    same queries to both). When a step leaves budget + 1 tokens, the non-recent token of lowest score is
    evicted (ties: the oldest). Chunked updates evict token by token inside the chunk, so they keep the same
    tokens as per-token updates (up to float rounding of near ties).

    Without queries (neither ``queries=`` nor :meth:`observe`) every score stays 0 and eviction falls back
    to oldest first: the store is then a sliding window of the last ``budget`` tokens.

    Cost of an update of n tokens: O(g n (budget + n) d) for the scores, in blocks of 256 tokens, plus a loop
    over the steps that evict (a few O(g (budget + 256)) tensor operations each). State: the tokens in stream
    order and their ``scores`` (float32; float64 for float64 storage).

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> k, v, q = (torch.randn(1, 2, 40, 8, generator=g) for _ in range(3))
    >>> kv = H2OKV(8, budget=8, recent_fraction=0.5).update(k, v, queries=q.repeat(1, 2, 1, 1))
    >>> kv.kept_positions().shape, kv.kept_positions()[0, 0, -4:].tolist()
    (torch.Size([1, 2, 8]), [36, 37, 38, 39])
    """

    method = "h2o"
    _PARAM_NAMES = ("budget", "recent_fraction", "scale")
    _BLOCK = 256

    def __init__(self, head_dim, *, budget, recent_fraction=0.5, scale=None, device=None, dtype=torch.float32):
        budget = check_budget_param(budget, allow_none=False)
        self.recent_fraction = check_param("recent_fraction", recent_fraction, [Interval("float", 0, 1)], sep=_SEP)
        #: protected recent tokens: ceil(budget * recent_fraction); a product within 1e-9 of an integer is
        #: that integer (5 * 0.2 -> 1, 10 * 0.3 -> 3, whatever the float rounding)
        x = budget * self.recent_fraction
        self.recent = round(x) if abs(x - round(x)) <= 1e-9 * max(1.0, x) else math.ceil(x)
        super().__init__(head_dim, budget=budget, scale=scale, device=device, dtype=dtype)

    def _reset_state(self):
        super()._reset_state()
        self.scores = None

    def _init_state(self):
        super()._init_state()
        self.scores = torch.zeros(self.batch, self.kv_heads, 0, dtype=self._ct, device=self.device)

    def _state_tensors(self):
        return {**super()._state_tensors(), "scores": self.scores}

    def observe(self, queries):
        """Add the attention mass of ``queries`` (b, H, nq, d) over the kept tokens to their scores, without
        inserting tokens. Returns ``self`` (nothing happens on an empty store)."""
        check_queries(queries, self.head_dim, self.kv_heads, self.batch)
        if self.batch is None or self.keys.shape[2] == 0 or queries.shape[2] == 0:
            return self
        q = fold_queries(queries.to(self.device, self._ct), self.kv_heads) * self.scale
        logits = q @ self.keys.to(self._ct).transpose(-1, -2)                         # (b, h, g nq, L)
        self.scores = self.scores + torch.softmax(logits, dim=-1).sum(dim=-2)
        return self

    def _insert(self, keys, values, queries):
        n = keys.shape[2]
        if queries is not None:
            check_queries(queries, self.head_dim, self.kv_heads, self.batch, n)
        for s in range(0, n, self._BLOCK):
            e = min(n, s + self._BLOCK)
            self._insert_block(keys[:, :, s:e], values[:, :, s:e], None if queries is None else queries[:, :, s:e],
                               self.seen + s)

    def _insert_block(self, keys, values, queries, seen):
        b, h, m, d = keys.shape
        B, r, ct = self.budget, self.recent, self._ct
        L = self.keys.shape[2]
        k, v, p = self._candidates(keys, values, seen)
        C = L + m
        sc = torch.cat([self.scores, self.scores.new_zeros(b, h, m)], dim=2)
        i0 = min(m, max(0, B - L))                     # steps before i0 fill the budget: nothing is evicted
        E = None
        if queries is not None:
            g = queries.shape[1] // h
            q = queries.to(self.device, ct).reshape(b, h, g * m, d) * self.scale
            logits = (q @ k.to(ct).transpose(-1, -2)).view(b, h, g, m, C)
            future = torch.arange(C, device=self.device) > (torch.arange(m, device=self.device) + L).unsqueeze(-1)
            logits.masked_fill_(future, -math.inf)
            if i0 > 0:
                sc = sc + torch.softmax(logits[:, :, :, :i0], dim=-1).sum(dim=(2, 3))
            if i0 < m:                                 # the rows of the evicting steps; evicted columns get -inf
                E = logits[:, :, :, i0:]
                rows = E.unbind(3)
        if i0 == m:
            self.keys, self.values, self.pos, self.scores = k, v, p, sc
            return
        for step in range(m - i0):
            c = L + i0 + step                          # column of this step's token (never -inf in its row)
            if E is not None:
                sc += torch.softmax(rows[step], dim=-1).sum(dim=2)                    # (b, h, C)
            j = sc[..., : c - r + 1].argmin(dim=-1, keepdim=True)    # columns <= c - r are not recent
            sc.scatter_(2, j, math.inf)                                                # evicted: +inf
            if E is not None:
                E.scatter_(-1, j[:, :, None, None].expand(b, h, g, m - i0, 1), -math.inf)
        if m == 1:
            self.keys, self.values, self.pos, self.scores = self._keep((k, v, p, sc), drop=j[..., 0])
        else:
            idx = torch.argsort(torch.isinf(sc).to(torch.uint8), dim=-1, stable=True)[..., :B]
            self.keys, self.values, self.pos, self.scores = self._keep((k, v, p, sc), idx=idx)


METHODS = ("exact", "sink_window", "h2o", "uniform", "key_norm")
_CLASSES = {"exact": ExactKV, "sink_window": SinkWindowKV, "h2o": H2OKV, "uniform": UniformKV,
            "key_norm": KeyNormKV}


def make_kv(method, head_dim, **params) -> StreamingKV:
    """A baseline store by name: ``method`` is one of ``METHODS`` ('exact', 'sink_window', 'h2o', 'uniform',
    'key_norm'); ``params`` go to its class.

    For side-by-side loops every method accepts ``budget`` and ``seed``: 'exact' ignores both (it keeps every
    token) and only 'uniform' draws, so the others ignore ``seed``.

    >>> kv = make_kv("sink_window", 16, budget=64, n_sink=4, seed=0)
    >>> type(kv).__name__, kv.budget, kv.n_sink
    ('SinkWindowKV', 64, 4)
    """
    method = check_method(method, METHODS)
    if method == "exact":
        params.pop("budget", None)
    if method != "uniform":
        params.pop("seed", None)
    return _CLASSES[method](head_dim, **params)
