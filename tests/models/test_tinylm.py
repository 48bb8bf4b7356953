import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from teraml.models import tinylm  # noqa: E402

SMALL_CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "max_position_embeddings": 256}
SMALL_RECIPE = {"phases": [{"steps": 12, "batch_size": 2, "context": 64},
                           {"steps": 3, "batch_size": 1, "context": 128}],
                "warmup_steps": 3, "val_every": 5}


def test_config_is_the_specified_llama():
    model = tinylm.make_model()
    assert isinstance(model, transformers.LlamaForCausalLM)
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (256, 128, 512, 4)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.max_position_embeddings) == (4, 2, 4096)
    assert cfg.tie_word_embeddings
    assert cfg._attn_implementation == "sdpa"
    n = sum(p.numel() for p in model.parameters())
    assert 0.9e6 < n < 1.1e6
    # seeded init, and the global RNG is left alone
    state = torch.get_rng_state()
    again = tinylm.make_model()
    assert torch.equal(state, torch.get_rng_state())
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_train_cache_and_evaluate(tmp_path):
    ck = tinylm.train_tinylm(cache=tmp_path, config=SMALL_CONFIG, recipe=SMALL_RECIPE, verbose=False)
    assert not ck.from_cache
    m = ck.manifest
    assert m["steps"] == 15 and not m["stopped_early"]
    assert len(ck.history) == 15 and "val_bpb" in ck.history[4]
    assert m["train_sha256"] == tinylm.stdlib_text_sha256("train")
    saved = json.loads((ck.path / "manifest.json").read_text())
    assert saved["config"]["hidden_size"] == 32 and saved["versions"]["torch"] == torch.__version__
    # the loss went down from the uniform 8 bits/byte
    assert ck.history[-1]["val_bpb"] < 8.0
    again = tinylm.train_tinylm(cache=tmp_path, config=SMALL_CONFIG, recipe=SMALL_RECIPE, verbose=False)
    assert again.from_cache and again.path == ck.path
    for a, b in zip(ck.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
    nll = tinylm.evaluate_nll(again.model, context=128, n_windows=3)
    assert nll.shape == (3, 128) and np.isfinite(nll).all()
    bpb = tinylm.evaluate(again.model, context=128, n_windows=3)
    assert bpb == pytest.approx(nll.mean() / math.log(2))
    assert tinylm.evaluate(again.model, context=128) == pytest.approx(m["val_bpb"], rel=1e-5)
    # a different recipe is a different cache entry; retrain overwrites
    other = tinylm.train_tinylm(cache=tmp_path, config=SMALL_CONFIG,
                                recipe={**SMALL_RECIPE, "seed": 1}, verbose=False)
    assert other.path != ck.path and not other.from_cache
    re = tinylm.train_tinylm(cache=tmp_path, config=SMALL_CONFIG, recipe=SMALL_RECIPE, retrain=True, verbose=False)
    assert not re.from_cache and re.path == ck.path


def test_wall_cap_records_steps(tmp_path):
    ck = tinylm.train_tinylm(cache=tmp_path, config=SMALL_CONFIG,
                             recipe={**SMALL_RECIPE, "max_seconds": 0.0}, verbose=False)
    assert ck.manifest["stopped_early"] and ck.manifest["steps"] == 0


def test_evaluate_uses_current_attention_implementation():
    model = tinylm.make_model(SMALL_CONFIG)
    a = tinylm.evaluate(model, context=64, n_windows=2)
    model.set_attn_implementation("eager")
    b = tinylm.evaluate(model, context=64, n_windows=2)
    assert a == pytest.approx(b, rel=1e-5)


def test_unigram():
    h = tinylm.unigram_bits_per_byte("validation")
    assert 4.0 < h < 6.0


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: tinylm.train_tinylm(config={"hidden": 3}), ValueError, r"config has unknown keys \['hidden'\]"),
        (lambda: tinylm.train_tinylm(recipe=[1]), TypeError, "recipe must be a dict or None; got list"),
        (lambda: tinylm.train_tinylm(recipe={"phases": []}), ValueError, r"recipe\['phases'\] must be a non-empty list"),
        (lambda: tinylm.train_tinylm(recipe={"phases": [{"steps": -1, "batch_size": 1, "context": 8}]}),
         ValueError, r"recipe\['phases'\]\[0\]\['steps'\] must be an int >= 0; got -1"),
        (lambda: tinylm.train_tinylm(retrain="yes"), TypeError, "retrain must be a bool; got str"),
        (lambda: tinylm.train_tinylm(cache=3), TypeError, "cache must be a path"),
        (lambda: tinylm.evaluate("model"), TypeError, "model must be a torch.nn.Module"),
        (lambda: tinylm.evaluate(tinylm.make_model(SMALL_CONFIG), context=0), ValueError,
         "context must be an int >= 1; got 0"),
        (lambda: tinylm.evaluate(tinylm.make_model(SMALL_CONFIG), context=512), ValueError,
         r"context must be <= the model's max_position_embeddings \(256\); got 512"),
        (lambda: tinylm.evaluate(tinylm.make_model(SMALL_CONFIG), n_windows=-2), ValueError,
         "n_windows must be an int >= 1; got -2"),
        (lambda: tinylm.evaluate(tinylm.make_model(SMALL_CONFIG), split="test", context=64), ValueError,
         "split must be one of 'train', 'validation'; got 'test'"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.slow
def test_full_recipe_reaches_the_target():
    """The real recipe: at least 1.5 bits/byte below the unigram entropy (uses/fills the user cache)."""
    ck = tinylm.train_tinylm(verbose=False)
    m = ck.manifest
    assert m["unigram_bpb"] - m["val_bpb"] >= 1.5
    assert m["train_seconds"] <= 610
