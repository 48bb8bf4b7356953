"""teraml.kvcache.hf: SubGenCache / BaselineCache on a random-init tiny Llama (G1 against DynamicCache,
budgeted greedy and beam generation, the tag protocol, errors, and the transformers surface relied on)."""

import inspect
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM  # noqa: E402

from teraml.kvcache import ExactKV, SubGenKV  # noqa: E402
from teraml.kvcache._common import layer_generators  # noqa: E402
from teraml.kvcache.baselines import H2OKV  # noqa: E402
from teraml.kvcache.hf import ATTN_IMPLEMENTATION, BaselineCache, SubGenCache, enable  # noqa: E402
from teraml.kvcache.hf import _attention as teraml_kv_attention  # noqa: E402

VOCAB = 64
# transformers 5.x renamed the cache argument of forward/generate from past_key_values to cache
CACHE_KW = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def tiny_llama(seed=0, **overrides):
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.set_attn_implementation("sdpa")
    model.generation_config.pad_token_id = 0
    return model.eval()


def ids(n, batch=1, seed=0):
    return torch.randint(0, VOCAB, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny tensors: one intra-op thread is faster, and keeps a shared 2-core machine responsive
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    m = tiny_llama()
    enable(m)
    return m


def decode_logits(model, cache, prompt, steps, check=None):
    """Prefill ``prompt``, then ``steps`` greedy steps token by token: the last-position logits (b, steps+1, V)."""
    out = []
    with torch.no_grad():
        o = model(prompt, use_cache=True, **{CACHE_KW: cache})
        out.append(o.logits[:, -1])
        for _ in range(steps):
            tok = out[-1].argmax(-1, keepdim=True)
            o = model(tok, use_cache=True, **{CACHE_KW: cache})
            out.append(o.logits[:, -1])
            if check is not None:
                check(cache)
    return torch.stack(out, 1)


def generate(model, cache, prompt, **kw):
    with torch.no_grad():
        return model.generate(prompt, do_sample=False, attention_mask=torch.ones_like(prompt),
                              **{CACHE_KW: cache}, **kw)


T_PROMPT, T_STEPS = 12, 10
T = T_PROMPT + T_STEPS


EXACT_LIKE = {   # caches that must reproduce DynamicCache: baselines with budget >= T, SubGen with recent_window
    # >= T, and 'llm' with all-singleton clusters (delta below every key gap, no exact tokens)
    "exact": lambda m: BaselineCache(m, "exact", budget=1),
    "sink_window": lambda m: BaselineCache(m, "sink_window", budget=T),
    "h2o": lambda m: BaselineCache(m, "h2o", budget=T),
    "uniform": lambda m: BaselineCache(m, "uniform", budget=T, seed=0),
    "key_norm": lambda m: BaselineCache(m, "key_norm", budget=T),
    "subgen_window": lambda m: SubGenCache(m, recent_window=T, seed=0),
    "llm_singletons": lambda m: SubGenCache(m, preset="llm", delta=1e-6, recent_window=0, n_sink=0, seed=0),
}


# -- G1: equal to DynamicCache ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXACT_LIKE))
def test_g1_decode_loop_equals_dynamic_cache(model, name):
    prompt = ids(T_PROMPT, batch=2, seed=1)
    ref = decode_logits(model, DynamicCache(), prompt, T_STEPS)
    cache = EXACT_LIKE[name](model)
    out = decode_logits(model, cache, prompt, T_STEPS)
    assert (out - ref).abs().max() <= 1e-4
    assert cache.get_seq_length() == T
    if name == "llm_singletons":   # the sketch really holds the tokens: one cluster per key
        assert all(row["clusters"] == T - 1 for row in cache.stats())


@pytest.mark.parametrize("name", ["exact", "h2o", "llm_singletons"])
def test_g1_generate_equals_dynamic_cache(model, name):
    prompt = ids(T_PROMPT, batch=2, seed=2)
    kw = dict(max_new_tokens=T_STEPS, output_logits=True, return_dict_in_generate=True)
    ref = generate(model, DynamicCache(), prompt, **kw)
    out = generate(model, EXACT_LIKE[name](model), prompt, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    assert max(float((a - b).abs().max()) for a, b in zip(out.logits, ref.logits)) <= 1e-4


@pytest.mark.parametrize("name", ["exact", "subgen_window"])
def test_g1_chunked_prefill_equals_dynamic_cache(model, name):
    prompt = ids(17, batch=2, seed=14)
    cache = EXACT_LIKE[name](model)
    with torch.no_grad():
        ref = model(prompt).logits
        out = torch.cat([model(prompt[:, i:i + 5], use_cache=True, **{CACHE_KW: cache}).logits
                         for i in range(0, 17, 5)], dim=1)
    assert (out - ref).abs().max() <= 1e-4
    assert cache.get_seq_length() == 17 and cache.stores()[0].seen == 15


def test_g1_beam_search_equals_dynamic_cache(model):
    prompt = ids(T_PROMPT, batch=2, seed=3)
    ref = generate(model, DynamicCache(), prompt, max_new_tokens=8, num_beams=2)
    out = generate(model, BaselineCache(model, "exact", budget=1), prompt, max_new_tokens=8, num_beams=2)
    assert torch.equal(out, ref)


def test_enabled_model_without_our_cache_is_sdpa():
    plain, enabled = tiny_llama(), tiny_llama()
    assert enable(enabled) == "sdpa"
    assert enabled.config._attn_implementation == ATTN_IMPLEMENTATION
    prompt = ids(20, seed=4)
    with torch.no_grad():
        assert torch.equal(plain(prompt).logits, enabled(prompt).logits)
    a = decode_logits(plain, DynamicCache(), prompt, 3)
    b = decode_logits(enabled, DynamicCache(), prompt, 3)
    assert torch.equal(a, b)


# -- budgeted generation -------------------------------------------------------------------------------------
BUDGET = 12


BUDGETED = {
    "paper": lambda m: SubGenCache(m, budget=BUDGET, seed=0),
    "llm": lambda m: SubGenCache(m, preset="llm", budget=BUDGET, seed=0),
    "sink_window": lambda m: BaselineCache(m, "sink_window", budget=BUDGET, n_sink=2),
    "h2o": lambda m: BaselineCache(m, "h2o", budget=BUDGET),
    "uniform": lambda m: BaselineCache(m, "uniform", budget=BUDGET, seed=0),
    "key_norm": lambda m: BaselineCache(m, "key_norm", budget=BUDGET),
}


@pytest.mark.parametrize("name", list(BUDGETED))
def test_budgeted_decode_bounds_memory_and_counts_tokens(model, name):
    cache = BUDGETED[name](model)
    prompt = ids(30, seed=5)

    def check(c):
        assert all(int(v.max()) <= 2 * BUDGET for v in c.stored_vectors().values())
        assert c.memory_bytes() <= 2 * BUDGET * c.head_dim * 4 * 2 * 2   # layers x kv heads x float32

    out = decode_logits(model, cache, prompt, 20, check=check)
    assert torch.isfinite(out).all()
    assert cache.get_seq_length() == 50 and cache.get_seq_length(1) == 50
    assert all(s.seen == 49 for s in cache.stores())          # the last token is pending (exact) until the next call
    assert sorted({row["layer"] for row in cache.stats()}) == [0, 1]
    assert all(row["pending"] == 1 for row in cache.stats())


@pytest.mark.parametrize("name, num_beams", [("paper", 1), ("paper", 2), ("llm", 2), ("h2o", 2), ("uniform", 1)])
def test_budgeted_generate_runs(model, name, num_beams):
    cache = BUDGETED[name](model)
    prompt = ids(24, batch=2, seed=6)
    out = generate(model, cache, prompt, max_new_tokens=10, num_beams=num_beams)
    assert out.shape == (2, 34)
    assert cache.get_seq_length() == 33
    sv = cache.stored_vectors()
    assert all(v.shape == (2 * num_beams, 2) and int(v.max()) <= 2 * BUDGET for v in sv.values())


def test_same_seed_same_logits_and_per_layer_seeds(model):
    prompt = ids(30, seed=7)
    a = decode_logits(model, SubGenCache(model, budget=BUDGET, seed=3), prompt, 6)
    b = decode_logits(model, SubGenCache(model, budget=BUDGET, seed=3), prompt, 6)
    assert torch.equal(a, b)
    cache = SubGenCache(model, budget=BUDGET, seed=3)
    assert cache.seeds == [g.initial_seed() for g in layer_generators(3, 2)]
    assert len(set(cache.seeds)) == 2


def test_reset_restarts_the_cache(model):
    prompt = ids(30, seed=8)
    cache = SubGenCache(model, preset="llm", budget=BUDGET, seed=1)
    a = decode_logits(model, cache, prompt, 5)
    cache.reset()
    assert cache.get_seq_length() == 0 and cache.stored_vectors() == {}
    b = decode_logits(model, cache, prompt, 5)
    assert torch.equal(a, b)


# -- the tag protocol against the streaming stores ---------------------------------------------------------------
def run_protocol(cache, steps, prompt_len=7, b=2, hkv=2, heads=4, d=8, seed=0):
    """Drive layer 0 of ``cache`` as a model would (update, then the attention function) on random tensors.
    Returns the per-call inputs and outputs (b, H, n, d)."""
    g = torch.Generator().manual_seed(seed)
    module = SimpleNamespace(layer_idx=0)
    calls = []
    for n in [prompt_len] + [1] * steps:
        k, v = torch.randn(b, hkv, n, d, generator=g), torch.randn(b, hkv, n, d, generator=g)
        q = torch.randn(b, heads, n, d, generator=g)
        keys, values = cache.update(k, v, 0)
        out, weights = teraml_kv_attention(module, q, keys, values, None, scaling=cache.scales[0])
        assert weights is None and out.shape == (b, n, heads, d)
        calls.append((k, v, q, out.transpose(1, 2)))
    return calls


def reference_protocol(store, calls):
    """The streaming reference: before the tokens of a call enter the store, their queries attend over the store
    plus themselves, causally; then they are inserted with their queries (all but the last call's, which the
    cache keeps pending)."""
    for i, (k, v, q, out) in enumerate(calls):
        ref = store.attend(q, extra=(k, v))
        assert (out - ref).abs().max() <= 1e-5
        if i < len(calls) - 1:
            store.update(k, v, queries=q)
    return store


def test_protocol_h2o_equals_streaming_h2o(model):
    cache = BaselineCache(model, "h2o", budget=6)
    calls = run_protocol(cache, steps=12)
    ref = reference_protocol(H2OKV(8, budget=6, scale=cache.scales[0]), calls)
    store = cache.stores()[0]
    assert torch.equal(store.kept_positions(), ref.kept_positions())
    assert torch.allclose(store.scores, ref.scores, atol=1e-6)


def test_protocol_subgen_equals_streaming_subgen_with_the_layer_seed(model):
    cache = SubGenCache(model, preset="llm", budget=20, seed=5)
    calls = run_protocol(cache, steps=25)
    ref = SubGenKV(8, preset="llm", budget=20, scale=cache.scales[0], seed=cache.seeds[0])
    reference_protocol(ref, calls)
    got, want = cache.stores()[0].state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
    assert not math.isnan(float(cache.stores()[0].delta[0, 0]))      # delta='auto' got the prefill queries


def test_protocol_exact_is_causal_attention(model):
    cache = BaselineCache(model, "exact", budget=1)
    calls = run_protocol(cache, steps=4)
    k = torch.cat([c[0] for c in calls], 2)
    v = torch.cat([c[1] for c in calls], 2)
    q = torch.cat([c[2] for c in calls], 2)
    out = torch.cat([c[3] for c in calls], 2)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                                           scale=cache.scales[0])
    assert (out - ref).abs().max() <= 1e-5
    assert isinstance(cache.stores()[0], ExactKV)


def test_untagged_keys_run_sdpa():
    module = SimpleNamespace(layer_idx=0, is_causal=True, num_key_value_groups=2)
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)
    out, _ = teraml_kv_attention(module, q, k, k, None, scaling=0.5)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True, scale=0.5)
    assert torch.allclose(out.transpose(1, 2), ref, atol=1e-6)


# -- transformers Cache surface -------------------------------------------------------------------------------
def test_cache_surface(model):
    cache = SubGenCache(model, preset="llm", budget=BUDGET, seed=0)
    assert isinstance(cache, transformers.Cache) and len(cache) == 2
    assert cache.get_seq_length() == 0 and cache.get_mask_sizes(5, 0) == (5, 0)
    decode_logits(model, cache, ids(20, seed=9), 2)
    assert cache.get_seq_length() == 22
    # transformers passes an int query length (5.x recent) or the cache_position tensor (earlier 5.x)
    assert cache.get_mask_sizes(3, 0) == (25, 0)
    assert cache.get_mask_sizes(torch.arange(22, 25), 0) == (25, 0)
    assert cache.get_mask_sizes(torch.tensor(3), 1) == (25, 0)
    assert cache.get_max_cache_shape() == -1 and cache.get_max_length() == -1
    assert cache.is_compileable is False and cache.is_croppable is False
    assert cache.memory_bytes() == sum(int(v.sum()) for v in cache.stored_vectors().values()) * 8 * 4


def test_reorder_and_batch_methods_index_the_batch(model):
    prompt = ids(15, batch=3, seed=10)
    ours, ref = BaselineCache(model, "exact", budget=1), DynamicCache()
    decode_logits(model, ours, prompt, 2)
    decode_logits(model, ref, prompt, 2)
    for op, arg in (("reorder_cache", torch.tensor([2, 0, 0])), ("batch_repeat_interleave", 2),
                    ("batch_select_indices", torch.tensor([0, 3, 5, 1]))):
        getattr(ours, op)(arg)
        getattr(ref, op)(arg)
    tok = ids(1, batch=4, seed=11)
    with torch.no_grad():
        a = model(tok, use_cache=True, **{CACHE_KW: ours}).logits
        b = model(tok, use_cache=True, **{CACHE_KW: ref}).logits
    assert (a - b).abs().max() <= 1e-4
    assert ours.stored_vectors()[0].shape == (4, 2)


def test_crop_pending_tokens_then_raise_after_fold(model):
    cache = BaselineCache(model, "exact", budget=1)
    prompt = ids(10, seed=12)
    with torch.no_grad():
        model(prompt, use_cache=True, **{CACHE_KW: cache})
    cache.crop(0)                                  # nothing to remove
    cache.crop(-3)                                 # the prefill is still pending: exact
    assert cache.get_seq_length() == 7
    cache.crop(6)                                  # legacy form: the length to keep
    assert cache.get_seq_length() == 6
    ref = DynamicCache()
    with torch.no_grad():
        model(prompt[:, :6], use_cache=True, **{CACHE_KW: ref})
        a = model(prompt[:, 6:7], use_cache=True, **{CACHE_KW: cache}).logits
        b = model(prompt[:, 6:7], use_cache=True, **{CACHE_KW: ref}).logits
    assert (a - b).abs().max() <= 1e-4
    cache.crop(-1)                                 # the last call's token: still pending
    assert cache.get_seq_length() == 6
    s = SubGenCache(model, recent_window=32, seed=0)
    decode_logits(model, s, prompt, 1)
    with pytest.raises(NotImplementedError, match="^SubGenCache cannot crop folded tokens$"):
        s.crop(-2)
    assert s.get_seq_length() == 11


# -- errors ------------------------------------------------------------------------------------------------------
def test_missing_enable_raises_at_the_next_update():
    plain = tiny_llama()
    cache = SubGenCache(plain, preset="llm", budget=BUDGET, seed=0)
    with torch.no_grad():
        plain(ids(8), use_cache=True, **{CACHE_KW: cache})        # prefill: the tag is never read
        with pytest.raises(RuntimeError, match=r"^SubGenCache needs attn_implementation 'teraml_kv'; "
                                               r"call teraml\.kvcache\.hf\.enable\(model\)$"):
            plain(ids(1), use_cache=True, **{CACHE_KW: cache})


def test_padding_raises(model):
    prompt = ids(8, batch=2, seed=13)
    mask = torch.ones_like(prompt)
    mask[0, :3] = 0
    with pytest.raises(ValueError, match="^SubGenCache does not support padded batches$"):
        with torch.no_grad():
            model.generate(prompt, attention_mask=mask, max_new_tokens=2, do_sample=False,
                           **{CACHE_KW: SubGenCache(model, preset="llm", budget=BUDGET, seed=0)})
    mask = torch.ones_like(prompt)
    mask[1, -2:] = 0                               # right padding
    cache = BaselineCache(model, "exact", budget=1)
    with pytest.raises(ValueError, match="^BaselineCache does not support padded batches$"):
        with torch.no_grad():
            model(prompt, attention_mask=mask, use_cache=True, **{CACHE_KW: cache})
    # the failed call's tokens are dropped: the same cache then runs the unpadded prompt like a fresh one
    with torch.no_grad():
        out = model(prompt, use_cache=True, **{CACHE_KW: cache}).logits
        ref = model(prompt, use_cache=True, **{CACHE_KW: BaselineCache(model, "exact", budget=1)}).logits
    assert torch.equal(out, ref) and cache.get_seq_length() == prompt.shape[1]


def test_non_full_attention_layers_raise():
    m = tiny_llama()
    m.config.layer_types = ["full_attention", "sliding_attention"]
    with pytest.raises(ValueError, match=r"^SubGenCache supports full-attention layers only, got "
                                         r"layer_types=\['full_attention', 'sliding_attention'\]$"):
        SubGenCache(m)


def test_parameter_errors(model):
    with pytest.raises(ValueError, match="^preset must be 'paper' or 'llm', got 'fast'$"):
        SubGenCache(model, preset="fast")
    with pytest.raises(ValueError, match=r"^budget=4 too small for s=None, recent_window=1, n_sink=4, t=4: need >= \d+$"):
        SubGenCache(model, preset="llm", budget=4)
    with pytest.raises(ValueError, match="^method must be one of 'exact', 'sink_window', 'h2o', 'uniform', "
                                         "'key_norm', got 'lru'$"):
        BaselineCache(model, "lru", budget=4)
    with pytest.raises(ValueError, match="^budget must be an int >= 1, got 0$"):
        BaselineCache(model, "h2o", budget=0)
    with pytest.raises(ValueError, match="^seed must be None or an int >= 0, got -1$"):
        SubGenCache(model, seed=-1)
    with pytest.raises(TypeError, match="^model must be a transformers PreTrainedModel, got str$"):
        SubGenCache("llama")
    with pytest.raises(TypeError, match="^model must be a transformers PreTrainedModel, got int$"):
        enable(3)
    with pytest.raises(TypeError, match="^SubGenCache got an unexpected keyword argument 'scale'"):
        SubGenCache(model, scale=0.1)


def test_unsupported_attention_kwargs_raise(model):
    cache = BaselineCache(model, "exact", budget=1)
    k = torch.randn(1, 2, 3, 8)
    keys, values = cache.update(k, k, 0)
    with pytest.raises(ValueError, match="^BaselineCache does not support attention with softcap$"):
        teraml_kv_attention(SimpleNamespace(layer_idx=0), torch.randn(1, 4, 3, 8), keys, values, None, softcap=30.0)


def test_stale_keys_raise(model):
    cache = BaselineCache(model, "exact", budget=1)
    k = torch.randn(1, 2, 3, 8)
    old, _ = cache.update(k, k, 0)
    teraml_kv_attention(SimpleNamespace(layer_idx=0), torch.randn(1, 4, 3, 8), old, old, None)
    cache.update(k[:, :, :1], k[:, :, :1], 0)
    with pytest.raises(RuntimeError, match="^BaselineCache: these keys belong to an earlier call of layer 0$"):
        teraml_kv_attention(SimpleNamespace(layer_idx=0), torch.randn(1, 4, 3, 8), old, old, None)


# -- the transformers symbols relied on, and the lazy import --------------------------------------------------
def test_pinned_transformers_surface(model):
    from transformers import AttentionInterface
    from transformers.cache_utils import Cache, CacheLayerMixin
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    assert int(transformers.__version__.split(".")[0]) == 5
    assert callable(AttentionInterface.register) and callable(AttentionMaskInterface.register)
    assert callable(sdpa_mask) and callable(sdpa_attention_forward)
    assert "layers" in inspect.signature(Cache.__init__).parameters
    for name in ("update", "get_seq_length", "get_mask_sizes", "reorder_cache", "crop", "batch_repeat_interleave",
                 "batch_select_indices", "reset"):
        assert callable(getattr(Cache, name)), name
    for name in ("lazy_initialization", "update", "get_mask_sizes", "get_seq_length", "get_max_length"):
        assert name in CacheLayerMixin.__abstractmethods__, name
    params = list(inspect.signature(sdpa_attention_forward).parameters)
    assert params[:5] == ["module", "query", "key", "value", "attention_mask"]
    assert ATTN_IMPLEMENTATION in AttentionInterface().valid_keys()       # registered by the module fixture


def test_import_kvcache_does_not_import_transformers():
    code = ("import sys, teraml.kvcache as k; assert 'transformers' not in sys.modules; "
            "k.SubGenCache; assert 'transformers' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
