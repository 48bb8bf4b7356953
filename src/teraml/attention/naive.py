"""The dense, obviously correct attention every fast path in ``teraml.attention`` is tested against.

:func:`naive_attention` has the calling convention of ``torch.nn.functional.scaled_dot_product_attention``
(causal mask aligned top-left, boolean masks where True means "attend", additive float masks, GQA by
``enable_gqa``) and also returns the natural-log normaliser. It forms the whole score matrix in float64,
so it is for tests and small checks only: O(L * S) memory per head.

A query row with no key to attend to (every key masked) gets ``out = 0`` and ``lse = -inf``, the
convention of :func:`~teraml.attention.merge_attention` for an empty key set.

>>> import torch
>>> q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 3)
>>> out, lse = naive_attention(q, k, v, is_causal=True, enable_gqa=True)
>>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
>>> bool(torch.allclose(out.float(), ref, atol=1e-6)), out.dtype, lse.shape
(True, torch.float64, torch.Size([1, 4, 6]))
"""

from __future__ import annotations

import math

import torch

__all__ = ["naive_attention"]


def naive_attention(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False):
    """Exact softmax attention in float64: ``(out, lse)`` with out (..., L, E_v) and lse (..., L).

    Parameters
    ----------
    query, key, value : (..., H, L, E), (..., H_kv, S, E), (..., H_kv, S, E_v) tensors
    attn_mask : None, a bool tensor (True = attend) or a float tensor added to the scores, broadcastable
        to (..., H, L, S)
    is_causal : query i attends to keys j <= i (top-left aligned, as SDPA)
    scale : default ``E ** -0.5``
    enable_gqa : query head h reads key head ``h // (H / H_kv)``
    """
    q, k, v = query.double(), key.double(), value.double()
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(group, dim=-3)
        v = v.repeat_interleave(group, dim=-3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale
    n_q, n_k = scores.shape[-2], scores.shape[-1]
    if is_causal:
        future = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.double()
    empty = ~torch.isfinite(scores).any(-1, keepdim=True)        # rows with no key: no NaN, not even in grads
    scores = scores.masked_fill(empty, 0.0)
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse.unsqueeze(-1)).masked_fill(empty, 0.0)
    return weights @ v, lse.masked_fill(empty.squeeze(-1), -math.inf)
