"""Primitives shared by every attention method: exact attention with its log-sum-exp, and the merge.

Attention over a key set S gives ``(o_S, lse_S)`` with ``lse_S = ln sum_{j in S} exp(s_ij)``. For two
disjoint key sets, full attention is recovered exactly by

    lse = logaddexp(lse_1, lse_2),   o = exp(lse_1 - lse) o_1 + exp(lse_2 - lse) o_2

computed here in fp32, with ``-inf`` handled (a side with no keys contributes nothing; both sides
empty give ``o = 0, lse = -inf``) and no cap on ``lse_2 - lse_1``.

Example
-------
>>> import torch
>>> q, k, v = torch.randn(1, 2, 8, 4), torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 3)
>>> o1, l1 = exact_attention(q, k[..., :2, :], v[..., :2, :])
>>> o2, l2 = exact_attention(q, k[..., 2:, :], v[..., 2:, :])
>>> o, lse = merge_attention(o1, l1, o2, l2)
>>> ref = torch.softmax(q @ k.transpose(-1, -2) / 2, -1) @ v
>>> bool(torch.allclose(o, ref, atol=1e-6))
True
"""

from __future__ import annotations

import math

import torch

from teraml._validation import check_tensor

__all__ = ["merge_attention", "exact_attention", "fused_forward"]

_CHUNK = 1024  # query rows per chunk in the matmul fallback and the backward pass


def merge_attention(out1: torch.Tensor, lse1: torch.Tensor, out2: torch.Tensor, lse2: torch.Tensor):
    """Merge attention over two disjoint key sets into attention over their union.

    Parameters
    ----------
    out1, out2 : (..., L, E_v) tensors, the normalised outputs of each part.
    lse1, lse2 : (..., L) tensors, their natural-log normalisers (``-inf`` for an empty part).

    Returns
    -------
    (out, lse): ``out`` in ``out1``'s dtype, ``lse`` in fp32 (fp64 for fp64 inputs). Exact and differentiable; no NaN for
    ``-inf`` inputs.

    >>> import torch
    >>> o, l = merge_attention(torch.ones(1, 2), torch.tensor([0.0]), torch.zeros(1, 2), torch.tensor([float("-inf")]))
    >>> o.tolist(), l.tolist()
    ([[1.0, 1.0]], [0.0])
    """
    for name, t in (("out1", out1), ("lse1", lse1), ("out2", out2), ("lse2", lse2)):
        check_tensor(name, t, floating=False)
    if out1.shape != out2.shape:
        raise ValueError(f"out2.shape must equal out1.shape: expected {tuple(out1.shape)}, got {tuple(out2.shape)}")
    if lse1.shape != out1.shape[:-1] or lse2.shape != out1.shape[:-1]:
        raise ValueError(
            f"lse1 and lse2 must have shape out1.shape[:-1] = {tuple(out1.shape[:-1])}; "
            f"got {tuple(lse1.shape)} and {tuple(lse2.shape)}"
        )
    acc = torch.float64 if torch.float64 in (lse1.dtype, lse2.dtype, out1.dtype) else torch.float32
    l1, l2 = lse1.to(acc), lse2.to(acc)
    m = torch.maximum(l1, l2)
    finite = torch.isfinite(m)
    m_safe = torch.where(finite, m, torch.zeros_like(m)).detach()
    s = torch.exp(l1 - m_safe) + torch.exp(l2 - m_safe)
    nonempty = s > 0
    s_safe = torch.where(nonempty, s, torch.ones_like(s))
    lse = torch.where(nonempty, m_safe + torch.log(s_safe), torch.full_like(s, -math.inf))
    lse_safe = torch.where(nonempty, lse, torch.zeros_like(lse))
    w1 = torch.exp(l1 - lse_safe).unsqueeze(-1)
    w2 = torch.exp(l2 - lse_safe).unsqueeze(-1)
    out = w1 * out1.to(acc) + w2 * out2.to(acc)
    return out.to(out1.dtype), lse


# --------------------------------------------------------------------------------------------------
# exact attention with its log-sum-exp


def _fused_cpu_available() -> bool:
    return hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")


def _pad_last(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return torch.nn.functional.pad(x, (0, size - x.shape[-1]))


def fused_forward(q, k, v, scale: float, causal: bool, bias=None):
    """(o, lse) through torch's fused kernels, or None when no fused kernel applies. ``bias`` (B, H, 1, S),
    float with -inf for masked keys, is added to the scores (a row with no valid key gets o = 0, lse = 0)."""
    if q.ndim != 4:
        return None
    d, dv = q.shape[-1], v.shape[-1]
    width = max(d, dv)
    try:
        if q.device.type == "cpu" and _fused_cpu_available():
            if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
                return None  # float64 takes the exact matmul path (the fused kernel is not float64-accurate)
            qq, kk, vv = (_pad_last(t, width) for t in (q, k, v))
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                qq, kk, vv, 0.0, causal, attn_mask=bias, scale=scale
            )
            return out[..., :dv], lse.float()
        if q.device.type == "cuda":
            if bias is not None:
                res = torch.ops.aten._scaled_dot_product_efficient_attention(
                    q, k, v, bias.to(q.dtype).expand(*q.shape[:-1], k.shape[-2]), True, 0.0, causal, scale=scale)
                return res[0], res[1][..., : q.shape[-2]].float()
            if q.dtype in (torch.float16, torch.bfloat16) and width <= 256:
                qq, kk, vv = (_pad_last(t, width) for t in (q, k, v))
                res = torch.ops.aten._scaled_dot_product_flash_attention(qq, kk, vv, 0.0, causal, False, scale=scale)
                return res[0][..., :dv], res[1][..., : q.shape[-2]].float()
            res = torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k, v, None, True, 0.0, causal, scale=scale
            )
            return res[0], res[1][..., : q.shape[-2]].float()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return None


def _causal_mask(rows: torch.Tensor, n_k: int, device) -> torch.Tensor:
    cols = torch.arange(n_k, device=device)
    return cols[None, :] > rows[:, None]


def _matmul_forward(q, k, v, scale: float, causal: bool, bias=None):
    """Chunked reference (o, lse): at most ``_CHUNK`` query rows of scores at a time."""
    n_q = q.shape[-2]
    outs, lses = [], []
    kt = k.transpose(-1, -2)
    for start in range(0, n_q, _CHUNK):
        stop = min(start + _CHUNK, n_q)
        s = (q[..., start:stop, :] @ kt)
        s = (s if s.dtype == torch.float64 else s.float()) * scale
        if bias is not None:
            s = s + bias
        if causal:
            s = s.masked_fill(_causal_mask(torch.arange(start, stop, device=q.device), k.shape[-2], q.device), -math.inf)
        lse = torch.logsumexp(s, dim=-1)
        lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        p = torch.exp(s - lse_safe.unsqueeze(-1))
        outs.append(p.to(v.dtype) @ v)
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


class _ExactAttention(torch.autograd.Function):
    """Exact attention returning (o, lse) with correct gradients through *both* outputs.

    torch's fused kernels return the logsumexp as non-differentiable; here the backward uses
    dS_ij = P_ij (dO_i . v_j - Delta_i) with Delta_i = rowsum(dO * O)_i - dlse_i.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, causal, bias):
        res = fused_forward(q, k, v, scale, causal, bias)
        if res is None:
            res = _matmul_forward(q, k, v, scale, causal, bias)
        o, lse = res
        o = o.contiguous()
        ctx.save_for_backward(q, k, v, o, lse, bias)
        ctx.scale, ctx.causal = scale, causal
        if bias is None:
            return o, lse
        empty = ~_has_key(bias, q.shape[-2], causal)          # rows whose keys are all masked
        return o.masked_fill(empty.unsqueeze(-1), 0.0), lse.masked_fill(empty, -math.inf)

    @staticmethod
    def backward(ctx, d_o, d_lse):
        q, k, v, o, lse, bias = ctx.saved_tensors
        scale, causal = ctx.scale, ctx.causal
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        if d_o is None:
            d_o = torch.zeros_like(o)
        if d_lse is None:
            d_lse = torch.zeros_like(lse)
        fused = _fused_cpu_backward(q, k, v, o, lse, d_o, d_lse, scale, causal, bias)
        if fused is not None:
            return (*fused, None, None, None)
        dq = torch.zeros(q.shape, dtype=acc, device=q.device)
        dk = torch.zeros(k.shape, dtype=acc, device=q.device)
        dv = torch.zeros(v.shape, dtype=acc, device=q.device)
        # matrix products in the input dtype on GPUs for 16-bit inputs (fp32 accumulation inside the
        # tensor cores), everything elementwise in fp32
        mm = q.dtype if (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)) else acc
        qa, ka, va = q.to(mm), k.to(mm), v.to(mm)
        delta = (d_o.to(acc) * o.to(acc)).sum(-1) - d_lse.to(acc)
        lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).to(acc)
        n_q = q.shape[-2]
        for start in range(0, n_q, _CHUNK):
            stop = min(start + _CHUNK, n_q)
            qc = qa[..., start:stop, :]
            s = (qc @ ka.transpose(-1, -2)).to(acc) * scale
            if bias is not None:
                s = s + bias
            if causal:
                s = s.masked_fill(_causal_mask(torch.arange(start, stop, device=q.device), k.shape[-2], q.device),
                                  -math.inf)
            p = torch.exp(s - lse_safe[..., start:stop, None])
            doc = d_o[..., start:stop, :].to(mm)
            dv += (p.to(mm).transpose(-1, -2) @ doc).to(acc)
            dp = (doc @ va.transpose(-1, -2)).to(acc)
            ds = (p * (dp - delta[..., start:stop, None]) * scale).to(mm)
            dq[..., start:stop, :] = (ds @ ka).to(acc)
            dk += (ds.transpose(-1, -2) @ qc).to(acc)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


def _has_key(bias, n_q: int, causal: bool) -> torch.Tensor:
    """(B, H, L) bool: whether each query row has a key with a finite bias (causal: among keys 0..i)."""
    valid = torch.isfinite(bias[..., 0, :])                       # (B, H, S)
    if not causal:
        return valid.any(-1, keepdim=True).expand(*valid.shape[:-1], n_q)
    first = torch.where(valid.any(-1), valid.int().argmax(-1), torch.full_like(valid[..., 0], n_q, dtype=torch.long))
    return torch.arange(n_q, device=bias.device) >= first.unsqueeze(-1)


def _fused_cpu_backward(q, k, v, o, lse, d_o, d_lse, scale, causal, bias=None):
    """torch's fused CPU flash backward, made to honour d_lse.

    The kernel computes Delta_i = rowsum(dO * O)_i from the ``out`` it is given and uses ``out`` for
    nothing else. Appending a zero column to v, a column of ones to dO and a column of -d_lse to O
    leaves every dO_i . v_j unchanged and turns Delta_i into rowsum(dO * O)_i - d_lse_i, the
    gradient through both outputs. Returns None where the kernel does not apply.
    """
    if q.device.type != "cpu" or q.ndim != 4 or q.dtype != torch.float32 or not _fused_cpu_available():
        return None
    try:
        d, dv = q.shape[-1], v.shape[-1]
        width = max(d, dv + 1)
        qq, kk = _pad_last(q, width), _pad_last(k, width)
        vv = _pad_last(v, width)
        oo = torch.cat([o, -d_lse.to(o.dtype).unsqueeze(-1)], dim=-1)
        gg = torch.cat([d_o.to(o.dtype), torch.ones_like(o[..., :1])], dim=-1)
        oo, gg = _pad_last(oo, width), _pad_last(gg, width)
        dq, dk, dvv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            gg.contiguous(), qq.contiguous(), kk.contiguous(), vv.contiguous(), oo.contiguous(),
            lse.contiguous(), 0.0, causal, attn_mask=bias, scale=scale)
        return dq[..., :d], dk[..., :d], dvv[..., :dv]
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                    causal: bool = False, key_bias: torch.Tensor | None = None):
    """Exact softmax attention returning ``(out, lse)``; ``lse`` is fp32 (fp64 for fp64 inputs), natural log.

    Uses torch's fused kernels when they apply (CPU flash, CUDA flash/efficient), else a chunked
    matmul. Gradients flow through both outputs. ``causal`` requires ``L_q == L_k``; ``q`` and ``k``
    must have the same number of heads (expand GQA key heads first). ``key_bias`` (``q.shape[:-2]`` +
    ``(S,)``), float with -inf for masked keys, is added to every score of its key (a key-padding mask);
    a row with no valid key gets ``out = 0`` and ``lse = -inf``.

    >>> import torch
    >>> o, lse = exact_attention(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 3), causal=True)
    >>> o.shape, lse.shape
    (torch.Size([2, 5, 3]), torch.Size([2, 5]))
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    lead = q.shape[:-2]
    if q.ndim != 4:
        q4 = q.reshape(-1, 1, *q.shape[-2:])
        k4 = k.reshape(-1, 1, *k.shape[-2:])
        v4 = v.reshape(-1, 1, *v.shape[-2:])
    else:
        q4, k4, v4 = q, k, v
    bias = None
    if key_bias is not None:
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        bias = key_bias.reshape(*q4.shape[:2], 1, k.shape[-2]).to(acc)
    o, lse = _ExactAttention.apply(q4, k4, v4, float(scale), bool(causal), bias)
    return o.reshape(*lead, *o.shape[-2:]), lse.reshape(*lead, lse.shape[-1])
