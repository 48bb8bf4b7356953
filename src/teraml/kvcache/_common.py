"""What every streaming KV store shares: input checks, GQA folding, the weighted attention kernel and the
``_StreamingKV`` base class (SubGen and the baselines derive from it).

A store holds, per sequence and kv-head (a *group*), a set of entries (key, value) with two weights
(a, b): the numerator weight and the denominator weight. Attention over the store is

    z = sum_j a_j e_j v_j / sum_j b_j e_j,        e_j = exp(<k_j, scale * q>).

An exact token has (a, b) = (1, 1); a sampled entry has the inverse of its inclusion weight. The kernel
computes this in one softmax with one shared maximum: with c = a + b it adds ``log c`` to the logits
(``-inf`` where c = 0) and multiplies by the augmented values [(a/c) v, b/c]; then z = P[:d] / P[d].
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from teraml._validation import Interval, Options, Satisfies, check_instance, check_param, check_tensor

__all__ = ["weighted_attention", "prepare_weighted", "attend_prepared", "fold_queries", "unfold_queries", "check_kv",
           "check_queries", "batch_index",
           "check_head_dim", "check_budget_param", "check_scale", "check_method", "StreamingKV", "layer_generators",
           "MEMORY_NOTE"]

MEMORY_NOTE = "memory counts the stored d-vectors (keys, values, centres) at the storage dtype"

_SEP = ", "


def check_head_dim(head_dim) -> int:
    return check_param("head_dim", head_dim, [Interval("int", 1, text="a positive int")], sep=_SEP)


def check_scale(scale):
    return check_param("scale", scale, [None, Interval("float", 0, None, closed="neither")],
                       expected="a positive finite float or None", sep=_SEP)


def check_budget_param(budget, *, allow_none: bool = True):
    text = "an int >= 1 or None" if allow_none else "an int >= 1"
    return check_param("budget", budget, ([None] if allow_none else []) + [Interval("int", 1)], expected=text,
                       sep=_SEP)


def check_method(method, methods) -> str:
    text = "one of " + ", ".join(repr(m) for m in methods)
    return check_param("method", method, [Options(*methods, text=text)], sep=_SEP)


def check_kv(keys, values, head_dim: int, held: tuple | None, owner: str = "store"):
    """Check an update's keys and values: floating tensors of shape (batch, kv_heads, n, head_dim), the same
    shape, the (batch, kv_heads) this ``owner`` holds (``held``; None before the first update), finite.

    >>> check_kv(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 4, (1, 2), "SubGenKV")
    >>> check_kv(torch.zeros(1, 3, 3, 4), torch.zeros(1, 3, 3, 4), 4, (1, 2), "SubGenKV")
    Traceback (most recent call last):
    ...
    ValueError: keys have (batch, kv_heads)=(1, 3) but this SubGenKV holds (1, 2)
    """
    check_instance("keys", keys, torch.Tensor, "a torch.Tensor", sep=_SEP)
    check_instance("values", values, torch.Tensor, "a torch.Tensor", sep=_SEP)
    check_tensor("keys", keys, floating=True)
    check_tensor("values", values, floating=True)
    if keys.ndim != 4 or keys.shape[-1] != head_dim:
        raise ValueError(f"keys must have shape (batch, kv_heads, n, {head_dim}), got {tuple(keys.shape)}")
    if values.shape != keys.shape:
        raise ValueError(f"keys and values must have the same shape, got {tuple(keys.shape)} and "
                         f"{tuple(values.shape)}")
    if held is not None and tuple(keys.shape[:2]) != tuple(held):
        raise ValueError(f"keys have (batch, kv_heads)={tuple(keys.shape[:2])} but this {owner} holds {tuple(held)}")
    skip = keys.is_cuda and keys.shape[2] == 1
    if not skip:
        for name, x in (("keys", keys), ("values", values)):
            bad = ~torch.isfinite(x).all(dim=-1)                       # (b, h, n)
            if bool(bad.any()):
                first = int(torch.nonzero(bad.any(dim=(0, 1)))[0, 0])
                raise ValueError(f"{name} contain NaN or inf (first at token index {first})")


def check_queries(queries, head_dim: int, kv_heads: int | None, batch: int | None = None, n: int | None = None):
    """Queries are (batch, heads, n, head_dim) with heads divisible by the kv-head count."""
    check_instance("queries", queries, torch.Tensor, "a torch.Tensor", sep=_SEP)
    check_tensor("queries", queries, floating=True)
    if queries.ndim != 4 or queries.shape[-1] != head_dim:
        raise ValueError(f"queries must have shape (batch, heads, n, {head_dim}), got {tuple(queries.shape)}")
    if kv_heads is not None and queries.shape[1] % kv_heads:
        raise ValueError(f"queries must have a head count divisible by kv_heads={kv_heads}, got {queries.shape[1]}")
    if batch is not None and queries.shape[0] != batch:
        raise ValueError(f"queries must have batch {batch}, got {queries.shape[0]}")
    if n is not None and queries.shape[2] != n:
        raise ValueError(f"queries must have as many positions as the keys ({n}), got {queries.shape[2]}")


def fold_queries(queries: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(b, H, n, d) -> (b, Hkv, g*n, d): query head h belongs to kv head h // g (g = H / Hkv), as
    transformers' ``repeat_kv``. The sketch of a kv head is never replicated.

    >>> fold_queries(torch.zeros(2, 6, 5, 4), 3).shape
    torch.Size([2, 3, 10, 4])
    """
    b, h, n, d = queries.shape
    g = h // kv_heads
    return queries.reshape(b, kv_heads, g * n, d)


def unfold_queries(out: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of :func:`fold_queries`: (b, Hkv, g*n, d) -> (b, H, n, d)."""
    b, hkv, gn, d = out.shape
    g = heads // hkv
    return out.reshape(b, heads, gn // g, d)


def prepare_weighted(keys, values, num_w, den_w, *, dtype=torch.float32):
    """The query-independent part of :func:`weighted_attention`: (keys, augmented values [(a/c) v, b/c], bias
    log c with -inf where c = a + b = 0), in ``dtype``. A store caches it between updates."""
    ct = dtype
    k, v = keys.to(ct), values.to(ct)
    a, b = num_w.to(ct), den_w.to(ct)
    c = a + b
    pos = c > 0
    c_safe = torch.where(pos, c, torch.ones_like(c))
    bias = torch.where(pos, torch.log(c_safe), torch.full_like(c, -math.inf))       # (b, h, L)
    aug = torch.cat([v * (a / c_safe).unsqueeze(-1), (b / c_safe).unsqueeze(-1)], dim=-1)
    aug = torch.where(pos.unsqueeze(-1), aug, torch.zeros_like(aug))
    return k, aug, bias


def attend_prepared(query, prepared, *, scale: float, causal_extra=None):
    """:func:`weighted_attention` over a :func:`prepare_weighted` result."""
    k, aug, bias = prepared
    ct = k.dtype
    if causal_extra is None:
        # softmax (one shared maximum) of the logits plus the log-weights, times the augmented values: the softmax
        # normalisation cancels in the ratio P[:d] / P[d]; a row with no entry (all -inf) is NaN, then 0.
        # (torch's fused SDPA takes this too, but falls back to a slow path for the d+1 value columns.)
        if k.shape[-2] == 0:
            return query.new_zeros(*query.shape[:-1], aug.shape[-1] - 1).to(ct)
        logits = (query.to(ct) * scale) @ k.transpose(-1, -2) + bias.unsqueeze(-2)
        out = torch.softmax(logits, dim=-1) @ aug
        num, den = out[..., :-1], out[..., -1:]
        den_ok = den > 0
        z = num / torch.where(den_ok, den, torch.ones_like(den))
        return torch.where(den_ok, z, torch.zeros_like(z))
    q = query.to(ct) * scale
    logits = q @ k.transpose(-1, -2) + bias.unsqueeze(-2)                             # (b, h, nq, L)
    if causal_extra is not None:
        k2, v2 = causal_extra[0].to(ct), causal_extra[1].to(ct)
        nq, n2 = q.shape[-2], k2.shape[-2]
        l2 = q @ k2.transpose(-1, -2)                                                  # (b, h, nq, n2)
        rows = torch.arange(nq, device=q.device).unsqueeze(-1) + (n2 - nq)
        cols = torch.arange(n2, device=q.device).unsqueeze(0)
        l2 = l2.masked_fill(cols > rows, -math.inf)
        logits = torch.cat([logits, l2], dim=-1)
        aug = torch.cat([aug, torch.cat([v2, torch.ones_like(v2[..., :1])], dim=-1)], dim=-2)
    if logits.shape[-1] == 0:
        return q.new_zeros(*q.shape[:-1], aug.shape[-1] - 1)
    mx = logits.amax(dim=-1, keepdim=True)
    mx = torch.where(torch.isinf(mx) & (mx < 0), torch.zeros_like(mx), mx)
    out = torch.exp(logits - mx) @ aug
    num, den = out[..., :-1], out[..., -1:]
    den_ok = den > 0
    z = num / torch.where(den_ok, den, torch.ones_like(den))
    return torch.where(den_ok, z, torch.zeros_like(z))


def weighted_attention(query, keys, values, num_w, den_w, *, scale: float, causal_extra=None):
    """z = sum a e v / sum b e with one shared maximum (float32 reduction, float64 for float64 input).

    query (b, h, nq, d); keys, values (b, h, L, d); num_w, den_w (b, h, L), >= 0. Entries with
    a = b = 0 are ignored. ``causal_extra`` = (keys2, values2) of exact tokens (weights 1, 1) seen causally by
    the last queries: query i of nq sees the first L2 - nq + 1 + i of them (the new tokens of a prefill).
    Returns (b, h, nq, d); a row with no entry at all is 0.

    >>> q = torch.randn(1, 1, 3, 4); k = torch.randn(1, 1, 5, 4); v = torch.randn(1, 1, 5, 4)
    >>> one = torch.ones(1, 1, 5)
    >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.5)
    >>> bool(torch.allclose(weighted_attention(q, k, v, one, one, scale=0.5), ref, atol=1e-6))
    True
    """
    ct = torch.float64 if query.dtype == torch.float64 else torch.float32
    return attend_prepared(query, prepare_weighted(keys, values, num_w, den_w, dtype=ct), scale=scale,
                           causal_extra=causal_extra)


def batch_index(index, device) -> torch.Tensor:
    """A batch selection as long indices: a bool mask becomes the positions it keeps.

    >>> batch_index(torch.tensor([True, False, True]), "cpu").tolist(), batch_index([2, 0], "cpu").tolist()
    ([0, 2], [2, 0])
    """
    index = torch.as_tensor(index)
    if index.dtype == torch.bool:
        index = torch.nonzero(index.reshape(-1)).flatten()
    return index.to(device=device, dtype=torch.long).reshape(-1)


def layer_generators(seed, n: int, device="cpu") -> list:
    """``n`` independent torch generators from ``numpy.random.SeedSequence(seed).spawn(n)`` (a fresh random
    seed when ``seed`` is None).

    >>> len(layer_generators(0, 3))
    3
    """
    children = np.random.SeedSequence(seed).spawn(n)
    out = []
    for ch in children:
        g = torch.Generator(device=device)
        g.manual_seed(int(ch.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1)))
        out.append(g)
    return out


class StreamingKV:
    """Base of every streaming KV store: a per-(sequence, kv-head) weighted set answering any query.

    Subclasses implement ``_insert(keys, values, queries)`` (tokens in stream order, already checked),
    ``weighted_set()`` and ``_state_tensors()`` (name -> tensor, for ``state_dict``), and may override
    ``stats()``. ``seen`` counts every token given to ``update``.
    """

    method = "base"

    def __init__(self, head_dim, *, scale=None, device=None, dtype=torch.float32, seed=None):
        self.head_dim = check_head_dim(head_dim)
        scale = check_scale(scale)
        self.scale = float(scale) if scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        check_instance("dtype", dtype, torch.dtype, "a torch.dtype", sep=_SEP)
        self.dtype = check_param("dtype", dtype, [Satisfies(lambda d: d.is_floating_point, "a floating torch.dtype",
                                                            types=torch.dtype)], sep=_SEP)
        self.seed = check_param("seed", seed, [None, Interval("int", 0)], expected="an int >= 0 or None", sep=_SEP)
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------------
    def reset(self):
        """Forget every token (the parameters stay); the random generator restarts from ``seed``."""
        self.batch = None
        self.kv_heads = None
        self.seen = 0
        self._prepared = None
        self.generator = layer_generators(self.seed, 1, self.device)[0]
        self._reset_state()
        return self

    def _reset_state(self):
        raise NotImplementedError

    @property
    def held(self):
        return None if self.batch is None else (self.batch, self.kv_heads)

    # -- public API ---------------------------------------------------------------------------------
    def update(self, keys, values, queries=None):
        """Insert ``n`` tokens (``keys``, ``values``: (b, Hkv, n, d)) in stream order; ``queries`` (b, H, n, d)
        are the queries of the same positions (used by H2O's scores and SubGen's ``delta='auto'``).
        Returns ``self``."""
        check_kv(keys, values, self.head_dim, self.held, type(self).__name__)
        if queries is not None:
            check_queries(queries, self.head_dim, keys.shape[1], keys.shape[0], keys.shape[2])
        if self.batch is None:
            self.batch, self.kv_heads = int(keys.shape[0]), int(keys.shape[1])
            self._init_state()
        if keys.shape[2] == 0:
            return self
        self._prepared = None
        self._insert(keys.to(self.device), values.to(self.device),
                     None if queries is None else queries.to(self.device))
        self.seen += int(keys.shape[2])
        return self

    def _init_state(self):
        pass

    def attend(self, queries, *, extra=None):
        """Attention of ``queries`` (b, H, nq, d) over the stored tokens: (b, H, nq, d), no mutation.

        ``extra`` = (keys, values) of (b, Hkv, n, d) exact tokens that query i sees causally (the last
        nq queries are the last nq of them), as in a chunked prefill.

        >>> from teraml.kvcache import ExactKV
        >>> k = torch.randn(1, 1, 6, 4); kv = ExactKV(4).update(k, k)
        >>> q = torch.randn(1, 2, 1, 4)                      # 2 query heads share the kv head
        >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k.expand(1, 2, 6, 4), k.expand(1, 2, 6, 4))
        >>> bool(torch.allclose(kv.attend(q), ref, atol=1e-6))
        True
        """
        check_queries(queries, self.head_dim, self.kv_heads, self.batch)
        if self.batch is None:
            if extra is None:
                warnings.warn(f"attend() on an empty {type(self).__name__} returns zeros", RuntimeWarning,
                              stacklevel=2)
                return torch.zeros_like(queries)
            b, hkv = extra[0].shape[:2]
            k = extra[0].new_zeros(b, hkv, 0, self.head_dim)
            num = extra[0].new_zeros(b, hkv, 0)
            ws = (k, k, num, num)
        else:
            ws = None
        ct = torch.float64 if queries.dtype == torch.float64 else torch.float32
        if ws is not None:
            prepared = prepare_weighted(*ws, dtype=ct)
        else:
            if self._prepared is None or self._prepared[0].dtype != ct:
                self._prepared = prepare_weighted(*self.weighted_set(), dtype=ct)
            prepared = self._prepared
            if extra is None and self.seen == 0:
                warnings.warn(f"attend() on an empty {type(self).__name__} returns zeros", RuntimeWarning,
                              stacklevel=2)
        keys = prepared[0]
        hkv = keys.shape[1]
        q = fold_queries(queries.to(keys.device), hkv)
        if extra is not None:
            g = queries.shape[1] // hkv
            nq = queries.shape[2]
            # folded queries are g blocks of nq positions: the causal offset applies within each block
            outs = []
            qb = q.reshape(q.shape[0], hkv, g, nq, self.head_dim)
            for i in range(g):
                outs.append(attend_prepared(qb[:, :, i], prepared, scale=self.scale, causal_extra=extra))
            out = torch.stack(outs, dim=2).reshape(q.shape[0], hkv, g * nq, -1)
        else:
            out = attend_prepared(q, prepared, scale=self.scale)
        return unfold_queries(out, queries.shape[1]).to(queries.dtype)

    def observe(self, queries):
        """Record queries that attend without inserting tokens (H2O accumulates their attention mass); a no-op
        for stores that do not use them."""
        return self

    def weighted_set(self):
        """(keys, values, num_w, den_w): (b, Hkv, L, d) x 2 and (b, Hkv, L) float32 x 2 (padding has 0, 0).

        >>> from teraml.kvcache import ExactKV
        >>> [x.shape for x in ExactKV(4).update(torch.ones(1, 1, 3, 4), torch.ones(1, 1, 3, 4)).weighted_set()]
        [torch.Size([1, 1, 3, 4]), torch.Size([1, 1, 3, 4]), torch.Size([1, 1, 3]), torch.Size([1, 1, 3])]
        """
        raise NotImplementedError

    def stored_vectors(self) -> torch.Tensor:
        """Stored d-vectors per (sequence, kv-head), shape (b, Hkv) (int64): keys, values and centres."""
        raise NotImplementedError

    def memory_bytes(self) -> int:
        """Bytes of the stored d-vectors at the storage dtype (the counters are not counted)."""
        if self.batch is None:
            return 0
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return int(self.stored_vectors().sum()) * self.head_dim * itemsize

    def stats(self) -> list[dict]:
        """One dict per (sequence, kv-head) group: tokens seen and stored vectors."""
        if self.batch is None:
            return []
        sv = self.stored_vectors()
        return [{"batch": i, "kv_head": h, "seen": self.seen, "stored_vectors": int(sv[i, h])}
                for i in range(self.batch) for h in range(self.kv_heads)]

    def _state_tensors(self) -> dict:
        raise NotImplementedError

    #: constructor parameters that shape the state (``load_state_dict`` refuses a state saved with others)
    _PARAM_NAMES: tuple = ()

    def _params(self) -> dict:
        out = {"class": type(self).__name__, "head_dim": self.head_dim, "dtype": str(self.dtype)}
        out.update({k: getattr(self, k, None) for k in self._PARAM_NAMES})
        return out

    def _load_state_tensors(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value.clone() if isinstance(value, torch.Tensor) else value)

    def state_dict(self) -> dict:
        """A deep copy of the state (tensors, counters and the generator state)."""
        out = {"params": self._params(), "seen": self.seen, "batch": self.batch, "kv_heads": self.kv_heads,
               "generator": self.generator.get_state().clone()}
        if self.batch is not None:
            for name, value in self._state_tensors().items():
                out[name] = value.clone() if isinstance(value, torch.Tensor) else value
        return out

    def load_state_dict(self, state: dict):
        """Restore a :meth:`state_dict` (the parameters must match)."""
        params = state.get("params")
        if params is not None and params != self._params():
            diff = sorted(k for k in set(params) | set(self._params()) if params.get(k) != self._params().get(k))
            raise ValueError(f"state_dict was saved by a store with other parameters: {diff} differ "
                             f"({ {k: params.get(k) for k in diff} } vs { {k: self._params().get(k) for k in diff} })")
        self._prepared = None
        self.seen, self.batch, self.kv_heads = state["seen"], state["batch"], state["kv_heads"]
        self.generator.set_state(state["generator"].clone())
        if self.batch is not None:
            self._load_state_tensors({k: v for k, v in state.items()
                                      if k not in ("params", "seen", "batch", "kv_heads", "generator")})
        return self

    def reorder(self, index):
        """Keep/reorder sequences: ``index`` (long, on any device) selects along the batch dimension (beam
        search). Every state tensor has leading dims (batch, kv_heads)."""
        if self.batch is None:
            return self
        index = batch_index(index, self.device)
        self._prepared = None
        state = self._state_tensors()
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == self.batch:
                state[name] = value.index_select(0, index)
        self.batch = int(index.numel())
        self._load_state_tensors(state)
        return self

    def to(self, device):
        """Move the state to ``device`` (the generator restarts there from the state's next seed)."""
        device = torch.device(device)
        if device == self.device:
            return self
        state = {k: v for k, v in self.state_dict().items()}
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device))
        self.device = device
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "generator":
                state[k] = v.to(device)
            elif isinstance(v, list):
                state[k] = [x.to(device) if isinstance(x, torch.Tensor) else x for x in v]
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        state["generator"] = self.generator.get_state()
        return self.load_state_dict(state)
