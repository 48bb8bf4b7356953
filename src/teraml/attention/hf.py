"""Hugging Face transformers integration: HyperAttention as an ``attn_implementation``.

:func:`register_hyper_attention` registers an attention function in ``transformers.AttentionInterface``
and transformers' ``sdpa_mask`` under the same name in ``AttentionMaskInterface`` (without the
latter, transformers passes ``attention_mask=None`` even for padded batches). A model then switches
with ``model.set_attn_implementation(name)`` or ``from_pretrained(..., attn_implementation=name)``.

The function takes the HyperAttention path for a selected layer, no dropout, equal query and key lengths
above ``min_seq_len``, and none of ``softcap``, ``position_bias``, ``sliding_window``, ``s_aux``; a padded
batch (transformers' causal-and-padding mask, left or right padding) runs HyperAttention on each row's real
tokens, every row from the same generator state, so that a row's output equals running it alone. Every
other call (decoding with a KV cache, chunked prefill, short inputs, other masks) runs transformers' own
SDPA forward, identical to ``"sdpa"``.

Example::

    from teraml.attention import register_hyper_attention
    reg = register_hyper_attention(layers=2)      # the last two layers, as in the paper
    model.set_attn_implementation(reg.name)       # any transformers decoder
    model(input_ids).logits                       # long prefill: HyperAttention
    reg.counts                                    # {'hyper': 2, 'exact': ...}
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import torch

from teraml._validation import Interval, Satisfies, check_bool, check_int, check_param
from teraml.attention._checks import check_hyper_params
from teraml.attention.hyper import hyper_attention
from teraml.attention.lsh import default_projections

__all__ = ["register_hyper_attention", "HyperAttentionRegistration"]

logger = logging.getLogger(__name__)

_UNSUPPORTED_KWARGS = ("softcap", "position_bias", "sliding_window", "s_aux")


@dataclasses.dataclass(frozen=True)
class HyperAttentionRegistration:
    """What :func:`register_hyper_attention` registered; ``counts`` tallies the calls per path."""

    name: str
    layers: object
    lsh_num_projs: int
    block_size: int
    sample_size: int
    min_seq_len: int
    bucket_order: str
    seed: int
    counts: dict = dataclasses.field(default_factory=lambda: {"hyper": 0, "exact": 0}, compare=False)
    _generators: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def reset(self) -> None:
        """Reseed every layer's sampling generator from ``(seed, layer_idx)``: after ``reset()`` the same
        forward gives the same logits (the generators otherwise advance with every call, for every model
        that uses this registration)."""
        self._generators.clear()


def _layer_selected(layers, layer_idx, n_layers) -> bool:
    if layers is None:
        return True
    if layer_idx is None:
        return False
    if isinstance(layers, int):
        if n_layers is None:
            return False
        return layer_idx >= n_layers - layers
    return layer_idx in layers


_INDEX = Interval("int", 0)
_LAYERS = [None, _INDEX, Satisfies(lambda s: all(_INDEX.accepts(x) for x in s), "a sequence of layer indices (ints >= 0)",
                                   types=(list, tuple, range, set, frozenset))]
_NAME = [Satisfies(bool, "a new non-empty attn_implementation name", types=str)]


def _padded_rows(mask, n: int, causal: bool):
    """For an attention mask of a padded batch, each row's real tokens as a range (lo, hi); None when the mask is
    anything else (then the call runs exact SDPA). transformers' ``sdpa_mask`` gives (B, 1, L, S), True = attend
    (or 0 / a large negative float): causal and key padding; the real keys of a row are those its last query
    row sees, and must be contiguous; a few query rows are checked against causal-and-padding."""
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-1] != n or mask.shape[-2] != n:
        return None
    valid = mask if mask.dtype == torch.bool else mask == 0
    keys = valid[:, 0, -1, :]                                          # (B, S)
    cols = torch.arange(n, device=mask.device)
    rows = []
    for b in range(mask.shape[0]):
        idx = torch.nonzero(keys[b]).flatten()
        if idx.numel() == 0 or int(idx[-1] - idx[0]) + 1 != idx.numel():
            return None
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        for r in {lo, (lo + hi) // 2, hi - 1}:
            expect = keys[b] & (cols <= r) if causal else keys[b]
            if not torch.equal(valid[b, 0, r], expect):
                return None
        rows.append((lo, hi))
    return rows


def padded_rows_attention(query, key, value, rows, *, generator=None, **kwargs):
    """HyperAttention of a padded batch (B, H, n, E), row by row on each row's real tokens ``rows[b] = (lo, hi)``.

    Every row starts from the same ``generator`` state, so a row's output equals running that row alone
    with the generator in that state; pad positions get 0. ``kwargs`` go to :func:`hyper_attention`.

    >>> import torch
    >>> q = torch.randn(2, 1, 6000, 16)
    >>> out = padded_rows_attention(q, q, q, [(1000, 6000), (0, 6000)], generator=torch.Generator(),
    ...                             is_causal=True, min_seq_len=1024)
    >>> bool(out[0, :, :1000].eq(0).all())
    True
    """
    out = query.new_zeros(*query.shape[:-1], value.shape[-1])
    state = None if generator is None else generator.get_state()
    for b, (lo, hi) in enumerate(rows):
        if state is not None:
            generator.set_state(state)
        out[b:b + 1, :, lo:hi] = hyper_attention(query[b:b + 1, :, lo:hi], key[b:b + 1, :, lo:hi],
                                                 value[b:b + 1, :, lo:hi], generator=generator, **kwargs)
    return out


def _check_layers(layers):
    layers = check_param("layers", layers, _LAYERS)
    return layers if layers is None or isinstance(layers, int) else frozenset(int(x) for x in layers)


_REGISTERED: set[str] = set()   # the names this process registered (transformers' own names are refused)


def register_hyper_attention(name="teraml_hyper", *, layers=None, lsh_num_projs=7, block_size=256,
                             sample_size=256, min_seq_len=4096, bucket_order="gray", seed=0, replace=False
                             ) -> HyperAttentionRegistration:
    """Register HyperAttention with transformers under ``name``; return the registration record.

    Parameters
    ----------
    name : the ``attn_implementation`` name
    layers : None = every layer; an int k = the last k layers (``config.num_hidden_layers``);
        a sequence = those ``module.layer_idx`` values
    lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order : as :func:`hyper_attention`
    seed : each layer's projections and sampling generator are seeded from ``(seed, layer_idx)``; the
        record's ``reset()`` reseeds the generators (the same forward then gives the same logits)
    replace : re-register a ``name`` this process registered before (otherwise a ``ValueError``);
        transformers' own names (``"sdpa"``, ``"flex_attention"``, ``"paged|sdpa"``, ...) are always refused

    >>> reg = register_hyper_attention("hyper_last2", layers=2, min_seq_len=512)   # doctest: +SKIP
    >>> model.set_attn_implementation("hyper_last2")                              # doctest: +SKIP
    """
    try:
        import transformers
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:
        raise ImportError("register_hyper_attention needs transformers>=5.0: pip install 'teraml[hf]'") from exc
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise ImportError("register_hyper_attention needs transformers>=5.0: pip install 'teraml[hf]'")
    check_param("name", name, _NAME)
    check_bool("replace", replace)
    if name in _REGISTERED:
        if not replace:
            raise ValueError(f"name {name!r} is already registered by register_hyper_attention; pass replace=True "
                             "to replace it, or choose another name")
    elif (name in AttentionInterface().valid_keys() or name in AttentionMaskInterface._global_mapping or "|" in name
          or name == "eager" or name.startswith(("flash", "paged"))):
        raise ValueError(f"name must be a new attn_implementation name; got {name!r}, one of transformers' own "
                         "(or of their reserved forms: eager, flash*, paged*, a|b)")
    layer_sel = _check_layers(layers)
    check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
    check_int("seed", seed, min_value=0)
    reg = HyperAttentionRegistration(name, layer_sel, lsh_num_projs, block_size, sample_size, min_seq_len,
                                     bucket_order, seed)
    generators = reg._generators
    warned: set[str] = set()

    def layer_seed(layer_idx):
        return (seed * 1_000_003 + (layer_idx if layer_idx is not None else 999_983)) % (2**63 - 1)

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        layer_idx = getattr(module, "layer_idx", None)
        config = getattr(module, "config", None)
        n_layers = getattr(config, "num_hidden_layers", None)
        bad = [k for k in _UNSUPPORTED_KWARGS if kwargs.get(k) is not None]
        for k in bad:
            if k not in warned:
                warned.add(k)
                warnings.warn(f"{name}: `{k}` is not supported by HyperAttention; those calls run exact SDPA",
                              stacklevel=2)
        use_hyper = (
            _layer_selected(layer_sel, layer_idx, n_layers)
            and not dropout
            and query.shape[2] == key.shape[2]
            and key.shape[2] > min_seq_len
            and not bad
        )
        causal = kwargs.get("is_causal")
        if causal is None:
            causal = getattr(module, "is_causal", True)
        rows = None
        if use_hyper and attention_mask is not None:
            rows = _padded_rows(attention_mask, query.shape[2], bool(causal))
            use_hyper = rows is not None
        if not use_hyper:
            reg.counts["exact"] += 1
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                          scaling=scaling, **kwargs)
        s = layer_seed(layer_idx)
        proj = default_projections(query.shape[-1], lsh_num_projs, dtype=query.dtype, device=query.device, seed=s)
        gkey = (layer_idx, str(query.device))
        gen = generators.get(gkey)
        if gen is None:
            gen = torch.Generator(device=query.device).manual_seed(s)
            generators[gkey] = gen
        kw = dict(is_causal=bool(causal), scale=scaling, enable_gqa=query.shape[1] != key.shape[1],
                  lsh_num_projs=lsh_num_projs, block_size=block_size, sample_size=sample_size,
                  min_seq_len=min_seq_len, bucket_order=bucket_order, projections=proj, generator=gen)
        out = hyper_attention(query, key, value, **kw) if rows is None else padded_rows_attention(
            query, key, value, rows, **kw)
        reg.counts["hyper"] += 1
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, sdpa_mask)
    _REGISTERED.add(name)
    logger.info("registered HyperAttention as attn_implementation=%r", name)
    return reg
