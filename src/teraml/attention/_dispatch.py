"""The body of :func:`~teraml.attention.hyper_attention`: check, reshape to the grouped layout, dispatch.

Inputs in SDPA's layout (B, H, L, E) become the grouped layout q (B, H_kv, g, L, E), k/v (B, H_kv, 1, S, E)
with g = H / H_kv, so a key head is sorted and gathered once for its whole group (GQA without copies).
Then: exact attention iff S <= min_seq_len (SDPA itself, with every argument SDPA takes, when no LSE is
asked for), else the causal recursion or unmasked HyperAttention; causal attention with L != S follows
SDPA's top-left convention. :func:`hyper_forward` takes an explicit :class:`Variant`, so tests and
benchmarks choose the variant and the implementation per call (the public function always runs the
default).

>>> import torch
>>> q = torch.randn(1, 2, 2048, 32)
>>> out = hyper_forward(q, q, q, min_seq_len=512, variant=Variant(blocks="random"))
>>> out.shape
torch.Size([1, 2, 2048, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teraml._validation import check_bool, check_float
from teraml.attention._causal import causal_attention, exact_grouped
from teraml.attention._checks import (
    check_dropout,
    check_generator,
    check_hyper_params,
    check_projections,
    check_scale,
    check_sdpa_shapes,
    check_sdpa_tensors,
    key_bias_from_mask,
)
from teraml.attention._config import HyperConfig, Variant
from teraml.attention._unmasked import unmasked_attention
from teraml.attention.lsh import default_projections

__all__ = ["hyper_forward", "Variant"]


def hyper_forward(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
                  *, lsh_num_projs=7, block_size=256, sample_size=256, min_seq_len=4096, bucket_order="gray",
                  projections=None, generator=None, return_lse=False, variant: Variant | None = None):
    """:func:`~teraml.attention.hyper_attention` with an explicit :class:`Variant` (None: the default; same
    arguments otherwise)."""
    is_causal = check_bool("is_causal", is_causal)
    enable_gqa = check_bool("enable_gqa", enable_gqa)
    return_lse = check_bool("return_lse", return_lse)
    dropout_p = check_float("dropout_p", dropout_p, min_value=0.0, max_value=1.0)
    check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
    generator = check_generator(generator)
    check_sdpa_tensors(query, key, value)
    d = query.shape[-1]
    if projections is not None:
        check_projections(projections, d, lsh_num_projs)
    exact = key.shape[-2] <= min_seq_len
    if exact and not return_lse:   # the exact path is SDPA itself, with every argument SDPA takes
        check_sdpa_shapes(query, key, value, enable_gqa)
        scale = check_float("scale", scale, allow_none=True)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    check_dropout(dropout_p, key.shape[-2], min_seq_len, return_lse)
    check_sdpa_shapes(query, key, value, enable_gqa)
    key_bias = key_bias_from_mask(attn_mask, query, key)        # (B, H, S), or None
    scale = check_scale(scale)
    if projections is None:
        proj = default_projections(d, lsh_num_projs, dtype=query.dtype, device=query.device)
    else:
        proj = projections.to(dtype=query.dtype, device=query.device)
    if scale is None:
        scale = d ** -0.5

    three_d = query.ndim == 3
    if three_d:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    B, H, n_q, _ = query.shape
    Hk, dv = key.shape[1], value.shape[-1]
    if 0 in (B, H, n_q):  # nothing to attend from: empty results, as SDPA gives
        o = query.new_zeros(B, H, n_q, dv)
        lse = torch.zeros(B, H, n_q, dtype=torch.float32, device=query.device)
        if three_d:
            o, lse = o.squeeze(1), lse.squeeze(1)
        return (o, lse) if return_lse else o
    g = H // Hk
    q5 = query.reshape(B, Hk, g, n_q, d)
    k5, v5 = key.unsqueeze(2), value.unsqueeze(2)
    bias5 = None if key_bias is None else key_bias.reshape(B, Hk, g, key.shape[-2])
    cfg = HyperConfig(proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
                      variant if variant is not None else Variant())
    if is_causal:
        o, lse = _causal_top_left(q5, k5, v5, cfg, bias5)
    elif exact:
        o, lse = exact_grouped(q5, k5, v5, scale, False, bias5)
    else:
        o, lse = unmasked_attention(q5, k5, v5, cfg, key_bias=bias5)
    o = o.reshape(B, H, n_q, dv).to(query.dtype)
    lse = lse.reshape(B, H, n_q)
    if three_d:
        o, lse = o.squeeze(1), lse.squeeze(1)
    return (o, lse) if return_lse else o


def _causal_top_left(q, k, v, cfg: HyperConfig, key_bias=None):
    """Causal attention with SDPA's convention for L != S (the mask is tril(ones(L, S))): query i sees keys
    0..i. L < S: the keys past L are never seen. L > S: the first S queries are causal on every key, the
    rest see all keys (unmasked, approximate when S > min_seq_len)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    if n_q < n_k:
        k, v, n_k = k[..., :n_q, :], v[..., :n_q, :], n_q
        key_bias = None if key_bias is None else key_bias[..., :n_q]
    if n_q <= n_k:
        if n_k <= cfg.min_seq_len:
            return exact_grouped(q, k, v, cfg.scale, True, key_bias)
        return causal_attention(q, k, v, cfg, key_bias)
    head = _causal_top_left(q[..., :n_k, :], k, v, cfg, key_bias)
    rest = q[..., n_k:, :]
    tail = (exact_grouped(rest, k, v, cfg.scale, False, key_bias) if n_k <= cfg.min_seq_len
            else unmasked_attention(rest, k, v, cfg, key_bias=key_bias))
    return torch.cat([head[0], tail[0]], dim=-2), torch.cat([head[1], tail[1]], dim=-1)
