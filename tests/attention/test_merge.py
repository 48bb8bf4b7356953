import math

import pytest
import torch

from teraml.attention import exact_attention, merge_attention
from teraml.attention.naive import naive_attention


def _dense(q, k, v, scale=None, causal=False):
    return naive_attention(q, k, v, is_causal=causal, scale=scale)


def test_random_split_merges_to_full_attention():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 50, 16, generator=g)
    k = torch.randn(2, 3, 70, 16, generator=g)
    v = torch.randn(2, 3, 70, 8, generator=g)
    perm = torch.randperm(70, generator=g)
    a, b = perm[:23], perm[23:]
    o1, l1 = exact_attention(q, k[..., a, :], v[..., a, :])
    o2, l2 = exact_attention(q, k[..., b, :], v[..., b, :])
    o, lse = merge_attention(o1, l1, o2, l2)
    ref_o, ref_l = _dense(q, k, v)
    assert (o - ref_o).abs().max() < 1e-6
    assert (lse - ref_l).abs().max() < 1e-6
    assert lse.dtype == torch.float32


def test_minus_infinity_sides():
    o1 = torch.randn(4, 3)
    l1 = torch.tensor([0.5, -math.inf, 2.0, -math.inf])
    o2 = torch.randn(4, 3)
    l2 = torch.tensor([-math.inf, 1.0, 2.0, -math.inf])
    o, lse = merge_attention(o1, l1, o2, l2)
    assert torch.isfinite(o).all()
    assert torch.equal(o[0], o1[0]) and torch.equal(o[1], o2[1])
    assert torch.allclose(o[2], (o1[2] + o2[2]) / 2)
    assert torch.equal(o[3], torch.zeros(3)) and lse[3] == -math.inf
    assert lse[2] == pytest.approx(2.0 + math.log(2.0))


def test_merge_gradients_are_finite_with_minus_infinity():
    o1 = torch.randn(3, 2, requires_grad=True)
    o2 = torch.randn(3, 2, requires_grad=True)
    l1 = torch.tensor([0.0, -math.inf, -math.inf], requires_grad=True)
    l2 = torch.tensor([-math.inf, 1.0, -math.inf], requires_grad=True)
    o, lse = merge_attention(o1, l1, o2, l2)
    (o.sum() + lse[:2].sum()).backward()
    for t in (o1, o2, l1, l2):
        assert torch.isfinite(t.grad).all()


def test_no_cap_on_lse_difference():
    """The reference's lse1 - log(sigmoid(lse1 - lse2) + eps) caps the result at lse1 + 15.9."""
    o1, o2 = torch.zeros(1, 2), torch.ones(1, 2)
    l1, l2 = torch.tensor([0.0]), torch.tensor([40.0])
    o, lse = merge_attention(o1, l1, o2, l2)
    assert lse.item() == pytest.approx(40.0, abs=1e-5)
    assert torch.allclose(o, torch.ones(1, 2))


def test_merge_is_fp32_for_bf16():
    o1 = torch.randn(5, 4).bfloat16()
    o2 = torch.randn(5, 4).bfloat16()
    l1, l2 = torch.randn(5) * 30, torch.randn(5) * 30
    o, lse = merge_attention(o1, l1, o2, l2)
    assert o.dtype == torch.bfloat16 and lse.dtype == torch.float32
    w1 = torch.sigmoid(l1 - l2)[:, None]
    ref = w1 * o1.float() + (1 - w1) * o2.float()
    assert (o.float() - ref).abs().max() < 2e-2


def test_merge_validation():
    with pytest.raises(TypeError, match="out1 must be a torch.Tensor; got numpy.ndarray"):
        import numpy as np

        merge_attention(np.zeros((1, 2)), torch.zeros(1), torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match=r"out2.shape must equal out1.shape: expected \(1, 2\), got \(1, 3\)"):
        merge_attention(torch.zeros(1, 2), torch.zeros(1), torch.zeros(1, 3), torch.zeros(1))
    with pytest.raises(ValueError, match=r"lse1 and lse2 must have shape"):
        merge_attention(torch.zeros(1, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1))


@pytest.mark.parametrize("causal", [False, True])
def test_exact_attention_with_lse_and_its_gradients(causal):
    """Pitfall 8: fused kernels return a non-differentiable LSE; ours carries gradients through it."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def f(q, k, v):
        return exact_attention(q, k, v, causal=causal, scale=0.7)

    assert torch.autograd.gradcheck(f, (q, k, v))
    o, lse = f(q, k, v)
    ro, rl = _dense(q, k, v, 0.7, causal)
    assert (o - ro).abs().max() < 1e-10 and (lse - rl).abs().max() < 1e-10


def test_exact_attention_fp32_lse_gradient_matches_dense():
    g = torch.Generator().manual_seed(2)
    q, k = (torch.randn(2, 40, 16, generator=g, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 40, 16, generator=g, requires_grad=True)
    o, lse = exact_attention(q, k, v, causal=True)
    w = torch.randn(lse.shape, generator=g)
    (lse * w).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ro, rl = _dense(q, k, v, causal=True)
    (rl * w).sum().backward()
    for a, t in zip(grads, (q, k)):
        assert (a - t.grad).abs().max() < 1e-5
    assert v.grad is None and grads[2].abs().max() == 0  # lse does not depend on v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dv", [16, 24])
def test_exact_attention_fp32_gradients_through_out_and_lse(causal, dv):
    """The fused CPU backward (with the d_lse column trick) equals autograd through dense attention."""
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(2, 3, 70, 16, generator=g, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 3, 70, dv, generator=g, requires_grad=True)
    wo = torch.randn(2, 3, 70, dv, generator=g)
    wl = torch.randn(2, 3, 70, generator=g)
    o, lse = exact_attention(q, k, v, causal=causal)
    ((o * wo).sum() + (lse * wl).sum()).backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ro, rl = _dense(q, k, v, causal=causal)
    ((ro * wo).sum() + (rl * wl).sum()).backward()
    for a, t in zip(grads, (q, k, v)):
        assert (a - t.grad).abs().max() < 1e-4
