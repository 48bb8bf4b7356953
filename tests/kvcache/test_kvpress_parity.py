"""Optional parity with kvpress's presses (a separate environment: kvpress pins transformers<5.3, so it does not
install beside teraml[hf]). kvpress ranks tokens with ``press.score(...)`` and keeps the top B; our baselines must
keep the same tokens."""

import pytest
import torch

from teraml.kvcache import KeyNormKV, SinkWindowKV

kvpress = pytest.importorskip("kvpress")

pytestmark = pytest.mark.slow


def _top(scores, budget):
    return torch.sort(scores.topk(budget, dim=-1).indices, dim=-1).values


def test_knorm_press_keeps_the_same_tokens():
    k = torch.randn(1, 2, 300, 16, generator=torch.Generator().manual_seed(0))
    press = kvpress.KnormPress(compression_ratio=0.5)
    scores = press.score(None, None, k, k, None, {})
    ours = KeyNormKV(16, budget=150).update(k, k).kept_positions()
    assert torch.equal(torch.sort(ours, dim=-1).values, _top(scores, 150))


def test_streaming_llm_press_keeps_the_same_tokens():
    k = torch.randn(1, 2, 300, 16, generator=torch.Generator().manual_seed(0))
    press = kvpress.StreamingLLMPress(compression_ratio=0.5, n_sink=4)
    scores = press.score(None, None, k, k, None, {})
    ours = SinkWindowKV(16, budget=150, n_sink=4).update(k, k).kept_positions()
    assert torch.equal(torch.sort(ours, dim=-1).values, _top(scores, 150))
