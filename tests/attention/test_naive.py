"""The dense reference itself, against SDPA (masks, causal, GQA) and a per-query loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.attention.naive import naive_attention


def _loop(q, k, v, scale, allowed):
    """One query at a time, one key at a time: the definition of softmax attention."""
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=torch.float64)
    lse = torch.full(q.shape[:-1], -math.inf, dtype=torch.float64)
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in q.shape[:-1]]).tolist():
        *lead, i = idx
        keys = [j for j in range(k.shape[-2]) if allowed[(*lead, i, j)]]
        if not keys:
            continue
        s = torch.tensor([float(q[(*lead, i)].double() @ k[(*lead, j)].double()) * scale for j in keys],
                         dtype=torch.float64)
        w = torch.exp(s - s.max())
        out[(*lead, i)] = sum(w[t] * v[(*lead, j)].double() for t, j in enumerate(keys)) / w.sum()
        lse[(*lead, i)] = s.max() + torch.log(w.sum())
    return out, lse


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 7), S=st.integers(1, 7), causal=st.booleans(), seed=st.integers(0, 10_000),
       masked=st.booleans())
def test_naive_equals_the_per_query_loop(L, S, causal, seed, masked):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(2, L, 3, generator=g), torch.randn(2, S, 3, generator=g), torch.randn(2, S, 2, generator=g)
    mask = torch.rand(2, L, S, generator=g) > 0.3 if masked else torch.ones(2, L, S, dtype=torch.bool)
    allowed = mask & (torch.ones(L, S, dtype=torch.bool).tril() if causal else True)
    out, lse = naive_attention(q, k, v, attn_mask=mask if masked else None, is_causal=causal, scale=0.8)
    ref_o, ref_l = _loop(q, k, v, 0.8, allowed)
    assert torch.allclose(out, ref_o, atol=1e-12) and torch.equal(torch.isinf(lse), torch.isinf(ref_l))
    assert torch.allclose(lse[torch.isfinite(lse)], ref_l[torch.isfinite(ref_l)], atol=1e-12)
    assert (out[torch.isinf(lse)] == 0).all()   # a row with no key: out 0, lse -inf


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_naive_equals_sdpa(causal, mask):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 6, 9, 8, generator=g)
    k, v = torch.randn(2, 3, 11, 8, generator=g), torch.randn(2, 3, 11, 5, generator=g)
    m = None
    if mask == "bool":
        m = torch.rand(2, 1, 9, 11, generator=g) > 0.2
        m[..., 0] = True  # every row keeps a key, so SDPA gives no NaN
    elif mask == "float":
        m = torch.randn(2, 6, 9, 11, generator=g)
    out, lse = naive_attention(q, k, v, attn_mask=m, is_causal=causal and mask is None, enable_gqa=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal and mask is None, enable_gqa=True)
    assert (out - ref.double()).abs().max() < 1e-5
    assert out.dtype == lse.dtype == torch.float64 and lse.shape == (2, 6, 9)


def test_naive_gradients_flow_through_out_and_lse():
    q, k, v = (torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: naive_attention(q, k, v, is_causal=True), (q, k, v))
