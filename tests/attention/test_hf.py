import itertools
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from teraml.attention import register_hyper_attention  # noqa: E402

_names = (f"teraml_test_{i}" for i in itertools.count())


def tiny_llama(seed=0):
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(cfg)
    model.set_attn_implementation("sdpa")
    return model.eval()


def ids(n, batch=1, seed=0):
    return torch.randint(0, 256, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


def test_t13_exact_when_below_threshold(model):
    x = ids(300)
    with torch.no_grad():
        ref = model(x).logits
        reg = register_hyper_attention(next(_names), min_seq_len=512)
        model.set_attn_implementation(reg.name)
        out = model(x).logits
        model.set_attn_implementation("sdpa")
    assert (out - ref).abs().max() <= 1e-5
    assert reg.counts == {"hyper": 0, "exact": 2}


def test_t13_hyper_prefill_is_causal_and_counted(model):
    x = ids(1024)
    reg = register_hyper_attention(next(_names), min_seq_len=128, block_size=64, sample_size=64)
    model.set_attn_implementation(reg.name)
    try:
        with torch.no_grad():
            a = model(x).logits
            assert reg.counts["hyper"] == 2
            x2 = x.clone()
            x2[0, 700:] = (x2[0, 700:] + 1) % 256
            b = model(x2).logits
            assert reg.counts["hyper"] == 4
    finally:
        model.set_attn_implementation("sdpa")
    assert torch.isfinite(a).all()
    # rows before the change see the same prefix; the generator state differs between calls, so compare
    # the exactly computed prefix (rows < min_seq_len are exact diagonal blocks at every recursion level)
    assert torch.allclose(a[0, :128], b[0, :128], atol=1e-5)
    with torch.no_grad():
        ref = model(x).logits
    rel = ((a - ref).norm() / ref.norm()).item()
    assert rel < 0.2


def test_t13_padded_batch_runs_hyper_and_each_row_equals_the_row_alone(model):
    x = ids(1024, batch=2)
    pad = 300
    mask = torch.ones_like(x)
    mask[1, :pad] = 0                                          # left padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    reg = register_hyper_attention(next(_names), min_seq_len=128, block_size=64, sample_size=32)
    model.set_attn_implementation(reg.name)
    try:
        with torch.no_grad():
            reg.reset()
            batch = model(x, attention_mask=mask, position_ids=pos).logits
            reg.reset()
            alone0 = model(x[:1]).logits
            reg.reset()
            alone1 = model(x[1:, pad:]).logits
            reg.reset()
            gen = model.generate(x, attention_mask=mask, max_new_tokens=3, do_sample=False)   # padded prefill
    finally:
        model.set_attn_implementation("sdpa")
    assert reg.counts["hyper"] == 8 and reg.counts["exact"] == 2 * 2
    assert (batch[0] - alone0[0]).abs().max() < 1e-4
    assert (batch[1, pad:] - alone1[0]).abs().max() < 1e-4
    assert gen.shape == (2, 1027)
    with torch.no_grad():                                       # against exact attention: an approximation
        exact = model(x, attention_mask=mask, position_ids=pos).logits
    rel = ((batch[1, pad:] - exact[1, pad:]).norm() / exact[1, pad:].norm()).item()
    assert rel < 0.2


def test_t13_other_masks_stay_exact(model):
    x = ids(1024, batch=2)
    mask = torch.ones_like(x)
    mask[1, 100:200] = 0                                       # a hole in the middle: not padding
    reg = register_hyper_attention(next(_names), min_seq_len=128)
    with torch.no_grad():
        ref = model(x, attention_mask=mask).logits
        model.set_attn_implementation(reg.name)
        out = model(x, attention_mask=mask).logits
        model.set_attn_implementation("sdpa")
    assert reg.counts["hyper"] == 0 and reg.counts["exact"] == 2
    assert (out - ref).abs().max() <= 1e-5


def test_t13_generate_hyper_prefill_exact_decode(model):
    x = ids(600)
    reg = register_hyper_attention(next(_names), min_seq_len=256, block_size=64, sample_size=32)
    model.set_attn_implementation(reg.name)
    try:
        with torch.no_grad():
            out = model.generate(x, max_new_tokens=5, do_sample=False, attention_mask=torch.ones_like(x))
    finally:
        model.set_attn_implementation("sdpa")
    assert out.shape == (1, 605)
    assert reg.counts["hyper"] == 2  # the prefill, one per layer
    assert reg.counts["exact"] == 2 * 4  # four decode steps after the first token


def test_t13_layers_selection(model):
    reg = register_hyper_attention(next(_names), layers=1, min_seq_len=128)
    seen = []
    orig = transformers.AttentionInterface._global_mapping[reg.name]

    def spy(module, *a, **kw):
        before = reg.counts["hyper"]
        res = orig(module, *a, **kw)
        seen.append((module.layer_idx, reg.counts["hyper"] - before))
        return res

    transformers.AttentionInterface.register(reg.name, spy)
    model.set_attn_implementation(reg.name)
    try:
        with torch.no_grad():
            model(ids(512))
    finally:
        model.set_attn_implementation("sdpa")
    assert sorted(seen) == [(0, 0), (1, 1)]  # only the last layer is patched
    reg2 = register_hyper_attention(next(_names), layers=[0], min_seq_len=128)
    model.set_attn_implementation(reg2.name)
    with torch.no_grad():
        model(ids(512))
    model.set_attn_implementation("sdpa")
    assert reg2.counts == {"hyper": 1, "exact": 1}


def test_t13_restore_sdpa(model):
    x = ids(512)
    with torch.no_grad():
        ref = model(x).logits
        reg = register_hyper_attention(next(_names), min_seq_len=128)
        model.set_attn_implementation(reg.name)
        approx = model(x).logits
        model.set_attn_implementation("sdpa")
        back = model(x).logits
    assert not torch.allclose(approx, ref)
    assert torch.equal(back, ref)


def test_t13_unsupported_kwargs_warn_once_and_run_exact():
    reg = register_hyper_attention(next(_names), min_seq_len=4)
    fn = transformers.AttentionInterface._global_mapping[reg.name]

    class M(torch.nn.Module):
        layer_idx = 0
        is_causal = True
        num_key_value_groups = 1

    q = torch.randn(1, 2, 16, 8)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn(M(), q, q, q, None, sliding_window=8)
        fn(M(), q, q, q, None, sliding_window=8)
    assert sum("sliding_window" in str(x.message) for x in w) == 1
    assert reg.counts == {"hyper": 0, "exact": 2}
    out, _ = fn(M(), q, q, q, None)
    assert out.shape == (1, 16, 2, 8) and out.is_contiguous() and reg.counts["hyper"] == 1


def test_registration_validation():
    with pytest.raises(TypeError, match=r"layers must be None, an int >= 0 or a sequence of layer indices"):
        register_hyper_attention(next(_names), layers="last")
    with pytest.raises(ValueError, match=r"layers must be None, an int >= 0 or a sequence of layer indices "
                                         r"\(ints >= 0\); got -1"):
        register_hyper_attention(next(_names), layers=-1)
    with pytest.raises(ValueError, match=r"layers must be .*; got \[1, -2\]"):
        register_hyper_attention(next(_names), layers=[1, -2])
    assert register_hyper_attention(next(_names), layers=(0, 2)).layers == frozenset({0, 2})
    with pytest.raises(ValueError, match=r"lsh_num_projs must be an int in \[1, 16\]; got 0"):
        register_hyper_attention(next(_names), lsh_num_projs=0)
    with pytest.raises(ValueError, match="name must be a new attn_implementation name; got 'sdpa', one of transformers' own"):
        register_hyper_attention("sdpa")


def test_import_error_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("transformers"):
            raise ImportError("no transformers")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"register_hyper_attention needs transformers>=5.0: pip install 'teraml\[hf\]'"):
        register_hyper_attention("x")


def test_reset_makes_the_same_forward_give_the_same_logits(model):
    x = ids(1024)
    reg = register_hyper_attention(next(_names), min_seq_len=128, block_size=64, sample_size=64, seed=3)
    model.set_attn_implementation(reg.name)
    try:
        with torch.no_grad():
            a = model(x).logits
            b = model(x).logits            # the generators advanced: another sample draw
            reg.reset()
            c = model(x).logits
            reg.reset()
            d = model(x).logits
    finally:
        model.set_attn_implementation("sdpa")
    assert not torch.equal(a, b) and torch.equal(a, c) and torch.equal(c, d)


def test_training_after_evaluation_under_inference_mode():
    m = tiny_llama(seed=1)
    reg = register_hyper_attention(next(_names), min_seq_len=128, block_size=64, sample_size=32)
    m.set_attn_implementation(reg.name)
    x = ids(512)
    with torch.inference_mode():
        m(x)                                # evaluation first: caches the per-layer projections
    m.train()
    loss = m(x, labels=x).loss              # raised "Inference tensors cannot be saved for backward"
    loss.backward()
    assert reg.counts["hyper"] == 4 and all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_registration_refuses_transformers_names_and_silent_replacement():
    for own in ("flex_attention", "paged|sdpa", "flash_attention_2"):
        with pytest.raises(ValueError, match="one of transformers' own"):
            register_hyper_attention(own)
    name = next(_names)
    register_hyper_attention(name)
    with pytest.raises(ValueError, match=f"name '{name}' is already registered by register_hyper_attention"):
        register_hyper_attention(name)
    assert register_hyper_attention(name, replace=True, min_seq_len=999).min_seq_len == 999
