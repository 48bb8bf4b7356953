"""Unmasked HyperAttention (no causal mask): sort-LSH blocks plus uniformly sampled keys, in one softmax.

For each (batch, key head), queries and keys are sorted by an angular LSH; query block t attends exactly to
key block t, and every query also attends to ``sample_size`` keys drawn uniformly (with replacement) from the
whole sequence, reweighted by ``n_k / m`` and masked where the sampled key already lies in the query's own
block, so each off-block key is counted once in expectation. Padded keys get weight 0.

A key bias (a key-padding mask: -inf for a masked key, or an additive float per key) is honoured exactly:
a masked key is left out of its block and never sampled (samples are uniform over each row's valid keys,
reweighted by n_valid / m), and a finite bias enters every score of its key, so the estimate stays unbiased
over the unmasked keys. A row with no valid key gets o = 0 and lse = -inf.

Two implementations compute the same thing (chosen by ``Variant.unmasked``):

* ``_unmasked_fused``: inference through torch's fused attention kernels; the per-key log-weights enter as
  extra head dimensions, so no score matrix is materialised;
* the chunked matmul kernels ``_chunk_fast`` (in-place softmax, no autograd) and ``_chunk_grad`` (autograd).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from teraml.attention._config import HyperConfig
from teraml.attention._gather import flat_index, gather_rows, scatter_rows
from teraml.attention._merge import fused_forward
from teraml.attention.lsh import sort_lsh

__all__ = ["unmasked_attention"]

# scores (fp32 elements) materialised at once in the unmasked kernel; larger problems are chunked.
# On CPU a chunk that stays in cache is faster; on GPU larger chunks mean fewer kernel launches.
_SCORE_BUDGET = 1 << 26
_SCORE_BUDGET_CPU = 1 << 22
_FUSED_BUDGET = 1 << 27  # elements of the gathered q', k', v' of one chunk on GPU


def _acc(x: torch.Tensor) -> torch.Tensor:
    """Scores, weights and sums in fp32 at least (fp64 stays fp64): 16-bit inputs are upcast before the
    products, so no score is rounded to 16 bits."""
    return x if x.dtype == torch.float64 else x.float()


@dataclasses.dataclass
class _Plan:
    """What both kernels need besides q, k, v: the sort, the blocks, the samples and their weights.

    ``sample_idx`` (*L,Hk,g,m) are positions in sorted key order; ``log_w`` is ln(n_k / m) (a float) or,
    with a key bias, per sample ln(n_valid / m) + the sampled key's bias, -inf where a row has no valid
    key; ``bias`` (*L,Hk,g,n_k) is the key bias in sorted key order, or None."""

    perm_q: torch.Tensor
    perm_k: torch.Tensor
    b: int
    m: int
    sample_idx: torch.Tensor | None
    log_w: float | torch.Tensor
    bias: torch.Tensor | None
    mask_samples: bool

    def heads(self, hs: slice) -> _Plan:
        """The plan of a slice of key heads."""
        def cut(t, nd):
            return None if t is None else t[(..., hs) + (slice(None),) * nd]

        return dataclasses.replace(self, perm_q=cut(self.perm_q, 2), perm_k=cut(self.perm_k, 2),
                                   sample_idx=cut(self.sample_idx, 2),
                                   log_w=self.log_w if isinstance(self.log_w, float) else cut(self.log_w, 2),
                                   bias=cut(self.bias, 2))


def _weights_of(plan: _Plan, dims: int):
    """The sample log-weights shaped to add to scores (*L,Hk,g, *[1]*dims, m), or the float."""
    if isinstance(plan.log_w, float):
        return plan.log_w
    return plan.log_w.view(*plan.log_w.shape[:-1], *([1] * dims), plan.log_w.shape[-1])


def _chunk_fast(qc, kc, vc, k_smp, v_smp, pad_last, log_w, own, blk_bias=None):
    """Blocks + samples for a chunk of blocks without autograd: in-place softmax, no concatenation."""
    masked = blk_bias is not None or torch.is_tensor(log_w)
    qc = _acc(qc)
    s_blk = qc @ _acc(kc).transpose(-1, -2)                           # (.., c, bq, b); q already scaled
    if blk_bias is not None:
        s_blk.add_(blk_bias)
    if pad_last:
        s_blk[..., -1, :, s_blk.shape[-1] - pad_last:] = -math.inf
    mx = s_blk.amax(-1, keepdim=True)
    if k_smp is not None:
        s_smp = (qc @ _acc(k_smp).transpose(-1, -2)).add_(log_w)      # (.., c, bq, m)
        if own is not None:
            s_smp.masked_fill_(own, -math.inf)
        mx = torch.maximum(mx, s_smp.amax(-1, keepdim=True))
    if masked:  # a row may have no valid key: keep its arithmetic finite, then give it o = 0, lse = -inf
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    den = s_blk.sub_(mx).exp_().sum(-1, keepdim=True)
    o = s_blk @ _acc(vc)
    if k_smp is not None:
        den += s_smp.sub_(mx).exp_().sum(-1, keepdim=True)
        o = o + s_smp @ _acc(v_smp)
    if masked:
        empty = den == 0
        den = torch.where(empty, torch.ones_like(den), den)
        lse = torch.where(empty, -math.inf, mx + torch.log(den))
        return (o / den).to(vc.dtype), lse.squeeze(-1)
    return (o / den).to(vc.dtype), (mx + torch.log(den)).squeeze(-1)


def _chunk_grad(qc, kc, vc, k_smp, v_smp, pad_last, log_w, own, blk_bias=None):
    """The same computation with out-of-place ops, so autograd sees every step."""
    qc = _acc(qc)
    s_blk = qc @ _acc(kc).transpose(-1, -2)
    if blk_bias is not None:
        s_blk = s_blk + blk_bias
    if pad_last:
        keep = torch.ones(s_blk.shape[-3:], dtype=torch.bool, device=s_blk.device)
        keep[-1, :, s_blk.shape[-1] - pad_last:] = False
        s_blk = s_blk.masked_fill(~keep, -math.inf)
    if k_smp is not None:
        s_smp = qc @ _acc(k_smp).transpose(-1, -2) + log_w
        if own is not None:
            s_smp = s_smp.masked_fill(own, -math.inf)
        s = torch.cat([s_blk, s_smp], dim=-1)
    else:
        s = s_blk
    b = kc.shape[-2]
    if blk_bias is not None or torch.is_tensor(log_w):  # rows with no valid key: o = 0, lse = -inf, no NaN
        empty = ~torch.isfinite(s).any(-1, keepdim=True)
        s = s.masked_fill(empty, 0.0)
        lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - lse.unsqueeze(-1)).masked_fill(empty, 0.0)
        lse = lse.masked_fill(empty.squeeze(-1), -math.inf)
    else:
        lse = torch.logsumexp(s, dim=-1)                               # never -inf: each block has a real key
        p = torch.exp(s - lse.unsqueeze(-1))
    o = p[..., :b] @ _acc(vc)
    if k_smp is not None:
        o = o + p[..., b:] @ _acc(v_smp)
    return o.to(vc.dtype), lse


def _unmasked_fused_split(q, k, v, scale, plan: _Plan, budget):
    """:func:`_unmasked_fused` over groups of key heads, so that its padded copies stay within ``budget``
    elements."""
    *L, Hk, g, n_q, d = q.shape
    n_k = k.shape[-2]
    n_lead = math.prod(L)
    total = n_lead * Hk * (2 * n_k + g * n_q) * (d + 8)
    parts = min(Hk, -(-total // budget))
    if parts <= 1:
        return _unmasked_fused(q, k, v, scale, plan)
    step = -(-Hk // parts)
    out = q.new_empty(*L, Hk, g, n_q, v.shape[-1])
    lse = torch.empty(*L, Hk, g, n_q, dtype=torch.float32, device=q.device)
    for h0 in range(0, Hk, step):
        hs = slice(h0, min(Hk, h0 + step))
        res = _unmasked_fused(q[..., hs, :, :, :], k[..., hs, :, :, :], v[..., hs, :, :, :], scale, plan.heads(hs))
        if res is None:
            return None
        out[..., hs, :, :, :] = res[0]
        lse[..., hs, :, :] = res[1]
    return out, lse


def _unmasked_fused(q, k, v, scale, plan: _Plan):
    """Inference path of the unmasked kernel through torch's fused attention (no score matrix in memory).

    Each block's key set is its b sorted keys followed by the m samples. Per-key log-weights (a key's
    bias for block keys, ln(n_valid/m) + bias for samples) enter as extra head dimensions:
    q' = [q, 1, c, ...], k' = [k, w, p, ...], so q'.k' = q.k + w + c p (16-bit dtypes split w into
    w_hi + w_lo to keep it accurate). A masked key (a pad key, a key of bias -inf, a sample inside the
    query's own block) has p = -1 (0 otherwise), and c_i = 2 |q_i| max_j |k_j| + (100 + span) / scale with
    span the range of the finite weights, so its score lies at least 100 below every real score of row i,
    whatever the logits: exp() gives exactly 0. Rows are gathered chunk by chunk straight from the inputs
    and outputs are scattered straight into the result, so memory stays at inputs + output + one chunk.
    Returns None when no fused kernel applies.
    """
    perm_q, perm_k, b, m, sample_idx = plan.perm_q, plan.perm_k, plan.b, plan.m, plan.sample_idx
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    dev, dt = q.device, q.dtype
    n_lead = math.prod(L)
    nb = -(-n_k // b)
    bq = -(-n_q // nb)
    pad_k, pad_q = nb * b - n_k, nb * bq - n_q
    extra = 1 if dt == torch.float32 else 2
    pen = d + extra                                           # the penalty column
    width = -(-max(pen + 1, dv) // 8) * 8
    # padded key/value sources, built once per call: k' = [k, 0...], v' = [v, 0...]
    kf = k.new_empty(n_lead * Hk * n_k, width)
    kf[:, d:] = 0
    kf.view(*L, Hk, 1, n_k, width)[..., :d].copy_(k)          # straight from (possibly strided) views
    vf = v.new_empty(n_lead * Hk * n_k, width)
    vf[:, dv:] = 0
    vf.view(*L, Hk, 1, n_k, width)[..., :dv].copy_(v)
    # the range of the finite log-weights (0 for plain block keys), for the penalty margin
    finite = [torch.zeros((), device=dev)]
    for w in (plan.bias, plan.log_w if torch.is_tensor(plan.log_w) else None):
        if w is not None:
            f = w[torch.isfinite(w)]
            if f.numel():
                finite += [f.min().float(), f.max().float()]
    if isinstance(plan.log_w, float) and m > 0:
        finite.append(torch.tensor(plan.log_w, device=dev))
    span = float(torch.stack(finite).max() - torch.stack(finite).min())
    # queries sorted once per call into q' = [q, 1 (x extra), c, 0...], padded to whole blocks
    qs = q.new_empty(*L, Hk, g, nb * bq, width)
    qs[..., :n_q, :d] = torch.gather(q, -2, perm_q.unsqueeze(-1).expand(*perm_q.shape, d))
    if pad_q:
        qs[..., n_q:, :d] = 0
    qs[..., d:pen] = 1
    # c_i: with p = -1 a masked key's score is >= 100 below every real score of the row (|q.k| <= |q| max|k|
    # on both sides), so no masked row needs its k or w rewritten
    k_max = k.float().norm(dim=-1).amax(-1, keepdim=True)                       # (*L, Hk, 1, 1)
    margin = torch.gather(q.float().norm(dim=-1), -1, perm_q) * (2.0 * k_max) + (100.0 + span) / scale
    qs[..., :n_q, pen] = margin.clamp(max=60000.0) if dt == torch.float16 else margin
    if pad_q:
        qs[..., n_q:, pen] = 0
    if pen + 1 < width:
        qs[..., pen + 1:] = 0
    qs = qs.view(*L, Hk, g, nb, bq, width)
    if pad_q:
        perm_q = F.pad(perm_q, (0, pad_q))      # pad rows read row 0; their outputs are dropped
    if pad_k:
        perm_k = F.pad(perm_k, (0, pad_k))      # pad keys read row 0 and get the penalty below
    fq = flat_index(tuple(perm_q.shape[:-1]), list(perm_q.shape[:-1]), n_q, perm_q)
    fq = fq.view(*L, Hk, g, nb, bq)
    fk = flat_index(tuple(perm_k.shape[:-1]), list(perm_k.shape[:-1]), n_k, perm_k).view(*L, Hk, 1, nb, b)

    def put_weights(cols, w):  # log-weights w (a float or a tensor) as the extra key column(s), /scale
        if torch.is_tensor(w):
            bad = ~torch.isfinite(w)
            w = torch.where(bad, torch.zeros_like(w), w) / scale
            cols[..., pen] = torch.where(bad, -1.0, cols[..., pen].float()).to(dt)
        else:
            w = w / scale
        if extra == 1:
            cols[..., d] = w
            return
        hi = (w.to(dt).float() if torch.is_tensor(w) else float(torch.tensor(w, dtype=dt).float()))
        cols[..., d] = hi
        cols[..., d + 1] = w - hi

    blk_bias = None
    valid_blk = None
    if plan.bias is not None:
        blk_bias = F.pad(plan.bias, (0, pad_k), value=-math.inf).view(*L, Hk, g, nb, b) if pad_k else \
            plan.bias.view(*L, Hk, g, nb, b)
        valid_blk = torch.isfinite(blk_bias).any(-1)                             # (*L,Hk,g,nb)
    if m > 0:
        orig = torch.gather(perm_k[..., :n_k].expand(*L, Hk, g, n_k), -1, sample_idx)
        fs = flat_index((*L, Hk, 1), [*L, Hk, g], n_k, orig)
        # the samples of each (batch, query head), gathered once and broadcast to every block
        smp_k = kf.index_select(0, fs).view(*L, Hk, g, 1, m, width)
        smp_v = vf.index_select(0, fs).view(*L, Hk, g, 1, m, width)
        put_weights(smp_k, _weights_of(plan, 1))
        smp_block = torch.div(sample_idx, b, rounding_mode="floor")             # (*L,Hk,g,m)
        smp_valid = torch.isfinite(plan.log_w) if torch.is_tensor(plan.log_w) else None   # with a key bias
    out = torch.empty(n_lead * Hk * g * n_q, dv, dtype=dt, device=dev)
    lse_out = torch.empty(n_lead * Hk * g * n_q, dtype=torch.float32, device=dev)
    n_keys = b + m
    per_block = n_lead * Hk * g * (bq + 2 * n_keys) * width
    budget = _SCORE_BUDGET_CPU if dev.type == "cpu" else _FUSED_BUDGET
    step = max(1, min(nb, budget // max(1, per_block)))
    for t0 in range(0, nb, step):
        t1 = min(nb, t0 + step)
        c = t1 - t0
        valid = min(c * bq, n_q - t0 * bq)        # real query rows in this chunk (blocks past n_q have none)
        if valid <= 0:
            break
        rows = n_lead * Hk * g * c
        qi = fq[..., t0:t1, :]                                                    # (*L,Hk,g,c,bq)
        q2 = qs[..., t0:t1, :, :].reshape(rows, 1, bq, width)   # a view when one chunk covers all blocks
        k2 = q.new_empty(*L, Hk, g, c, n_keys, width)
        v2 = q.new_empty(*L, Hk, g, c, n_keys, width)
        blk = fk[..., t0:t1, :].reshape(-1)
        k2[..., :b, :] = kf.index_select(0, blk).view(*L, Hk, 1, c, b, width)    # shared by the group
        v2[..., :b, :] = vf.index_select(0, blk).view(*L, Hk, 1, c, b, width)
        if blk_bias is not None:
            put_weights(k2[..., :b, :], blk_bias[..., t0:t1, :])
        own = None
        if m > 0:
            k2[..., b:, :] = smp_k
            v2[..., b:, :] = smp_v
            if plan.mask_samples:
                own = smp_block.unsqueeze(-2) == torch.arange(t0, t1, device=dev).view(-1, 1)   # (*L,Hk,g,c,m)
                k2[..., b:, pen].masked_fill_(own, -1.0)
        if pad_k and t1 == nb:
            k2[..., -1, b - pad_k:b, pen] = -1.0
        k2 = k2.view(rows, 1, n_keys, width)
        v2 = v2.view(rows, 1, n_keys, width)
        res = fused_forward(q2, k2, v2, scale, False)   # the kernel scales q.k and the weight columns alike
        if res is None:
            return None
        o, lse = res
        if valid_blk is not None:
            # a block whose keys are all masked, with no usable sample: its rows have no valid key
            alive = valid_blk[..., t0:t1]
            if m > 0:
                usable = smp_valid.unsqueeze(-2)
                alive = alive | (usable & ~own if own is not None else usable).any(-1)
            dead = ~alive.reshape(rows, 1, 1)
            o = o.masked_fill(dead.unsqueeze(-1), 0.0)
            lse = lse.masked_fill(dead, -math.inf)
        o = o[..., :dv].reshape(n_lead * Hk * g, c * bq, dv)
        lse = lse.reshape(n_lead * Hk * g, c * bq)
        qi = qi.reshape(n_lead * Hk * g, c * bq)
        if valid < c * bq:
            o, lse, qi = o[:, :valid], lse[:, :valid], qi[:, :valid]
        idx = qi.reshape(-1)
        out.index_copy_(0, idx, o.reshape(-1, dv).to(dt))
        lse_out.index_copy_(0, idx, lse.reshape(-1).float())
    return out.view(*L, Hk, g, n_q, dv), lse_out.view(*L, Hk, g, n_q)


def _sample(perm_k, key_bias, n_k, m, shape, generator, device):
    """``m`` samples per row of ``shape`` (*L,Hk,g), uniform over the row's valid keys: (positions in sorted
    key order, log-weights, the key bias in sorted order). Without a bias: uniform over all n_k keys, weight
    ln(n_k / m), exactly as before masks existed (same draws from ``generator``)."""
    if key_bias is None:
        idx = torch.randint(0, n_k, (*shape, m), generator=generator, device=device) if m > 0 else None
        return idx, math.log(n_k / m) if m > 0 else 0.0, None
    bias = torch.gather(key_bias, -1, perm_k.expand(*shape, n_k))               # sorted key order
    if m == 0:
        return None, 0.0, bias
    valid = torch.isfinite(bias)
    count = valid.sum(-1, keepdim=True)                                          # (*L,Hk,g,1)
    if bool(valid.all()):
        idx = torch.randint(0, n_k, (*shape, m), generator=generator, device=device)
    else:
        u = (torch.rand(*shape, m, generator=generator, device=device) * count).long()
        cum = torch.cumsum(valid, dim=-1)
        idx = torch.searchsorted(cum, u + 1).clamp_(max=n_k - 1)                 # the u-th valid key
    log_w = torch.log(count.to(bias.dtype) / m) + torch.gather(bias, -1, idx)
    log_w = log_w.masked_fill(count == 0, -math.inf)
    return idx, log_w, bias


def unmasked_attention(q, k, v, cfg: HyperConfig, sample_idx=None, key_bias=None):
    """Unmasked HyperAttention on the grouped layout; returns (o (*L,Hk,g,nq,dv), lse fp32 (*L,Hk,g,nq)).

    q is (*L, Hk, g, nq, d) and k, v are (*L, Hk, 1, nk, e) for any leading batch dims L (views are
    fine). ``sample_idx`` (*L,Hk,g,m) fixes the samples (positions in sorted key order; without a key
    bias). ``key_bias`` (*L,Hk,g,nk), float with -inf for masked keys, is added to every score of its key.
    ``cfg.variant`` chooses the blocks (LSH or random permutations), the in-block sample mask and the kernel.
    """
    proj, scale, generator, variant = cfg.proj, cfg.scale, cfg.generator, cfg.variant
    *L, Hk, g, n_q, d = q.shape
    n_k, dv = k.shape[-2], v.shape[-1]
    n_lead = math.prod(L)
    if variant.blocks == "random":
        perm_q = torch.argsort(torch.rand(q.shape[:-1], generator=generator, device=q.device), dim=-1)
        perm_k = torch.argsort(torch.rand(k.shape[:-1], generator=generator, device=q.device), dim=-1)
    else:
        perm_q = sort_lsh(q, proj, cfg.bucket_order)      # (B,Hk,g,nq)
        perm_k = sort_lsh(k, proj, cfg.bucket_order)      # (B,Hk,1,nk): keys sorted once per key head
    b = min(cfg.block_size, n_k)
    nb = -(-n_k // b)
    bq = -(-n_q // nb)
    m = cfg.sample_size
    if sample_idx is not None and key_bias is None:
        plan = _Plan(perm_q, perm_k, b, m, sample_idx, math.log(n_k / m) if m > 0 else 0.0, None,
                     variant.mask_block_samples)
    else:
        idx, log_w, bias = _sample(perm_k, key_bias, n_k, m, (*L, Hk, g), generator, q.device)
        plan = _Plan(perm_q, perm_k, b, m, idx, log_w, bias, variant.mask_block_samples)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not grad and variant.unmasked == "fused" and q.dtype != torch.float64:
        res = _unmasked_fused_split(q, k, v, scale, plan, variant.source_budget)
        if res is not None:
            return res
    qs = gather_rows(_acc(q) * scale, perm_q)        # the scale folded into q: n*d multiplies, not n*(b+m)
    ks = gather_rows(k, perm_k)
    vs = gather_rows(v, perm_k)
    pad_k, pad_q = nb * b - n_k, nb * bq - n_q
    if pad_k:
        ks = F.pad(ks, (0, 0, 0, pad_k))
        vs = F.pad(vs, (0, 0, 0, pad_k))
    if pad_q:
        qs = F.pad(qs, (0, 0, 0, pad_q))
    qb = qs.view(*L, Hk, g, nb, bq, d)
    kb = ks.view(*L, Hk, 1, nb, b, d)
    vb = vs.view(*L, Hk, 1, nb, b, dv)
    blk_bias = None
    if plan.bias is not None:
        bias = F.pad(plan.bias, (0, pad_k), value=-math.inf) if pad_k else plan.bias
        blk_bias = bias.view(*L, Hk, g, nb, 1, b)                               # broadcast over a block's rows

    k_smp = v_smp = None
    log_w = plan.log_w
    if m > 0:
        k_smp = gather_rows(ks, plan.sample_idx).unsqueeze(-3)      # (*L,Hk,g,1,m,d)
        v_smp = gather_rows(vs, plan.sample_idx).unsqueeze(-3)      # (*L,Hk,g,1,m,dv)
        log_w = _weights_of(plan, 2)
        smp_block = torch.div(plan.sample_idx, b, rounding_mode="floor")  # (*L,Hk,g,m)

    # chunk the block axis so that at most _SCORE_BUDGET scores exist at once
    per_block = n_lead * Hk * g * bq * (b + m)
    budget = _SCORE_BUDGET_CPU if q.device.type == "cpu" else _SCORE_BUDGET
    step = max(1, min(nb, budget // max(1, per_block)))
    chunk = _chunk_grad if grad else _chunk_fast
    outs, lses = [], []
    for t0 in range(0, nb, step):
        t1 = min(nb, t0 + step)
        own = None
        if m > 0 and plan.mask_samples:  # (*L,Hk,g,c,1,m): broadcast over the rows of each block
            own = (smp_block.unsqueeze(-2) == torch.arange(t0, t1, device=q.device).view(-1, 1)).unsqueeze(-2)
        o, lse = chunk(qb[..., t0:t1, :, :], kb[..., t0:t1, :, :], vb[..., t0:t1, :, :], k_smp, v_smp,
                       pad_k if t1 == nb else 0, log_w, own,
                       None if blk_bias is None else blk_bias[..., t0:t1, :, :])
        outs.append(o)
        lses.append(lse)
    o = (torch.cat(outs, dim=-3) if len(outs) > 1 else outs[0]).reshape(*L, Hk, g, nb * bq, dv)
    lse = (torch.cat(lses, dim=-2) if len(lses) > 1 else lses[0]).reshape(*L, Hk, g, nb * bq)
    if pad_q:
        o, lse = o[..., :n_q, :], lse[..., :n_q]
    o = scatter_rows(o.contiguous(), perm_q)
    lse = scatter_rows(lse.unsqueeze(-1).contiguous(), perm_q).squeeze(-1)
    return o, lse
