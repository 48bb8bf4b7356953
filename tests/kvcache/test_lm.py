"""teraml.kvcache._lm: the S6 tiny-LM suite end to end on a small random-init byte Llama (seconds, not the
trained model): every row finite, memory within 2B, the exact baseline and G1 equal to the full cache, the
check ids, the table and the figure."""

import json
import math

import pytest
import torch

pytest.importorskip("transformers")

from teraml.kvcache._lm import BASELINES, BUDGETED_METHODS, figure, lm_suite, table  # noqa: E402
from teraml.models import tinylm  # noqa: E402

B = 16


@pytest.fixture(scope="module")
def res():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: one thread is faster and keeps a shared machine responsive
    try:
        model = tinylm.make_model({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "max_position_embeddings": 128}, seed=0)
        out = lm_suite(model=model, budgets=(B,), n_windows=1, prefill=16, steps=24, agree=8, seed=0)
        assert model.config._attn_implementation == "sdpa"      # switched back after the run
        return out
    finally:
        torch.set_num_threads(n)


def test_rows_cover_every_method_and_are_finite(res):
    rows = res["rows"]
    got = {(r["method"], r["budget"], r["setting"]) for r in rows}
    assert {(m, B, "budget") for m in BUDGETED_METHODS} <= got
    assert ("exact", None, "sanity") in got and ("llm", None, "unbudgeted") in got
    assert {(m, res["budget_M"], "M/2") for m in BASELINES} <= got
    for r in rows:
        for k in ("bpb", "dbpb", "kl_nats", "kl_bits", "agreement", "memory_fraction", "seconds"):
            assert math.isfinite(r[k]), (r["method"], k)
        assert 0.0 <= r["agreement"] <= 1.0
        assert r["kl_nats"] >= -1e-9
    json.dumps(res)      # JSON-serialisable


def test_memory_within_budget(res):
    for r in res["rows"]:
        if r["setting"] == "budget":
            assert r["max_stored_vectors"] <= 2 * B and r["within_bound"], r
            assert r["memory_fraction"] < 1.0
    assert res["M"] == next(r for r in res["rows"] if r["setting"] == "unbudgeted")["max_stored_vectors"]
    assert res["budget_M"] == math.ceil(res["M"] / 2)


def test_exact_and_g1_equal_the_full_cache(res):
    ex = next(r for r in res["rows"] if r["method"] == "exact")
    assert abs(ex["dbpb"]) < 1e-4 and ex["kl_nats"] < 1e-6 and ex["agreement"] == 1.0
    assert ex["memory_fraction"] == pytest.approx(1.0)
    assert res["g1_max_abs_diff"] < 1e-4


def test_checks(res):
    ids = {c["id"] for c in res["checks"]}
    assert {"S6g1", "S6fin", "S6a", "S6b", "S6c", "S6p"} <= ids
    by = {c["id"]: c for c in res["checks"]}
    assert by["S6g1"]["pass"] and by["S6fin"]["pass"] and by["S6ex"]["pass"] and by["S6mem"]["pass"]
    assert by["S6p"]["pass"] is None
    assert "provisional" in by["S6c"]["criterion"]


def test_table_and_figure(res):
    caption, headers, rows = table(res)
    assert len(rows) == len(res["rows"]) and all(len(r) == len(headers) for r in rows)
    assert "delta bits/byte" in headers
    fig = figure(res)
    assert fig.axes and fig.axes[0].get_legend() is not None
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_bad_sizes_raise():
    model = tinylm.make_model({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32})
    with pytest.raises(ValueError, match="max_position_embeddings"):
        lm_suite(model=model, budgets=(8,), n_windows=1, prefill=16, steps=24, agree=8)
    with pytest.raises(ValueError, match="budgets"):
        lm_suite(model=model, budgets=(0,), n_windows=1, prefill=8, steps=8, agree=8)
