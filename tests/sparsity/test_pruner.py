"""BlockPruner: block grids, selection, schedules, phases, parametrizations, finalize, messages (spec tests 1-9, 11, 12)."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from teraml.sparsity import BlockPruner, _schedule
from teraml.sparsity._blocks import (
    block_nonzero,
    expand,
    from_matrix,
    grid,
    n_keep,
    score_mag,
    select,
    to_matrix,
)
from teraml.sparsity._reparam import POWERPROP_EPS

torch.set_num_threads(1)


def _quiet_pruner(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return BlockPruner(**kw)


def _mlp(seed=0, d=64, h=128, out=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, out))


def _run(pruner, model, steps=None, seed=0, lr=1e-2, until=None):
    """Train on a fixed random problem; returns the optimizer and the phases seen at boundaries."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, model[0].in_features, generator=g)
    y = torch.randint(0, model[-1].out_features, (64,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    seen = []
    for _ in range(pruner.total_steps if steps is None else steps):
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        phase = pruner.step(opt)
        if phase is not None:
            seen.append((pruner.steps_done, phase))
        if until is not None and until(pruner):
            break
    return opt, seen


# ------------------------------------------------------------------------------------------ 1. grid


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**16))
def test_grid_scores_and_selection_equal_a_brute_force_loop(R, C, br, bc, seed):
    W = torch.from_numpy(np.random.default_rng(seed).normal(size=(R, C)))
    nbr, nbc = grid(R, C, (br, bc))
    assert (nbr, nbc) == (len(range(0, R, br)), len(range(0, C, bc)))
    mag = score_mag(W, (br, bc))
    for i in range(nbr):
        for j in range(nbc):
            block = W[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            assert block.numel() == min(br, R - i * br) * min(bc, C - j * bc)
            assert float(mag[i, j]) == pytest.approx(float((block**2).mean()), rel=1e-12)
    nb = nbr * nbc
    ones = torch.ones(nbr, nbc, dtype=torch.bool)
    nz = block_nonzero(W, (br, bc))
    previous = ones
    for s in (0.0, 0.3, 0.6, 0.9, 0.99):
        k = n_keep(s, nb)
        assert 1 <= k <= nb
        m = select(previous, k, primary=mag, mag=mag, nonzero=nz)
        assert int(m.sum()) == k and bool((m <= previous).all())      # nested as sparsity rises
        previous = m


def test_select_ranks_all_zero_blocks_last_and_breaks_clip_ties_by_logit():
    mask = torch.ones(1, 4, dtype=torch.bool)
    logits = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    nonzero = torch.tensor([[False, True, True, True]])
    mag = torch.tensor([[9.0, 1.0, 1.0, 1.0]])
    # block 0 has the best logit but holds only zeros (dead inputs): it must not be chosen
    assert select(mask, 2, primary=logits, mag=mag, nonzero=nonzero).tolist() == [[False, False, True, True]]
    assert select(mask, 4, primary=logits, mag=mag, nonzero=nonzero).all()
    # equal clipped attention is no key: the logits decide
    pruner = _quiet_pruner(sparsity=0.95, total_steps=200, block_shape=4, layers=["0"], min_blocks=1,
                           attention_clip=(0.5, 2.0))
    model = pruner.prepare(_mlp())
    param = model[0].parametrizations.weight[0]
    nb = param.n_blocks
    with torch.no_grad():
        logits = torch.zeros(nb)
        logits[:40] = 20 + torch.arange(40) * 1e-3           # 40 blocks far above the clip's upper bound
        param.logits.copy_(logits.reshape(param.logits.shape))
    a = param.attention().reshape(-1)
    assert bool((a[:40] == 2.0).all())                        # saturated: tied in A
    pruner._update(None, from_all=False)
    k = n_keep(0.95, nb)
    assert torch.nonzero(param.mask.reshape(-1)).flatten().tolist() == list(range(40 - k, 40))


# ------------------------------------------------------------------------------------------ 2, 3. torch.ao parity


@pytest.mark.parametrize("s", [0.5, 0.9, 0.95, 0.98])
@pytest.mark.parametrize("b", [4, 8])
def test_one_shot_magnitude_mask_equals_torch_ao(s, b):
    from torch.ao.pruning import WeightNormSparsifier

    torch.manual_seed(int(s * 100) + b)
    model = nn.Sequential(nn.Linear(128, 96))
    with torch.no_grad():
        model[0].weight.normal_()
    ours = _quiet_pruner(sparsity=s, total_steps=10, block_shape=b, method="magnitude", min_blocks=1,
                         schedule=[("dense", 0.5), ("sparse", 0.5)])
    import copy

    theirs_model = copy.deepcopy(model)
    ours.prepare(model)
    ours._enter(1)
    sp = WeightNormSparsifier(sparsity_level=s, sparse_block_shape=(b, b), zeros_per_block=b * b)
    sp.prepare(theirs_model, config=[{"tensor_fqn": "0.weight"}])
    sp.step()
    their_mask = theirs_model[0].parametrizations.weight[0].mask.bool()
    our_mask = expand(model[0].parametrizations.weight[0].mask, 96, 128, (b, b))
    assert torch.equal(our_mask, their_mask)


def test_gmp_curve_equals_cubic_sl():
    from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL

    pruner = _quiet_pruner(sparsity=0.9, total_steps=200, block_shape=4, method="gmp", layers=["0"], min_blocks=1)
    model = pruner.prepare(_mlp())
    _, t0, t1 = next(p for p in pruner.schedule_table() if p[0] == "sparsify")
    nb = model[0].parametrizations.weight[0].n_blocks

    def probe(p):
        if t0 < p.steps_done <= t1:
            want = CubicSL.sparsity_compute_fn(0.0, 0.9, p.steps_done, t0, 1, t1 - t0)
            kept = int(model[0].parametrizations.weight[0].mask.sum())
            assert kept == n_keep(want, nb), (p.steps_done, kept, n_keep(want, nb))
        return False

    _run(pruner, model, until=probe)


# ------------------------------------------------------------------------------------------ 4. schedules


@pytest.mark.parametrize("preset", ["imagenet", "criteo"])
@pytest.mark.parametrize("method", ["sapp", "acdc", "magnitude", "gmp", "powerprop"])
def test_presets_match_the_table(preset, method):
    T = 1000
    pruner = BlockPruner(sparsity=0.9, total_steps=T, method=method, schedule=preset)
    table = pruner.schedule_table()
    phases = _schedule.PRESETS[preset][method]
    assert [k for k, _, _ in table] == [k for k, _ in phases]
    assert table[0][1] == 0 and table[-1][2] == T
    assert all(a[2] == b[1] for a, b in zip(table, table[1:]))
    c = 0.0
    for (_kind, start, stop), (_, frac) in zip(table, phases):
        assert abs(start - c * T) <= 1 and abs((stop - start) - frac * T) <= 1
        c += frac
    assert math.isclose(sum(f for _, f in phases), 1.0)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.3, 0.97), st.integers(70, 400), st.sampled_from(["imagenet", "criteo"]))
def test_sapp_curve_is_monotone_and_nested_and_ends_at_the_target(s, T, preset):
    pruner = _quiet_pruner(sparsity=s, total_steps=T, block_shape=4, schedule=preset, layers=["0"], min_blocks=1)
    model = pruner.prepare(_mlp(h=32))
    param = model[0].parametrizations.weight[0]
    nb = param.n_blocks
    state = {"prev": param.mask.clone(), "kept": nb}

    def probe(p):
        kind, start, stop = next(t for t in p.schedule_table() if t[1] < p.steps_done <= t[2])
        mask = param.mask
        if kind == "sparsify":
            k = int(mask.sum())
            assert k <= state["kept"] and bool((mask <= state["prev"]).all())
            if p.steps_done == stop:
                assert k == n_keep(s, nb)
            state["kept"] = k
        state["prev"] = mask.clone()
        if kind == "dense" or p.steps_done == stop:
            state["kept"] = nb if p.phase == "dense" else int(mask.sum())
        return False

    _run(pruner, model, until=probe)
    assert sum(stop - start for _, start, stop in pruner.schedule_table()) == T


def test_sapp_ramp_shape():
    assert _schedule.sapp_curve(0.0, 4.0) == 0.0 and _schedule.sapp_curve(1.0, 4.0) == pytest.approx(1.0)
    xs = np.linspace(0, 1, 11)
    vals = [_schedule.sapp_curve(x, 4.0) for x in xs]
    assert all(a < b for a, b in zip(vals, vals[1:])) and vals[3] > 0.5      # fast at first


# ------------------------------------------------------------------------------------------ 5. boundaries


def test_boundaries_return_the_phase_and_clear_the_optimizer_state_keeping_the_lr():
    pruner = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, method="acdc", layers=["0"], min_blocks=1)
    model = pruner.prepare(_mlp())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.randn(16, 64), torch.randint(0, 4, (16,))
    boundaries = {start: kind for kind, start, _ in pruner.schedule_table()[1:]}
    for t in range(1, 101):
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        phase = pruner.step(opt)
        if t in boundaries:
            assert phase == boundaries[t] and len(opt.state) == 0
        else:
            assert phase is None and (len(opt.state) > 0)
        assert opt.param_groups[0]["lr"] == 3e-3
    assert pruner.phase == "finished"


# ------------------------------------------------------------------------------------------ 6, 7. prepare


@pytest.mark.parametrize("method", ["sapp", "acdc", "magnitude", "gmp", "powerprop"])
def test_prepare_keeps_the_outputs(method):
    model = _mlp(3)
    x = torch.randn(10, 64)
    before = model(x).detach()
    pruner = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, method=method, min_blocks=1)
    after = pruner.prepare(model)(x).detach()
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)


def test_conv_blocks_are_output_by_input_channels_at_one_tap():
    conv = nn.Conv2d(16, 16, 3, bias=False)
    with torch.no_grad():     # index-encoding weights: value = 10000 cout + 100 cin + 10 kh + kw
        co, ci, kh, kw = torch.meshgrid(*(torch.arange(n) for n in conv.weight.shape), indexing="ij")
        conv.weight.copy_((10000 * co + 100 * ci + 10 * kh + kw).float())
    mat = to_matrix(conv.weight)
    block = mat[:4, :4]          # block (0, 0) with 4 x 4 blocks
    assert sorted({int(v) // 10000 for v in block.reshape(-1)}) == [0, 1, 2, 3]
    assert sorted({(int(v) // 100) % 100 for v in block.reshape(-1)}) == [0, 1, 2, 3]
    assert {int(v) % 100 for v in block.reshape(-1)} == {0}        # tap (0, 0)
    assert torch.equal(from_matrix(mat, conv.weight.shape), conv.weight)
    model = nn.Sequential(conv)
    x = torch.randn(2, 16, 8, 8)
    before = model(x).detach()
    pruner = _quiet_pruner(sparsity=0.5, total_steps=10, block_shape=4, min_blocks=1,
                           schedule=[("dense", 0.5), ("sparse", 0.5)])
    pruner.prepare(model)
    torch.testing.assert_close(model(x).detach(), before, rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------ 8. finalize


@pytest.mark.parametrize("method", ["sapp", "acdc", "magnitude", "gmp", "powerprop"])
@pytest.mark.parametrize("pruned_weights", ["zero", "mask"])
def test_finalize_leaves_exactly_n_keep_blocks_and_the_same_outputs(method, pruned_weights):
    model = _mlp(4)
    pruner = _quiet_pruner(sparsity=0.9, total_steps=120, block_shape=4, method=method, min_blocks=50,
                           pruned_weights=pruned_weights)
    pruner.prepare(model)
    _run(pruner, model)
    x = torch.randn(9, 64)
    model.eval()
    expected = model(x).detach()
    skipped_before = model[4].weight.detach().clone()
    pruner.finalize()
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    assert not any("logits" in k or "mask" in k or "original" in k for k in model.state_dict())
    torch.testing.assert_close(model(x).detach(), expected, atol=1e-5, rtol=1e-5)
    report = pruner.report()
    for name in ("0", "2"):
        W = dict(model.named_modules())[name].weight.detach()
        nz = block_nonzero(W, (4, 4))
        nb = nz.numel()
        assert int(nz.sum()) == n_keep(0.9, nb) == report[name]["kept_blocks"]
        keep = expand(nz, *W.shape, (4, 4))
        assert bool((W[~keep] == 0).all())
        assert report[name]["real_sparsity"] == pytest.approx(float((W == 0).float().mean()))
        assert report[name]["pruned"] and report[name]["nominal_sparsity"] == 0.9
    # the output layer (128 -> 4: 32 blocks < min_blocks=50) is trained dense and left as it is
    assert torch.equal(model[4].weight.detach(), skipped_before)
    assert report["4"]["pruned"] is False and "min_blocks=50" in report["4"]["skipped_reason"]


def test_finalize_too_early_is_an_error():
    pruner = _quiet_pruner(sparsity=0.9, total_steps=600, block_shape=4, min_blocks=1)
    model = pruner.prepare(_mlp())
    _run(pruner, model, steps=110)
    with pytest.raises(RuntimeError, match=re.escape("finalize() called at step 110 of 600 in phase 'dense': the "
                                                     "model is not sparse yet")):
        pruner.finalize()


def test_dead_inputs_do_not_push_the_real_density_below_target():
    # inputs 0..15 are always 0: their blocks' weights decay to 0 under "zero" and must rank last
    model = _mlp(5)
    pruner = _quiet_pruner(sparsity=0.9, total_steps=200, block_shape=8, method="sapp", layers=["0"], min_blocks=1)
    pruner.prepare(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 64, generator=g)
    x[:, :16] = 0
    y = torch.randint(0, 4, (64,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        pruner.step(opt)
    pruner.finalize()
    nz = block_nonzero(model[0].weight.detach(), (8, 8))
    assert int(nz.sum()) == n_keep(0.9, nz.numel())


# ------------------------------------------------------------------------------------------ 11. PowerProp


def test_powerprop_initial_weight_finite_gradients_and_group_lasso_identity():
    model = _mlp(6)
    W0 = model[0].weight.detach().clone()
    pruner = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, method="powerprop", layers=["0"],
                           min_blocks=1)
    pruner.prepare(model)
    torch.testing.assert_close(model[0].weight.detach(), W0, rtol=1e-6, atol=1e-7)
    V = model[0].parametrizations.weight.original
    with torch.no_grad():
        V[:4, :4] = 0                      # a zeroed block
    model(torch.randn(5, 64)).sum().backward()
    assert torch.isfinite(V.grad).all()
    Wm, Vm = to_matrix(model[0].weight.detach()), to_matrix(V.detach())
    from teraml.sparsity._blocks import block_sums

    v2 = block_sums(Vm.double() ** 2, (4, 4)).sum()
    w1 = torch.sqrt(block_sums(Wm.double() ** 2, (4, 4))).sum()
    assert float(v2) == pytest.approx(float(w1), rel=1e-5)
    assert POWERPROP_EPS > 0


# ------------------------------------------------------------------------------------------ 12. determinism, messages


def test_same_seed_same_masks_and_weights():
    def run():
        model = _mlp(7)
        pruner = _quiet_pruner(sparsity=0.9, total_steps=120, block_shape=4, min_blocks=1)
        pruner.prepare(model)
        _run(pruner, model)
        pruner.finalize()
        return [p.detach().clone() for p in model.parameters()]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_state_dict_resumes():
    model = _mlp(8)
    pruner = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, min_blocks=1)
    pruner.prepare(model)
    _run(pruner, model, steps=30)
    state = pruner.state_dict()
    other = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, min_blocks=1)
    other.prepare(_mlp(8))
    other.load_state_dict(state)
    assert other.steps_done == 30 and other.phase == pruner.phase


@pytest.mark.parametrize("kw, exc, message", [
    ({"sparsity": 1.0}, ValueError, "sparsity must be a float in [0, 1), got 1.0"),
    ({"sparsity": "a"}, TypeError, "sparsity must be a float in [0, 1), got str 'a'"),
    ({"total_steps": 0}, ValueError, "total_steps must be a positive int, got 0"),
    ({"block_shape": (8, 0)}, ValueError, "block_shape must be a positive int or a pair of positive ints, got (8, 0)"),
    ({"method": "l1"}, ValueError, "method must be one of 'sapp', 'acdc', 'magnitude', 'gmp', 'powerprop', got 'l1'"),
    ({"min_blocks": -1}, ValueError, "min_blocks must be a non-negative int, got -1"),
    ({"sparsify_exponent": 0.0}, ValueError, "sparsify_exponent must be a positive float, got 0.0"),
    ({"attention_clip": (2, 3)}, ValueError,
     "attention_clip must be 'auto', None or a pair (low, high) with 0 < low <= 1 <= high, got (2, 3)"),
    ({"pruned_weights": "drop"}, ValueError, "pruned_weights must be 'zero' or 'mask', got 'drop'"),
    ({"schedule": "resnet"}, ValueError,
     "schedule must be 'imagenet', 'criteo' or a list of (kind, fraction) pairs, got 'resnet'"),
    ({"schedule": [("dense", 0.5), ("prune", 0.5)]}, ValueError,
     "schedule kind must be one of 'dense', 'sparsify', 'sparse', got 'prune'"),
    ({"schedule": [("dense", 0.5), ("sparse", 0.45)]}, ValueError, "schedule fractions must sum to 1, got 0.95"),
    ({"schedule": [("sparse", 0.5), ("dense", 0.5)]}, ValueError,
     "schedule must end with a 'sparse' or 'sparsify' phase, got 'dense'"),
    # (at 30 steps the cumulative rounding of the boundaries gives every 2.5% phase one step: only a warning)
    ({"total_steps": 35}, ValueError,
     "total_steps=35 is too small for schedule 'imagenet' with method 'sapp': the shortest phase ('sparsify', 2.5%) "
     "gets 0 steps; use total_steps >= 40"),
])
def test_argument_messages(kw, exc, message):
    params = {"sparsity": 0.9, "total_steps": 600, **kw}
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        BlockPruner(**params)


def test_short_phases_warn():
    with pytest.warns(UserWarning, match=r"shortest phase \('sparsify', 2.5%\) of schedule 'imagenet' only 1 step"):
        BlockPruner(sparsity=0.9, total_steps=30)


def test_model_and_layer_messages():
    with pytest.raises(ValueError, match=re.escape("layers: no module named 'fc9' in the model")):
        BlockPruner(sparsity=0.9, total_steps=600, layers=["fc9"]).prepare(_mlp())
    emb = nn.Sequential()
    emb.add_module("emb", nn.Embedding(10, 4))
    with pytest.raises(TypeError, match=re.escape("layers: 'emb' is Embedding; only nn.Linear and nn.Conv2d with "
                                                  "groups=1 can be block-pruned")):
        BlockPruner(sparsity=0.9, total_steps=600, layers=["emb"]).prepare(emb)
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(32, 64))      # 8 x 8 blocks: 32, 64 and 8
    net.add_module("fc2", nn.Linear(64, 64))
    net.add_module("fc3", nn.Linear(64, 8))
    with pytest.raises(ValueError, match=re.escape("no prunable layer: all 3 candidate layers have fewer than "
                                                   "min_blocks=100 blocks (largest: 'fc2' with 64); lower min_blocks "
                                                   "or use smaller blocks")):
        BlockPruner(sparsity=0.9, total_steps=600).prepare(net)
    with pytest.raises(TypeError, match=re.escape("model must be a torch.nn.Module, got ndarray")):
        BlockPruner(sparsity=0.9, total_steps=600).prepare(np.zeros(3))


def test_order_messages():
    pruner = BlockPruner(sparsity=0.9, total_steps=600, block_shape=4, min_blocks=1)
    with pytest.raises(RuntimeError, match=re.escape("call prepare(model) before step()")):
        pruner.step()
    model = pruner.prepare(_mlp())
    with pytest.raises(RuntimeError, match=re.escape("prepare() was already called on this pruner")):
        pruner.prepare(_mlp())
    stale = torch.optim.Adam([p for n, p in model.named_parameters() if "logits" not in n])
    with pytest.raises(ValueError, match=re.escape("optimizer does not hold the pruner's parameters (e.g. '0' "
                                                   "attention logits); build the optimizer after prepare(model)")):
        pruner.step(stale)
    done = _quiet_pruner(sparsity=0.9, total_steps=60, block_shape=4, min_blocks=1,
                         schedule=[("dense", 0.5), ("sparse", 0.5)])
    m2 = done.prepare(_mlp())
    _run(done, m2)
    with pytest.raises(RuntimeError, match=re.escape("step 61 > total_steps=60: the schedule is finished; call "
                                                     "finalize()")):
        done.step()


def test_step_without_optimizer_warns_once():
    pruner = BlockPruner(sparsity=0.9, total_steps=600, block_shape=4, min_blocks=1)
    pruner.prepare(_mlp())
    with pytest.warns(UserWarning, match="cannot clear its state"):
        pruner.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner.step()


def test_boundaries_are_exact_at_rounding_ties():
    # 0.1 + 0.05 + ... summed in floats lands just below the ties; the boundaries use exact fractions
    b = _schedule.boundaries(_schedule.PRESETS["imagenet"]["acdc"], 10)
    from fractions import Fraction

    c, want = Fraction(0), [0]
    for _, f in _schedule.PRESETS["imagenet"]["acdc"]:
        c += Fraction(str(f))
        want.append(math.floor(c * 10 + Fraction(1, 2)))
    assert b == want


def test_a_layer_named_twice_is_an_error_and_float64_models_get_float64_logits():
    with pytest.raises(ValueError, match=re.escape("layers: '0' names the same module as '0'; list each layer once")):
        BlockPruner(sparsity=0.9, total_steps=600, layers=["0", "0"]).prepare(_mlp())
    model = _mlp().double()
    pruner = _quiet_pruner(sparsity=0.9, total_steps=100, block_shape=4, layers=["0"], min_blocks=1)
    pruner.prepare(model)
    assert model[0].parametrizations.weight[0].logits.dtype == torch.float64
    assert model(torch.randn(3, 64, dtype=torch.float64)).dtype == torch.float64
