"""The CI subset of the sparsity benchmark's quality checks (seeded, one thread, so deterministic).

D1: digits MLP at 8x8 blocks, 95 % and 98 %, magnitude / acdc / sapp, seeds 0-2. D2: the Criteo-like model at
16x16 blocks, 95 % and 98 %, the same methods, seed 0. The thresholds are the benchmark's, restricted to
these cells. (Speed thresholds stay in the benchmark: tests do not time.)
"""

import numpy as np
import pytest
import torch

from teraml.sparsity import _experiment as ex

METHODS = ("magnitude", "acdc", "sapp")


@pytest.fixture(scope="module")
def digits_runs():
    torch.set_num_threads(1)
    data = ex.digits_data()
    out = {}
    for s in (0.95, 0.98):
        for m in METHODS:
            out[(s, m)] = [ex.train(data, ex.digits_mlp(seed), m, sparsity=s, block=8, seed=seed,
                                    config=ex.DIGITS)["accuracy"] for seed in range(3)]
    return out


@pytest.fixture(scope="module")
def criteo_runs():
    torch.set_num_threads(1)
    data = ex.criteo_data()
    base = ex.criteo_net(data, 0)
    return {(s, m): ex.train(data, base, m, sparsity=s, block=16, seed=0, config=ex.CRITEO)["log_loss"]
            for s in (0.95, 0.98) for m in METHODS}


def test_digits_sapp_beats_acdc_by_2_points_on_average(digits_runs):
    gaps = [np.mean(digits_runs[(s, "sapp")]) - np.mean(digits_runs[(s, "acdc")]) for s in (0.95, 0.98)]
    assert np.mean(gaps) >= 0.02, gaps
    assert min(gaps) >= -0.01, gaps          # and is never more than 1 point behind in a cell


def test_digits_sapp_beats_magnitude_by_10_points_at_98(digits_runs):
    assert np.mean(digits_runs[(0.98, "sapp")]) - np.mean(digits_runs[(0.98, "magnitude")]) >= 0.10


@pytest.mark.parametrize("s", [0.95, 0.98])
def test_criteo_sapp_log_loss_below_acdc_and_magnitude(criteo_runs, s):
    best_baseline = min(criteo_runs[(s, "acdc")], criteo_runs[(s, "magnitude")])
    assert criteo_runs[(s, "sapp")] <= best_baseline - 0.005, criteo_runs
