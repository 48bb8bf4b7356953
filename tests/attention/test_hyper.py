import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.attention import HyperAttention, hyper_attention
from teraml.attention._config import HyperConfig
from teraml.attention._dispatch import Variant, hyper_forward
from teraml.attention._unmasked import unmasked_attention
from teraml.attention.lsh import bucket_rank, default_projections, order_table, sort_lsh
from teraml.attention.naive import naive_attention
from teraml.datasets import make_attention_qkv


def rnd(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def dense(q, k, v, causal=False):
    return naive_attention(q, k, v, is_causal=causal)


# ---------------------------------------------------------------- T1, T2: exact regimes


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("gqa", [False, True])
def test_t1_exact_at_or_below_min_seq_len(causal, gqa):
    hq, hk = (4, 2) if gqa else (2, 2)
    q, k, v = rnd(2, hq, 300, 32, seed=1), rnd(2, hk, 300, 32, seed=2), rnd(2, hk, 300, 32, seed=3)
    out = hyper_attention(q, k, v, is_causal=causal, enable_gqa=gqa, min_seq_len=300)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    assert (out - ref).abs().max() <= 1e-5
    out2, lse = hyper_attention(q, k, v, is_causal=causal, enable_gqa=gqa, min_seq_len=300, return_lse=True)
    ke = k.repeat_interleave(hq // hk, 1)
    ve = v.repeat_interleave(hq // hk, 1)
    _, ref_lse = dense(q, ke, ve, causal)
    assert (out2 - ref).abs().max() <= 1e-5
    assert (lse.double() - ref_lse).abs().max() <= 1e-5
    assert lse.dtype == torch.float32 and lse.shape == (2, hq, 300)


def test_t1_three_d_inputs():
    q, k, v = rnd(3, 100, 16), rnd(3, 100, 16, seed=1), rnd(3, 100, 8, seed=2)
    out, lse = hyper_attention(q, k, v, return_lse=True)
    assert out.shape == (3, 100, 8) and lse.shape == (3, 100)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() < 1e-5


@pytest.mark.parametrize("causal", [False, True])
def test_t1_gradients_equal_sdpa(causal):
    q, k, v = (rnd(1, 2, 200, 16, seed=s).requires_grad_() for s in range(3))
    out, lse = hyper_attention(q, k, v, is_causal=causal, min_seq_len=256, return_lse=True)
    w = rnd(*out.shape, seed=9)
    (out * w).sum().backward()
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (F.scaled_dot_product_attention(q, k, v, is_causal=causal) * w).sum().backward()
    for a, t in zip(ours, (q, k, v)):
        assert (a - t.grad).abs().max() <= 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_t2_one_block_is_exact(causal):
    """block_size >= n_k: the only block holds every key and every sample is masked."""
    q, k, v = rnd(1, 2, 500, 16), rnd(1, 2, 500, 16, seed=1), rnd(1, 2, 500, 16, seed=2)
    out, lse = hyper_attention(q, k, v, is_causal=causal, min_seq_len=100, block_size=1000, sample_size=64,
                               generator=gen(), return_lse=True)
    ref, ref_lse = dense(q, k, v, causal)
    assert (out.double() - ref).abs().max() <= 1e-5
    assert (lse.double() - ref_lse).abs().max() <= 1e-4


# ---------------------------------------------------------------- T3: dense oracle


@pytest.mark.parametrize("n_q, n_k, b, dv", [(1024, 1024, 128, 16), (1000, 1000, 128, 16), (700, 1100, 128, 24)])
def test_t3_dense_oracle(n_q, n_k, b, dv):
    m, d = 64, 16
    q = rnd(1, 2, n_q, d, seed=1, dtype=torch.float64)
    k = rnd(1, 2, n_k, d, seed=2, dtype=torch.float64)
    v = rnd(1, 2, n_k, dv, seed=3, dtype=torch.float64)
    P = default_projections(d, 7, dtype=torch.float64)
    sample_idx = torch.randint(0, n_k, (1, 2, 1, m), generator=gen(5))
    q5, k5, v5 = q.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2)
    scale = d ** -0.5
    out, lse = unmasked_attention(q5.reshape(1, 2, 1, n_q, d), k5, v5, HyperConfig(P, scale, b, m, 1, "gray"),
                                  sample_idx=sample_idx)
    out, lse = out.reshape(1, 2, n_q, dv), lse.reshape(1, 2, n_q)
    nb = -(-n_k // b)
    bq = -(-n_q // nb)
    for h in range(2):
        pq = sort_lsh(q[0, h], P)
        pk = sort_lsh(k[0, h], P)
        pos_q = torch.empty_like(pq)
        pos_q[pq] = torch.arange(n_q)
        pos_k = torch.empty_like(pk)
        pos_k[pk] = torch.arange(n_k)
        M = (pos_q[:, None] // bq) == (pos_k[None, :] // b)
        C = torch.bincount(pk[sample_idx[0, h, 0]], minlength=n_k).double()
        A = torch.exp(q[0, h] @ k[0, h].T * scale)
        W = A * M + (n_k / m) * A * C[None, :] * (~M)
        ref = (W @ v[0, h]) / W.sum(-1, keepdim=True)
        assert ((out[0, h] - ref).abs() / ref.abs().clamp_min(1e-3)).max() <= 1e-5
        assert (lse[0, h] - torch.log(W.sum(-1))).abs().max() <= 1e-8


def test_t3_pad_keys_get_zero_weight():
    """Pitfall 3: the reference zero-pads keys, adding e^0 to denominators; ours masks them."""
    n, b = 1000, 128  # 1000 = 7 * 128 + 104: the last block has 24 pad keys
    q = rnd(1, 1, n, 16, seed=1, dtype=torch.float64) * 0.1
    k = rnd(1, 1, n, 16, seed=2, dtype=torch.float64) * 0.1
    v = rnd(1, 1, n, 8, seed=3, dtype=torch.float64)
    _, lse_blocks = hyper_attention(q, k, v, min_seq_len=1, block_size=b, sample_size=0, return_lse=True)
    # with m = 0, e^lse is the sum over the block's *real* keys: at most b of them, tiny logits
    P = default_projections(16, 7, dtype=torch.float64)
    pq, pk = sort_lsh(q[0, 0], P), sort_lsh(k[0, 0], P)
    bq = -(-n // 8)
    last_q = pq[7 * bq:]
    real_last = pk[7 * b:]
    expect = torch.logsumexp(q[0, 0, last_q] @ k[0, 0, real_last].T / 4, -1)
    assert (lse_blocks[0, 0, last_q] - expect).abs().max() < 1e-10


# ---------------------------------------------------------------- T4: unbiasedness


def _t4(seeds, mask=True):
    n, b, m = 1024, 128, 64
    q, k, v = rnd(1, 1, n, 32, seed=11), rnd(1, 1, n, 32, seed=12), rnd(1, 1, n, 32, seed=13)
    qb, kb, vb = (t.expand(seeds, 1, n, 32) for t in (q, k, v))
    out, lse = hyper_forward(qb, kb, vb, min_seq_len=256, block_size=b, sample_size=m, generator=gen(0),
                             return_lse=True, variant=Variant(mask_block_samples=mask))
    ref_o, ref_lse = dense(q, k, v)
    est_den = torch.exp(lse.double()).mean(0)[0]
    true_den = torch.exp(ref_lse[0, 0])
    est_num = (torch.exp(lse.double())[..., None] * out.double()).mean(0)[0]
    true_num = true_den[:, None] * ref_o[0, 0]
    ratio = est_den / true_den
    num_err = (est_num - true_num).norm() / true_num.norm()
    return ratio, num_err


def test_t4_unbiased_numerator_and_denominator():
    ratio, num_err = _t4(200)
    assert (ratio - 1).abs().max() <= 0.06, (ratio - 1).abs().max()
    assert num_err <= 0.25


def test_t4_unmasked_samples_double_count():
    """Pitfall 1: without the in-block mask (the reference's CPU and flash paths) denominators are too high."""
    ratio, _ = _t4(200, mask=False)
    assert ratio.mean() >= 1.1


@pytest.mark.slow
def test_t4_full_400_seeds():
    ratio, num_err = _t4(400)
    assert (ratio - 1).abs().max() <= 0.06 and num_err <= 0.25


# ---------------------------------------------------------------- T5: causality


def test_t5_causality_bit_identical():
    n, t = 2048, 1300
    q, k, v = rnd(1, 2, n, 32, seed=1), rnd(1, 2, n, 32, seed=2), rnd(1, 2, n, 32, seed=3)
    kw = dict(is_causal=True, min_seq_len=256, block_size=64, sample_size=32)
    a = hyper_attention(q, k, v, generator=gen(4), **kw)
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1:, :] = rnd(1, 2, n - t - 1, 32, seed=7) * 5
    v2[..., t + 1:, :] = rnd(1, 2, n - t - 1, 32, seed=8) * 5
    b = hyper_attention(q, k2, v2, generator=gen(4), **kw)
    assert torch.equal(a[..., : t + 1, :], b[..., : t + 1, :])
    assert not torch.equal(a[..., t + 1:, :], b[..., t + 1:, :])


@pytest.mark.parametrize("n", [1001, 777])
def test_t5_odd_lengths(n):
    q, k, v = rnd(1, 2, n, 16), rnd(1, 2, n, 16, seed=1), rnd(1, 2, n, 16, seed=2)
    out, lse = hyper_attention(q, k, v, is_causal=True, min_seq_len=100, block_size=32, sample_size=16,
                               generator=gen(), return_lse=True)
    assert out.shape == (1, 2, n, 16) and torch.isfinite(out).all() and torch.isfinite(lse).all()
    # the first row attends only to itself
    assert torch.allclose(out[..., 0, :], v[..., 0, :], atol=1e-6)


# ---------------------------------------------------------------- T7: bucket order


def _one_bit_fraction(r, order):
    codes = order_table(r, order)
    diff = codes[1:] ^ codes[:-1]
    return ((diff & (diff - 1)) == 0).double().mean().item()


@pytest.mark.parametrize("r", range(1, 11))
def test_t7_gray_order_is_a_hamming_walk(r):
    assert _one_bit_fraction(r, "gray") == 1.0


def test_t7_reference_order_is_not():
    """Pitfall 2: the reference's code ^ (code >> 1) gives only 75.6% one-bit steps at r = 7."""
    assert _one_bit_fraction(7, "reference") == pytest.approx(0.756, abs=0.001)
    assert bucket_rank(torch.tensor([5]), "binary").item() == 5


# ---------------------------------------------------------------- T8: determinism and persistence


def test_t8_determinism_and_state_dict(tmp_path):
    q, k, v = rnd(1, 2, 2048, 32), rnd(1, 2, 2048, 32, seed=1), rnd(1, 2, 2048, 32, seed=2)
    a = hyper_attention(q, k, v, min_seq_len=512, generator=gen(3))
    b = hyper_attention(q, k, v, min_seq_len=512, generator=gen(3))
    assert torch.equal(a, b)
    m1 = HyperAttention(32, min_seq_len=512, seed=5)
    path = tmp_path / "m.pt"
    torch.save(m1.state_dict(), path)
    assert "projections" in m1.state_dict()
    m2 = HyperAttention(32, min_seq_len=512, seed=0)
    assert not torch.equal(m1.projections, m2.projections)
    m2.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(sort_lsh(q, m1.projections), sort_lsh(q, m2.projections))
    assert torch.equal(m1(q, k, v, generator=gen(1)), m2(q, k, v, generator=gen(1)))


def test_t8_generator_leaves_global_rng_alone():
    q = rnd(1, 1, 1024, 16)
    state = torch.get_rng_state()
    hyper_attention(q, q, q, min_seq_len=128, is_causal=True, generator=gen(0))
    HyperAttention(16, min_seq_len=128)(q, q, q)
    assert torch.equal(state, torch.get_rng_state())


def test_t8_module_generator_is_seeded():
    q = rnd(1, 1, 1024, 16)
    a = HyperAttention(16, min_seq_len=128, seed=3)(q, q, q)
    b = HyperAttention(16, min_seq_len=128, seed=3)(q, q, q)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- T9: gradients


@pytest.mark.parametrize("causal", [False, True])
def test_t9_gradcheck(causal):
    q, k = (rnd(1, 1, 256, 8, seed=s, dtype=torch.float64).requires_grad_() for s in (1, 2))
    v = rnd(1, 1, 256, 8, seed=3, dtype=torch.float64).requires_grad_()
    P = default_projections(8, 7, dtype=torch.float64)

    def f(q, k, v):
        return hyper_attention(q, k, v, is_causal=causal, min_seq_len=64, block_size=32, sample_size=16,
                               projections=P, generator=gen(0), return_lse=True)

    assert torch.autograd.gradcheck(f, (q, k, v), atol=1e-6, rtol=1e-4, fast_mode=True)


def test_t9_lse_gradients_reach_inputs():
    """Pitfall 8: the reference detaches the LSE, so the merge weights get no gradient."""
    q, k, v = (rnd(1, 1, 512, 8, seed=s, dtype=torch.float64).requires_grad_() for s in range(3))
    out, lse = hyper_attention(q, k, v, is_causal=True, min_seq_len=128, block_size=32, sample_size=16,
                               generator=gen(0), return_lse=True)
    lse.sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


# ---------------------------------------------------------------- T10: GQA


@pytest.mark.parametrize("causal", [False, True])
def test_t10_gqa_equals_repeat_interleave(causal):
    q = rnd(2, 6, 1024, 16, seed=1)
    k, v = rnd(2, 2, 1024, 16, seed=2), rnd(2, 2, 1024, 16, seed=3)
    kw = dict(is_causal=causal, min_seq_len=128, block_size=64, sample_size=32)
    a = hyper_attention(q, k, v, enable_gqa=True, generator=gen(7), **kw)
    b = hyper_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), generator=gen(7), **kw)
    assert (a - b).abs().max() <= 1e-6


# ---------------------------------------------------------------- T11: validation


def _qkv(n=8, d=64, h=2):
    return rnd(1, h, n, d), rnd(1, h, n, d), rnd(1, h, n, d)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda q, k, v: hyper_attention(q, k.numpy(), v), TypeError, "key must be a torch.Tensor; got numpy.ndarray"),
        (lambda q, k, v: hyper_attention(q.long(), k, v), TypeError, "query must have a floating dtype; got torch.int64"),
        (lambda q, k, v: hyper_attention(q, k[0], v[0]), ValueError,
         r"query, key and value must all be 3-D \(batch, seq, dim\) or 4-D \(batch, heads, seq, dim\); "
         r"got query.ndim=4, key.ndim=3"),
        (lambda q, k, v: hyper_attention(q, k[..., :32], v), ValueError,
         r"key.shape\[-1\] must equal query.shape\[-1\]: expected 64, got 32"),
        (lambda q, k, v: hyper_attention(q, k, v[..., :5, :]), ValueError,
         r"value.shape\[-2\] must equal key.shape\[-2\]: expected 8, got 5"),
        (lambda q, k, v: hyper_attention(q, k.expand(2, -1, -1, -1), v), ValueError,
         r"key.shape\[0\] must equal query.shape\[0\]: expected 1, got 2"),
        (lambda q, k, v: hyper_attention(q, k, v[:, :1]), ValueError,
         r"value.shape\[1\] must equal key.shape\[1\]: expected 2, got 1"),
        (lambda q, k, v: hyper_attention(rnd(1, 8, 8, 64), rnd(1, 2, 8, 64), rnd(1, 2, 8, 64)), ValueError,
         "key heads must equal query heads when enable_gqa=False: expected 8, got 2"),
        (lambda q, k, v: hyper_attention(rnd(1, 8, 8, 64), rnd(1, 3, 8, 64), rnd(1, 3, 8, 64), enable_gqa=True),
         ValueError, "query heads must be a multiple of key heads when enable_gqa=True: got 8 and 3"),
        (lambda q, k, v: hyper_attention(q, k.half(), v), ValueError,
         "key must share query's dtype and device: expected float32/cpu, got float16/cpu"),
        (lambda q, k, v: hyper_attention(q, k, v, lsh_num_projs=0), ValueError,
         r"lsh_num_projs must be an int in \[1, 16\]; got 0"),
        (lambda q, k, v: hyper_attention(q, k, v, lsh_num_projs=17), ValueError,
         r"lsh_num_projs must be an int in \[1, 16\]; got 17"),
        (lambda q, k, v: hyper_attention(q, k, v, block_size=0), ValueError, "block_size must be an int >= 1; got 0"),
        (lambda q, k, v: hyper_attention(q, k, v, sample_size=-1), ValueError,
         "sample_size must be an int >= 0; got -1"),
        (lambda q, k, v: hyper_attention(q, k, v, min_seq_len=0), ValueError, "min_seq_len must be an int >= 1; got 0"),
        (lambda q, k, v: hyper_attention(q, k, v, scale=-1.0, min_seq_len=4), ValueError,
         "scale must be a float >= 0 or None; got -1.0"),
        (lambda q, k, v: hyper_attention(q, k, v, scale=float("nan")), ValueError, "scale must be a float or None"),
        (lambda q, k, v: hyper_attention(q, k, v, dropout_p="0"), TypeError, r"dropout_p must be a float in \[0, 1\]; "
                                                                              "got str '0'"),
        (lambda q, k, v: hyper_attention(q, k, v, bucket_order="grey"), ValueError,
         "bucket_order must be one of 'gray', 'reference', 'binary'; got 'grey'"),
        (lambda q, k, v: hyper_attention(q, k, v, projections=torch.zeros(32, 7)), ValueError,
         r"projections must have shape \(64, 7\); got \(32, 7\)"),
        (lambda q, k, v: hyper_attention(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.bool).tril(), min_seq_len=4),
         ValueError, r"attn_mask must be a key-padding mask: bool \(True = attend\) or float \(added to the scores\), "
                     r"broadcastable to \(B, H, L, S\) and the same for every query row, e.g. of shape \(B, 1, 1, S\); "
                     r"got one of shape \(8, 8\) that differs between query rows"),
        (lambda q, k, v: hyper_attention(q, k, v, attn_mask=torch.ones(1, 3, 1, 8, dtype=torch.bool), min_seq_len=4),
         ValueError, r"attn_mask must be a key-padding mask.*; got shape \(1, 3, 1, 8\) for \(1, 2, 8, 8\)"),
        (lambda q, k, v: hyper_attention(q, k, v, dropout_p=0.1, min_seq_len=4), ValueError,
         "dropout_p=0.1 is supported only on the exact path"),
        (lambda q, k, v: hyper_attention(q, k, v, dropout_p=0.1, return_lse=True), ValueError,
         r"dropout_p=0.1 is not supported with return_lse=True"),
        (lambda q, k, v: HyperAttention(32)(q, k, v), ValueError,
         r"query.shape\[-1\] must equal head_dim: expected 32, got 64"),
        (lambda q, k, v: HyperAttention(64, block_size=0), ValueError, "block_size must be an int >= 1; got 0"),
        (lambda q, k, v: hyper_attention(q, k, v, generator=1), TypeError, "generator must be a torch.Generator"),
    ],
)
def test_t11_validation(call, exc, match):
    q, k, v = _qkv()
    with pytest.raises(exc, match=match):
        call(q, k, v)


# ---------------------------------------------------------------- T12: properties


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 300), b=st.integers(1, 400), m=st.integers(0, 64), causal=st.booleans(),
       seed=st.integers(0, 1000), c=st.floats(-3, 3).filter(lambda x: abs(x) > 0.1))
def test_t12_properties(n, b, m, causal, seed, c):
    q, k, v = rnd(1, 2, n, 8, seed=seed), rnd(1, 2, n, 8, seed=seed + 1), rnd(1, 2, n, 4, seed=seed + 2)
    kw = dict(is_causal=causal, min_seq_len=1, block_size=b, sample_size=m)
    o = hyper_attention(q, k, v, generator=gen(seed), **kw)
    assert torch.isfinite(o).all()
    lo, hi = v.amin(-2, keepdim=True), v.amax(-2, keepdim=True)
    assert (o >= lo - 1e-5).all() and (o <= hi + 1e-5).all()  # a convex combination of value rows
    oc = hyper_attention(q, k, v * c, generator=gen(seed), **kw)
    assert torch.allclose(oc, o * c, atol=1e-4 * abs(c), rtol=1e-4)
    w = rnd(4, seed=seed + 3)
    ow = hyper_attention(q, k, v + w, generator=gen(seed), **kw)
    assert torch.allclose(ow, o + w, atol=1e-4)


# ---------------------------------------------------------------- Q1 (CI size): LSH finds the heavy entries


def block_mass(q, k, v, random_blocks=False, **kw):
    _, lse_blk = hyper_forward(q, k, v, sample_size=0, return_lse=True, generator=gen(0),
                               variant=Variant(blocks="random" if random_blocks else "lsh"), **kw)
    _, lse = hyper_attention(q, k, v, min_seq_len=q.shape[-2], return_lse=True)
    return torch.exp(lse_blk - lse).mean().item()


def test_q1_block_mass_clustered_n4096():
    q, k, v = (torch.from_numpy(x) for x in make_attention_qkv("clustered", 4096, cluster_size=64, sigma=0.1,
                                                               ell=6.0, seed=0))
    ours = block_mass(q, k, v, min_seq_len=256, block_size=256)
    rand = block_mass(q, k, v, random_blocks=True, min_seq_len=256, block_size=256)
    assert ours >= 0.30 and ours >= 4 * rand, (ours, rand)


def test_default_projections_are_seeded_and_cached():
    a = default_projections(16, 7)
    assert a is default_projections(16, 7)
    assert torch.equal(a, torch.randn(16, 7, generator=torch.Generator().manual_seed(0)))


def test_low_precision_inputs():
    q, k, v = (rnd(1, 2, 1024, 32, seed=s).bfloat16() for s in range(3))
    out, lse = hyper_attention(q, k, v, is_causal=True, min_seq_len=256, generator=gen(), return_lse=True)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    approx32 = hyper_attention(q.float(), k.float(), v.float(), is_causal=True, min_seq_len=256, generator=gen())
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    err16 = ((out.float() - exact).norm() / exact.norm()).item()
    err32 = ((approx32 - exact).norm() / exact.norm()).item()
    assert err16 <= 1.1 * err32 + 0.02, (err16, err32)
    assert np.isfinite(lse.numpy()).all()


@pytest.mark.parametrize("causal", [False, True])
def test_inference_fast_path_equals_autograd_path(causal):
    """The no-grad kernel (in-place softmax) and the autograd kernel compute the same thing."""
    q, k, v = rnd(2, 4, 1500, 32, seed=1), rnd(2, 2, 1500, 32, seed=2), rnd(2, 2, 1500, 24, seed=3)
    kw = dict(is_causal=causal, enable_gqa=True, min_seq_len=300, block_size=100, sample_size=40, return_lse=True)
    with torch.no_grad():
        o1, l1 = hyper_attention(q, k, v, generator=gen(5), **kw)
    o2, l2 = hyper_attention(q.requires_grad_(), k, v, generator=gen(5), **kw)
    assert (o1 - o2).abs().max() < 1e-5 and (l1 - l2).abs().max() < 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_kernel_path_equals_matmul_path(causal, dtype):
    """Inference through torch's fused kernel (extra-dimension log-weights) equals the in-place matmul path."""
    q, k, v = rnd(1, 4, 1100, 32, seed=1), rnd(1, 2, 1100, 32, seed=2), rnd(1, 2, 1100, 40, seed=3)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    kw = dict(is_causal=causal, enable_gqa=True, min_seq_len=200, block_size=64, sample_size=48, return_lse=True)
    o1, l1 = hyper_attention(q, k, v, generator=gen(2), **kw)
    o2, l2 = hyper_forward(q, k, v, generator=gen(2), variant=Variant(unmasked="matmul"), **kw)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert (o1.float() - o2.float()).abs().max() < tol
    assert (l1 - l2).abs().max() < (1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("n", [2048, 1536, 1001])
def test_unrolled_causal_levels_equal_the_recursion(n):
    q, k, v = rnd(2, 4, n, 32, seed=1), rnd(2, 2, n, 32, seed=2), rnd(2, 2, n, 24, seed=3)
    kw = dict(is_causal=True, enable_gqa=True, min_seq_len=256, block_size=64, sample_size=32, return_lse=True)
    o1, l1 = hyper_attention(q, k, v, generator=gen(4), **kw)
    o2, l2 = hyper_forward(q, k, v, generator=gen(4), variant=Variant(causal="recursion"), **kw)
    assert (o1 - o2).abs().max() < 1e-5 and (l1 - l2).abs().max() < 1e-5


def test_head_split_fused_path_is_identical():
    """Large problems run the fused path over groups of key heads; the result does not change."""
    q, k, v = rnd(1, 6, 900, 16, seed=1), rnd(1, 3, 900, 16, seed=2), rnd(1, 3, 900, 16, seed=3)
    kw = dict(enable_gqa=True, min_seq_len=100, block_size=64, sample_size=32, return_lse=True)
    o1, l1 = hyper_attention(q, k, v, generator=gen(1), **kw)
    o2, l2 = hyper_forward(q, k, v, generator=gen(1), variant=Variant(source_budget=1000), **kw)
    assert torch.equal(o1, o2) and torch.equal(l1, l2)


# ---------------------------------------------------------------- a drop-in for SDPA (issue: masks, dtypes, modes)


def test_exact_path_takes_every_argument_sdpa_takes():
    q, k, v = rnd(2, 4, 40, 16, seed=1), rnd(2, 2, 40, 16, seed=2), rnd(2, 2, 40, 8, seed=3)
    bool_mask = torch.rand(2, 1, 40, 40, generator=gen(4)) > 0.3
    bool_mask[..., 0] = True
    float_mask = torch.randn(2, 4, 40, 40, generator=gen(5))
    cases = [dict(attn_mask=bool_mask, enable_gqa=True), dict(attn_mask=float_mask, enable_gqa=True),
             dict(is_causal=True, enable_gqa=True, scale=0.0), dict(enable_gqa=True, scale=np.float32(0.3))]
    for kw in cases:
        assert torch.allclose(hyper_attention(q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw), atol=1e-6)
    for L in (10, 0):   # is_causal with L != S, and an empty L
        kw = dict(is_causal=True, enable_gqa=True)
        out = hyper_attention(q[..., :L, :], k, v, **kw)
        assert out.shape == (2, 4, L, 8) and torch.allclose(out, F.scaled_dot_product_attention(q[..., :L, :], k, v, **kw))
    torch.manual_seed(7)
    a = hyper_attention(q, k, v, dropout_p=0.2, enable_gqa=True)
    torch.manual_seed(7)
    assert torch.equal(a, F.scaled_dot_product_attention(q, k, v, dropout_p=0.2, enable_gqa=True))
    empty_heads = hyper_attention(q[:, :0], k[:, :0], v[:, :0])
    assert empty_heads.shape == (2, 0, 40, 8)


@pytest.mark.parametrize("n_q, n_k", [(300, 1000), (1000, 300), (700, 700)])
def test_causal_with_unequal_lengths_follows_sdpa_top_left(n_q, n_k):
    q, k, v = rnd(1, 2, n_q, 16, seed=1), rnd(1, 2, n_k, 16, seed=2), rnd(1, 2, n_k, 8, seed=3)
    # block_size >= n_k: the approximate path is exact, so it must equal dense attention with tril(ones(L, S))
    out, lse = hyper_attention(q, k, v, is_causal=True, min_seq_len=64, block_size=2048, sample_size=16,
                               generator=gen(), return_lse=True)
    ref, ref_lse = naive_attention(q, k, v, is_causal=True)
    assert (out.double() - ref).abs().max() < 1e-5 and (lse.double() - ref_lse).abs().max() < 1e-5
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    approx = hyper_attention(q, k, v, is_causal=True, min_seq_len=64, block_size=64, sample_size=32, generator=gen())
    assert approx.shape == ref.shape and torch.isfinite(approx).all()


def test_training_after_a_call_under_inference_mode():
    q = rnd(1, 1, 2048, 32)
    with torch.inference_mode():
        hyper_attention(q, q, q, min_seq_len=256, is_causal=True)
    out = hyper_attention(q.clone().requires_grad_(), q, q, min_seq_len=256, is_causal=True)
    out.sum().backward()   # raised "Inference tensors cannot be saved for backward" (cached projections)


@settings(max_examples=30, deadline=None)
@given(n_q=st.integers(1, 600), n_k=st.integers(65, 1500), hk=st.integers(1, 2), group=st.integers(1, 3),
       b=st.sampled_from([8, 32, 64, 200]), m=st.sampled_from([0, 16, 48]), causal=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), seed=st.integers(0, 1000))
def test_no_grad_fused_path_equals_the_autograd_path(n_q, n_k, hk, group, b, m, causal, dtype, seed):
    # cross-attention with far fewer queries than keys wrote padded query blocks onto query 0 (no-grad path)
    if causal:
        n_q = n_k
    q = rnd(1, hk * group, n_q, 16, seed=seed, dtype=dtype)
    k, v = rnd(1, hk, n_k, 16, seed=seed + 1, dtype=dtype), rnd(1, hk, n_k, 16, seed=seed + 2, dtype=dtype)
    kw = dict(is_causal=causal, enable_gqa=group > 1, min_seq_len=64, block_size=b, sample_size=m, return_lse=True)
    with torch.no_grad():
        o1, l1 = hyper_attention(q, k, v, generator=gen(seed), **kw)
    o2, l2 = hyper_attention(q.clone().requires_grad_(), k, v, generator=gen(seed), **kw)
    tol = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}[dtype]
    assert (o1.float() - o2.detach().float()).abs().max() <= tol
    assert (l1 - l2.detach()).abs().max() <= 10 * tol


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 4e-3), (torch.float16, 1e-3)])
def test_16_bit_autograd_path_keeps_scores_in_fp32(dtype, tol):
    # block_size >= n_k: the result is exact, so the error is the arithmetic's (1.5% in bf16 when the
    # autograd path rounded scores to 16 bits, at logit std ~8; 0.16% now, as the no-grad path)
    q, k, v = (rnd(1, 2, 2048, 64, seed=s) * 2.9 for s in range(3))
    q, k, v = q.to(dtype), k.to(dtype), (v / 2.9).to(dtype)
    ref = naive_attention(q, k, v)[0]
    out = hyper_attention(q.clone().requires_grad_(), k, v, min_seq_len=256, block_size=4096, sample_size=64,
                          generator=gen()).detach()
    assert float((out.double() - ref).norm() / ref.norm()) < tol
    big = hyper_attention((q * 100).half().requires_grad_(), (k * 100).half(), v.half(), min_seq_len=256,
                          block_size=256, sample_size=64, generator=gen())
    assert torch.isfinite(big).all()


def test_padded_keys_never_leak_at_extreme_logits():
    # the fused path masked pad keys with a capped penalty: at logits of order 1e5, 104 rows leaked (up to 3.7)
    n = 8193                               # 8193 = 32 blocks of 256 + 1: the last block has 255 pad keys
    q, k, v = rnd(1, 2, n, 64, seed=1) * 100, rnd(1, 2, n, 64, seed=2) * 100, rnd(1, 2, n, 64, seed=3)
    with torch.no_grad():
        a = hyper_attention(q, k, v, min_seq_len=4096, sample_size=0)
    b = hyper_attention(q.clone().requires_grad_(), k, v, min_seq_len=4096, sample_size=0).detach()
    assert (a - b).abs().max() < 0.05      # fp32 rounding of scores near 1e5; a leak moves outputs by O(1)


# ---------------------------------------------------------------- key-padding masks on the approximate path


def _key_mask(B, S, seed, frac=0.3, kind="bool", left_pad=None):
    g = gen(seed)
    keep = torch.rand(B, 1, 1, S, generator=g) > frac
    if left_pad is not None:
        for b, p in enumerate(left_pad):
            keep[b, ..., :p] = False
    if kind == "bool":
        return keep
    bias = torch.randn(B, 1, 1, S, generator=g) * 0.5
    return bias.masked_fill(~keep, -math.inf)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("grad", [False, True])
def test_key_mask_is_exact_when_one_block_holds_every_key(causal, kind, grad):
    q, k, v = rnd(2, 4, 600, 16, seed=1), rnd(2, 2, 600, 16, seed=2), rnd(2, 2, 600, 8, seed=3)
    mask = _key_mask(2, 600, 4, kind=kind, left_pad=(0, 150))
    kw = dict(attn_mask=mask, is_causal=causal, enable_gqa=True, min_seq_len=64, block_size=1024, sample_size=32,
              generator=gen(), return_lse=True)
    if grad:
        out, lse = hyper_attention(q.clone().requires_grad_(), k, v, **kw)
    else:
        with torch.no_grad():
            out, lse = hyper_attention(q, k, v, **kw)
    ref, ref_lse = naive_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
    assert (out.detach().double() - ref).abs().max() < 1e-5
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))           # left-padded rows: no key at all
    fin = torch.isfinite(ref_lse)
    assert (lse.detach().double() - ref_lse)[fin].abs().max() < 1e-5
    assert causal == bool(torch.isinf(lse).any()) and (out[torch.isinf(lse)] == 0).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_masked_keys_have_no_influence(causal, grad):
    q, k, v = rnd(1, 2, 1500, 16, seed=1), rnd(1, 2, 1500, 16, seed=2), rnd(1, 2, 1500, 16, seed=3)
    mask = _key_mask(1, 1500, 5)
    k2, v2 = k.clone(), v.clone()
    k2[~mask[0, 0, 0].expand(1, 2, 1500)] *= 40                          # masked keys: huge, different values
    v2[~mask[0, 0, 0].expand(1, 2, 1500)] = 1e4
    kw = dict(attn_mask=mask, is_causal=causal, min_seq_len=128, block_size=64, sample_size=32)
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        qq = q.clone().requires_grad_() if grad else q
        a = hyper_attention(qq, k, v, generator=gen(9), **kw)
        b = hyper_attention(qq, k2, v2, generator=gen(9), **kw)
    # the LSH sort sees the masked keys, so blocks may differ: every output must stay a convex combination of
    # unmasked value rows (a masked value row of 1e4 would show), and be unbiased (next test)
    assert b.detach().abs().max() < 50 and torch.isfinite(a).all()


@pytest.mark.parametrize("unmasked", ["fused", "matmul"])
def test_key_mask_estimate_is_unbiased_over_the_unmasked_keys(unmasked):
    n, b, m, seeds = 1024, 128, 64, 200
    q, k, v = rnd(1, 1, n, 32, seed=11), rnd(1, 1, n, 32, seed=12), rnd(1, 1, n, 32, seed=13)
    mask = _key_mask(1, n, 14, frac=0.4, kind="float")
    qb, kb, vb = (t.expand(seeds, 1, n, 32) for t in (q, k, v))
    with torch.no_grad():
        out, lse = hyper_forward(qb, kb, vb, attn_mask=mask, min_seq_len=256, block_size=b, sample_size=m,
                                 generator=gen(0), return_lse=True, variant=Variant(unmasked=unmasked))
    ref_o, ref_lse = naive_attention(q, k, v, attn_mask=mask)
    ratio = torch.exp(lse.double()).mean(0)[0] / torch.exp(ref_lse[0, 0])
    num = (torch.exp(lse.double())[..., None] * out.double()).mean(0)[0]
    true_num = torch.exp(ref_lse[0, 0])[:, None] * ref_o[0, 0]
    assert (ratio - 1).abs().max() <= 0.08, (ratio - 1).abs().max()
    assert (num - true_num).norm() / true_num.norm() <= 0.3


def test_a_batch_row_with_every_key_masked_gives_zero_and_minus_infinity():
    q, k, v = rnd(2, 2, 800, 16, seed=1), rnd(2, 2, 800, 16, seed=2), rnd(2, 2, 800, 16, seed=3)
    mask = torch.ones(2, 1, 1, 800, dtype=torch.bool)
    mask[1] = False
    for causal in (False, True):
        for grad in (False, True):
            qq = q.clone().requires_grad_() if grad else q
            out, lse = hyper_attention(qq, k, v, attn_mask=mask, is_causal=causal, min_seq_len=128, block_size=64,
                                       sample_size=32, generator=gen(), return_lse=True)
            assert (out[1] == 0).all() and torch.isinf(lse[1]).all() and torch.isfinite(out).all()
            assert torch.isfinite(lse[0]).all()
            if grad:
                (out.sum() + lse[0].sum()).backward()
                assert torch.isfinite(qq.grad).all()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(65, 900), b=st.sampled_from([16, 64, 300]), m=st.sampled_from([0, 24]), causal=st.booleans(),
       kind=st.sampled_from(["bool", "float"]), pad=st.integers(0, 60), seed=st.integers(0, 1000))
def test_masked_no_grad_path_equals_the_autograd_path(n, b, m, causal, kind, pad, seed):
    q, k, v = rnd(2, 2, n, 16, seed=seed), rnd(2, 2, n, 16, seed=seed + 1), rnd(2, 2, n, 16, seed=seed + 2)
    mask = _key_mask(2, n, seed, kind=kind, left_pad=(pad, 0))
    kw = dict(attn_mask=mask, is_causal=causal, min_seq_len=64, block_size=b, sample_size=m, return_lse=True)
    with torch.no_grad():
        o1, l1 = hyper_attention(q, k, v, generator=gen(seed), **kw)
    o2, l2 = hyper_attention(q.clone().requires_grad_(), k, v, generator=gen(seed), **kw)
    assert torch.equal(torch.isinf(l1), torch.isinf(l2.detach()))
    fin = torch.isfinite(l1)
    assert (o1 - o2.detach()).abs().max() <= 2e-5 and (l1 - l2.detach())[fin].abs().max() <= 2e-5
