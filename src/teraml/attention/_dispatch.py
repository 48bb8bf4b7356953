"""The body of :func:`~teraml.attention.hyper_attention`: check, reshape to the grouped layout, dispatch.

Inputs in SDPA's layout (B, H, L, E) become the grouped layout q (B, H_kv, g, L, E), k/v (B, H_kv, 1, S, E)
with g = H / H_kv, so a key head is sorted and gathered once for its whole group (GQA without copies).
Then: exact attention iff S <= min_seq_len (SDPA itself when no LSE is asked for), else the causal
recursion or unmasked HyperAttention. :func:`hyper_forward` takes an explicit :class:`Variant`, so tests and
benchmarks choose the variant and the implementation per call (the public function always runs the
default).

>>> import torch
>>> q = torch.randn(1, 2, 2048, 32)
>>> out = hyper_forward(q, q, q, min_seq_len=512, variant=Variant(blocks="random"))
>>> out.shape
torch.Size([1, 2, 2048, 32])
"""

from __future__ import annotations

import torch.nn.functional as F

from teraml._validation import check_bool
from teraml.attention._causal import causal_attention, exact_grouped
from teraml.attention._checks import (
    check_generator,
    check_hyper_params,
    check_no_mask_or_dropout,
    check_projections,
    check_scale,
    check_sdpa_inputs,
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
    check_no_mask_or_dropout(attn_mask, dropout_p)
    is_causal = check_bool("is_causal", is_causal)
    enable_gqa = check_bool("enable_gqa", enable_gqa)
    return_lse = check_bool("return_lse", return_lse)
    check_sdpa_inputs(query, key, value, enable_gqa, is_causal)
    check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
    scale = check_scale(scale)
    generator = check_generator(generator)
    d = query.shape[-1]
    if projections is None:
        proj = default_projections(d, lsh_num_projs, dtype=query.dtype, device=query.device)
    else:
        proj = check_projections(projections, d, lsh_num_projs).to(dtype=query.dtype, device=query.device)
    if scale is None:
        scale = d ** -0.5

    three_d = query.ndim == 3
    if three_d:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    B, H, n_q, _ = query.shape
    Hk, n_k = key.shape[1], key.shape[-2]
    g = H // Hk

    if n_k <= min_seq_len and not return_lse:  # the exact path: SDPA itself when no LSE is asked for
        out = F.scaled_dot_product_attention(query, key, value, is_causal=is_causal, scale=scale,
                                             enable_gqa=enable_gqa and g > 1)
        return out.squeeze(1) if three_d else out
    q5 = query.reshape(B, Hk, g, n_q, d)
    k5, v5 = key.unsqueeze(2), value.unsqueeze(2)
    cfg = HyperConfig(proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
                      variant if variant is not None else Variant())
    if n_k <= min_seq_len:
        o, lse = exact_grouped(q5, k5, v5, scale, is_causal)
    elif is_causal:
        o, lse = causal_attention(q5, k5, v5, cfg)
    else:
        o, lse = unmasked_attention(q5, k5, v5, cfg)
    o = o.reshape(B, H, n_q, value.shape[-1]).to(query.dtype)
    lse = lse.reshape(B, H, n_q)
    if three_d:
        o, lse = o.squeeze(1), lse.squeeze(1)
    return (o, lse) if return_lse else o
