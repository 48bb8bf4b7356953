"""Causal HyperAttention: exact attention on the diagonal halves, HyperAttention below them, merged by LSE.

The paper's recursion: exact attention on the two diagonal halves (recursively, down to ``min_seq_len``)
plus an unmasked HyperAttention of the second half of the queries on the first half of the keys, merged
by log-sum-exp. Two implementations compute the same thing (chosen by ``Variant.causal``): the recursion
(autograd-friendly, any n) and, at inference when n = leaf * 2^levels, the same recursion unrolled into
levels of strided views merged in place into one buffer. :func:`exact_grouped` is the exact (o, lse) on
the grouped layout that both (and the exact path of ``hyper_attention``) use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from teraml.attention._config import HyperConfig
from teraml.attention._gather import lead_chunks
from teraml.attention._merge import exact_attention, merge_attention
from teraml.attention._unmasked import unmasked_attention

__all__ = ["causal_attention", "exact_grouped"]


def exact_grouped(q, k, v, scale, causal, key_bias=None):
    """Exact (o, lse) on the grouped layout (*L, Hk, g, n, e); leading dims are processed in chunks so that
    the contiguous copies the fused kernels need stay a fraction of the input. ``key_bias`` (*L, Hk, g, n_k)
    is added to every score of its key (-inf: masked)."""
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    lead = tuple(L)

    def one(qc, kc, vc, bc):
        lc = qc.shape[:-4]
        B = math.prod(lc)
        if not causal and bc is None:  # every query row of a group sees the same keys: fold the group into rows
            o, lse = exact_attention(qc.reshape(B, Hk, g * n_q, d), kc.reshape(B, Hk, n_k, d),
                                     vc.reshape(B, Hk, n_k, dv), scale=scale)
        else:   # one head per query head (causal rows, or a key bias per query head)
            ke = kc.expand(*lc, Hk, g, n_k, d).reshape(B, Hk * g, n_k, d)
            ve = vc.expand(*lc, Hk, g, n_k, dv).reshape(B, Hk * g, n_k, dv)
            o, lse = exact_attention(qc.reshape(B, Hk * g, n_q, d), ke, ve, scale=scale, causal=causal,
                                     key_bias=None if bc is None else bc.reshape(B, Hk * g, n_k))
        return o.reshape(*lc, Hk, g, n_q, dv), lse.reshape(*lc, Hk, g, n_q)

    # chunk the leading dims only when the contiguous copies would be large (> 2^28 elements per tensor)
    per_lead = Hk * g * n_q * max(d, dv)
    chunks = list(lead_chunks(lead, max(1, (1 << 28) // max(1, per_lead))))
    if len(chunks) <= 1:
        return one(q, k, v, key_bias)
    o = q.new_empty(*lead, Hk, g, n_q, dv)
    lse = torch.empty(*lead, Hk, g, n_q, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32,
                      device=q.device)
    for idx in chunks:
        oc, lc_ = one(q[idx], k[idx], v[idx], None if key_bias is None else key_bias[idx])
        o[idx] = oc
        lse[idx] = lc_
    return o, lse


def _merge_into(o, lse, o2, lse2) -> None:
    """In-place merge of (o2, lse2) into the views (o, lse) (inference only; weights in fp32). A row empty on
    both sides (lse = -inf twice, possible under a key mask) stays o = 0, lse = -inf."""
    new = torch.logaddexp(lse, lse2)
    safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
    w1 = torch.exp(lse - safe).unsqueeze(-1)
    w2 = torch.exp(lse2 - safe).unsqueeze(-1)
    o.mul_(w1).addcmul_(o2, w2)
    lse.copy_(new)


def _causal_levels(q, k, v, cfg: HyperConfig, key_bias=None):
    """The causal recursion unrolled into levels, for inference when n = leaf * 2^levels.

    Same work split, same sample draws in the same order as :func:`_causal`, but every sub-problem
    is a strided view of the inputs (no folding copies) and each level merges in place into one
    output buffer. Returns None when n is not of that form.
    """
    *L0, Hk, g, n, d = q.shape
    dv = v.shape[-1]
    leaf, levels = n, 0
    while leaf > cfg.min_seq_len:
        if leaf % 2:
            return None
        leaf //= 2
        levels += 1
    nl = n // leaf
    p = len(L0)

    def split(x, parts):  # (*L0, Hk, G, n, e) -> (*L0, parts, Hk, G, n / parts, e), a view
        return x.unflatten(-2, (parts, x.shape[-2] // parts)).movedim(-3, p)

    bias = None if key_bias is None else key_bias.unsqueeze(-1)           # (*L0, Hk, g, n, 1): splits as q does
    o_leaf, lse_leaf = exact_grouped(split(q, nl), split(k, nl), split(v, nl), cfg.scale, True,
                                     None if bias is None else split(bias, nl).squeeze(-1))
    o = q.new_empty(*L0, Hk, g, n, dv)
    lse = torch.empty(*L0, Hk, g, n, dtype=lse_leaf.dtype, device=q.device)
    split(o, nl).copy_(o_leaf)
    split(lse.unsqueeze(-1), nl).squeeze(-1).copy_(lse_leaf)
    del o_leaf, lse_leaf
    for lvl in range(1, levels + 1):
        parts = n // (leaf << lvl)

        def halves(x):  # (*L0, parts, Hk, G, 2, h, e)
            return split(x, parts).unflatten(-2, (2, x.shape[-2] // parts // 2))

        qh, kh, vh = halves(q)[..., 1, :, :], halves(k)[..., 0, :, :], halves(v)[..., 0, :, :]
        o_u, lse_u = unmasked_attention(qh, kh, vh, cfg, key_bias=None if bias is None else halves(bias)[..., 0, :, 0])
        _merge_into(halves(o)[..., 1, :, :], halves(lse.unsqueeze(-1))[..., 1, :, 0], o_u, lse_u)
    return o, lse


def causal_attention(q, k, v, cfg: HyperConfig, key_bias=None):
    """Causal HyperAttention by recursion on halves; (o, lse) on the grouped layout (*L, Hk, g, n, e).

    The two diagonal halves become a new leading axis (a view, no copy), so the recursion keeps the
    query-head -> key-head map and draws samples in (batch, half, key head, group) order: GQA equals
    repeat_interleave'd keys exactly. ``key_bias`` (*L, Hk, g, n) follows its keys into every part.
    """
    n = q.shape[-2]
    if n <= cfg.min_seq_len:
        return exact_grouped(q, k, v, cfg.scale, True, key_bias)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not grad and cfg.variant.causal == "levels":
        res = _causal_levels(q, k, v, cfg, key_bias)
        if res is not None:
            return res
    pad = n % 2
    if pad:  # one pad row at the end: causality keeps it away from the real rows
        q, k, v = (F.pad(t, (0, 0, 0, 1)) for t in (q, k, v))
        if key_bias is not None:
            key_bias = F.pad(key_bias, (0, 1), value=-math.inf)
    *L, Hk, g, n2, d = q.shape
    h = n2 // 2
    nl = len(L)

    def fold(x):  # (*L, Hk, G, 2h, e) -> (*L, 2, Hk, G, h, e), a view
        return x.unflatten(-2, (2, h)).movedim(-3, nl)

    bias_d = None if key_bias is None else fold(key_bias.unsqueeze(-1)).squeeze(-1)
    o_d, lse_d = causal_attention(fold(q), fold(k), fold(v), cfg, bias_d)
    o_u, lse_u = unmasked_attention(q[..., h:, :], k[..., :h, :], v[..., :h, :], cfg,
                                    key_bias=None if key_bias is None else key_bias[..., :h])
    o_d = o_d.movedim(nl, -3)        # (*L, Hk, g, 2, h, dv) view
    lse_d = lse_d.movedim(nl, -2)    # (*L, Hk, g, 2, h)
    o_m, lse_m = merge_attention(o_d[..., 1, :, :], lse_d[..., 1, :], o_u, lse_u)
    o = torch.cat([o_d[..., 0, :, :], o_m], dim=-2)
    lse = torch.cat([lse_d[..., 0, :], lse_m], dim=-1)
    if pad:
        o, lse = o[..., :n, :], lse[..., :n]
    return o, lse
