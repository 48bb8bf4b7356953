"""HyperAttention (Han et al., ICLR 2024): near-linear long-context attention, a drop-in for torch SDPA.

For each (batch, head), queries and keys are sorted by an angular LSH (``lsh.py``); query block t
attends exactly to key block t (the heavy entries), and every query also attends to ``sample_size``
keys drawn uniformly (with replacement) from the whole sequence, reweighted by ``n_k / m`` and masked
where the sampled key already lies in the query's own block, so each off-block key is counted once
in expectation. Both parts share one softmax, so output and log-normaliser are exact functions of
the chosen entries. The causal mask is handled by the paper's recursion: exact attention on the two
diagonal halves (recursively, down to ``min_seq_len``) plus an unmasked HyperAttention of the second
half of the queries on the first half of the keys, merged by log-sum-exp.

Samples are drawn uniformly, as in the authors' released code (insuhan/hyper-attn); the paper's
theory samples value rows with probability proportional to their squared norm.

Public rule: **exact iff n_k <= min_seq_len**, causal or not.

Differences from the reference code, each tested: sampled keys inside the query's block are masked
(the reference double-counts them), the bucket order is a true Gray-code walk, padded keys are masked,
the merge is an fp32 ``logaddexp`` without cap, the LSE carries gradients, random draws come from an
explicit generator and the projections are a persistent buffer of the module.

Example
-------
>>> import torch
>>> from teraml.attention import hyper_attention
>>> q, k, v = (torch.randn(1, 2, 8192, 64) for _ in range(3))
>>> out = hyper_attention(q, k, v, is_causal=True)          # same call as F.scaled_dot_product_attention
>>> out.shape
torch.Size([1, 2, 8192, 64])
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from teraml._validation import check_bool, check_choice, check_int, type_name
from teraml.attention._merge import _fused_forward, exact_attention, merge_attention
from teraml.attention.lsh import BUCKET_ORDERS, default_projections, sort_lsh

__all__ = ["hyper_attention", "HyperAttention"]

# scores (fp32 elements) materialised at once in the unmasked kernel; larger problems are chunked.
# On CPU a chunk that stays in cache is faster; on GPU larger chunks mean fewer kernel launches.
_SCORE_BUDGET = 1 << 26
_SCORE_BUDGET_CPU = 1 << 22
_FUSED_BUDGET = 1 << 27  # elements of the gathered q', k', v' of one chunk on GPU
_USE_FUSED = True  # inference through torch's fused attention kernels when they apply
_USE_LEVELS = True  # inference: the causal recursion unrolled into in-place levels when n = leaf * 2^k


# --------------------------------------------------------------------------------------------------
# validation


def _validate_tensors(query, key, value, enable_gqa: bool, is_causal: bool):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type_name(t)}")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype; got {t.dtype}")
    nd = (query.ndim, key.ndim, value.ndim)
    if len(set(nd)) != 1 or nd[0] not in (3, 4):
        raise ValueError(
            "query, key and value must all be 3-D (batch, seq, dim) or 4-D (batch, heads, seq, dim); "
            f"got query.ndim={query.ndim}, key.ndim={key.ndim}" + (
                f", value.ndim={value.ndim}" if value.ndim != key.ndim else "")
        )
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype or t.device != query.device:
            raise ValueError(
                f"{name} must share query's dtype and device: expected "
                f"{str(query.dtype).replace('torch.', '')}/{query.device}, "
                f"got {str(t.dtype).replace('torch.', '')}/{t.device}"
            )
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"key.shape[-1] must equal query.shape[-1]: expected {query.shape[-1]}, got {key.shape[-1]}")
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(f"value.shape[-2] must equal key.shape[-2]: expected {key.shape[-2]}, got {value.shape[-2]}")
    for name, t in (("key", key), ("value", value)):
        if t.shape[0] != query.shape[0]:
            raise ValueError(f"{name}.shape[0] must equal query.shape[0]: expected {query.shape[0]}, got {t.shape[0]}")
    if query.ndim == 4:
        if value.shape[1] != key.shape[1]:
            raise ValueError(f"value.shape[1] must equal key.shape[1]: expected {key.shape[1]}, got {value.shape[1]}")
        hq, hk = query.shape[1], key.shape[1]
        if not enable_gqa and hq != hk:
            raise ValueError(f"key heads must equal query heads when enable_gqa=False: expected {hq}, got {hk}")
        if enable_gqa and (hk == 0 or hq % hk != 0):
            raise ValueError(f"query heads must be a multiple of key heads when enable_gqa=True: got {hq} and {hk}")
    for name, t in (("query", query), ("key", key)):
        if t.shape[-2] < 1:
            raise ValueError(f"{name}.shape[-2] must be >= 1; got {t.shape[-2]}")
    if query.shape[-1] < 1:
        raise ValueError(f"query.shape[-1] must be >= 1; got {query.shape[-1]}")
    if is_causal and query.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"is_causal=True requires equal query and key lengths; got {query.shape[-2]} and {key.shape[-2]} "
            "(use exact attention for KV-cache decoding)"
        )


def _validate_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order):
    check_int("lsh_num_projs", lsh_num_projs, min_value=1, max_value=16)
    check_int("block_size", block_size, min_value=1)
    check_int("sample_size", sample_size, min_value=0)
    check_int("min_seq_len", min_seq_len, min_value=1)
    if not isinstance(bucket_order, str):
        raise ValueError(f"bucket_order must be one of 'gray', 'reference', 'binary'; got {bucket_order!r}")
    check_choice("bucket_order", bucket_order, BUCKET_ORDERS)


def _validate_scale(scale):
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a float > 0 or None; got {scale!r}")
    return float(scale)


def _validate_mask_dropout(attn_mask, dropout_p):
    if attn_mask is not None:
        shape = tuple(attn_mask.shape) if isinstance(attn_mask, torch.Tensor) else None
        what = f"a Tensor of shape {shape}" if shape is not None else type_name(attn_mask)
        raise NotImplementedError(f"attn_mask must be None; got {what} (use is_causal, or SDPA for arbitrary masks)")
    if dropout_p != 0.0:
        raise NotImplementedError(f"dropout_p must be 0.0; got {dropout_p}")


# --------------------------------------------------------------------------------------------------
# kernels on the grouped layout: q (B, Hk, g, n, d); k, v (B, Hk, 1, n, d)


def _acc(x: torch.Tensor) -> torch.Tensor:
    """Scores and normalisers in fp32 at least (fp64 stays fp64)."""
    return x if x.dtype == torch.float64 else x.float()


def _flat_index(x_lead: tuple, shape: list, n: int, idx: torch.Tensor) -> torch.Tensor:
    """Flat row indices into x.reshape(-1, e) for idx (broadcast to ``shape`` + (m,))."""
    count = 1
    for s_ in x_lead:
        count *= s_
    base = (torch.arange(count, device=idx.device) * n).view(*x_lead, 1) if x_lead else torch.zeros(1, dtype=torch.long, device=idx.device)
    base = base.expand(*shape, 1)
    return (base + idx.expand(*shape, idx.shape[-1])).reshape(-1)


def _gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (..., n, e) gathered along -2 by idx (..., m); x's leading dims broadcast without copies."""
    shape = list(torch.broadcast_shapes(x.shape[:-2], idx.shape[:-1]))
    n, e = x.shape[-2:]
    flat = _flat_index(tuple(x.shape[:-2]), shape, n, idx)
    return x.reshape(-1, e).index_select(0, flat).view(*shape, idx.shape[-1], e)


def _scatter_rows(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_gather_rows(y, perm)`` for a permutation: out[..., perm[i], :] = x[..., i, :]."""
    n, e = x.shape[-2:]
    flat = _flat_index(tuple(x.shape[:-2]), list(x.shape[:-2]), n, perm)
    return torch.empty_like(x).reshape(-1, e).index_copy(0, flat, x.reshape(-1, e)).view(x.shape)


def _chunk_fast(qc, kc, vc, k_smp, v_smp, pad_last, log_w, own):
    """Blocks + samples for a chunk of blocks without autograd: in-place softmax, no concatenation."""
    s_blk = _acc(qc @ kc.transpose(-1, -2))                           # (.., c, bq, b); q already scaled
    if pad_last:
        s_blk[..., -1, :, s_blk.shape[-1] - pad_last:] = -math.inf
    mx = s_blk.amax(-1, keepdim=True)
    if k_smp is not None:
        s_smp = _acc(qc @ k_smp.transpose(-1, -2)).add_(log_w)        # (.., c, bq, m)
        if own is not None:
            s_smp.masked_fill_(own, -math.inf)
        mx = torch.maximum(mx, s_smp.amax(-1, keepdim=True))
    den = s_blk.sub_(mx).exp_().sum(-1, keepdim=True)
    o = s_blk.to(vc.dtype) @ vc
    if k_smp is not None:
        den += s_smp.sub_(mx).exp_().sum(-1, keepdim=True)
        o = o + s_smp.to(vc.dtype) @ v_smp
    o = (o / den.to(o.dtype)) if o.dtype == den.dtype else (o.float() / den).to(vc.dtype)
    return o, (mx + torch.log(den)).squeeze(-1)


_NEG = -30000.0  # "minus infinity" for masked keys inside a fused kernel (exp underflows to exactly 0)


_SOURCE_BUDGET = 1 << 28  # elements of the padded k', v', q' copies one fused call may hold at once


def _unmasked_fused_split(q, k, v, perm_q, perm_k, scale, b, m, sample_idx, mask_samples):
    """:func:`_unmasked_fused` over groups of key heads, so that its padded copies stay within budget."""
    *L, Hk, g, n_q, d = q.shape
    n_k = k.shape[-2]
    n_lead = 1
    for s_ in L:
        n_lead *= s_
    total = n_lead * Hk * (2 * n_k + g * n_q) * (d + 8)
    parts = min(Hk, -(-total // _SOURCE_BUDGET))
    if parts <= 1:
        return _unmasked_fused(q, k, v, perm_q, perm_k, scale, b, m, sample_idx, mask_samples)
    step = -(-Hk // parts)
    out = q.new_empty(*L, Hk, g, n_q, v.shape[-1])
    lse = torch.empty(*L, Hk, g, n_q, dtype=torch.float32, device=q.device)
    for h0 in range(0, Hk, step):
        hs = slice(h0, min(Hk, h0 + step))
        res = _unmasked_fused(q[..., hs, :, :, :], k[..., hs, :, :, :], v[..., hs, :, :, :], perm_q[..., hs, :, :],
                              perm_k[..., hs, :, :], scale, b, m,
                              None if sample_idx is None else sample_idx[..., hs, :, :], mask_samples)
        if res is None:
            return None
        out[..., hs, :, :, :] = res[0]
        lse[..., hs, :, :] = res[1]
    return out, lse


def _unmasked_fused(q, k, v, perm_q, perm_k, scale, b, m, sample_idx, mask_samples):
    """Inference path of the unmasked kernel through torch's fused attention (no score matrix in memory).

    Each block's key set is its b sorted keys followed by the m samples. Per-key log-weights (0 for
    block keys, ln(n_k/m) for samples, "-inf" for pad keys and for samples inside the query's own
    block) enter as extra head dimensions: q' = [q, 1, ...], k' = [k, w, ...], so q'.k' = q.k + w
    (16-bit dtypes split w into w_hi + w_lo to keep it accurate). Rows are gathered chunk by chunk
    straight from the inputs and outputs are scattered straight into the result, so memory stays
    at inputs + output + one chunk. Returns None when no fused kernel applies.
    """
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    dev, dt = q.device, q.dtype
    n_lead = 1
    for s_ in L:
        n_lead *= s_
    nb = -(-n_k // b)
    bq = -(-n_q // nb)
    pad_k, pad_q = nb * b - n_k, nb * bq - n_q
    extra = 1 if dt == torch.float32 else 2
    width = -(-max(d + extra, dv) // 8) * 8
    # padded key/value sources, built once per call: k' = [k, 0...], v' = [v, 0...]
    kf = k.new_empty(n_lead * Hk * n_k, width)
    kf[:, d:] = 0
    kf.view(*L, Hk, 1, n_k, width)[..., :d].copy_(k)          # straight from (possibly strided) views
    vf = v.new_empty(n_lead * Hk * n_k, width)
    vf[:, dv:] = 0
    vf.view(*L, Hk, 1, n_k, width)[..., :dv].copy_(v)
    # queries sorted once per call into q' = [q, 1 (x extra), 0...], padded to whole blocks
    qs = q.new_empty(*L, Hk, g, nb * bq, width)
    qs[..., :n_q, :d] = torch.gather(q, -2, perm_q.unsqueeze(-1).expand(*perm_q.shape, d))
    if pad_q:
        qs[..., n_q:, :d] = 0
    qs[..., d:d + extra] = 1
    if d + extra < width:
        qs[..., d + extra:] = 0
    qs = qs.view(*L, Hk, g, nb, bq, width)
    if pad_q:
        perm_q = F.pad(perm_q, (0, pad_q))      # pad rows read row 0; their outputs are dropped
    if pad_k:
        perm_k = F.pad(perm_k, (0, pad_k))      # pad keys read row 0 and get weight 0 below
    fq = _flat_index(tuple(perm_q.shape[:-1]), list(perm_q.shape[:-1]), n_q, perm_q)
    fq = fq.view(*L, Hk, g, nb, bq)
    fk = _flat_index(tuple(perm_k.shape[:-1]), list(perm_k.shape[:-1]), n_k, perm_k).view(*L, Hk, 1, nb, b)

    def weight_cols(w):  # a log-weight w as the extra key column(s): the kernel multiplies them by scale
        w = w / scale
        if extra == 1:
            return (w,)
        hi = float(torch.tensor(w, dtype=dt).float())
        return hi, w - hi

    neg = -min(-_NEG / scale, 60000.0)  # a masked key's column: exp(scale * neg) == 0, finite in fp16
    if m > 0:
        orig = torch.gather(perm_k[..., :n_k].expand(*L, Hk, g, n_k), -1, sample_idx)
        fs = _flat_index((*L, Hk, 1), [*L, Hk, g], n_k, orig)
        # the samples of each (batch, query head), gathered once and broadcast to every block
        smp_k = kf.index_select(0, fs).view(*L, Hk, g, 1, m, width)
        smp_v = vf.index_select(0, fs).view(*L, Hk, g, 1, m, width)
        log_w = math.log(n_k / m)
        for j, w in enumerate(weight_cols(log_w)):
            smp_k[..., d + j] = w
        smp_block = torch.div(sample_idx, b, rounding_mode="floor")             # (*L,Hk,g,m)
    out = torch.empty(n_lead * Hk * g * n_q, dv, dtype=dt, device=dev)
    lse_out = torch.empty(n_lead * Hk * g * n_q, dtype=torch.float32, device=dev)
    n_keys = b + m
    per_block = n_lead * Hk * g * (bq + 2 * n_keys) * width
    budget = _SCORE_BUDGET_CPU if dev.type == "cpu" else _FUSED_BUDGET
    step = max(1, min(nb, budget // max(1, per_block)))
    for t0 in range(0, nb, step):
        t1 = min(nb, t0 + step)
        c = t1 - t0
        rows = n_lead * Hk * g * c
        qi = fq[..., t0:t1, :]                                                    # (*L,Hk,g,c,bq)
        q2 = qs[..., t0:t1, :, :].reshape(rows, 1, bq, width)   # a view when one chunk covers all blocks
        k2 = q.new_empty(*L, Hk, g, c, n_keys, width)
        v2 = q.new_empty(*L, Hk, g, c, n_keys, width)
        blk = fk[..., t0:t1, :].reshape(-1)
        k2[..., :b, :] = kf.index_select(0, blk).view(*L, Hk, 1, c, b, width)    # shared by the group
        v2[..., :b, :] = vf.index_select(0, blk).view(*L, Hk, 1, c, b, width)
        if m > 0:
            k2[..., b:, :] = smp_k
            v2[..., b:, :] = smp_v
            if mask_samples:
                own = smp_block.unsqueeze(-2) == torch.arange(t0, t1, device=dev).view(-1, 1)   # (*L,Hk,g,c,m)
                for j, w in enumerate(weight_cols(log_w)):
                    k2[..., b:, d + j] = torch.where(own, neg if j == 0 else 0.0, w)
        if pad_k and t1 == nb:
            k2[..., -1, b - pad_k:b, d] = neg
        k2 = k2.view(rows, 1, n_keys, width)
        v2 = v2.view(rows, 1, n_keys, width)
        res = _fused_forward(q2, k2, v2, scale, False)   # the kernel scales q.k and the weight columns alike
        if res is None:
            return None
        o, lse = res
        o = o[..., :dv].reshape(n_lead * Hk * g, c * bq, dv)
        lse = lse.reshape(n_lead * Hk * g, c * bq)
        qi = qi.reshape(n_lead * Hk * g, c * bq)
        valid = min(c * bq, n_q - t0 * bq)
        if valid < c * bq:
            o, lse, qi = o[:, :valid], lse[:, :valid], qi[:, :valid]
        idx = qi.reshape(-1)
        out.index_copy_(0, idx, o.reshape(-1, dv).to(dt))
        lse_out.index_copy_(0, idx, lse.reshape(-1).float())
    return out.view(*L, Hk, g, n_q, dv), lse_out.view(*L, Hk, g, n_q)


def _chunk_grad(qc, kc, vc, k_smp, v_smp, pad_last, log_w, own):
    """The same computation with out-of-place ops, so autograd sees every step."""
    s_blk = _acc(qc @ kc.transpose(-1, -2))
    if pad_last:
        keep = torch.ones(s_blk.shape[-3:], dtype=torch.bool, device=s_blk.device)
        keep[-1, :, s_blk.shape[-1] - pad_last:] = False
        s_blk = s_blk.masked_fill(~keep, -math.inf)
    if k_smp is not None:
        s_smp = _acc(qc @ k_smp.transpose(-1, -2)) + log_w
        if own is not None:
            s_smp = s_smp.masked_fill(own, -math.inf)
        s = torch.cat([s_blk, s_smp], dim=-1)
    else:
        s = s_blk
    lse = torch.logsumexp(s, dim=-1)                                   # never -inf: each block has a real key
    p = torch.exp(s - lse.unsqueeze(-1)).to(vc.dtype)
    b = kc.shape[-2]
    o = p[..., :b] @ vc
    if k_smp is not None:
        o = o + p[..., b:] @ v_smp
    return o, lse


def _unmasked(q, k, v, proj, scale, block_size, sample_size, bucket_order, generator,
              mask_samples=True, sample_idx=None, random_blocks=False):
    """Unmasked HyperAttention on the grouped layout; returns (o (*L,Hk,g,nq,dv), lse fp32 (*L,Hk,g,nq)).

    q is (*L, Hk, g, nq, d) and k, v are (*L, Hk, 1, nk, e) for any leading batch dims L (views are
    fine). ``sample_idx`` (*L,Hk,g,m) fixes the samples (positions in sorted key order); ``random_blocks``
    replaces the LSH sort by random permutations (a baseline for benchmarks).
    """
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    n_lead = 1
    for s_ in L:
        n_lead *= s_
    if random_blocks:
        perm_q = torch.argsort(torch.rand(q.shape[:-1], generator=generator, device=q.device), dim=-1)
        perm_k = torch.argsort(torch.rand(k.shape[:-1], generator=generator, device=q.device), dim=-1)
    else:
        perm_q = sort_lsh(q, proj, bucket_order)          # (B,Hk,g,nq)
        perm_k = sort_lsh(k, proj, bucket_order)          # (B,Hk,1,nk): keys sorted once per key head
    b = min(block_size, n_k)
    nb = -(-n_k // b)
    bq = -(-n_q // nb)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not grad and _USE_FUSED and q.dtype != torch.float64:
        if sample_size > 0 and sample_idx is None:
            sample_idx = torch.randint(0, n_k, (*L, Hk, g, sample_size), generator=generator, device=q.device)
        res = _unmasked_fused_split(q, k, v, perm_q, perm_k, scale, b, sample_size, sample_idx, mask_samples)
        if res is not None:
            return res
    qs = _gather_rows(q * scale, perm_q)               # the scale folded into q: n*d multiplies, not n*(b+m)
    ks = _gather_rows(k, perm_k)
    vs = _gather_rows(v, perm_k)
    pad_k, pad_q = nb * b - n_k, nb * bq - n_q
    if pad_k:
        ks = F.pad(ks, (0, 0, 0, pad_k))
        vs = F.pad(vs, (0, 0, 0, pad_k))
    if pad_q:
        qs = F.pad(qs, (0, 0, 0, pad_q))
    qb = qs.view(*L, Hk, g, nb, bq, d)
    kb = ks.view(*L, Hk, 1, nb, b, d)
    vb = vs.view(*L, Hk, 1, nb, b, dv)

    m = sample_size
    k_smp = v_smp = None
    log_w = 0.0
    if m > 0:
        if sample_idx is None:
            sample_idx = torch.randint(0, n_k, (*L, Hk, g, m), generator=generator, device=q.device)
        k_smp = _gather_rows(ks, sample_idx).unsqueeze(-3)          # (*L,Hk,g,1,m,d)
        v_smp = _gather_rows(vs, sample_idx).unsqueeze(-3)          # (*L,Hk,g,1,m,dv)
        log_w = math.log(n_k / m)
        smp_block = torch.div(sample_idx, b, rounding_mode="floor")  # (*L,Hk,g,m)

    # chunk the block axis so that at most _SCORE_BUDGET scores exist at once
    per_block = n_lead * Hk * g * bq * (b + m)
    budget = _SCORE_BUDGET_CPU if q.device.type == "cpu" else _SCORE_BUDGET
    step = max(1, min(nb, budget // max(1, per_block)))
    chunk = _chunk_grad if grad else _chunk_fast
    outs, lses = [], []
    for t0 in range(0, nb, step):
        t1 = min(nb, t0 + step)
        own = None
        if m > 0 and mask_samples:  # (*L,Hk,g,c,1,m): broadcast over the rows of each block
            own = (smp_block.unsqueeze(-2) == torch.arange(t0, t1, device=q.device).view(-1, 1)).unsqueeze(-2)
        o, lse = chunk(qb[..., t0:t1, :, :], kb[..., t0:t1, :, :], vb[..., t0:t1, :, :], k_smp, v_smp,
                       pad_k if t1 == nb else 0, log_w, own)
        outs.append(o)
        lses.append(lse)
    o = (torch.cat(outs, dim=-3) if len(outs) > 1 else outs[0]).reshape(*L, Hk, g, nb * bq, dv)
    lse = (torch.cat(lses, dim=-2) if len(lses) > 1 else lses[0]).reshape(*L, Hk, g, nb * bq)
    if pad_q:
        o, lse = o[..., :n_q, :], lse[..., :n_q]
    o = _scatter_rows(o.contiguous(), perm_q)
    lse = _scatter_rows(lse.unsqueeze(-1).contiguous(), perm_q).squeeze(-1)
    return o, lse


def _lead_chunks(lead: tuple, max_rows: int):
    """Index tuples over the leading dims ``lead`` so that each chunk covers at most ``max_rows`` of them."""
    j, count = 0, 1
    total = 1
    for s_ in lead:
        total *= s_
    while j < len(lead) and total // count > max_rows:
        count *= lead[j]
        j += 1
    return itertools.product(*[range(s_) for s_ in lead[:j]])


def _exact_grouped(q, k, v, scale, causal):
    """Exact (o, lse) on the grouped layout (*L, Hk, g, n, e); leading dims are processed in chunks so that
    the contiguous copies the fused kernels need stay a fraction of the input."""
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    lead = tuple(L)
    n_lead = 1
    for s_ in lead:
        n_lead *= s_

    def one(qc, kc, vc):
        lc = qc.shape[:-4]
        B = 1
        for s_ in lc:
            B *= s_
        if not causal:  # every query row of a group sees the same keys: fold the group into the rows
            o, lse = exact_attention(qc.reshape(B, Hk, g * n_q, d), kc.reshape(B, Hk, n_k, d),
                                     vc.reshape(B, Hk, n_k, dv), scale=scale)
        else:
            ke = kc.expand(*lc, Hk, g, n_k, d).reshape(B, Hk * g, n_k, d)
            ve = vc.expand(*lc, Hk, g, n_k, dv).reshape(B, Hk * g, n_k, dv)
            o, lse = exact_attention(qc.reshape(B, Hk * g, n_q, d), ke, ve, scale=scale, causal=True)
        return o.reshape(*lc, Hk, g, n_q, dv), lse.reshape(*lc, Hk, g, n_q)

    # chunk the leading dims only when the contiguous copies would be large (> 2^28 elements per tensor)
    per_lead = Hk * g * n_q * max(d, dv)
    chunks = list(_lead_chunks(lead, max(1, (1 << 28) // max(1, per_lead))))
    if len(chunks) <= 1:
        return one(q, k, v)
    o = q.new_empty(*lead, Hk, g, n_q, dv)
    lse = torch.empty(*lead, Hk, g, n_q, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32,
                      device=q.device)
    for idx in chunks:
        oc, lc_ = one(q[idx], k[idx], v[idx])
        o[idx] = oc
        lse[idx] = lc_
    return o, lse


def _merge_into(o, lse, o2, lse2) -> None:
    """In-place merge of (o2, lse2) into the views (o, lse) (inference only; weights in fp32)."""
    new = torch.logaddexp(lse, lse2)
    w1 = torch.exp(lse - new).unsqueeze(-1)
    w2 = torch.exp(lse2 - new).unsqueeze(-1)
    o.mul_(w1).addcmul_(o2, w2)
    lse.copy_(new)


def _causal_levels(q, k, v, proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
                   mask_samples=True, random_blocks=False):
    """The causal recursion unrolled into levels, for inference when n = leaf * 2^levels.

    Same work split, same sample draws in the same order as :func:`_causal`, but every sub-problem
    is a strided view of the inputs (no folding copies) and each level merges in place into one
    output buffer. Returns None when n is not of that form.
    """
    *L0, Hk, g, n, d = q.shape
    dv = v.shape[-1]
    leaf, levels = n, 0
    while leaf > min_seq_len:
        if leaf % 2:
            return None
        leaf //= 2
        levels += 1
    nl = n // leaf
    p = len(L0)

    def split(x, parts):  # (*L0, Hk, G, n, e) -> (*L0, parts, Hk, G, n / parts, e), a view
        return x.unflatten(-2, (parts, x.shape[-2] // parts)).movedim(-3, p)

    o_leaf, lse_leaf = _exact_grouped(split(q, nl), split(k, nl), split(v, nl), scale, True)
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
        o_u, lse_u = _unmasked(qh, kh, vh, proj, scale, block_size, sample_size, bucket_order, generator,
                               mask_samples, random_blocks=random_blocks)
        _merge_into(halves(o)[..., 1, :, :], halves(lse.unsqueeze(-1))[..., 1, :, 0], o_u, lse_u)
    return o, lse


def _causal(q, k, v, proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
            mask_samples=True, random_blocks=False):
    """Causal HyperAttention by recursion on halves; (o, lse) on the grouped layout (*L, Hk, g, n, e).

    The two diagonal halves become a new leading axis (a view, no copy), so the recursion keeps the
    query-head -> key-head map and draws samples in (batch, half, key head, group) order: GQA equals
    repeat_interleave'd keys exactly.
    """
    n = q.shape[-2]
    if n <= min_seq_len:
        return _exact_grouped(q, k, v, scale, True)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not grad and _USE_LEVELS:
        res = _causal_levels(q, k, v, proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
                             mask_samples, random_blocks)
        if res is not None:
            return res
    pad = n % 2
    if pad:  # one pad row at the end: causality keeps it away from the real rows
        q, k, v = (F.pad(t, (0, 0, 0, 1)) for t in (q, k, v))
    *L, Hk, g, n2, d = q.shape
    h = n2 // 2
    nl = len(L)

    def fold(x):  # (*L, Hk, G, 2h, e) -> (*L, 2, Hk, G, h, e), a view
        return x.unflatten(-2, (2, h)).movedim(-3, nl)

    o_d, lse_d = _causal(fold(q), fold(k), fold(v), proj, scale, block_size, sample_size, min_seq_len,
                         bucket_order, generator, mask_samples, random_blocks)
    o_u, lse_u = _unmasked(q[..., h:, :], k[..., :h, :], v[..., :h, :], proj, scale, block_size, sample_size,
                           bucket_order, generator, mask_samples, random_blocks=random_blocks)
    o_d = o_d.movedim(nl, -3)        # (*L, Hk, g, 2, h, dv) view
    lse_d = lse_d.movedim(nl, -2)    # (*L, Hk, g, 2, h)
    o_m, lse_m = merge_attention(o_d[..., 1, :, :], lse_d[..., 1, :], o_u, lse_u)
    o = torch.cat([o_d[..., 0, :, :], o_m], dim=-2)
    lse = torch.cat([lse_d[..., 0, :], lse_m], dim=-1)
    if pad:
        o, lse = o[..., :n, :], lse[..., :n]
    return o, lse


# --------------------------------------------------------------------------------------------------
# public API


def hyper_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False, *, lsh_num_projs=7, block_size=256, sample_size=256,
                    min_seq_len=4096, bucket_order="gray", projections=None, generator=None,
                    return_lse=False, _mask_block_samples=True, _random_blocks=False):
    """HyperAttention with the calling convention of ``torch.nn.functional.scaled_dot_product_attention``.

    Parameters
    ----------
    query : (B, H, L, E) or (B, L, E) tensor
    key, value : (B, H_kv, S, E) and (B, H_kv, S, E_v), or 3-D like ``query``
    attn_mask : must be None (use ``is_causal``; arbitrary masks need SDPA)
    dropout_p : must be 0.0
    is_causal : causal attention (requires L == S), via the paper's recursion
    scale : softmax scale, default ``E ** -0.5``
    enable_gqa : query head j reads key head ``j // (H / H_kv)``, as in SDPA
    lsh_num_projs : r, the number of hyperplanes (2^r buckets), 1..16
    block_size : keys per LSH block (b)
    sample_size : uniformly sampled keys per (batch, query head) and approximated block (m); 0 = blocks only
    min_seq_len : exact attention iff S <= min_seq_len (also the floor of the causal recursion)
    bucket_order : ``"gray"`` (default), ``"reference"`` (insuhan/hyper-attn's order) or ``"binary"``
    projections : (E, r) hyperplanes; default a cached matrix from ``torch.Generator().manual_seed(0)``
    generator : ``torch.Generator`` for the samples; default torch's global RNG (as dropout)
    return_lse : also return the fp32 natural-log normaliser, shape (..., L)

    Returns
    -------
    Tensor (..., L, E_v) in ``query``'s dtype, or ``(out, lse)`` when ``return_lse``.

    Example
    -------
    >>> import torch
    >>> q = torch.randn(1, 4, 16384, 64); k = v = torch.randn(1, 2, 16384, 64)
    >>> g = torch.Generator().manual_seed(0)
    >>> out, lse = hyper_attention(q, k, v, enable_gqa=True, generator=g, return_lse=True)
    >>> out.shape, lse.dtype
    (torch.Size([1, 4, 16384, 64]), torch.float32)
    """
    _validate_mask_dropout(attn_mask, dropout_p)
    check_bool("is_causal", is_causal)
    check_bool("enable_gqa", enable_gqa)
    check_bool("return_lse", return_lse)
    _validate_tensors(query, key, value, bool(enable_gqa), bool(is_causal))
    _validate_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
    scale = _validate_scale(scale)
    d = query.shape[-1]
    if projections is None:
        proj = default_projections(d, lsh_num_projs, dtype=query.dtype, device=query.device)
    else:
        if not isinstance(projections, torch.Tensor):
            raise TypeError(f"projections must be a torch.Tensor; got {type_name(projections)}")
        if tuple(projections.shape) != (d, lsh_num_projs):
            raise ValueError(f"projections must have shape ({d}, {lsh_num_projs}); got {tuple(projections.shape)}")
        proj = projections.to(dtype=query.dtype, device=query.device)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type_name(generator)}")
    if scale is None:
        scale = d ** -0.5

    three_d = query.ndim == 3
    if three_d:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    B, H, n_q, _ = query.shape
    Hk, n_k = key.shape[1], key.shape[-2]
    g = H // Hk

    if n_k <= min_seq_len:  # the exact path: SDPA itself when no LSE is asked for
        if not return_lse:
            out = F.scaled_dot_product_attention(query, key, value, is_causal=bool(is_causal), scale=scale,
                                                 enable_gqa=bool(enable_gqa) and g > 1)
            return out.squeeze(1) if three_d else out
    q5 = query.reshape(B, Hk, g, n_q, d)
    k5, v5 = key.unsqueeze(2), value.unsqueeze(2)
    if n_k <= min_seq_len:
        o, lse = _exact_grouped(q5, k5, v5, scale, bool(is_causal))
    elif is_causal:
        o, lse = _causal(q5, k5, v5, proj, scale, block_size, sample_size, min_seq_len, bucket_order, generator,
                         _mask_block_samples, _random_blocks)
    else:
        o, lse = _unmasked(q5, k5, v5, proj, scale, block_size, sample_size, bucket_order, generator,
                           _mask_block_samples, random_blocks=_random_blocks)
    o = o.reshape(B, H, n_q, value.shape[-1]).to(query.dtype)
    lse = lse.reshape(B, H, n_q)
    if three_d:
        o, lse = o.squeeze(1), lse.squeeze(1)
    return (o, lse) if return_lse else o


class HyperAttention(torch.nn.Module):
    """HyperAttention as an ``nn.Module`` with persistent LSH projections.

    The ``(head_dim, lsh_num_projs)`` projections are a persistent buffer drawn from ``seed``, so a
    reloaded model hashes identically. The module owns one sampling generator per device, seeded
    from ``seed`` (not saved); a ``generator`` passed to :meth:`forward` wins.

    Example
    -------
    >>> import torch
    >>> attn = HyperAttention(64, min_seq_len=2048)
    >>> q = k = v = torch.randn(1, 2, 8192, 64)
    >>> attn(q, k, v, is_causal=True).shape
    torch.Size([1, 2, 8192, 64])
    """

    def __init__(self, head_dim: int, *, lsh_num_projs=7, block_size=256, sample_size=256, min_seq_len=4096,
                 bucket_order="gray", seed=0):
        super().__init__()
        check_int("head_dim", head_dim, min_value=1)
        _validate_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
        check_int("seed", seed, min_value=0)
        self.head_dim = head_dim
        self.lsh_num_projs = lsh_num_projs
        self.block_size = block_size
        self.sample_size = sample_size
        self.min_seq_len = min_seq_len
        self.bucket_order = bucket_order
        self.seed = seed
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projections", torch.randn(head_dim, lsh_num_projs, generator=gen), persistent=True)
        self._generators: dict[str, torch.Generator] = {}

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, lsh_num_projs={self.lsh_num_projs}, block_size={self.block_size}, "
                f"sample_size={self.sample_size}, min_seq_len={self.min_seq_len}, "
                f"bucket_order={self.bucket_order!r}, seed={self.seed}")

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                enable_gqa=False, *, return_lse=False, generator=None):
        if isinstance(query, torch.Tensor) and query.ndim >= 1 and query.shape[-1] != self.head_dim:
            raise ValueError(f"query.shape[-1] must equal head_dim: expected {self.head_dim}, got {query.shape[-1]}")
        if generator is None and isinstance(query, torch.Tensor):
            generator = self._generator(query.device)
        return hyper_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                               lsh_num_projs=self.lsh_num_projs, block_size=self.block_size,
                               sample_size=self.sample_size, min_seq_len=self.min_seq_len,
                               bucket_order=self.bucket_order, projections=self.projections,
                               generator=generator, return_lse=return_lse)
