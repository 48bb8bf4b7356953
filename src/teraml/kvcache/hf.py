"""transformers integration: :class:`SubGenCache` and :class:`BaselineCache`, ``transformers.Cache`` subclasses
holding one streaming store per layer, and the attention function ``"teraml_kv"`` that reads them.

A cache's ``update(k, v, layer_idx)`` returns only keys and values; stock SDPA over a sketch's sampled keys
would ignore the sketch's weights and be silently biased. So the two work as a pair:

* ``update`` first *folds* the previous call's tokens (with the queries the attention function recorded for
  them) into the layer's store, then returns the store's weighted set followed by the new tokens,
  concatenated along the sequence axis, with a tag on the key tensor (the layer, the step and the weights).
* the attention function registered by :func:`enable` computes, for a tagged key tensor,
  ``z = sum a e v / sum b e`` over the weighted set together with the new tokens (weights (1, 1), causal) in
  one float32 softmax with one shared maximum; it builds the causal structure itself (transformers sizes
  one mask per layer type; the mask is only read to reject padding) and records the call's queries for the
  next fold (H2O's scores, SubGen's ``delta="auto"``). An untagged call (any other cache, or no cache) runs
  transformers' ``sdpa_attention_forward`` unchanged, so ``"teraml_kv"`` is ``"sdpa"`` elsewhere.
* a tag that no attention function consumed (a model that was not :func:`enable`-d) raises ``RuntimeError``
  at the next ``update`` of that layer.

Prefill is exact (its tokens are the new tokens of the first call) and decoding compresses: the state is at
most 2 * budget stored vectors per (layer, sequence, kv-head) after every fold; feed long prompts in chunks
to bound the prefill as well. The tokens of the last call stay exact (pending) until the next call.
Positions are never re-indexed: ``get_seq_length`` is the number of tokens seen, and keys are stored rotated
(RoPE applied once). Only full-attention layers and unpadded batches are supported.

Example (a random-init tiny Llama)::

    >>> import torch, transformers
    >>> from teraml.kvcache.hf import SubGenCache, enable
    >>> cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                                num_attention_heads=4, num_key_value_heads=2)
    >>> model = transformers.LlamaForCausalLM(cfg).eval()
    >>> enable(model)
    'sdpa'
    >>> cache = SubGenCache(model, preset="llm", budget=16, seed=0)
    >>> ids = torch.randint(0, 64, (1, 40), generator=torch.Generator().manual_seed(0))
    >>> out = model.generate(ids, attention_mask=torch.ones_like(ids), past_key_values=cache, max_new_tokens=8,
    ...                      do_sample=False, pad_token_id=0)
    >>> out.shape, cache.get_seq_length()          # the last token is generated, not yet fed
    (torch.Size([1, 48]), 47)
    >>> all(int(v.max()) <= 2 * 16 for v in cache.stored_vectors().values())
    True
"""

from __future__ import annotations

import math

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from teraml._validation import Interval, check_instance, check_param
from teraml.kvcache._common import fold_queries, layer_generators, unfold_queries, weighted_attention

__all__ = ["SubGenCache", "BaselineCache", "enable", "ATTN_IMPLEMENTATION"]

#: The ``attn_implementation`` name registered by :func:`enable`.
ATTN_IMPLEMENTATION = "teraml_kv"

_SEP = ", "
_TAG = "_teraml_kv_tag"
_UNSUPPORTED = ("softcap", "s_aux", "position_bias", "sliding_window")
_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        AttentionInterface.register(ATTN_IMPLEMENTATION, _attention)
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _registered = True


def enable(model) -> str:
    """Register the attention function ``"teraml_kv"`` (and transformers' ``sdpa_mask`` under the same name)
    once per process, switch ``model`` to it, and return the previous ``attn_implementation``.

    ``"teraml_kv"`` answers the calls whose keys come from a :class:`SubGenCache` or :class:`BaselineCache`
    and runs transformers' SDPA forward on every other call (other caches, no cache), so an enabled model
    gives the same outputs as with ``"sdpa"`` elsewhere. Undo with ``model.set_attn_implementation(previous)``.

    >>> import transformers
    >>> model = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=64, hidden_size=32,
    ...     intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    >>> previous = enable(model)
    >>> model.config._attn_implementation
    'teraml_kv'
    """
    check_instance("model", model, PreTrainedModel, "a transformers PreTrainedModel", sep=_SEP)
    _register()
    previous = getattr(model.config, "_attn_implementation", None)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    return previous


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The ``"teraml_kv"`` attention function: tagged keys -> the store's weighted attention; else SDPA."""
    tag = getattr(key, _TAG, None)
    if tag is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    return tag.layer.attend(tag, query, key, value, attention_mask, kwargs)


class _Tag:
    """What the attention function needs beside the returned tensors: the layer, the step (a tag of an
    earlier call is stale), the number of weighted-set entries before the new tokens and their weights."""

    __slots__ = ("layer", "step", "n_set", "num_w", "den_w")

    def __init__(self, layer, step, n_set, num_w, den_w):
        self.layer, self.step, self.n_set, self.num_w, self.den_w = layer, step, n_set, num_w, den_w


def _mask_has_padding(mask) -> bool:
    """True when a 4D mask (bool, True = attend, or additive float) hides a key from the last query row: for
    a causal mask the last query sees every key, so a hidden key is padding (left or right)."""
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[-1] == 0:
        return False
    last = mask[..., -1, :]
    if last.dtype == torch.bool:
        return not bool(last.all())
    return bool((last < torch.finfo(last.dtype).min / 2).any()) if last.is_floating_point() else not bool(last.all())


class _StreamLayer(CacheLayerMixin):
    """One layer of a :class:`SubGenCache` / :class:`BaselineCache`: a streaming store (created at the first
    update on the keys' device) and the pending tokens of the last call with their recorded queries."""

    is_compileable = False
    is_croppable = False
    is_sliding = False
    supports_early_init = False

    def __init__(self, cache_name: str, layer_idx: int, factory):
        super().__init__()
        self.cache_name = cache_name
        self.layer_idx = layer_idx
        self.factory = factory
        self.store = None
        self.step = 0
        self._clear_pending()

    def _clear_pending(self):
        self.pending_k = self.pending_v = self.pending_q = None
        self.consumed = True

    def __repr__(self):
        return f"_StreamLayer({self.layer_idx}, {type(self.store).__name__ if self.store else None})"

    # -- CacheLayerMixin surface ----------------------------------------------------------------------
    def lazy_initialization(self, key_states, value_states) -> None:
        pass

    def offload(self):
        pass

    def prefetch(self):
        pass

    @property
    def n_pending(self) -> int:
        return 0 if self.pending_k is None else int(self.pending_k.shape[2])

    def get_seq_length(self) -> int:
        return (self.store.seen if self.store is not None else 0) + self.n_pending

    def get_mask_sizes(self, query_length) -> tuple[int, int]:
        return self.get_seq_length() + _query_length(query_length), 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.store = None
        self.step += 1
        self._clear_pending()

    def _batch(self):
        if self.pending_k is not None:
            return int(self.pending_k.shape[0])
        return None if self.store is None else self.store.batch

    def reorder_cache(self, beam_idx) -> None:
        b = self._batch()
        if b is None:
            return
        idx = torch.as_tensor(beam_idx)
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        idx = idx.to(torch.long)
        if self.store is not None and self.store.batch is not None:
            self.store.reorder(idx)
        if self.pending_k is not None:
            i = idx.to(self.pending_k.device)
            self.pending_k = self.pending_k.index_select(0, i)
            self.pending_v = self.pending_v.index_select(0, i)
            if self.pending_q is not None:
                self.pending_q = self.pending_q.index_select(0, i.to(self.pending_q.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        b = self._batch()
        if b is not None:
            self.reorder_cache(torch.arange(b).repeat_interleave(int(repeats)))

    def batch_select_indices(self, indices) -> None:
        self.reorder_cache(indices)

    def crop(self, tokens_to_remove: int) -> None:
        remove = _tokens_to_remove(int(tokens_to_remove), self.get_seq_length())
        if remove == 0:
            return
        if remove > self.n_pending:
            raise NotImplementedError(f"{self.cache_name} cannot crop folded tokens")
        keep = self.n_pending - remove
        self.pending_k = self.pending_k[:, :, :keep]
        self.pending_v = self.pending_v[:, :, :keep]
        if self.pending_q is not None:
            self.pending_q = self.pending_q[:, :, :keep]
        if keep == 0:
            self._clear_pending()

    # -- the streaming protocol -------------------------------------------------------------------------
    def update(self, key_states, value_states, *args, **kwargs):
        """Fold the previous call's tokens into the store, then return the tagged weighted set + the new tokens."""
        if self.pending_k is not None:
            if not self.consumed:
                raise RuntimeError(f"{self.cache_name} needs attn_implementation '{ATTN_IMPLEMENTATION}'; "
                                   "call teraml.kvcache.hf.enable(model)")
            self.store.update(self.pending_k, self.pending_v, queries=self.pending_q)
            self._clear_pending()
        if self.store is None:
            self.store = self.factory(key_states.device, key_states.dtype)
        if self.store.batch is not None and tuple(key_states.shape[:2]) != (self.store.batch, self.store.kv_heads):
            raise ValueError(f"keys have (batch, kv_heads)={tuple(key_states.shape[:2])} but layer {self.layer_idx} "
                             f"of this {self.cache_name} holds {(self.store.batch, self.store.kv_heads)}")
        if self.store.batch is None:
            b, h, _, d = key_states.shape
            ks = key_states.new_zeros(b, h, 0, d)
            vs = value_states.new_zeros(b, h, 0, value_states.shape[-1])
            num_w = den_w = torch.zeros(b, h, 0, dtype=torch.float32, device=key_states.device)
        else:
            ks, vs, num_w, den_w = self.store.weighted_set()
        kdt = torch.promote_types(ks.dtype, key_states.dtype)
        vdt = torch.promote_types(vs.dtype, value_states.dtype)
        keys = torch.cat([ks.to(key_states.device, kdt), key_states.to(kdt)], dim=2)
        values = torch.cat([vs.to(value_states.device, vdt), value_states.to(vdt)], dim=2)
        self.step += 1
        setattr(keys, _TAG, _Tag(self, self.step, int(ks.shape[2]), num_w, den_w))
        self.pending_k, self.pending_v = key_states.detach(), value_states.detach()
        self.pending_q = None
        self.consumed = False
        return keys, values

    def attend(self, tag, query, keys, values, attention_mask, kwargs):
        """The attention of a tagged call: (out (b, n, H, d) in the query dtype, None). A call that raises (padding,
        an unsupported argument) drops its new tokens, so the cache stays usable and they are never folded."""
        try:
            return self._attend(tag, query, keys, values, attention_mask, kwargs)
        except Exception:
            if tag.step == self.step and not self.consumed:
                self._clear_pending()
            raise

    def _attend(self, tag, query, keys, values, attention_mask, kwargs):
        if tag.step != self.step or self.pending_k is None:
            raise RuntimeError(f"{self.cache_name}: these keys belong to an earlier call of layer {self.layer_idx}")
        bad = [k for k in _UNSUPPORTED if kwargs.get(k) is not None]
        if bad:
            raise ValueError(f"{self.cache_name} does not support attention with {bad[0]}")
        if _mask_has_padding(attention_mask):
            raise ValueError(f"{self.cache_name} does not support padded batches")
        b, heads, nq, d = query.shape
        hkv = keys.shape[1]
        if nq != self.n_pending or heads % hkv:
            raise ValueError(f"{self.cache_name}: queries of shape {tuple(query.shape)} do not match the "
                             f"{self.n_pending} new tokens of {hkv} kv heads of layer {self.layer_idx}")
        scale = self.store.scale
        L = tag.n_set
        ones = tag.num_w.new_ones(b, hkv, nq)
        if nq == 1:   # decoding: the new token is seen by its query like any entry
            num_w = torch.cat([tag.num_w, ones], dim=2)
            den_w = torch.cat([tag.den_w, ones], dim=2)
            out = weighted_attention(fold_queries(query, hkv), keys, values, num_w, den_w, scale=scale)
        else:         # prefill / chunk: the new tokens are seen causally (one query head of the group at a time)
            g = heads // hkv
            qb = fold_queries(query, hkv).reshape(b, hkv, g, nq, d)
            extra = (keys[:, :, L:], values[:, :, L:])
            outs = [weighted_attention(qb[:, :, i], keys[:, :, :L], values[:, :, :L], tag.num_w, tag.den_w,
                                       scale=scale, causal_extra=extra) for i in range(g)]
            out = torch.stack(outs, dim=2).reshape(b, hkv, g * nq, -1)
        out = unfold_queries(out, heads)
        self.pending_q = query.detach()
        self.consumed = True
        return out.transpose(1, 2).to(query.dtype).contiguous(), None


def _query_length(query_length) -> int:
    """The query length from ``get_mask_sizes``' first argument: an int (transformers >= 5.x recent) or the
    ``cache_position`` tensor of the call (earlier 5.x)."""
    if isinstance(query_length, torch.Tensor):
        return int(query_length.item()) if query_length.ndim == 0 else int(query_length.shape[0])
    return int(query_length)


def _tokens_to_remove(arg: int, seen: int) -> int:
    """``crop`` argument -> tokens to remove: negative = remove that many; positive = the length to keep
    (the legacy form); 0 = nothing."""
    if arg <= 0:
        return min(-arg, seen)
    return max(0, seen - arg)


def _text_config(model):
    config = model.config
    get = getattr(config, "get_text_config", None)
    return get(decoder=True) if callable(get) else config


def _layer_types(config) -> list:
    types = getattr(config, "layer_types", None)
    if types is None:
        n = int(config.num_hidden_layers)
        if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
            types = ["sliding_attention"] * n
        elif getattr(config, "attention_chunk_size", None) is not None:
            types = ["chunked_attention"] * n
        else:
            types = ["full_attention"] * n
    return list(types)


def _module_scales(model) -> dict:
    """layer_idx -> the attention module's ``scaling`` (modules with both attributes)."""
    out = {}
    for m in model.modules():
        idx, s = getattr(m, "layer_idx", None), getattr(m, "scaling", None)
        if isinstance(idx, int) and isinstance(s, (int, float)) and idx not in out:
            out[idx] = float(s)
    return out


class _StreamCache(Cache):
    """The machinery shared by :class:`SubGenCache` and :class:`BaselineCache` (one store per layer)."""

    def __init__(self, model, make_store, seed, params):
        check_instance("model", model, PreTrainedModel, "a transformers PreTrainedModel", sep=_SEP)
        name = type(self).__name__
        for p in ("head_dim", "scale", "device"):
            if p in params:
                raise TypeError(f"{name} got an unexpected keyword argument {p!r} (it is taken from the model)")
        config = _text_config(model)
        types = _layer_types(config)
        if any(t != "full_attention" for t in types):
            raise ValueError(f"{name} supports full-attention layers only, got layer_types={types}")
        seed = check_param("seed", seed, [None, Interval("int", 0)], sep=_SEP)
        n_layers = len(types)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        scales = _module_scales(model)
        default_scale = 1.0 / math.sqrt(self.head_dim)
        self.scales = [scales.get(i, default_scale) for i in range(n_layers)]
        #: per-layer seeds: layer l's store gets the int seed drawn from numpy SeedSequence(seed).spawn(L)[l]
        #: (``SubGenKV(..., seed=cache.seeds[l])`` reproduces that layer's random draws)
        self.seeds = [int(g.initial_seed()) for g in layer_generators(seed, n_layers)]
        dtype = params.pop("dtype", None)
        self.seed, self.params = seed, dict(params)

        def factory_for(i):
            def factory(device, key_dtype):
                return make_store(self.head_dim, scale=self.scales[i], seed=self.seeds[i], device=device,
                                  dtype=dtype if dtype is not None else key_dtype, **self.params)
            return factory

        factory_for(0)("cpu", torch.float32)        # check the parameters now, not at the first forward
        super().__init__(layers=[_StreamLayer(name, i, factory_for(i)) for i in range(n_layers)])

    # -- transformers.Cache surface (the methods generate and the masks call) ------------------------------
    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        """Fold the previous call's tokens of layer ``layer_idx``, then return (keys, values): the store's
        weighted set followed by the new tokens, tagged for the ``"teraml_kv"`` attention function."""
        return self.layers[layer_idx].update(key_states, value_states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens seen by layer ``layer_idx`` (folded + pending): the position of the next token."""
        if layer_idx >= len(self.layers):
            return 0
        return self.layers[layer_idx].get_seq_length()

    def get_mask_sizes(self, query_length, layer_idx: int = 0) -> tuple[int, int]:
        """(tokens seen + query length, 0); ``query_length`` is an int or (earlier 5.x) the cache_position tensor."""
        if layer_idx >= len(self.layers):
            return _query_length(query_length), 0
        return self.layers[layer_idx].get_mask_sizes(query_length)

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        """-1: no maximum length (the state is bounded by the budget, the positions are not)."""
        return -1

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_croppable(self) -> bool:
        return False

    def crop(self, max_length: int) -> None:
        """Remove the last tokens: ``-n`` removes n, a positive value is the length to keep (legacy form).
        Only tokens of the last call (not yet folded) can be removed; otherwise ``NotImplementedError``."""
        for layer in self.layers:
            layer.crop(max_length)

    # -- teraml extras -------------------------------------------------------------------------------
    def stores(self) -> list:
        """The per-layer stores (None for a layer that has not seen a token)."""
        return [layer.store for layer in self.layers]

    def stored_vectors(self) -> dict:
        """layer -> stored d-vectors per (sequence, kv-head), a (b, Hkv) long tensor, for the folded state
        (the pending tokens of the last call, 2 vectors each, are not counted)."""
        return {i: layer.store.stored_vectors() for i, layer in enumerate(self.layers)
                if layer.store is not None and layer.store.batch is not None}

    def memory_bytes(self) -> int:
        """Bytes of the stored d-vectors of every layer (folded state, storage dtype)."""
        return sum(layer.store.memory_bytes() for layer in self.layers if layer.store is not None)

    def stats(self) -> list[dict]:
        """One dict per (layer, sequence, kv-head): the store's stats plus ``layer`` and ``pending`` (tokens of
        the last call, exact, not yet folded)."""
        out = []
        for i, layer in enumerate(self.layers):
            if layer.store is None:
                continue
            for row in layer.store.stats():
                out.append({"layer": i, "pending": layer.n_pending, **row})
        return out

    def __repr__(self):
        return f"{type(self).__name__}(layers={len(self.layers)}, seen={self.get_seq_length()})"


class SubGenCache(_StreamCache):
    """A ``transformers.Cache`` holding one :class:`~teraml.kvcache.SubGenKV` per layer (requires
    :func:`enable`).

    Parameters
    ----------
    model : the transformers model (its config gives the layers and ``head_dim``; each layer's attention
        module gives ``scale`` = its ``scaling``); full-attention layers only
    preset : ``"paper"`` (Algorithm 1, the guarantee) or ``"llm"`` (values kept with the clustered keys, 4 sinks
        and a recent window; the one that retrieves)
    budget : tokens of memory per (layer, sequence, kv-head): at most 2 * budget stored vectors after every fold
    seed : layer l's store gets the int seed ``cache.seeds[l]``, drawn from ``numpy.random.SeedSequence(seed).spawn(L)[l]``
        (None: fresh entropy)
    params : the other :class:`~teraml.kvcache.SubGenKV` parameters (``delta``, ``t``, ``s``,
        ``value_estimator``, ``recent_window``, ``n_sink``, ``on_overflow``, ``max_exp_ratio``, ``dtype``:
        storage dtype, default the model's)

    ``delta="auto"`` (the presets' default) takes r^ from the prefill queries the attention function records.
    Beam search works (``reorder_cache`` indexes the batch dimension); padded batches raise ``ValueError``;
    ``crop`` can only remove tokens of the last call.

    >>> import transformers
    >>> model = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=64, hidden_size=32,
    ...     intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    >>> _ = enable(model)
    >>> ids = torch.randint(0, 64, (1, 300), generator=torch.Generator().manual_seed(0))
    >>> cache = SubGenCache(model, preset="llm", budget=64, seed=0)
    >>> out = model.generate(ids, attention_mask=torch.ones_like(ids), past_key_values=cache, max_new_tokens=8,
    ...                      num_beams=2, do_sample=False, pad_token_id=0)
    >>> cache.get_seq_length(), max(int(v.max()) for v in cache.stored_vectors().values()) <= 2 * 64
    (307, True)
    """

    def __init__(self, model, *, preset="paper", budget=None, seed=None, **params):
        from teraml.kvcache.subgen import SubGenKV

        self.preset, self.budget = preset, budget

        def make(head_dim, **kw):
            return SubGenKV(head_dim, preset=preset, budget=budget, **kw)

        super().__init__(model, make, seed, params)


class BaselineCache(_StreamCache):
    """The :class:`SubGenCache` machinery with a baseline store per layer: ``method`` is one of ``'exact'``,
    ``'sink_window'``, ``'h2o'``, ``'uniform'``, ``'key_norm'`` (:func:`~teraml.kvcache.baselines.make_kv`),
    each keeping at most ``budget`` tokens per (layer, sequence, kv-head) (``'exact'`` keeps all). H2O's scores
    come from the queries the attention function records. Requires :func:`enable`.

    >>> import transformers
    >>> model = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=64, hidden_size=32,
    ...     intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)).eval()
    >>> _ = enable(model)
    >>> ids = torch.randint(0, 64, (1, 100), generator=torch.Generator().manual_seed(0))
    >>> cache = BaselineCache(model, "h2o", budget=32)
    >>> out = model.generate(ids, attention_mask=torch.ones_like(ids), past_key_values=cache, max_new_tokens=4,
    ...                      do_sample=False, pad_token_id=0)
    >>> int(cache.stored_vectors()[0].max())
    64
    """

    def __init__(self, model, method, *, budget, seed=None, **params):
        from teraml.kvcache.baselines import make_kv

        self.method, self.budget = method, budget

        def make(head_dim, **kw):
            return make_kv(method, head_dim, budget=budget, **kw)

        super().__init__(model, make, seed, params)
