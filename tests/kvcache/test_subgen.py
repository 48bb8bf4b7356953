"""SubGenKV: exact references, laws of the estimators, invariants and every documented message."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from teraml.datasets import make_clusterable_kv_stream
from teraml.kvcache import ExactKV, SubGenKV, stream_attention, subgen_attention, weighted_attention
from teraml.kvcache._reference import ReferenceSubGen, exact_attention, greedy_clusters
from teraml.kvcache.subgen import chunk_slot_draw


def _stream(n=200, d=8, b=1, h=1, H=None, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(b, h, n, d, generator=g) * scale
    v = torch.randn(b, h, n, d, generator=g)
    q = torch.randn(b, H or h, n, d, generator=g)
    return k, v, q


def _estimates(kv, q):
    """(N^, Z^) in float64 of group (0, 0) for one query (d,), from the weighted set."""
    ks, vs, a, b = kv.weighted_set()
    e = torch.exp(ks[0, 0].double() @ (q.double() * kv.scale))
    return (a[0, 0].double() * e) @ vs[0, 0].double(), float((b[0, 0].double() * e).sum())


# ------------------------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("preset", ["paper", "llm"])
def test_short_stream_is_exact(preset):
    """n <= n_sink + recent_window: every token is kept exactly."""
    k, v, q = _stream(n=40, d=16, h=2, H=4)
    kv = SubGenKV(16, preset=preset, n_sink=8, recent_window=32, seed=0).update(k, v, queries=q)
    out = kv.attend(q[:, :, -3:])
    ref = torch.nn.functional.scaled_dot_product_attention(q[:, :, -3:], k.repeat_interleave(2, 1),
                                                           v.repeat_interleave(2, 1))
    assert torch.allclose(out, ref, atol=1e-6)
    assert int(kv.m.sum()) == 0


def test_per_token_clustering_matches_reference_bit_for_bit():
    k, v, _ = _stream(n=300, d=8, scale=0.7)
    kv = SubGenKV(8, delta=1.0, seed=0)
    for j in range(300):
        kv.update(k[:, :, j:j + 1], v[:, :, j:j + 1])
    centres, counts, _ = greedy_clusters(k[0, 0].numpy(), 1.0)
    m = int(kv.m[0, 0])
    assert m == len(centres)
    assert torch.equal(kv.centers[0, 0, :m], k[0, 0, centres])
    assert kv.counts[0, 0, :m].long().tolist() == counts


def test_chunked_clustering_matches_on_separated_clusters():
    s = make_clusterable_kv_stream(2000, 16, seed=3)
    k, v = torch.from_numpy(s.keys), torch.from_numpy(s.values)
    centres, counts, _ = greedy_clusters(s.keys[0, 0], 0.5)
    kv = SubGenKV(16, delta=0.5, seed=0).update(k, v)
    m = int(kv.m[0, 0])
    assert m == len(centres) == int(s.n_clusters[0, 0])
    assert torch.equal(kv.centers[0, 0, :m], k[0, 0, centres])
    assert kv.counts[0, 0, :m].long().tolist() == counts


@pytest.mark.parametrize("value_estimator", ["l2", "cluster"])
@pytest.mark.parametrize("chunked", [False, True])
def test_all_singletons_give_exact_denominator(value_estimator, chunked):
    k, v, q = _stream(n=120, d=8)
    kv = SubGenKV(8, delta=1e-6, value_estimator=value_estimator, s=16 if value_estimator == "l2" else None,
                  dtype=torch.float64, seed=1)
    if chunked:
        kv.update(k.double(), v.double())
    else:
        for j in range(120):
            kv.update(k[:, :, j:j + 1].double(), v[:, :, j:j + 1].double())
    qq = q[0, 0, -1]
    num, den = _estimates(kv, qq)
    e = torch.exp(k[0, 0].double() @ (qq.double() * kv.scale))
    assert den == pytest.approx(float(e.sum()), rel=1e-10)
    if value_estimator == "cluster":
        assert torch.allclose(num, e @ v[0, 0].double(), rtol=1e-10, atol=1e-12)


def test_kernel_equals_weighted_ratio():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 4, 8, generator=g)
    k = torch.randn(2, 3, 30, 8, generator=g)
    v = torch.randn(2, 3, 30, 8, generator=g)
    a = torch.rand(2, 3, 30, generator=g) * 3
    b = torch.rand(2, 3, 30, generator=g) * 2
    a[..., :5] = 0
    b[..., 5:9] = 0
    a[..., 12] = b[..., 12] = 0                                       # an empty entry
    out = weighted_attention(q, k, v, a, b, scale=0.3)
    e = torch.exp((q.double() * 0.3) @ k.double().transpose(-1, -2))
    ref = (e * a.double().unsqueeze(-2)) @ v.double() / (e * b.double().unsqueeze(-2)).sum(-1, keepdim=True)
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_kernel_shares_one_maximum():
    """Logits near 100 (exp overflows float32 at 89), split over entries with different weights: the one shared
    maximum gives the float64 ratio; exponentiating without it would give inf / inf."""
    g = torch.Generator().manual_seed(1)
    k = torch.randn(1, 1, 12, 4, generator=g)
    v = torch.randn(1, 1, 12, 4, generator=g)
    q = k[:, :, :1] * (100.0 / float(k[0, 0, 0].norm() ** 2))
    a = torch.tensor([[[1.0] * 4 + [0.0] * 4 + [2.5] * 4]])
    b = torch.tensor([[[1.0] * 4 + [3.0] * 4 + [0.0] * 4]])
    out = weighted_attention(q, k, v, a, b, scale=1.0)
    assert torch.isfinite(out).all()
    lg = (q.double() @ k.double().transpose(-1, -2))[0, 0, 0]
    e = torch.exp(lg - lg.max())
    ref = (e * a[0, 0].double()) @ v[0, 0].double() / (e * b[0, 0].double()).sum()
    assert torch.allclose(out[0, 0, 0].double(), ref, rtol=1e-5, atol=1e-5)


def test_gqa_folding_equals_repeated_kv_heads():
    k, v, q = _stream(n=150, d=8, b=2, h=2, H=6)
    kv = SubGenKV(8, preset="llm", delta=0.8, seed=0).update(k, v)
    out = kv.attend(q[:, :, -2:])
    ks, vs, a, b = kv.weighted_set()
    rep = 3
    ref = weighted_attention(q[:, :, -2:], ks.repeat_interleave(rep, 1), vs.repeat_interleave(rep, 1),
                             a.repeat_interleave(rep, 1), b.repeat_interleave(rep, 1), scale=kv.scale)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("preset", ["paper", "llm"])
def test_same_seed_same_chunking_same_state(preset):
    k, v, q = _stream(n=300, d=8, h=2, H=2)

    def run():
        kv = SubGenKV(8, preset=preset, seed=7)
        for lo, hi in ((0, 50), (50, 51), (51, 200), (200, 300)):
            kv.update(k[:, :, lo:hi], v[:, :, lo:hi], queries=q[:, :, lo:hi])
        return kv.state_dict()

    s1, s2 = run(), run()
    assert s1.keys() == s2.keys()
    for name in s1:
        a, b = s1[name], s2[name]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), name
        else:
            assert a == b, name


def test_state_dict_round_trip_and_reset():
    k, v, q = _stream(n=100, d=8)
    kv = SubGenKV(8, delta=1.0, seed=3).update(k[:, :, :60], v[:, :, :60])
    snap = kv.state_dict()
    a = kv.update(k[:, :, 60:], v[:, :, 60:]).attend(q[:, :, -1:])
    kv2 = SubGenKV(8, delta=1.0, seed=99).load_state_dict(snap)
    b = kv2.update(k[:, :, 60:], v[:, :, 60:]).attend(q[:, :, -1:])
    assert torch.equal(a, b)
    kv.reset()
    assert kv.seen == 0 and kv.memory_bytes() == 0


def test_reference_estimates_agree_with_fast_path_in_distribution():
    """The float64 per-token reference and the fast path have the same means (both unbiased)."""
    k, v, q = _stream(n=80, d=4, scale=0.8)
    qq = q[0, 0, -1]
    fast, ref = [], []
    for seed in range(150):
        kv = SubGenKV(4, delta=1.0, t=2, s=4, seed=seed, scale=1.0).update(k, v)
        fast.append(_estimates(kv, qq)[1])
        r = ReferenceSubGen(4, delta=1.0, t=2, s=4, value_estimator="l2", seed=seed)
        for j in range(80):
            r.insert(k[0, 0, j].numpy(), v[0, 0, j].numpy())
        ref.append(r.estimate(qq.numpy())[1])
    Z = float(np.exp(k[0, 0].double().numpy() @ qq.double().numpy()).sum())
    for xs in (np.array(fast), np.array(ref)):
        assert abs(xs.mean() - Z) <= 3.5 * xs.std() / math.sqrt(len(xs))


def test_reference_exact_attention():
    k, v, q = _stream(n=20, d=4)
    r = ReferenceSubGen(4, delta=0.1, t=2, s=None, value_estimator="cluster", recent_window=5, n_sink=2)
    for j in range(20):
        r.insert(k[0, 0, j].numpy(), v[0, 0, j].numpy())
    z = r.attend(q[0, 0, -1].numpy())
    # singleton clusters of width 0.1 in d = 4: exact (every token its own cluster)
    assert np.allclose(z, exact_attention(q[0, 0, -1].numpy(), k[0, 0].numpy(), v[0, 0].numpy(), 1.0), atol=1e-10)


# ------------------------------------------------------------------------------------------- laws


@pytest.mark.parametrize("value_estimator", ["l2", "cluster"])
def test_T1_unbiased(value_estimator):
    """n = 500, d = 16, 300 seeds: |mean - exact| <= 3 SE for Z^ and every coordinate of N^."""
    s = make_clusterable_kv_stream(500, 16, seed=1, delta=1.0, key_radius=2.0)
    k, v = torch.from_numpy(s.keys), torch.from_numpy(s.values)
    q = torch.from_numpy(s.queries)[0, 0, -1] * 0.5
    e = torch.exp(k[0, 0].double() @ q.double())
    Z, N = float(e.sum()), (e @ v[0, 0].double()).numpy()
    Zs, Ns = [], []
    for seed in range(300):
        kv = SubGenKV(16, delta=1.0, t=2, value_estimator=value_estimator,
                      s=32 if value_estimator == "l2" else None, scale=1.0, seed=seed).update(k, v)
        num, den = _estimates(kv, q)
        Zs.append(den)
        Ns.append(num.numpy())
    Zs, Ns = np.array(Zs), np.array(Ns)
    assert abs(Zs.mean() - Z) <= 3 * Zs.std(ddof=1) / math.sqrt(300)
    _assert_unbiased_vector(Ns, N)


def _assert_unbiased_vector(samples, exact):
    """Each coordinate within 3 SE at the family-wise level of one 3-SE check (Bonferroni over the d
    coordinates: 16 independent 3-SE checks fail by chance 4 % of the time). l2's N^ is heavy-tailed
    (e_j / ||v_j|| is unbounded), so a joint Hotelling test is miscalibrated at 300 draws and is not used."""
    n, p = samples.shape
    diff = samples.mean(0) - exact
    se = samples.std(0, ddof=1) / math.sqrt(n)
    z_family = stats.norm.isf(stats.norm.sf(3.0) / p)                   # 3.77 for p = 16
    assert np.all(np.abs(diff) <= z_family * se), np.round(diff / se, 2)


@pytest.mark.parametrize("value_estimator", ["l2", "cluster"])
def test_T1_unbiased_per_token_path(value_estimator):
    k, v, q = _stream(n=60, d=4, scale=0.6)
    qq = q[0, 0, -1]
    e = torch.exp(k[0, 0].double() @ qq.double())
    Z, N = float(e.sum()), (e @ v[0, 0].double()).numpy()
    Zs, Ns = [], []
    for seed in range(150):
        kv = SubGenKV(4, delta=1.2, t=2, value_estimator=value_estimator,
                      s=4 if value_estimator == "l2" else None, scale=1.0, seed=seed)
        for j in range(60):
            kv.update(k[:, :, j:j + 1], v[:, :, j:j + 1])
        num, den = _estimates(kv, qq)
        Zs.append(den)
        Ns.append(num.numpy())
    Zs, Ns = np.array(Zs), np.array(Ns)
    assert abs(Zs.mean() - Z) <= 3.5 * Zs.std(ddof=1) / math.sqrt(150)
    assert np.all(np.abs(Ns.mean(0) - N) <= 3.5 * Ns.std(0, ddof=1) / math.sqrt(150))


def test_T2_chunk_reservoir_law():
    """W0 = 3, chunk weights (0.5, 2, 1, 4): keep with 3/10.5, item j with w_j/10.5; and the sequential draw."""
    w = torch.tensor([0.5, 2.0, 1.0, 4.0])
    trials = 200_000
    g = torch.Generator().manual_seed(0)
    pick = chunk_slot_draw(3.0, w, trials, generator=g)
    observed = np.bincount(pick.numpy() + 1, minlength=5)
    expect = np.array([3.0, 0.5, 2.0, 1.0, 4.0]) / 10.5 * trials
    assert stats.chisquare(observed, expect).pvalue > 1e-3
    # the sequential draw: item j replaces the slot with probability w_j / (W0 + w_1 + ... + w_j)
    slot = torch.full((trials,), -1)
    total = 3.0
    for j, wj in enumerate(w.tolist()):
        total += wj
        slot = torch.where(torch.rand(trials, generator=g) < wj / total, torch.full_like(slot, j), slot)
    seq = np.bincount(slot.numpy() + 1, minlength=5)
    assert stats.chisquare(seq, expect).pvalue > 1e-3
    table = np.vstack([observed, seq])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_chunk_slot_draw_zero_weights_keep():
    assert chunk_slot_draw(2.0, torch.zeros(3), 4).tolist() == [-1] * 4


def test_merge_keeps_slots_uniform():
    """Clusters of 3 and 5 members merged by the budget's doubling rule: each slot is uniform over the 8 members."""
    t = 20_000
    base = torch.zeros(9, 2)
    base[:3, 0] = torch.tensor([0.0, 0.01, 0.02])
    base[3:8, 0] = torch.tensor([1.0, 1.01, 1.02, 1.03, 1.04])
    base[8, 0] = 10.0                                       # opens a third cluster: the cap of 2 forces a merge
    k = base.reshape(1, 1, 9, 2)
    v = torch.arange(9, dtype=torch.float32).reshape(1, 1, 9, 1).expand(1, 1, 9, 2).contiguous()
    budget = 1 + 2 * t                                      # cluster mode, no window or sinks: room for 2 clusters
    kv = SubGenKV(2, delta=0.3, t=t, value_estimator="cluster", recent_window=0, n_sink=0, budget=budget,
                  scale=1.0, seed=0)
    assert kv.max_clusters == 2
    for j in range(9):
        kv.update(k[:, :, j:j + 1], v[:, :, j:j + 1])
    st_ = kv.stats()[0]
    assert st_["merges"] == 2 and st_["clusters"] == 2 and st_["delta"] == pytest.approx(1.2)
    assert kv.counts[0, 0, :2].tolist() == [8.0, 1.0]
    ids = kv.a_values[0, 0, 0, :, 0].long().numpy()
    observed = np.bincount(ids, minlength=8)
    assert observed.sum() == t and observed.size == 8
    assert stats.chisquare(observed, np.full(8, t / 8)).pvalue > 1e-3


def test_overflow_raise_leaves_the_state_unchanged():
    g = torch.Generator().manual_seed(0)
    kv = SubGenKV(4, preset="llm", budget=20, recent_window=2, n_sink=0, delta=1e-3, on_overflow="raise", seed=0)
    k = torch.randn(1, 1, 50, 4, generator=g)
    with pytest.raises(MemoryError):
        kv.update(k, k)
    assert kv.seen == 0 and kv.memory_bytes() == 0
    kv.update(k[:, :, :3], k[:, :, :3])
    snap = kv.state_dict()
    with pytest.raises(MemoryError):
        kv.update(k[:, :, 3:], k[:, :, 3:])
    after = kv.state_dict()
    assert after["seen"] == snap["seen"] == 3
    for n in snap:
        if isinstance(snap[n], torch.Tensor):
            assert snap[n].shape == after[n].shape and bool(((snap[n] == after[n]) | (snap[n] != snap[n])).all()), n


def test_load_state_dict_refuses_other_parameters():
    k, v, q = _stream(n=50, d=8)
    snap = SubGenKV(8, preset="paper", delta=0.5, seed=0).update(k, v).state_dict()
    with pytest.raises(ValueError, match=r"state_dict was saved by a store with other parameters: \[.*'preset'"):
        SubGenKV(8, preset="llm", delta=0.5).load_state_dict(snap)


def test_query_positions_accept_arrays_ranges_and_tensors():
    k, v, q = _stream(n=20, d=8)
    ref = stream_attention(ExactKV(8), q, k, v, query_positions=[3, 19])
    for pos in (np.array([3, 19]), torch.tensor([3, 19]), (3, 19)):
        assert torch.equal(stream_attention(ExactKV(8), q, k, v, query_positions=pos), ref)
    assert stream_attention(ExactKV(8), q, k, v, query_positions=range(3)).shape[2] == 3
    with pytest.raises(ValueError, match=r"query_positions must be a sequence of positions in \[0, 20\)"):
        stream_attention(ExactKV(8), q, k, v, query_positions=np.array([1.5]))


def test_integer_keys_and_bool_reorder():
    kv = SubGenKV(4, delta=0.5)
    with pytest.raises(TypeError, match="keys must have a floating dtype; got torch.int64"):
        kv.update(torch.zeros(1, 1, 2, 4, dtype=torch.long), torch.zeros(1, 1, 2, 4))
    k, v, q = _stream(n=30, d=4, b=3)
    kv = SubGenKV(4, delta=0.5, seed=0).update(k, v)
    full = kv.attend(q[:, :, -1:])
    kv.reorder(torch.tensor([True, False, True]))
    assert kv.batch == 2 and torch.allclose(kv.attend(q[[0, 2]][:, :, -1:]), full[[0, 2]])


# ------------------------------------------------------------------------------------------- invariants


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hypothesis_invariants(data):
    b = data.draw(st.integers(1, 2))
    hkv = data.draw(st.integers(1, 3))
    grp = data.draw(st.integers(1, 2))
    d = data.draw(st.sampled_from([4, 8, 16]))
    n = data.draw(st.integers(1, 200))
    t = data.draw(st.integers(1, 4))
    ve = data.draw(st.sampled_from(["l2", "cluster"]))
    s = data.draw(st.integers(1, 16)) if ve == "l2" else None
    w = data.draw(st.integers(0, 8))
    ns = data.draw(st.integers(0, 3))
    delta = data.draw(st.floats(0.05, 3.0))
    per = (1 + t) if ve == "l2" else (1 + 2 * t)
    fixed = (2 * s if s else 0) + 2 * w + 2 * ns
    bmin = math.ceil((fixed + per) / 2)
    budget = data.draw(st.one_of(st.none(), st.integers(bmin, bmin + 60)))
    seed = data.draw(st.integers(0, 1000))
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(b, hkv, n, d, generator=g) * data.draw(st.sampled_from([0.1, 1.0, 3.0]))
    v = torch.randn(b, hkv, n, d, generator=g)
    q = torch.randn(b, hkv * grp, n, d, generator=g)
    kv = SubGenKV(d, delta=delta, t=t, s=s, value_estimator=ve, recent_window=w, n_sink=ns, budget=budget,
                  seed=seed)
    pos = 0
    while pos < n:
        step = data.draw(st.integers(1, max(1, n - pos)))
        kv.update(k[:, :, pos:pos + step], v[:, :, pos:pos + step])
        pos += step
        if budget is not None:
            assert int(kv.stored_vectors().max()) <= 2 * budget
    out = kv.attend(q[:, :, -2:])
    assert torch.isfinite(out).all()
    exact_kept = kv.sink_keys.shape[2] + kv.win_keys.shape[2]
    for i in range(b):
        for h in range(hkv):
            m = int(kv.m[i, h])
            assert float(kv.counts[i, h, :m].sum()) + exact_kept == n
            dlt = float(kv.delta[i, h])
            cen = kv.centers[i, h, :m].double()
            slots = kv.a_keys[i, h, :m].double()                            # (m, t, d)
            dist = (slots - cen.unsqueeze(1)).norm(dim=-1)
            merged = int(kv.merges[i, h]) > 0
            far = float(dist.max()) if dist.numel() else 0.0
            assert far <= (2 * dlt if merged else dlt) * (1 + 1e-6) + 1e-6
            if m > 1:
                cd = torch.cdist(cen.unsqueeze(0), cen.unsqueeze(0))[0]
                cd.fill_diagonal_(math.inf)
                assert float(cd.min()) > dlt * (1 - 1e-9) or merged
            assert (float(kv.radii[i, h, :m].max()) if m else 0.0) <= 2 * dlt * (1 + 1e-9)


def test_T3_greedy_m_equals_true_m():
    for n in (1000, 4000, 16000):
        s = make_clusterable_kv_stream(n, 64, seed=0)
        kv = SubGenKV(64, delta=0.5, seed=0).update(torch.from_numpy(s.keys), torch.from_numpy(s.values))
        assert int(kv.m[0, 0]) == int(s.n_clusters[0, 0])


def test_T4_paper_error_rates():
    """Paper preset, delta = 0.5, n = 3000, d = 32, s in {128, 512, 2048}, 8 seeds."""
    s_data = make_clusterable_kv_stream(3000, 32, seed=0)
    k, v = torch.from_numpy(s_data.keys), torch.from_numpy(s_data.values)
    q = torch.from_numpy(s_data.queries)[:, :, -16:]
    kd, vd = k[0, 0].double(), v[0, 0].double()
    e = torch.exp(q[0, 0].double() @ kd.T)                                 # scale 1 (the paper's softmax(Kq))
    p = e / e.sum(-1, keepdim=True)
    exact = p @ vd
    vop = torch.linalg.matrix_norm(vd, ord=2)
    rms, den_rms = {}, {}
    for s in (128, 512, 2048):
        errs, derrs = [], []
        for seed in range(8):
            kv = SubGenKV(32, preset="paper", delta=0.5, s=s, scale=1.0, seed=seed).update(k, v)
            z = kv.attend(q).double()[0, 0]
            errs.append(((z - exact).norm(dim=-1) / (p.norm(dim=-1) * vop)).numpy())
            ks, _, _, b = kv.weighted_set()
            zh = (torch.exp(q[0, 0].double() @ ks[0, 0].double().T) * b[0, 0].double()).sum(-1)
            derrs.append(((zh - e.sum(-1)) / e.sum(-1)).numpy())
        rms[s] = float(np.sqrt(np.mean(np.square(errs))))
        den_rms[s] = float(np.sqrt(np.mean(np.square(derrs))))
        assert rms[s] <= 1.5 * math.sqrt(32 / s), (s, rms[s])
    assert 1.5 <= rms[128] / rms[512] <= 2.7
    assert 1.5 <= rms[512] / rms[2048] <= 2.7
    for s, lim in ((128, 0.15), (512, 0.06), (2048, 0.03)):
        assert den_rms[s] <= lim, (s, den_rms[s])


def test_budget_merges_keep_memory_and_radius():
    s = make_clusterable_kv_stream(4000, 16, seed=2)
    k, v, q = (torch.from_numpy(x) for x in (s.keys, s.values, s.queries))
    kv = SubGenKV(16, preset="llm", budget=200, seed=0)
    for lo in range(0, 4000, 500):
        kv.update(k[:, :, lo:lo + 500], v[:, :, lo:lo + 500], queries=q[:, :, lo:lo + 500])
        assert int(kv.stored_vectors().max()) <= 400
    st_ = kv.stats()[0]
    assert st_["merges"] >= 1 and st_["clusters"] <= kv.max_clusters
    assert st_["max_radius"] <= 2 * st_["delta"] + 1e-9


def test_overflow_raise():
    k, v, _ = _stream(n=200, d=8, scale=3.0)
    kv = SubGenKV(8, preset="llm", delta=0.1, budget=40, on_overflow="raise", seed=0)
    with pytest.raises(MemoryError, match=r"SubGenKV reached max_clusters=\d+ \(budget=40\)"):
        kv.update(k, v)


def test_delta_auto_uses_query_norms():
    k, v, q = _stream(n=100, d=8, h=1, H=2)
    kv = SubGenKV(8, preset="llm", seed=0, scale=0.5).update(k, v, queries=q)
    rhat = float(torch.quantile(q.double().reshape(-1, 8).norm(dim=-1) * 0.5, 0.95))
    assert float(kv.rhat[0, 0]) == pytest.approx(rhat)
    assert float(kv.delta[0, 0]) == pytest.approx(math.log(8) / (2 * rhat))


def test_stats_warns_once_when_bound_is_vacuous():
    k, v, q = _stream(n=300, d=8, scale=3.0)
    kv = SubGenKV(8, preset="llm", budget=30, seed=0).update(k, v, queries=q * 10)
    with pytest.warns(RuntimeWarning, match="error bound is vacuous"):
        kv.stats()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kv.stats()


def test_float16_storage_and_large_keys():
    """fp16 storage: distances and mu are computed in float64; far-away large keys still cluster right."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 1, 1, 16, generator=g) * 300
    k = base + torch.randn(1, 1, 50, 16, generator=g) * 0.01
    v = torch.randn(1, 1, 50, 16, generator=g)
    kv = SubGenKV(16, delta=1.0, dtype=torch.float16, seed=0).update(k, v)
    assert int(kv.m[0, 0]) == 1
    kv = SubGenKV(16, delta=1.0, seed=0).update(k, v)
    assert int(kv.m[0, 0]) == 1 and float(kv.counts[0, 0, 0]) == 50


def test_stream_attention_exact_store_and_positions():
    k, v, q = _stream(n=30, d=8, h=1, H=2)
    out = stream_attention(ExactKV(8), q, k, v, query_positions=[29, 3, 10])
    full = torch.nn.functional.scaled_dot_product_attention(q, k.repeat(1, 2, 1, 1), v.repeat(1, 2, 1, 1),
                                                            is_causal=True)
    assert torch.allclose(out, full[:, :, [29, 3, 10]], atol=1e-5)
    out2 = subgen_attention(q, k, v, query_positions=[29], preset="llm", recent_window=32, seed=0)
    assert torch.allclose(out2, full[:, :, [29]], atol=1e-5)


def test_memory_formula():
    k, v, q = _stream(n=400, d=8, scale=2.0)
    kv = SubGenKV(8, preset="paper", delta=0.5, seed=0).update(k, v, queries=q)
    m = int(kv.m[0, 0])
    assert int(kv.stored_vectors()[0, 0]) == m * (1 + 8) + 2 * 64
    assert kv.memory_bytes() == (m * 9 + 128) * 8 * 4
    kv = SubGenKV(8, preset="llm", delta=0.5, seed=0).update(k, v, queries=q)
    m = int(kv.m[0, 0])
    assert int(kv.stored_vectors()[0, 0]) == m * (1 + 2 * 4) + 2 * 64 + 2 * 4


def test_reorder_selects_batch_rows():
    k, v, q = _stream(n=100, d=8, b=3, h=2, H=2)
    kv = SubGenKV(8, preset="llm", seed=0).update(k, v, queries=q)
    full = kv.attend(q[:, :, -1:])
    kv.reorder(torch.tensor([2, 0]))
    assert kv.batch == 2
    assert torch.allclose(kv.attend(q[[2, 0]][:, :, -1:]), full[[2, 0]], atol=1e-6)


def test_to_device_keeps_state():
    k, v, q = _stream(n=80, d=8)
    kv = SubGenKV(8, preset="llm", seed=0).update(k, v, queries=q)
    out = kv.attend(q[:, :, -1:])
    assert torch.equal(kv.to("cpu").attend(q[:, :, -1:]), out)


# ------------------------------------------------------------------------------------------- messages


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"head_dim": 0}, r"head_dim must be a positive int, got 0"),
    ({"preset": "fast"}, r"preset must be 'paper' or 'llm', got 'fast'"),
    ({"delta": -1.0}, r"delta must be a positive finite float or 'auto', got -1.0"),
    ({"delta": "big"}, r"delta must be a positive finite float or 'auto', got 'big'"),
    ({"t": 0}, r"t must be an int >= 1, got 0"),
    ({"s": 0}, r"s must be an int >= 1 when value_estimator='l2', got 0"),
    ({"s": 5, "preset": "llm"}, r"s must be None when value_estimator='cluster', got 5"),
    ({"value_estimator": "mean"}, r"value_estimator must be 'l2' or 'cluster', got 'mean'"),
    ({"recent_window": -1}, r"recent_window must be an int >= 0, got -1"),
    ({"n_sink": -2}, r"n_sink must be an int >= 0, got -2"),
    ({"scale": 0.0}, r"scale must be a positive finite float or None, got 0.0"),
    ({"max_exp_ratio": 1.0}, r"max_exp_ratio must be a finite float > 1, got 1.0"),
    ({"on_overflow": "drop"}, r"on_overflow must be 'merge' or 'raise', got 'drop'"),
    ({"budget": 0}, r"budget must be an int >= 1 or None, got 0"),
    ({"budget": 10, "preset": "llm"},
     r"budget=10 too small for s=None, recent_window=2, n_sink=4, t=4: need >= 11"),
])
def test_parameter_messages(kwargs, match):
    kwargs = dict(kwargs)
    head_dim = kwargs.pop("head_dim", 8)
    with pytest.raises((ValueError, TypeError), match=match):
        SubGenKV(head_dim, **kwargs)


def test_budget_too_small_paper():
    with pytest.raises(ValueError, match=r"budget=3 too small for s=1, recent_window=0, n_sink=0, t=8: need >= \d+"):
        SubGenKV(8, budget=3)
    need = int(__import__("re").search(r"need >= (\d+)", _err(lambda: SubGenKV(8, budget=3))).group(1))
    SubGenKV(8, budget=need)
    with pytest.raises(ValueError, match="too small"):
        SubGenKV(8, budget=need - 1)


def _err(fn):
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no error")


def test_input_messages():
    kv = SubGenKV(8, delta=1.0)
    k = torch.randn(1, 2, 5, 8)
    with pytest.raises(TypeError, match="keys must be a torch.Tensor, got numpy.ndarray"):
        kv.update(k.numpy(), k)
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got list"):
        kv.update(k, [1])
    with pytest.raises(ValueError, match=r"keys must have shape \(batch, kv_heads, n, 8\), got \(1, 2, 5, 4\)"):
        kv.update(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match=r"keys and values must have the same shape, got \(1, 2, 5, 8\) and "
                                         r"\(1, 2, 4, 8\)"):
        kv.update(k, k[:, :, :4])
    bad = k.clone()
    bad[0, 1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"keys contain NaN or inf \(first at token index 3\)"):
        kv.update(bad, k)
    kv.update(k, k)
    with pytest.raises(ValueError, match=r"keys have \(batch, kv_heads\)=\(1, 3\) but this SubGenKV holds \(1, 2\)"):
        kv.update(torch.randn(1, 3, 1, 8), torch.randn(1, 3, 1, 8))
    with pytest.raises(ValueError, match="queries must have a head count divisible by kv_heads=2, got 3"):
        kv.attend(torch.randn(1, 3, 1, 8))
    with pytest.raises(TypeError, match="queries must be a torch.Tensor, got str"):
        kv.attend("q")
    with pytest.raises(ValueError, match="delta='auto' needs queries at the first update"):
        SubGenKV(8).update(k, k)


def test_empty_attend_warns():
    kv = SubGenKV(8, delta=1.0)
    with pytest.warns(RuntimeWarning, match=r"attend\(\) on an empty SubGenKV returns zeros"):
        out = kv.attend(torch.randn(1, 2, 1, 8))
    assert torch.equal(out, torch.zeros(1, 2, 1, 8))


def test_stream_attention_messages():
    k, v, q = _stream(n=10, d=8)
    with pytest.raises(TypeError, match="kv must be a StreamingKV"):
        stream_attention("kv", q, k, v)
    with pytest.raises(ValueError, match=r"query_positions must be a sequence of positions in \[0, 10\)"):
        stream_attention(ExactKV(8), q, k, v, query_positions=[10])
    with pytest.raises(ValueError, match=r"queries must have as many positions as the keys \(10\), got 9"):
        stream_attention(ExactKV(8), q[:, :, :9], k, v)


def test_explicit_delta_still_records_rhat_for_stats():
    k, v, q = _stream(n=100, d=8, h=1, H=2)
    kv = SubGenKV(8, preset="llm", delta=0.7, seed=0, scale=0.5).update(k, v, queries=q)
    rhat = float(torch.quantile(q.double().reshape(-1, 8).norm(dim=-1) * 0.5, 0.95))
    assert float(kv.delta[0, 0]) == 0.7
    assert kv.stats()[0]["rhat"] == pytest.approx(rhat)
    assert math.isfinite(kv.stats()[0]["exp_factor"])
