"""Same-budget baselines (sink + window, H2O, uniform, key-norm) against plain per-token references."""

import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from teraml.kvcache.baselines import (
    H2OKV,
    METHODS,
    ExactKV,
    KeyNormKV,
    SinkWindowKV,
    UniformKV,
    make_kv,
)

BUDGETED = ("sink_window", "h2o", "uniform", "key_norm")


# ----------------------------------------------------------------------------------------------- references


def ref_sink_window(n, budget, n_sink):
    """Positions kept by StreamingLLM after n tokens: the first n_sink and the last budget - n_sink."""
    return sorted(p for p in range(n) if p < n_sink or p >= n - (budget - n_sink))


def ref_key_norm(keys, budget):
    """The budget smallest ||k|| of one group's keys (n, d); ties keep the older token."""
    norms = [float(np.linalg.norm(k)) for k in keys.double().numpy()]
    return sorted(sorted(range(len(norms)), key=lambda p: (norms[p], p))[:budget])


def ref_h2o(keys, queries, budget, recent, scale):
    """Per-token H2O of one group, float64: keys (n, d), queries (g, n, d) or None. Step i inserts token i,
    adds the softmax mass of the g queries of position i over the kept tokens, then evicts the non-recent
    token of lowest score (ties: the oldest) when budget + 1 are kept. Returns (kept positions, scores)."""
    k = keys.double().numpy()
    q = None if queries is None else queries.double().numpy()
    kept, score = [], {}
    for i in range(len(k)):
        kept.append(i)
        score[i] = 0.0
        if q is not None:
            for qg in q[:, i]:
                logits = [scale * float(qg @ k[j]) for j in kept]
                mx = max(logits)
                e = [math.exp(x - mx) for x in logits]
                for j, ej in zip(kept, e):
                    score[j] += ej / sum(e)
        if len(kept) > budget:
            evict = min((j for j in kept if j <= i - recent), key=lambda j: (score[j], j))
            kept.remove(evict)
            del score[evict]
    return kept, [score[j] for j in kept]


def sdpa_gqa(q, k, v, scale):
    """Exact attention of q (b, H, nq, d) over all of k, v (b, Hkv, n, d), kv heads repeated as transformers."""
    g = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), scale=scale)


def random_chunks(n, gen, max_chunk=None):
    """Random chunk sizes summing to n (an update may also be a single token)."""
    sizes, left = [], n
    while left:
        c = int(torch.randint(1, (max_chunk or n) + 1, (1,), generator=gen))
        c = min(c, left)
        sizes.append(c)
        left -= c
    return sizes


def feed(kv, k, v, q=None, sizes=None):
    """Update ``kv`` with the stream in chunks of ``sizes`` (default: one update); returns kv."""
    sizes = sizes or [k.shape[2]]
    s = 0
    for c in sizes:
        kv.update(k[:, :, s:s + c], v[:, :, s:s + c], None if q is None else q[:, :, s:s + c])
        s += c
    return kv


def stream(b, hkv, g, n, d, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    k, v = torch.randn(b, hkv, n, d, generator=gen, dtype=dtype), torch.randn(b, hkv, n, d, generator=gen, dtype=dtype)
    q = torch.randn(b, hkv * g, n, d, generator=gen, dtype=dtype)
    return k, v, q


def params(method, budget, **kw):
    out = {"budget": budget}
    if method == "sink_window":
        out["n_sink"] = kw.get("n_sink", min(2, budget))
    if method == "h2o":
        out["recent_fraction"] = kw.get("recent_fraction", 0.5)
    if method == "uniform":
        out["seed"] = kw.get("seed", 0)
    return out


def sorted_kept(kv):
    return kv.kept_positions().sort(dim=-1).values


# ------------------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("extra", [0, 5])
def test_exact_when_the_budget_covers_the_stream(method, extra):
    b, hkv, g, n, d = 2, 2, 2, 37, 8
    k, v, q = stream(b, hkv, g, n, d, seed=1)
    kv = make_kv(method, d, **params(method, n + extra))
    feed(kv, k, v, q, sizes=[5, 1, 20, 11])
    qs = torch.randn(b, hkv * g, 3, d)
    out = kv.attend(qs)
    assert torch.allclose(out, sdpa_gqa(qs, k, v, kv.scale), atol=1e-5)
    assert torch.allclose(out, feed(ExactKV(d), k, v).attend(qs), atol=1e-5)
    assert kv.stored_vectors().tolist() == [[2 * n] * hkv] * b
    assert kv.memory_bytes() == b * hkv * 2 * n * d * 4


def test_attend_is_softmax_over_the_kept_tokens():
    b, hkv, g, n, d, B = 1, 2, 2, 50, 8, 12
    k, v, q = stream(b, hkv, g, n, d, seed=2)
    for method in BUDGETED:
        kv = feed(make_kv(method, d, **params(method, B)), k, v, q, sizes=[17, 33])
        pos = kv.kept_positions()
        kk = torch.stack([torch.stack([k[i, h, pos[i, h]] for h in range(hkv)]) for i in range(b)])
        vv = torch.stack([torch.stack([v[i, h, pos[i, h]] for h in range(hkv)]) for i in range(b)])
        qs = torch.randn(b, hkv * g, 2, d)
        assert torch.allclose(kv.attend(qs), sdpa_gqa(qs, kk, vv, kv.scale), atol=1e-5), method
        assert torch.equal(kv.keys, kk) and torch.equal(kv.values, vv)


@pytest.mark.parametrize("method", ["exact", "sink_window", "key_norm"])
def test_gqa_equals_repeated_kv_heads(method):
    b, hkv, g, n, d, B = 2, 2, 2, 40, 8, 10
    k, v, q = stream(b, hkv, g, n, d, seed=3)
    folded = feed(make_kv(method, d, **params(method, B)), k, v, sizes=[7, 33])
    repeated = feed(make_kv(method, d, **params(method, B)), k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                    sizes=[7, 33])
    qs = torch.randn(b, hkv * g, 3, d)
    assert torch.allclose(folded.attend(qs), repeated.attend(qs), atol=1e-6)
    assert folded.stored_vectors().sum() * g == repeated.stored_vectors().sum()


# -------------------------------------------------------------------------------------------- sink + window


@pytest.mark.parametrize(("budget", "n_sink"), [(8, 4), (8, 0), (8, 8), (1, 0), (1, 1), (5, 2), (60, 4)])
def test_sink_window_keeps_the_sinks_and_the_window(budget, n_sink):
    b, hkv, n, d = 2, 3, 43, 4
    k, v, _ = stream(b, hkv, 1, n, d, seed=4)
    gen = torch.Generator().manual_seed(budget * 10 + n_sink)
    for sizes in ([n], [1] * n, random_chunks(n, gen, 9), random_chunks(n, gen)):
        kv = feed(SinkWindowKV(d, budget=budget, n_sink=n_sink), k, v, sizes=sizes)
        want = ref_sink_window(n, budget, n_sink)
        assert kv.kept_positions().tolist() == [[want] * hkv] * b, sizes
        assert torch.equal(kv.keys, k[:, :, want]) and torch.equal(kv.values, v[:, :, want])
    # prefixes: at most budget tokens at every step
    kv = SinkWindowKV(d, budget=budget, n_sink=n_sink)
    for i in range(n):
        kv.update(k[:, :, i:i + 1], v[:, :, i:i + 1])
        assert kv.kept_positions()[0, 0].tolist() == ref_sink_window(i + 1, budget, n_sink)


# ------------------------------------------------------------------------------------------------ key norm


def test_key_norm_keeps_the_smallest_norms_per_group():
    b, hkv, n, d, B = 2, 3, 70, 8, 13
    k, v, _ = stream(b, hkv, 1, n, d, seed=5)
    k = k * torch.rand(b, hkv, n, 1, generator=torch.Generator().manual_seed(0)) * 3
    gen = torch.Generator().manual_seed(1)
    for sizes in ([n], [1] * n, random_chunks(n, gen, 20)):
        kv = feed(KeyNormKV(d, budget=B), k, v, sizes=sizes)
        for i, h in itertools.product(range(b), range(hkv)):
            assert kv.kept_positions()[i, h].tolist() == ref_key_norm(k[i, h], B), (sizes, i, h)
    assert not torch.equal(kv.kept_positions()[0, 0], kv.kept_positions()[1, 2])       # groups differ


def test_key_norm_ties_keep_the_older_token():
    d, B = 4, 3
    norms = torch.tensor([2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 0.5, 2.0])
    k = (norms.view(1, 1, -1, 1) * torch.ones(1, 1, 1, d) / 2).clone()
    v = torch.randn(1, 1, 8, d)
    for sizes in ([8], [1] * 8, [3, 5], [2, 1, 4, 1]):
        assert KeyNormKV(d, budget=B).update(k, v).kept_positions().tolist() == [[[1, 3, 6]]]
        assert feed(KeyNormKV(d, budget=B), k, v, sizes=sizes).kept_positions().tolist() == [[[1, 3, 6]]]
    assert feed(KeyNormKV(d, budget=2), k[:, :, :3], v[:, :, :3], sizes=[1, 1, 1]).kept_positions().tolist() \
        == [[[0, 1]]]


# ------------------------------------------------------------------------------------------------- uniform


def test_uniform_same_seed_same_state():
    k, v, _ = stream(2, 3, 1, 200, 8, seed=6)
    a = feed(UniformKV(8, budget=16, seed=3), k, v, sizes=[50, 1, 149])
    b = feed(UniformKV(8, budget=16, seed=3), k, v, sizes=[50, 1, 149])
    c = feed(UniformKV(8, budget=16, seed=4), k, v, sizes=[50, 1, 149])
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[x], sb[x]) if isinstance(sa[x], torch.Tensor)
                                          else sa[x] == sb[x] for x in sa)
    assert not torch.equal(a.kept_positions(), c.kept_positions())
    assert not torch.equal(a.kept_positions()[0, 0].sort().values, a.kept_positions()[1, 1].sort().values)
    # the reset generator replays the same draws
    assert torch.equal(feed(a.reset(), k, v, sizes=[50, 1, 149]).kept_positions(), b.kept_positions())


def _subset_counts(kept_sets, n, budget):
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(n), budget))}
    counts = np.zeros(len(subsets))
    for s in kept_sets:
        counts[subsets[tuple(sorted(s))]] += 1
    return counts


@pytest.mark.parametrize("chunked", [False, True])
def test_uniform_keeps_a_uniform_subset_across_groups(chunked):
    """Algorithm R keeps each of the C(n, B) subsets with probability 1 / C(n, B): one seed, 3000 groups."""
    n, B, d = 6, 3, 4
    k, v, _ = stream(1500, 2, 1, n, d, seed=7)
    kv = feed(UniformKV(d, budget=B, seed=11), k, v, sizes=[2, 3, 1] if chunked else [1] * n)
    counts = _subset_counts(kv.kept_positions().reshape(-1, B).tolist(), n, B)
    assert chisquare(counts).pvalue > 1e-3
    assert int(kv.stored_vectors().max()) == 2 * B


def test_uniform_keeps_a_uniform_subset_across_seeds():
    n, B, d = 6, 2, 4
    k, v, _ = stream(1, 1, 1, n, d, seed=8)
    kept = [feed(UniformKV(d, budget=B, seed=s), k, v, sizes=[1, 4, 1]).kept_positions()[0, 0].tolist()
            for s in range(1200)]
    counts = _subset_counts(kept, n, B)
    assert chisquare(counts).pvalue > 1e-3
    inclusion = np.bincount(np.ravel(kept), minlength=n)                # each token kept with p = B / n
    assert np.all(np.abs(inclusion - 1200 * B / n) < 4 * math.sqrt(1200 * B / n * (1 - B / n)))


# ----------------------------------------------------------------------------------------------------- H2O


def _h2o_hand_stream():
    """Keys (ln e_j, 0) and the query (1, 0) at scale 1: token j gets attention weight e_j."""
    e = torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0], dtype=torch.float64)
    k = torch.stack([e.log(), torch.zeros(5, dtype=torch.float64)], dim=-1).view(1, 1, 5, 2)
    q = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(1, 1, 5, 2)
    return k, torch.randn(1, 1, 5, 2, dtype=torch.float64), q


@pytest.mark.parametrize("sizes", [[5], [1] * 5, [2, 3], [3, 2], [1, 4]])
def test_h2o_hand_computed(sizes):
    """budget 3, one recent token. Masses: step 1 (1, 3)/4; step 2 (1, 3, 1)/5; step 3 (1, 3, 1, 2)/7 -> token 2
    (1/5 + 1/7) is evicted, not token 0 (1 + 1/4 + 1/5 + 1/7); step 4 over {0, 1, 3, 4}: (1, 3, 2, 1)/7 -> token
    3 (2/7 + 2/7), the second heaviest of step 3, is evicted."""
    k, v, q = _h2o_hand_stream()
    kv = feed(H2OKV(2, budget=3, recent_fraction=1 / 3, scale=1.0, dtype=torch.float64), k, v, q, sizes=sizes)
    assert kv.recent == 1
    assert kv.kept_positions().tolist() == [[[0, 1, 4]]]
    want = [1 + 1 / 4 + 1 / 5 + 1 / 7 + 1 / 7, 3 / 4 + 3 / 5 + 3 / 7 + 3 / 7, 1 / 7]
    assert torch.allclose(kv.scores, torch.tensor([[want]], dtype=torch.float64), atol=1e-12)
    assert ref_h2o(k[0, 0], q[0], 3, 1, 1.0)[0] == [0, 1, 4]


def test_h2o_recent_tokens_are_protected():
    """recent_fraction=1 is a sliding window; 0 protects nothing (a new token may be evicted at once)."""
    k, v, q = _h2o_hand_stream()
    kv = feed(H2OKV(2, budget=3, recent_fraction=1.0, scale=1.0, dtype=torch.float64), k, v, q)
    assert kv.kept_positions().tolist() == [[[2, 3, 4]]]
    kv = feed(H2OKV(2, budget=3, recent_fraction=0.0, scale=1.0, dtype=torch.float64), k, v, q, sizes=[1] * 5)
    # step 3 over {0,1,2,3}: the new token 3 (2/7) < token 2 (1/5 + 1/7): evicted at once; step 4 over {0,1,2,4}:
    # token 4 (1/6) < token 2 (1/5 + 1/7 + 1/6): evicted at once
    assert kv.kept_positions().tolist() == [[[0, 1, 2]]]
    assert ref_h2o(k[0, 0], q[0], 3, 0, 1.0)[0] == [0, 1, 2]


def test_h2o_without_queries_evicts_the_oldest():
    k, v, _ = stream(2, 2, 1, 30, 4, seed=9)
    for sizes in ([30], [1] * 30, [7, 23]):
        kv = feed(H2OKV(4, budget=6, recent_fraction=0.5), k, v, sizes=sizes)
        assert kv.kept_positions().tolist() == [[list(range(24, 30))] * 2] * 2
        assert float(kv.scores.abs().max()) == 0.0


def test_h2o_observe_adds_mass_without_inserting():
    d = 2
    k = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).view(1, 1, 5, d)
    v = torch.randn(1, 1, 5, d)
    kv = H2OKV(d, budget=3, recent_fraction=1 / 3, scale=1.0).update(k[:, :, :3], v[:, :, :3])
    assert kv.observe(torch.tensor([1.0, 0.0]).view(1, 1, 1, d)) is kv
    e = torch.tensor([1.0, math.exp(5.0), 1.0])
    assert kv.seen == 3 and torch.allclose(kv.scores, (e / e.sum()).view(1, 1, 3))
    # token 3 evicts the oldest of the tied light tokens (0); token 4 evicts token 3 (no mass, not recent)
    kv.update(k[:, :, 3:], v[:, :, 3:])
    assert kv.kept_positions().tolist() == [[[1, 2, 4]]]
    # GQA: the two query heads of the group add their mass
    kv2 = H2OKV(d, budget=3, scale=1.0).update(k[:, :, :3], v[:, :, :3]).observe(torch.ones(1, 2, 4, d))
    assert torch.allclose(kv2.scores.sum(), torch.tensor(8.0))
    assert H2OKV(d, budget=3).observe(torch.ones(1, 1, 1, d)).seen == 0                # empty: nothing


@pytest.mark.parametrize("seed", range(4))
def test_h2o_chunked_equals_per_token_and_the_reference(seed):
    b, hkv, g, n, d, B = 2, 2, 2, 60, 4, 9
    k, v, q = stream(b, hkv, g, n, d, seed=seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    rf = [0.5, 0.0, 1 / 3, 0.9][seed]
    per_token = feed(H2OKV(d, budget=B, recent_fraction=rf, dtype=torch.float64), k, v, q, sizes=[1] * n)
    for sizes in ([n], random_chunks(n, gen, 13), random_chunks(n, gen)):
        chunked = feed(H2OKV(d, budget=B, recent_fraction=rf, dtype=torch.float64), k, v, q, sizes=sizes)
        assert torch.equal(chunked.kept_positions(), per_token.kept_positions()), sizes
        assert torch.allclose(chunked.scores, per_token.scores, atol=1e-10)
    for i, h in itertools.product(range(b), range(hkv)):
        kept, scores = ref_h2o(k[i, h], q[i, h * g:(h + 1) * g], B, per_token.recent, per_token.scale)
        assert per_token.kept_positions()[i, h].tolist() == kept
        assert np.allclose(per_token.scores[i, h].numpy(), scores, atol=1e-10)


def test_h2o_block_boundary():
    """A chunk longer than the internal block (256) still evicts token by token."""
    b, hkv, g, n, d, B = 1, 1, 2, 300, 4, 20
    k, v, q = stream(b, hkv, g, n, d, seed=12, dtype=torch.float64)
    one = feed(H2OKV(d, budget=B, dtype=torch.float64), k, v, q)
    kept, _ = ref_h2o(k[0, 0], q[0], B, one.recent, one.scale)
    assert one.kept_positions()[0, 0].tolist() == kept and one.seen == n


# ------------------------------------------------------------------------------------- chunking, state, beams


@pytest.mark.parametrize("method", ["sink_window", "key_norm"])
def test_chunked_equals_per_token(method):
    k, v, _ = stream(2, 3, 1, 90, 8, seed=13)
    gen = torch.Generator().manual_seed(0)
    ref = feed(make_kv(method, 8, **params(method, 17)), k, v, sizes=[1] * 90)
    for _ in range(3):
        kv = feed(make_kv(method, 8, **params(method, 17)), k, v, sizes=random_chunks(90, gen, 30))
        assert torch.equal(kv.kept_positions(), ref.kept_positions())
        assert torch.equal(kv.keys, ref.keys) and torch.equal(kv.values, ref.values)


@pytest.mark.parametrize("method", BUDGETED)
def test_reorder_selects_batch_rows(method):
    b, hkv, g, n, d = 3, 2, 2, 40, 4
    k, v, q = stream(b, hkv, g, n, d, seed=14)
    kv = feed(make_kv(method, d, **params(method, 7)), k, v, q, sizes=[15, 25])
    before = {name: t.clone() for name, t in kv._state_tensors().items()}
    qs = torch.randn(b, hkv * g, 2, d)
    out = kv.attend(qs)
    index = torch.tensor([2, 0, 0])
    kv.reorder(index)
    assert kv.batch == 3
    for name, t in kv._state_tensors().items():
        assert torch.equal(t, before[name][index]), name
    assert torch.allclose(kv.attend(qs[index]), out[index], atol=1e-6)
    kv.reorder(torch.tensor([1]))
    assert kv.batch == 1 and kv.kept_positions().shape[:2] == (1, hkv)
    kv.update(k[:1, :, :3], v[:1, :, :3], q[:1, :, :3])                     # a beam keeps decoding
    assert int(kv.stored_vectors().max()) <= 2 * 7 and kv.seen == n + 3


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip(method):
    b, hkv, g, n, d = 2, 2, 2, 50, 4
    k, v, q = stream(b, hkv, g, n, d, seed=15)
    a = feed(make_kv(method, d, **params(method, 11)), k[:, :, :30], v[:, :, :30], q[:, :, :30])
    state = a.state_dict()
    c = make_kv(method, d, **params(method, 11, seed=99)).load_state_dict(state)
    for kv in (a, c):
        feed(kv, k[:, :, 30:], v[:, :, 30:], q[:, :, 30:], sizes=[1, 19])
    qs = torch.randn(b, hkv * g, 2, d)
    assert torch.equal(a.attend(qs), c.attend(qs))
    sa, sc = a.state_dict(), c.state_dict()
    assert all(torch.equal(sa[x], sc[x]) if isinstance(sa[x], torch.Tensor) else sa[x] == sc[x] for x in sa)
    state["seen"] = -1                                                       # a deep copy: a is untouched
    assert a.seen == n


def test_storage_dtype_and_reset():
    k, v, q = stream(1, 2, 2, 40, 8, seed=16)
    for method in BUDGETED:
        kv = feed(make_kv(method, 8, **params(method, 9), dtype=torch.bfloat16), k, v, q, sizes=[20, 1, 19])
        assert kv.keys.dtype == torch.bfloat16 and kv.memory_bytes() == 2 * 9 * 8 * 2 * 2
        assert torch.isfinite(kv.attend(torch.randn(1, 4, 1, 8))).all()
        kv.reset()
        assert kv.batch is None and kv.seen == 0 and kv.memory_bytes() == 0
        kv.update(k[:, :1].repeat(3, 1, 1, 1), v[:, :1].repeat(3, 1, 1, 1), q[:, :2].repeat(3, 1, 1, 1))
        assert kv.kept_positions().shape == (3, 1, 9)


# ---------------------------------------------------------------------------------------------------- errors


def _raises(msg, fn, *args, **kwargs):
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        fn(*args, **kwargs)


@pytest.mark.parametrize("cls", [SinkWindowKV, H2OKV, UniformKV, KeyNormKV])
def test_budget_errors(cls):
    _raises("budget must be an int >= 1, got 0", cls, 8, budget=0)
    _raises("budget must be an int >= 1, got -3", cls, 8, budget=-3)
    with pytest.raises(TypeError, match=re.escape("budget must be an int >= 1, got float 2.5")):
        cls(8, budget=2.5)
    with pytest.raises(TypeError, match="budget"):
        cls(8)
    _raises("head_dim must be a positive int, got 0", cls, 0, budget=4)


def test_parameter_errors():
    _raises("n_sink must be an int >= 0, got -1", SinkWindowKV, 8, budget=4, n_sink=-1)
    _raises("n_sink must be an int <= budget=4, got 5", SinkWindowKV, 8, budget=4, n_sink=5)
    _raises("n_sink must be an int <= budget=2, got 4", make_kv, "sink_window", 8, budget=2)
    _raises("recent_fraction must be a float in [0, 1], got 1.5", H2OKV, 8, budget=4, recent_fraction=1.5)
    _raises("recent_fraction must be a float in [0, 1], got -0.1", H2OKV, 8, budget=4, recent_fraction=-0.1)
    _raises("recent_fraction must be a float in [0, 1], got nan", H2OKV, 8, budget=4, recent_fraction=math.nan)
    _raises("method must be one of 'exact', 'sink_window', 'h2o', 'uniform', 'key_norm', got 'x'", make_kv, "x", 8)


def test_inherited_parameter_errors():
    _raises("seed must be an int >= 0 or None, got -1", UniformKV, 8, budget=4, seed=-1)
    _raises("scale must be a positive finite float or None, got 0.0", KeyNormKV, 8, budget=4, scale=0.0)


def test_input_errors():
    kv = H2OKV(4, budget=4)
    k = torch.randn(1, 2, 5, 4)
    _raises("queries must have as many positions as the keys (5), got 3", kv.update, k, k, torch.randn(1, 2, 3, 4))
    _raises("queries must have a head count divisible by kv_heads=2, got 3", kv.update, k, k, torch.randn(1, 3, 5, 4))
    kv.update(k, k)
    _raises("queries must have a head count divisible by kv_heads=2, got 3", kv.observe, torch.randn(1, 3, 1, 4))
    _raises("keys must have shape (batch, kv_heads, n, 4), got (1, 2, 5, 3)", kv.update, k[..., :3], k[..., :3])
    _raises("keys have (batch, kv_heads)=(2, 2) but this H2OKV holds (1, 2)", kv.update, k.repeat(2, 1, 1, 1),
            k.repeat(2, 1, 1, 1))
    bad = k.clone()
    bad[0, 1, 3, 0] = math.inf
    _raises("keys contain NaN or inf (first at token index 3)", UniformKV(4, budget=2).update, bad, k)
    with pytest.raises(TypeError, match=re.escape("keys must be a torch.Tensor, got ")):
        SinkWindowKV(4, budget=4).update(k.numpy(), k)


def test_make_kv_builds_each_method():
    for method in METHODS:
        kv = make_kv(method, 8, budget=5, seed=1)                # side-by-side loops pass the same params
        assert kv.method == method
    assert make_kv("uniform", 8, budget=5, seed=1).seed == 1
    for budget, fraction, recent in [(5, 0.2, 1), (10, 0.3, 3), (3, 1 / 3, 1), (7, 0.5, 4), (7, 0.0, 0), (7, 1.0, 7),
                                     (1000, 0.1001, 101)]:
        assert make_kv("h2o", 8, budget=budget, recent_fraction=fraction).recent == recent


# ------------------------------------------------------------------------------------------------ hypothesis


@settings(max_examples=30, deadline=None)
@given(method=st.sampled_from(BUDGETED), batch=st.integers(1, 2), hkv=st.integers(1, 3), g=st.integers(1, 2),
       d=st.sampled_from([4, 8]), n=st.integers(1, 100), budget=st.integers(1, 40), seed=st.integers(0, 2**16),
       n_sink=st.integers(0, 3), recent_fraction=st.floats(0, 1), with_queries=st.booleans())
def test_property_finite_and_within_budget(method, batch, hkv, g, d, n, budget, seed, n_sink, recent_fraction,
                                           with_queries):
    dtype = torch.float64 if method == "h2o" else torch.float32          # h2o is compared with a float64 loop
    k, v, q = stream(batch, hkv, g, n, d, seed=seed, dtype=dtype)
    q = q if with_queries else None
    kw = {"n_sink": min(n_sink, budget), "recent_fraction": recent_fraction, "seed": seed}
    kv = make_kv(method, d, **params(method, budget, **kw), dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    s = 0
    for c in random_chunks(n, gen, 1 + seed % 40):
        kv.update(k[:, :, s:s + c], v[:, :, s:s + c], None if q is None else q[:, :, s:s + c])
        s += c
        assert kv.stored_vectors().tolist() == [[2 * min(budget, s)] * hkv] * batch
    out = kv.attend(torch.randn(batch, hkv * g, 3, d, generator=gen, dtype=dtype))
    assert out.shape == (batch, hkv * g, 3, d) and torch.isfinite(out).all()
    pos = kv.kept_positions()
    assert pos.min() >= 0 and pos.max() < n
    assert all(len(set(row)) == len(row) for row in pos.reshape(-1, pos.shape[-1]).tolist())
    if method == "sink_window":
        assert pos[0, 0].tolist() == ref_sink_window(n, budget, min(n_sink, budget))
    if method == "key_norm":
        assert pos[-1, -1].tolist() == ref_key_norm(k[-1, -1], budget)
    if method == "h2o":
        kept, _ = ref_h2o(k[-1, -1], None if q is None else q[-1, (hkv - 1) * g:], budget, kv.recent, kv.scale)
        assert pos[-1, -1].tolist() == kept
