"""SubGen: a streaming sketch of the KV cache (online key clustering + value-norm sampling).

Zandieh, Han, Mirrokni, Karbasi, "SubGen: Token Generation in Sublinear Time and Memory" (arXiv:2402.06082).

Per sequence and kv-head, tokens (k_j, v_j) arrive in order; with e_j = exp(<k_j, q>) (q pre-multiplied by
``scale``) attention is N / Z, N = sum e_j v_j, Z = sum e_j. SubGen keeps

* **A** (denominator): a greedy clustering of the keys (a key joins the nearest centre within ``delta``,
  otherwise opens a cluster whose centre is that key) and, per cluster, ``t`` slots that are i.i.d. uniform
  draws with replacement from its members: Z^ = sum_i (n_i / t) sum_l exp(<k_il, q>) is unbiased;
* **B** (numerator, ``value_estimator="l2"``): ``s`` slots of (key, value) that are i.i.d. draws with
  P(j) = ||v_j||^2 / mu, mu = sum ||v_j||^2: N^ = (mu / s) sum_l exp(<k_l, q>) v_l / ||v_l||^2 is unbiased;
  with ``value_estimator="cluster"`` the A slots hold values too and N^ = sum_i (n_i/t) sum_l e_il v_il;
* **E**: the first ``n_sink`` tokens and the last ``recent_window`` tokens exactly.

The output z = (N^ + sum_E e v) / (Z^ + sum_E e) comes from one softmax with one shared maximum
(:func:`teraml.kvcache.weighted_attention`); z is never renormalised (N^ and Z^ are independent).

Presets. ``"paper"`` (the default) is the paper's Algorithm 1 (l2 values, no exact tokens) with its
guarantee: for t = O(eps^-2 e^{2 delta r} log n) and s = O(eps^-2 d), ||z - Attn|| <= eps ||softmax(Kq)|| ||V||_op
with high probability, in O(d (m t + s)) memory and time per token, which is sublinear only when the keys
are clusterable (m = n^{1 - Omega(1)}) and delta r = o(log n). ``"llm"`` keeps values beside the clustered
keys (a distinctive token keeps its own cluster, and so its value) plus 4 sinks and a recent window; it has
no proven bound (Z^ and N^ are unbiased, z is a consistent ratio). The retrieval advantage measured on
needles and on language models comes from ``"llm"``: l2 sampling keeps a needle's value only with
probability 1 - (1 - ||v*||^2/mu)^s, and on language models ``"paper"`` loses to uniform eviction at equal
memory.

Budget. ``budget=B`` tokens allow 2B stored d-vectors (the memory of B exact tokens). The cluster cap is
M = floor((2B - 2s - 2w - 2 n_sink) / (1 + t)) (l2) or floor((2B - 2w - 2 n_sink) / (1 + 2t)) (cluster); on
overflow, ``on_overflow="merge"`` doubles delta and lets each earlier centre absorb later centres within the
new delta (slots mix with probability n1 / (n1 + n2), which keeps every slot a uniform member draw), so the
cluster radius stays <= 2 delta; ``"raise"`` raises ``MemoryError``.

Example::

    >>> import torch
    >>> from teraml.kvcache import SubGenKV
    >>> k = torch.randn(1, 2, 300, 16); v = torch.randn(1, 2, 300, 16); q = torch.randn(1, 4, 300, 16)
    >>> kv = SubGenKV(16, preset="llm", budget=128, seed=0).update(k, v, queries=q)
    >>> kv.attend(q[:, :, -1:]).shape, bool(kv.stored_vectors().max() <= 256)
    (torch.Size([1, 4, 1, 16]), True)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from teraml._validation import Interval, Options, Satisfies, check_instance, check_param, is_int
from teraml.kvcache._common import StreamingKV, batch_index, check_kv, check_queries, fold_queries

__all__ = ["SubGenKV", "PRESETS", "stream_attention", "subgen_attention", "chunk_slot_draw"]

_SEP = ", "

#: Preset values (None in the constructor means the preset's value). ``s`` of ``"paper"`` is 8 * head_dim,
#: or max(1, (budget - recent_window - n_sink) // 2) with a budget; ``recent_window`` of ``"llm"`` is
#: min(64, budget // 4) with a budget.
PRESETS = {
    "paper": {"delta": "auto", "max_exp_ratio": 8.0, "t": 8, "s": "8d", "value_estimator": "l2",
              "recent_window": 0, "n_sink": 0, "on_overflow": "merge"},
    "llm": {"delta": "auto", "max_exp_ratio": 8.0, "t": 4, "s": None, "value_estimator": "cluster",
            "recent_window": 64, "n_sink": 4, "on_overflow": "merge"},
}

_CONSTRAINTS = {
    "preset": [Options("paper", "llm", text="'paper' or 'llm'")],
    "delta": [Options("auto"), Interval("float", 0, None, closed="neither")],
    "t": [Interval("int", 1, text="an int >= 1")],
    "value_estimator": [Options("l2", "cluster", text="'l2' or 'cluster'")],
    "recent_window": [Interval("int", 0, text="an int >= 0")],
    "n_sink": [Interval("int", 0, text="an int >= 0")],
    "max_exp_ratio": [Interval("float", 1, None, closed="neither", text="a finite float > 1")],
    "on_overflow": [Options("merge", "raise", text="'merge' or 'raise'")],
    "budget": [None, Interval("int", 1)],
}
_EXPECTED = {
    "preset": "'paper' or 'llm'", "delta": "a positive finite float or 'auto'", "t": "an int >= 1",
    "value_estimator": "'l2' or 'cluster'", "recent_window": "an int >= 0", "n_sink": "an int >= 0",
    "max_exp_ratio": "a finite float > 1", "on_overflow": "'merge' or 'raise'", "budget": "an int >= 1 or None",
}


def _check(name, value):
    return check_param(name, value, _CONSTRAINTS[name], expected=_EXPECTED[name], sep=_SEP)


_WARN_EXP = 1e4
_INIT_CAP = 16
_QUANTILE_MAX = 1 << 20
_SUB_CHUNK = 256     # tokens per distance GEMM of a chunked insert (the first ones are clustered greedily)


def chunk_slot_draw(prior_weight, weights, n_slots: int, generator=None):
    """The chunked reservoir step: each of ``n_slots`` slots keeps its content with probability
    W0 / (W0 + sum w), else takes chunk item j with probability w_j / sum w.

    ``prior_weight`` W0 (float), ``weights`` (n,) >= 0. Returns a long tensor (n_slots,): -1 = keep, else the
    item index. Inserting the items one at a time (item j replaces each slot with probability
    w_j / (W0 + w_1 + ... + w_j)) gives the same law: the factors telescope.

    >>> g = torch.Generator().manual_seed(0)
    >>> chunk_slot_draw(0.0, torch.tensor([1.0, 0.0]), 3, generator=g).tolist()
    [0, 0, 0]
    """
    weights = weights.to(torch.float64)
    total = float(weights.sum())
    if total <= 0:
        return torch.full((n_slots,), -1, dtype=torch.long, device=weights.device)
    keep_p = prior_weight / (prior_weight + total)
    u = torch.rand(n_slots, generator=generator, dtype=torch.float64, device=weights.device)
    pick = torch.multinomial(weights, n_slots, replacement=True, generator=generator)
    return torch.where(u < keep_p, torch.full_like(pick, -1), pick)


class SubGenKV(StreamingKV):
    """SubGen's streaming sketch of one layer's KV cache, per (sequence, kv-head).

    Parameters (None = the preset's value, see :data:`PRESETS`)
    ----------
    head_dim : int
    preset : ``"paper"`` (Algorithm 1, the default) or ``"llm"`` (values kept with the clustered keys,
        sinks and a recent window; no proven bound, but the one that retrieves)
    delta : cluster radius in key units, or ``"auto"``: ln(max_exp_ratio) / (2 r^), r^ the 95th percentile of
        the scaled query norms of the group seen before the first token enters the sketch
    t : slots per cluster; s : value slots (l2 only); value_estimator : ``"l2"`` or ``"cluster"``
    recent_window, n_sink : exact recent and first tokens
    scale : query scale (default 1/sqrt(head_dim))
    budget : tokens of memory (2 * budget stored vectors per group), or None (unbounded)
    on_overflow : ``"merge"`` (double delta and merge centres) or ``"raise"``
    max_exp_ratio : gamma of ``delta="auto"``; device, dtype : storage; seed : the random generator's seed

    Memory per group: d (m (1 + t) + 2 s + 2 w + 2 n_sink) values (l2) or d (m (1 + 2 t) + 2 w + 2 n_sink)
    (cluster); an update costs O(m d) per token, a query one pass over m t + s + w + n_sink entries.
    Sequential (per-token) and chunked updates (several tokens entering the sketch in one call: one
    distance GEMM, then the chunk reservoir of :func:`chunk_slot_draw`) sample from the same law but are
    not bit-identical.

    >>> import torch
    >>> kv = SubGenKV(8, preset="paper", delta=0.5, seed=0)
    >>> kv.update(torch.randn(2, 1, 50, 8), torch.randn(2, 1, 50, 8)).stored_vectors().shape
    torch.Size([2, 1])
    """

    method = "subgen"
    _PARAM_NAMES = ("preset", "delta_param", "t", "s", "value_estimator", "recent_window", "n_sink", "scale",
                    "budget", "on_overflow", "max_exp_ratio")

    def __init__(self, head_dim, *, preset="paper", delta=None, t=None, s=None, value_estimator=None,
                 recent_window=None, n_sink=None, scale=None, budget=None, on_overflow=None,
                 max_exp_ratio=None, device=None, dtype=torch.float32, seed=None):
        preset = _check("preset", preset)
        p = dict(PRESETS[preset])
        given = {"delta": delta, "t": t, "value_estimator": value_estimator, "recent_window": recent_window,
                 "n_sink": n_sink, "on_overflow": on_overflow, "max_exp_ratio": max_exp_ratio}
        for name, value in given.items():
            if value is not None:
                p[name] = _check(name, value)
        self.budget = _check("budget", budget)
        if p["delta"] != "auto" and not isinstance(p["delta"], str):
            p["delta"] = float(p["delta"])
        self.preset = preset
        self.delta_param = p["delta"]
        self.t = p["t"]
        self.value_estimator = p["value_estimator"]
        self.n_sink = p["n_sink"]
        self.on_overflow = p["on_overflow"]
        self.max_exp_ratio = float(p["max_exp_ratio"])
        self._w_derived = recent_window is None and preset == "llm" and self.budget is not None
        if self._w_derived:
            self.recent_window = min(64, self.budget // 4)
        else:
            self.recent_window = p["recent_window"]
        self._s_derived = s is None and self.budget is not None
        hd = check_param("head_dim", head_dim, [Interval("int", 1, text="a positive int")], sep=_SEP)
        if self.value_estimator == "cluster":
            if s is not None:
                raise ValueError(f"s must be None when value_estimator='cluster', got {s!r}")
            self.s = None
        elif s is not None:
            self.s = check_param("s", s, [Interval("int", 1)], expected="an int >= 1 when value_estimator='l2'",
                                 sep=_SEP)
        elif self.budget is not None:
            self.s = max(1, (self.budget - self.recent_window - self.n_sink) // 2)
        else:
            self.s = 8 * hd
        self.max_clusters = self._max_clusters()
        super().__init__(hd, scale=scale, device=device, dtype=dtype, seed=seed)
        self._warned = False

    def _max_clusters(self):
        if self.budget is None:
            return None
        m = self._clusters_for(self.budget, self.s, self.recent_window)
        if m < 1:
            raise ValueError(f"budget={self.budget} too small for s={self.s}, recent_window={self.recent_window}, "
                             f"n_sink={self.n_sink}, t={self.t}: need >= {self._min_budget()}")
        return m

    def _clusters_for(self, B: int, s, w) -> int:
        k, t = self.n_sink, self.t
        if self.value_estimator == "l2":
            return (2 * B - 2 * s - 2 * w - 2 * k) // (1 + t)
        return (2 * B - 2 * w - 2 * k) // (1 + 2 * t)

    def _min_budget(self) -> int:
        """The smallest budget that leaves room for one cluster (s and recent_window derived from it as the
        preset derives them, unless given)."""
        B = 1
        while True:
            w = min(64, B // 4) if self._w_derived else self.recent_window
            s = max(1, (B - w - self.n_sink) // 2) if self._s_derived else self.s
            if self._clusters_for(B, s, w) >= 1:
                return B
            B += 1

    # -- state ------------------------------------------------------------------------------------------
    def _reset_state(self):
        self._q_norms = []
        self.m = None
        self._warned = False

    def _init_state(self):
        b, h, d, dev, dt = self.batch, self.kv_heads, self.head_dim, self.device, self.dtype
        cap = _INIT_CAP if self.max_clusters is None else min(_INIT_CAP, self.max_clusters)
        f64 = dict(dtype=torch.float64, device=dev)
        self.m = torch.zeros(b, h, dtype=torch.long, device=dev)
        self.centers = torch.zeros(b, h, cap, d, dtype=dt, device=dev)
        self.counts = torch.zeros(b, h, cap, **f64)
        self.radii = torch.zeros(b, h, cap, **f64)
        self.a_keys = torch.zeros(b, h, cap, self.t, d, dtype=dt, device=dev)
        self.a_values = (torch.zeros(b, h, cap, self.t, d, dtype=dt, device=dev)
                         if self.value_estimator == "cluster" else None)
        if self.value_estimator == "l2":
            self.b_keys = torch.zeros(b, h, self.s, d, dtype=dt, device=dev)
            self.b_values = torch.zeros(b, h, self.s, d, dtype=dt, device=dev)
            self.mu = torch.zeros(b, h, **f64)
        else:
            self.b_keys = self.b_values = self.mu = None
        self.sink_keys = torch.zeros(b, h, 0, d, dtype=dt, device=dev)
        self.sink_values = torch.zeros_like(self.sink_keys)
        self.win_keys = torch.zeros(b, h, 0, d, dtype=dt, device=dev)
        self.win_values = torch.zeros_like(self.win_keys)
        self.delta = torch.full((b, h), float(self.delta_param) if self.delta_param != "auto" else math.nan, **f64)
        self.rhat = torch.full((b, h), math.nan, **f64)
        self.merges = torch.zeros(b, h, dtype=torch.long, device=dev)
        self.sketched = 0

    def _state_tensors(self):
        names = ["m", "centers", "counts", "radii", "a_keys", "a_values", "b_keys", "b_values", "mu",
                 "sink_keys", "sink_values", "win_keys", "win_values", "delta", "rhat", "merges"]
        out = {n: getattr(self, n) for n in names}
        out["sketched"] = self.sketched
        out["_q_norms"] = list(self._q_norms)
        return out

    def _load_state_tensors(self, state):
        for name, value in state.items():
            if name == "_q_norms":
                self._q_norms = [x.clone() for x in value]
            else:
                setattr(self, name, value.clone() if isinstance(value, torch.Tensor) else value)

    def reorder(self, index):
        index = batch_index(index, self.device)
        self._q_norms = [x.index_select(0, index) for x in self._q_norms]
        return super().reorder(index)

    # -- insertion --------------------------------------------------------------------------------------
    def update(self, keys, values, queries=None):
        """Insert tokens (b, Hkv, n, d) in stream order (queries (b, H, n, d): needed at the first update when
        ``delta="auto"``); returns ``self``. With ``on_overflow="raise"`` a ``MemoryError`` leaves the state as it
        was before the call.

        >>> kv = SubGenKV(4, delta=0.5, seed=0).update(torch.randn(1, 1, 10, 4), torch.randn(1, 1, 10, 4))
        >>> kv.seen, kv.stats()[0]["clusters"] <= 10
        (10, True)
        """
        if self.delta_param == "auto" and self.seen == 0 and queries is None:
            raise ValueError("delta='auto' needs queries at the first update")
        if self.on_overflow == "raise" and self.max_clusters is not None and self.batch is not None:
            snapshot = self.state_dict()
            try:
                return super().update(keys, values, queries)
            except MemoryError:
                self.load_state_dict(snapshot)
                raise
        try:
            return super().update(keys, values, queries)
        except MemoryError:
            if self.seen == 0:
                self.reset()
            raise

    def _insert(self, keys, values, queries):
        if queries is not None and self.sketched == 0:
            q = fold_queries(queries, self.kv_heads).to(torch.float64)
            self._q_norms.append(q.norm(dim=-1) * self.scale)               # (b, Hkv, g*n)
        n = keys.shape[2]
        start = 0
        room = self.n_sink - self.sink_keys.shape[2]
        if room > 0:
            take = min(room, n)
            self.sink_keys = torch.cat([self.sink_keys, keys[:, :, :take].to(self.dtype)], dim=2)
            self.sink_values = torch.cat([self.sink_values, values[:, :, :take].to(self.dtype)], dim=2)
            start = take
        if start == n:
            return
        wk = torch.cat([self.win_keys, keys[:, :, start:].to(self.dtype)], dim=2)
        wv = torch.cat([self.win_values, values[:, :, start:].to(self.dtype)], dim=2)
        over = wk.shape[2] - self.recent_window
        if over > 0:
            ok, ov = wk[:, :, :over], wv[:, :, :over]
            wk, wv = wk[:, :, over:], wv[:, :, over:]
        self.win_keys, self.win_values = wk.contiguous(), wv.contiguous()
        if over > 0:
            self._fix_delta()
            if over == 1:
                self._sketch_token(ok[:, :, 0], ov[:, :, 0])
            else:
                for g in range(self.batch * self.kv_heads):
                    self._sketch_chunk(g, ok.reshape(-1, over, self.head_dim)[g],
                                       ov.reshape(-1, over, self.head_dim)[g])
            self.sketched += over

    def _fix_delta(self):
        """At the first fold: r^ from the queries seen so far (for ``stats()``), and delta = ln(gamma) / (2 r^)
        when delta is ``"auto"``."""
        if not self._q_norms and not bool(torch.isnan(self.delta).any()):
            return
        norms = torch.cat(self._q_norms, dim=-1) if self._q_norms else None
        self._q_norms = []
        if norms is not None and norms.shape[-1] > 0 and bool(torch.isnan(self.rhat).all()):
            if norms.shape[-1] > _QUANTILE_MAX:     # torch.quantile refuses rows over 2^24: an even subsample
                norms = norms[..., torch.linspace(0, norms.shape[-1] - 1, _QUANTILE_MAX, device=norms.device).long()]
            self.rhat = torch.quantile(norms, 0.95, dim=-1).clamp_min(1e-12)
        if bool(torch.isnan(self.delta).any()):
            if bool(torch.isnan(self.rhat).any()):
                raise ValueError("delta='auto' needs queries at the first update")
            self.delta = math.log(self.max_exp_ratio) / (2.0 * self.rhat)

    def _flat(self, name):
        x = getattr(self, name)
        return x.view(self.batch * self.kv_heads, *x.shape[2:])

    def _grow(self, need: int):
        cap = self.centers.shape[2]
        if need <= cap:
            return
        new = max(need, 2 * cap)
        if self.max_clusters is not None:
            new = min(new, self.max_clusters)

        def pad(x):
            shape = list(x.shape)
            shape[2] = new - cap
            return torch.cat([x, x.new_zeros(shape)], dim=2)

        for name in ("centers", "counts", "radii", "a_keys", "a_values"):
            if getattr(self, name) is not None:
                setattr(self, name, pad(getattr(self, name)).contiguous())

    def _dist2(self, g: int, k: torch.Tensor) -> torch.Tensor:
        """float64 squared distances of key(s) k (n, d) to group g's live centres: (n, m)."""
        m = int(self.m.view(-1)[g])
        c = self._flat("centers")[g, :m].to(torch.float64)
        return torch.cdist(k.to(torch.float64).unsqueeze(0), c.unsqueeze(0)).squeeze(0) ** 2 if m else \
            k.new_zeros(k.shape[0], 0, dtype=torch.float64)

    def _sketch_token(self, k, v):
        """One token per group (G = b * Hkv at once): k, v (b, Hkv, d)."""
        G, d, t = self.batch * self.kv_heads, self.head_dim, self.t
        k = k.reshape(G, d)
        v = v.reshape(G, d)
        mmax = int(self.m.max())
        delta2 = self.delta.view(-1) ** 2
        if mmax:
            best, nearest = self._nearest_token(k, mmax, delta2)
        else:
            best = torch.full((G,), math.inf, dtype=torch.float64, device=k.device)
            nearest = torch.zeros(G, dtype=torch.long, device=k.device)
        join = best <= delta2
        if bool(join.any()):
            gi = torch.nonzero(join).flatten()
            ci = nearest[gi]
            counts = self._flat("counts")
            counts[gi, ci] += 1
            p = 1.0 / counts[gi, ci]
            mask = torch.rand(gi.numel(), t, generator=self.generator, dtype=torch.float64,
                              device=k.device) < p.unsqueeze(1)
            sel = torch.nonzero(mask)
            if sel.numel():
                rows, slots = gi[sel[:, 0]], sel[:, 1]
                cols = ci[sel[:, 0]]
                self._flat("a_keys")[rows, cols, slots] = k[rows].to(self.dtype)
                if self.a_values is not None:
                    self._flat("a_values")[rows, cols, slots] = v[rows].to(self.dtype)
            rad = self._flat("radii")
            rad[gi, ci] = torch.maximum(rad[gi, ci], best[gi].clamp_min(0).sqrt())
        if not bool(join.all()):
            opens = torch.nonzero(~join).flatten()
            m = self.m.view(-1)
            full = (m[opens] >= self.max_clusters) if self.max_clusters is not None else torch.zeros_like(opens,
                                                                                                      dtype=torch.bool)
            for g in opens[full].tolist():                     # the cap is reached: merge first (rare)
                self._open_or_overflow(g, k[g], v[g])
            gi = opens[~full]
            if gi.numel():                                     # open a cluster in every other group at once
                ci = m[gi]
                self._grow(int(ci.max()) + 1)
                kk = k[gi].to(self.dtype)
                self._flat("centers")[gi, ci] = kk
                self._flat("counts")[gi, ci] = 1.0
                self._flat("radii")[gi, ci] = 0.0
                self._flat("a_keys")[gi, ci] = kk.unsqueeze(1).expand(-1, t, -1)
                if self.a_values is not None:
                    self._flat("a_values")[gi, ci] = v[gi].to(self.dtype).unsqueeze(1).expand(-1, t, -1)
                m[gi] = ci + 1
        if self.value_estimator == "l2":
            self._b_token(k, v)

    def _nearest_token(self, k, mmax: int, delta2):
        """(squared distance, index) of each group's nearest live centre to its key k (G, d): a float32 (or the
        storage float64) GEMV, then a float64 recomputation for the groups where cancellation could change
        the answer (the best distance near delta^2, or a near tie)."""
        c = self._flat("centers")[:, :mmax]
        ct = torch.float64 if c.dtype == torch.float64 else torch.float32
        kc = k.to(ct)
        cc = c.to(ct)
        cn2 = (cc * cc).sum(-1)                                              # (G, mmax)
        kn2 = (kc * kc).sum(-1, keepdim=True)
        d2 = (cn2 + kn2 - 2.0 * (cc @ kc.unsqueeze(-1)).squeeze(-1)).to(torch.float64)
        live = torch.arange(mmax, device=k.device).unsqueeze(0) < self.m.view(-1).unsqueeze(1)
        d2 = torch.where(live, d2, torch.full_like(d2, math.inf))
        best, nearest = d2.min(dim=1)
        if ct == torch.float64:
            return best, nearest
        tol = 1e-3 * delta2 + 16 * 1.2e-7 * (kn2.squeeze(1).to(torch.float64) + cn2.max(dim=1).values.to(torch.float64))
        near_boundary = (best - delta2).abs() <= tol
        n_close = (d2 <= (best + 2 * tol).unsqueeze(1)).sum(1)
        redo = torch.nonzero(near_boundary | (n_close > 1)).flatten().tolist()
        for g in redo:
            ex = self._dist2(g, k[g:g + 1])[0]
            if ex.numel():
                b, i = ex.min(dim=0)
                best[g], nearest[g] = b, i
        return best, nearest

    def _open_or_overflow(self, g: int, k, v):
        """Open a cluster at key k in group g (merging first if the cap is reached)."""
        m = int(self.m.view(-1)[g])
        if self.max_clusters is not None and m >= self.max_clusters:
            if self.on_overflow == "raise":
                raise MemoryError(f"SubGenKV reached max_clusters={self.max_clusters} (budget={self.budget})")
            while True:
                self._merge(g)
                d2 = self._dist2(g, k.unsqueeze(0))[0]
                if d2.numel() and float(d2.min()) <= float(self.delta.view(-1)[g]) ** 2:
                    i = int(torch.argmin(d2))
                    self._join_one(g, i, k, v, float(d2[i]))
                    return
                if int(self.m.view(-1)[g]) < self.max_clusters:
                    break
            m = int(self.m.view(-1)[g])
        self._grow(m + 1)
        i = m
        self._flat("centers")[g, i] = k.to(self.dtype)
        self._flat("counts")[g, i] = 1.0
        self._flat("radii")[g, i] = 0.0
        self._flat("a_keys")[g, i] = k.to(self.dtype)
        if self.a_values is not None:
            self._flat("a_values")[g, i] = v.to(self.dtype)
        self.m.view(-1)[g] = m + 1

    def _join_one(self, g: int, i: int, k, v, d2: float):
        counts = self._flat("counts")
        counts[g, i] += 1
        mask = torch.rand(self.t, generator=self.generator, dtype=torch.float64, device=k.device) < 1.0 / counts[g, i]
        ak = self._flat("a_keys")
        ak[g, i, mask] = k.to(self.dtype)
        if self.a_values is not None:
            self._flat("a_values")[g, i, mask] = v.to(self.dtype)
        rad = self._flat("radii")
        rad[g, i] = max(float(rad[g, i]), math.sqrt(d2))

    def _merge(self, g: int):
        """One doubling of group g: delta *= 2, then each earlier surviving centre absorbs the later centres
        within the new delta; slots keep their content with probability n1 / (n1 + n2)."""
        delta = float(self.delta.view(-1)[g]) * 2.0
        self.delta.view(-1)[g] = delta
        self.merges.view(-1)[g] += 1
        m = int(self.m.view(-1)[g])
        c = self._flat("centers")[g, :m].to(torch.float64)
        D = torch.cdist(c.unsqueeze(0), c.unsqueeze(0)).squeeze(0)
        alive = torch.ones(m, dtype=torch.bool, device=c.device)
        counts, rad = self._flat("counts")[g], self._flat("radii")[g]
        ak = self._flat("a_keys")[g]
        av = self._flat("a_values")[g] if self.a_values is not None else None
        idx = torch.arange(m, device=c.device)
        for i in range(m):
            if not alive[i]:
                continue
            absorb = torch.nonzero(alive & (idx > i) & (D[i] <= delta)).flatten().tolist()
            for j in absorb:
                n1, n2 = float(counts[i]), float(counts[j])
                take = torch.rand(self.t, generator=self.generator, dtype=torch.float64,
                                  device=c.device) >= n1 / (n1 + n2)
                ak[i, take] = ak[j, take]
                if av is not None:
                    av[i, take] = av[j, take]
                counts[i] = n1 + n2
                rad[i] = max(float(rad[i]), float(D[i, j]) + float(rad[j]))
                alive[j] = False
        keep = torch.nonzero(alive).flatten()
        k = keep.numel()
        for name in ("centers", "counts", "radii", "a_keys", "a_values"):
            x = getattr(self, name)
            if x is None:
                continue
            xf = self._flat(name)
            kept = xf[g, keep].clone()
            xf[g, :k] = kept
            xf[g, k:m] = 0
        self.m.view(-1)[g] = k

    def _b_token(self, k, v):
        G = k.shape[0]
        nv2 = (v.to(torch.float64) ** 2).sum(-1)                               # (G,)
        mu = self.mu.view(-1)
        mu += nv2
        p = torch.where(mu > 0, nv2 / torch.where(mu > 0, mu, torch.ones_like(mu)), torch.zeros_like(mu))
        mask = torch.rand(G, self.s, generator=self.generator, dtype=torch.float64, device=k.device) < p.unsqueeze(1)
        sel = torch.nonzero(mask)
        if sel.numel():
            rows, slots = sel[:, 0], sel[:, 1]
            self._flat("b_keys")[rows, slots] = k[rows].to(self.dtype)
            self._flat("b_values")[rows, slots] = v[rows].to(self.dtype)

    def _sketch_chunk(self, g: int, K, V):
        """Chunked insert of n tokens (n, d) into group g: GEMM assignment to the existing centres, greedy
        clustering of the rest in order, then the chunk reservoir per cluster (and for B)."""
        n = K.shape[0]
        for lo in range(0, n, _SUB_CHUNK):
            Ks, Vs = K[lo:lo + _SUB_CHUNK], V[lo:lo + _SUB_CHUNK]
            pos = 0
            while pos < Ks.shape[0]:
                pos = self._sketch_chunk_part(g, Ks, Vs, pos)

    def _sketch_chunk_part(self, g: int, K, V, start: int) -> int:
        """Process K[start:] until an overflow would happen; return the next unprocessed index."""
        K, V = K[start:], V[start:]
        n = K.shape[0]
        delta = float(self.delta.view(-1)[g])
        d2lim = delta * delta
        m0 = int(self.m.view(-1)[g])
        assign = torch.full((n,), -1, dtype=torch.long, device=K.device)
        dist = torch.zeros(n, dtype=torch.float64, device=K.device)
        if m0:
            c = self._flat("centers")[g, :m0]
            ct = torch.float32 if c.dtype in (torch.float16, torch.bfloat16) else c.dtype
            kf, cf = K.to(ct), c.to(ct)
            d2 = (kf * kf).sum(-1, keepdim=True) + (cf * cf).sum(-1).unsqueeze(0) - 2.0 * kf @ cf.T
            d2 = d2.to(torch.float64)
            if ct != torch.float64:
                # float32 distances cancel on large keys: recompute the ambiguous ones in float64
                tol = torch.maximum(torch.full_like(d2, 1e-3 * d2lim),
                                    8 * 1.2e-7 * ((kf * kf).sum(-1, keepdim=True) + (cf * cf).sum(-1).unsqueeze(0))
                                    .to(torch.float64))
                amb = (d2 - d2lim).abs() <= tol
                rows = torch.nonzero(amb.any(dim=1)).flatten()
                if rows.numel():
                    d2[rows] = self._dist2(g, K[rows])
            best, near = d2.min(dim=1)
            hit = best <= d2lim
            assign[hit] = near[hit]
            dist[hit] = best[hit].clamp_min(0).sqrt()
        rest = torch.nonzero(assign < 0).flatten().tolist()
        new_centres: list[int] = []
        cap_left = None if self.max_clusters is None else self.max_clusters - m0
        stop = n
        Kd = K.to(torch.float64)
        for j in rest:
            if new_centres:
                cd = ((Kd[new_centres] - Kd[j]) ** 2).sum(-1)
                b, i = cd.min(dim=0)
                if float(b) <= d2lim:
                    assign[j] = m0 + int(i)
                    dist[j] = float(b) ** 0.5
                    continue
            if cap_left is not None and len(new_centres) >= cap_left:
                stop = j
                break
            assign[j] = m0 + len(new_centres)
            new_centres.append(j)
        # apply the prefix [0, stop)
        a = assign[:stop]
        Kp, Vp = K[:stop], V[:stop]
        if new_centres:
            self._grow(m0 + len(new_centres))
            cen = self._flat("centers")
            cen[g, m0:m0 + len(new_centres)] = K[new_centres].to(self.dtype)
        self.m.view(-1)[g] = m0 + len(new_centres)
        if stop:
            self._chunk_reservoir_a(g, a, Kp, Vp, dist[:stop])
            if self.value_estimator == "l2":
                self._chunk_reservoir_b(g, Kp, Vp)
        if stop < n:
            k1, v1 = K[stop], V[stop]
            self._open_or_overflow(g, k1, v1)
            if self.value_estimator == "l2":
                self._chunk_reservoir_b(g, K[stop:stop + 1], V[stop:stop + 1])
            return start + stop + 1
        return start + n

    def _chunk_reservoir_a(self, g: int, assign, K, V, dist):
        clusters, inv, cnt = torch.unique(assign, return_inverse=True, return_counts=True)
        order = torch.argsort(inv, stable=True)                     # token indices grouped by cluster, in order
        offsets = torch.cumsum(cnt, 0) - cnt
        counts = self._flat("counts")[g]
        w0 = counts[clusters]                                       # 0 for a new cluster
        nc = clusters.numel()
        t = self.t
        keep_p = w0 / (w0 + cnt.to(torch.float64))
        u = torch.rand(nc, t, generator=self.generator, dtype=torch.float64, device=K.device)
        r = torch.rand(nc, t, generator=self.generator, dtype=torch.float64, device=K.device)
        pick = offsets.unsqueeze(1) + torch.minimum((r * cnt.unsqueeze(1)).long(), (cnt - 1).unsqueeze(1))
        tok = order[pick]                                           # (nc, t) token indices
        take = u >= keep_p.unsqueeze(1)
        ak = self._flat("a_keys")[g]
        ak[clusters] = torch.where(take.unsqueeze(-1), K[tok].to(self.dtype), ak[clusters])
        if self.a_values is not None:
            av = self._flat("a_values")[g]
            av[clusters] = torch.where(take.unsqueeze(-1), V[tok].to(self.dtype), av[clusters])
        counts[clusters] = w0 + cnt.to(torch.float64)
        rad = self._flat("radii")[g]
        rmax = torch.zeros(nc, dtype=torch.float64, device=K.device).scatter_reduce(0, inv, dist, "amax")
        rad[clusters] = torch.maximum(rad[clusters], rmax)

    def _chunk_reservoir_b(self, g: int, K, V):
        w = (V.to(torch.float64) ** 2).sum(-1)
        mu = self.mu.view(-1)
        w0 = float(mu[g])
        pick = chunk_slot_draw(w0, w, self.s, generator=self.generator)
        mu[g] = w0 + float(w.sum())
        take = pick >= 0
        if bool(take.any()):
            bk, bv = self._flat("b_keys")[g], self._flat("b_values")[g]
            bk[take] = K[pick[take]].to(self.dtype)
            bv[take] = V[pick[take]].to(self.dtype)

    # -- queries ----------------------------------------------------------------------------------------
    def weighted_set(self):
        """(keys, values, num_w, den_w): the exact tokens (1, 1), the cluster slots ((0, n/t) in l2 mode with
        zero values, (n/t, n/t) in cluster mode) and the value slots (mu / (s ||v||^2), 0)."""
        b, h, d = self.batch, self.kv_heads, self.head_dim
        dev = self.device
        parts_k, parts_v, parts_a, parts_b = [], [], [], []
        for k, v in ((self.sink_keys, self.sink_values), (self.win_keys, self.win_values)):
            if k.shape[2]:
                one = torch.ones(b, h, k.shape[2], dtype=torch.float32, device=dev)
                parts_k.append(k)
                parts_v.append(v)
                parts_a.append(one)
                parts_b.append(one)
        mmax = int(self.m.max()) if self.m is not None and self.m.numel() else 0
        if mmax:
            ak = self.a_keys[:, :, :mmax].reshape(b, h, mmax * self.t, d)
            w = (self.counts[:, :, :mmax] / self.t).to(torch.float32)
            w = w.unsqueeze(-1).expand(b, h, mmax, self.t).reshape(b, h, mmax * self.t)
            parts_k.append(ak)
            if self.a_values is not None:
                parts_v.append(self.a_values[:, :, :mmax].reshape(b, h, mmax * self.t, d))
                parts_a.append(w)
            else:
                parts_v.append(torch.zeros_like(ak))
                parts_a.append(torch.zeros_like(w))
            parts_b.append(w)
        if self.value_estimator == "l2" and self.sketched:
            nv2 = (self.b_values.to(torch.float64) ** 2).sum(-1)               # (b, h, s)
            ok = nv2 > 0
            wa = torch.where(ok, self.mu.unsqueeze(-1) / (self.s * torch.where(ok, nv2, torch.ones_like(nv2))),
                             torch.zeros_like(nv2))
            parts_k.append(self.b_keys)
            parts_v.append(self.b_values)
            parts_a.append(wa.to(torch.float32))
            parts_b.append(torch.zeros(b, h, self.s, dtype=torch.float32, device=dev))
        if not parts_k:
            z = torch.zeros(b, h, 0, d, dtype=self.dtype, device=dev)
            w0 = torch.zeros(b, h, 0, dtype=torch.float32, device=dev)
            return z, z, w0, w0
        return (torch.cat(parts_k, 2), torch.cat(parts_v, 2), torch.cat(parts_a, 2), torch.cat(parts_b, 2))

    def stored_vectors(self):
        if self.batch is None:
            return torch.zeros(0, 0, dtype=torch.long)
        per = 1 + self.t if self.value_estimator == "l2" else 1 + 2 * self.t
        out = self.m.cpu() * per + 2 * (self.sink_keys.shape[2] + self.win_keys.shape[2])
        if self.value_estimator == "l2" and self.sketched:
            out = out + 2 * self.s
        return out.to(torch.long)

    def stats(self):
        """Per group: tokens seen, clusters m, delta, the largest cluster radius, e^{2 radius r^} (the
        guarantee's factor; a RuntimeWarning once above 1e4, where the bound is vacuous), merges, mu, stored
        vectors.

        >>> k = torch.zeros(1, 1, 5, 4)
        >>> st = SubGenKV(4, delta=0.5, seed=0).update(k, k, queries=k).stats()[0]
        >>> st["clusters"], st["seen"], st["stored_vectors"]   # 1 centre + 8 key slots + 2 x 32 value slots
        (1, 5, 73)
        """
        if self.batch is None:
            return []
        out = []
        sv = self.stored_vectors()
        for i in range(self.batch):
            for hh in range(self.kv_heads):
                m = int(self.m[i, hh])
                rmax = float(self.radii[i, hh, :m].max()) if m else 0.0
                rhat = float(self.rhat[i, hh])
                factor = math.exp(min(700.0, 2 * rmax * rhat)) if not math.isnan(rhat) else math.nan
                out.append({"batch": i, "kv_head": hh, "seen": self.seen, "clusters": m,
                            "delta": float(self.delta[i, hh]), "max_radius": rmax, "rhat": rhat,
                            "exp_factor": factor, "merges": int(self.merges[i, hh]),
                            "mu": float(self.mu[i, hh]) if self.mu is not None else None,
                            "stored_vectors": int(sv[i, hh])})
        worst = max((o["exp_factor"] for o in out if not math.isnan(o["exp_factor"])), default=0.0)
        if worst > _WARN_EXP and not self._warned:
            self._warned = True
            warnings.warn(f"SubGenKV: e^(2 radius r) = {worst:.3g} > 1e4: the error bound is vacuous for these "
                          "keys", RuntimeWarning, stacklevel=2)
        return out


def stream_attention(kv, query, key, value, *, query_positions=None):
    """Stream ``key``/``value`` (b, Hkv, n, d) into ``kv`` and answer the query at each position i of
    ``query_positions`` (default: every position) over tokens 0..i, token i inserted before its query
    (Algorithm 1). ``query`` is (b, H, n, d); its rows are also given to ``update`` (H2O's scores and
    ``delta="auto"``). Returns (b, H, n_pos, d).

    >>> import torch
    >>> from teraml.kvcache import ExactKV
    >>> q = torch.randn(1, 2, 20, 8); k = torch.randn(1, 2, 20, 8); v = torch.randn(1, 2, 20, 8)
    >>> out = stream_attention(ExactKV(8), q, k, v)
    >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> bool(torch.allclose(out, ref, atol=1e-5))
    True
    """
    check_instance_kv(kv)
    check_kv(key, value, kv.head_dim, None)
    n = key.shape[2]
    check_queries(query, kv.head_dim, key.shape[1], key.shape[0], n)
    if query_positions is None:
        positions = list(range(n))
    else:
        expected = f"a sequence of positions in [0, {n})"
        if isinstance(query_positions, torch.Tensor):
            query_positions = query_positions.reshape(-1).tolist()
        elif isinstance(query_positions, (range, np.ndarray)):
            query_positions = np.asarray(query_positions).reshape(-1).tolist()
        positions = check_param("query_positions", query_positions,
                                [Satisfies(lambda s: all(is_int(x) and 0 <= x < n for x in s), expected,
                                           types=(list, tuple))], sep=_SEP)
        positions = [int(p) for p in positions]
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    out = query.new_zeros(query.shape[0], query.shape[1], len(positions), query.shape[-1])
    check_param("kv", kv, [Satisfies(lambda k: k.seen == 0, "an empty store (seen=0)")], sep=_SEP)
    done = 0
    for i in order:
        p = positions[i]
        if p + 1 > done:
            kv.update(key[:, :, done:p + 1], value[:, :, done:p + 1], queries=query[:, :, done:p + 1])
            done = p + 1
        out[:, :, i:i + 1] = kv.attend(query[:, :, p:p + 1])
    return out


def check_instance_kv(kv):
    check_instance("kv", kv, StreamingKV, "a StreamingKV (SubGenKV, ExactKV, ... from make_kv)", sep=_SEP)


def subgen_attention(query, key, value, *, query_positions=None, **params):
    """Streaming SubGen attention: ``stream_attention(SubGenKV(d, **params), query, key, value)``.

    >>> import torch
    >>> q = torch.randn(1, 1, 64, 8); k = torch.randn(1, 1, 64, 8)
    >>> subgen_attention(q, k, k, query_positions=[63], preset="llm", seed=0).shape
    torch.Size([1, 1, 1, 8])
    """
    check_instance("query", query, torch.Tensor, "a torch.Tensor", sep=_SEP)
    kv = SubGenKV(query.shape[-1], **params)
    return stream_attention(kv, query, key, value, query_positions=query_positions)
