"""Block-sparse export: BlockSparseLinear, feature-major chains, state dicts and every export message."""

import copy
import io
import logging
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from teraml.sparsity import export as ex
from teraml.sparsity.export import BlockSparseLinear, clean_weight, export_block_sparse, kernel_block


def pruned_linear(in_features, out_features, block=(8, 8), keep=0.3, *, seed=0, bias=True, dtype=torch.float32,
                  fill=0.0):
    """A Linear whose ``block`` blocks are kept with probability ``keep``; the others hold ``fill``."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(in_features, out_features, bias=bias)
    br, bc = block
    nbr, nbc = -(-out_features // br), -(-in_features // bc)
    kept = torch.rand(nbr, nbc, generator=g) < keep
    kept.view(-1)[0] = True
    mask = kept.repeat_interleave(br, 0).repeat_interleave(bc, 1)[:out_features, :in_features]
    with torch.no_grad():
        lin.weight.copy_(torch.where(mask, torch.randn(out_features, in_features, generator=g) * in_features ** -0.5,
                                     torch.full((), fill)))
        if bias:
            lin.bias.copy_(torch.randn(out_features, generator=g))
    return lin.to(dtype).eval(), int(kept.sum())


class TwoLayer(nn.Module):
    def __init__(self, fc1, fc2):
        super().__init__()
        self.fc1, self.fc2 = fc1, fc2

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def save_load(module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ------------------------------------------------------------------------------------------ one layer


@pytest.mark.parametrize("batch", [1, 7, 16, 33, 256])
def test_matches_f_linear_400x390_8x8(batch):
    lin, _ = pruned_linear(390, 400)
    layer = BlockSparseLinear.from_dense(lin, (8, 8), min_speedup=None)
    assert layer.mode == "bsr" and layer.speedup is None
    assert layer.padded_shape == (400, 392)                   # padded, never cut: 390 is not a multiple of 8
    x = torch.randn(batch, 390)
    y = layer(x)
    assert y.shape == (batch, 400)
    torch.testing.assert_close(y, F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=0)


def test_leading_dims_and_1d_input():
    lin, _ = pruned_linear(390, 400)
    layer = BlockSparseLinear.from_dense(lin, 8, min_speedup=None)
    x = torch.randn(2, 3, 390)
    torch.testing.assert_close(layer(x), F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=0)
    v = torch.randn(390)
    assert layer(v).shape == (400,)
    torch.testing.assert_close(layer(v), lin(v), atol=1e-5, rtol=0)
    assert layer(torch.randn(0, 390)).shape == (0, 400)


@pytest.mark.parametrize("block", [(16, 16), (4, 8), (10, 10), (3, 5), (1, 1)])
def test_other_blocks_no_bias_and_stored_block_side(block):
    lin, _ = pruned_linear(70, 45, block, bias=False, seed=1)
    layer = BlockSparseLinear.from_dense(lin, block, min_speedup=None)
    assert layer.kernel_block == kernel_block(block) and layer.bias is None
    x = torch.randn(21, 70)
    torch.testing.assert_close(layer(x), F.linear(x, lin.weight), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.dense_weight(), lin.weight.detach(), atol=0, rtol=0)


def test_kernel_block_rule():
    assert [kernel_block(b) for b in [(8, 8), (16, 16), (32, 32), (4, 8), (10, 20), (7, 7), (1, 1)]] == \
        [8, 8, 8, 4, 5, 7, 1]
    assert kernel_block((16, 16), "meta") == 16                 # off CPU: gcd(B_r, B_c)


def test_float64_and_bfloat16():
    lin, _ = pruned_linear(50, 30, dtype=torch.float64)
    layer = BlockSparseLinear.from_dense(lin, 8, min_speedup=None)
    x = torch.randn(9, 50, dtype=torch.float64)
    assert layer.mode == "bsr" and layer(x).dtype == torch.float64
    torch.testing.assert_close(layer(x), lin(x), atol=1e-12, rtol=0)

    lin16, _ = pruned_linear(50, 30, dtype=torch.bfloat16)
    model = TwoLayer(lin16, copy.deepcopy(lin16))
    model.fc2 = nn.Linear(30, 30).to(torch.bfloat16)          # dense: stays nn.Linear without a warning
    with pytest.warns(UserWarning) as record:
        out = export_block_sparse(model, 8)
    messages = [str(w.message) for w in record if "stays dense" in str(w.message)]
    assert messages == ["'fc1' (bfloat16) stays dense: CPU block-sparse matmul supports float32/float64 only"]
    assert out.fc1.mode == "dense" and out.fc1.speedup is None and type(out.fc2) is nn.Linear
    xb = torch.randn(4, 50, dtype=torch.bfloat16)
    torch.testing.assert_close(out.fc1(xb), lin16(xb), atol=0, rtol=0)


def test_tiny_leftovers_are_not_stored():
    lin, kept = pruned_linear(64, 48, fill=1e-30)
    assert (lin.weight == 1e-30).any()
    layer = BlockSparseLinear.from_dense(lin, 8, min_speedup=None)
    assert layer.n_blocks == kept == layer.weight._nnz() == layer.weight_values.shape[0]
    assert not ((layer.dense_weight() != 0) & (layer.dense_weight().abs() < 1e-20)).any()
    x = torch.randn(5, 64)
    torch.testing.assert_close(layer(x), lin(x), atol=1e-5, rtol=0)
    # the rule: |w| <= eps * max|W| / in_features is zero; anything larger is kept
    w = torch.tensor([[1.0, 1e-30, -1e-9, 1e-7, float("nan")]])
    eps = torch.finfo(torch.float32).eps
    out = clean_weight(w)
    assert out[0, :3].tolist() == [1.0, 0.0, 0.0] and out[0, 3] == w[0, 3] and out[0, 4].isnan()
    assert eps / 5 > 1e-9 and eps / 5 < 1e-7
    assert clean_weight(torch.tensor([[1.0, 1e-30]], dtype=torch.float64)).tolist() == [[1.0, 0.0]]


def test_from_dense_keeps_the_original_and_checks_input():
    lin, _ = pruned_linear(40, 24)
    before = lin.weight.detach().clone()
    layer = BlockSparseLinear.from_dense(lin, 8, min_speedup=None)
    assert torch.equal(lin.weight, before) and isinstance(lin.weight, nn.Parameter)
    assert not any(True for _ in layer.parameters())
    with pytest.raises(ValueError, match=re.escape("input.shape[-1] must equal in_features: expected 40, got 80")):
        layer(torch.randn(2, 80))


def test_skeleton_repr_and_all_zero_layer():
    layer = BlockSparseLinear(20, 12, (4, 4))
    assert layer.n_blocks == 0 and torch.equal(layer(torch.randn(3, 20)), torch.zeros(3, 12))
    assert repr(layer) == ("BlockSparseLinear(in_features=20, out_features=12, block_shape=(4, 4), mode='bsr', "
                           "blocks=0/15)")


# ------------------------------------------------------------------------------------------ export and chains


def test_density_rule_and_subclasses():
    sparse, _ = pruned_linear(64, 64, keep=0.2)
    dense = nn.Linear(64, 64)
    halved = nn.Linear(16, 16)
    with torch.no_grad():
        halved.weight[:8] = 0                                    # density exactly 0.5 converts
    mha = nn.MultiheadAttention(16, 2)
    with torch.no_grad():
        mha.out_proj.weight.zero_()
    model = nn.ModuleDict({"sparse": sparse, "dense": dense, "halved": halved, "mha": mha})
    out = export_block_sparse(model, 8, min_speedup=None)
    assert isinstance(out["sparse"], BlockSparseLinear) and isinstance(out["halved"], BlockSparseLinear)
    assert type(out["dense"]) is nn.Linear
    assert type(out["mha"].out_proj) is type(mha.out_proj)      # a Linear subclass read by its parent
    assert type(model["sparse"]) is nn.Linear                   # a deep copy was converted


def test_chain_equals_its_sequential(monkeypatch):
    layers = [pruned_linear(c, r, seed=i)[0] for i, (c, r) in enumerate([(100, 60), (60, 36), (36, 36), (36, 10)])]
    acts = [nn.ReLU(), nn.GELU(), nn.Tanh(), nn.Sigmoid(), nn.Identity(), nn.Dropout(0.3)]
    seq = nn.Sequential(layers[0], acts[0], acts[4], layers[1], acts[1], acts[5], layers[2], acts[2],
                        layers[3], acts[3], nn.Linear(10, 5)).eval()
    chains = []
    real = ex._feature_major

    def spy(members, x):
        chains.append(len(members))
        return real(members, x)

    monkeypatch.setattr(ex, "_feature_major", spy)
    out = export_block_sparse(seq, 8, min_speedup=None)
    assert isinstance(out, nn.Sequential) and list(out._modules) == list(seq._modules)
    assert all(isinstance(out[i], BlockSparseLinear) for i in (0, 3, 6, 8)) and type(out[10]) is nn.Linear
    for batch in (1, 13, 64):
        x = torch.randn(batch, 100)
        chains.clear()
        torch.testing.assert_close(out(x), seq(x), atol=1e-5, rtol=0)
        assert chains == [11]             # one chain, no per-layer transpose; the dense output layer joins it
    x = torch.randn(2, 3, 100)
    torch.testing.assert_close(out(x), seq(x), atol=1e-5, rtol=0)
    assert set(out.state_dict()) >= {"0.weight_values", "3.bias", "8._extra_state", "10.weight"}


def test_dense_linear_layers_join_chains():
    seq = nn.Sequential(nn.Linear(20, 33, bias=False), nn.ReLU(), pruned_linear(33, 40)[0], nn.Tanh(),
                        nn.Linear(40, 17), nn.Sigmoid(), nn.Linear(17, 3)).eval()
    out = export_block_sparse(seq, (4, 8), min_speedup=None)
    assert [i for i, m in enumerate(out) if isinstance(m, BlockSparseLinear)] == [2]
    assert ex._chain_end(list(out), 0) == 7
    for x in (torch.randn(5, 20), torch.randn(2, 2, 20)):
        torch.testing.assert_close(out(x), seq(x), atol=1e-5, rtol=0)


def test_nested_sequential_and_separated_layers():
    a, _ = pruned_linear(32, 32, seed=1)
    b, _ = pruned_linear(32, 32, seed=2)
    c, _ = pruned_linear(32, 16, seed=3)
    model = nn.Sequential(nn.Sequential(a, nn.LayerNorm(32), b), nn.ReLU(), c).eval()
    out = export_block_sparse(model, 8, min_speedup=None)
    assert type(out[0]) is nn.Sequential                        # LayerNorm is not element-wise: no chain
    x = torch.randn(7, 32)
    torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)
    root, _ = pruned_linear(32, 16)
    assert isinstance(export_block_sparse(root, 8, min_speedup=None, inplace=True), BlockSparseLinear)


def test_inplace_and_deepcopy():
    model = nn.Sequential(pruned_linear(24, 24)[0], nn.ReLU(), pruned_linear(24, 8, seed=1)[0]).eval()
    ref = copy.deepcopy(model)
    out = export_block_sparse(model, 8, min_speedup=None, inplace=True)
    assert out is model and isinstance(model[0], BlockSparseLinear)
    twin = copy.deepcopy(out)                                   # a BSR tensor itself cannot be deep-copied
    x = torch.randn(3, 24)
    torch.testing.assert_close(twin(x), ref(x), atol=1e-5, rtol=0)


def test_min_speedup_keeps_dense_with_warning():
    lin, _ = pruned_linear(48, 48)
    model = TwoLayer(lin, nn.Linear(48, 4))
    pattern = r"^'fc1' stays dense: block-sparse measured \d+\.\d\dx dense at batch 32 \(min_speedup=1000000000\.0\)$"
    with pytest.warns(UserWarning, match=pattern):
        out = export_block_sparse(model, 8, min_speedup=1e9, bench_batch=32)
    assert out.fc1.mode == "dense" and out.fc1.speedup > 0
    x = torch.randn(6, 48)
    torch.testing.assert_close(out(x), model(x), atol=1e-6, rtol=0)
    with pytest.warns(UserWarning, match=r"^'linear' stays dense: block-sparse measured"):
        assert BlockSparseLinear.from_dense(lin, 8, min_speedup=1e9, bench_batch=16).mode == "dense"
    fast = BlockSparseLinear.from_dense(lin, 8, min_speedup=1e-9, bench_batch=16)
    assert fast.mode == "bsr" and fast.speedup > 1e-9


def test_chain_stays_dense_as_a_whole():
    seq = nn.Sequential(pruned_linear(40, 40)[0], nn.ReLU(), pruned_linear(40, 40, seed=1)[0]).eval()
    with pytest.warns(UserWarning, match=r"^'0' -> '2' stays dense: block-sparse measured .*\(min_speedup=1e\+20\)$"):
        out = export_block_sparse(seq, 8, min_speedup=1e20, bench_batch=16)
    assert [out[0].mode, out[2].mode] == ["dense", "dense"] and out[0].speedup == out[2].speedup
    x = torch.randn(5, 40)
    torch.testing.assert_close(out(x), seq(x), atol=1e-6, rtol=0)


def test_skipped_layers_are_logged(caplog):
    model = TwoLayer(pruned_linear(16, 16)[0], nn.Linear(16, 16))
    with caplog.at_level(logging.INFO, logger="teraml.sparsity.export"):
        export_block_sparse(model, 8, min_speedup=None)
    assert "'fc2' stays nn.Linear: block density 1.000 > 0.5" in caplog.text


# ------------------------------------------------------------------------------------------ state dicts


def test_weights_only_round_trip_without_timing(monkeypatch):
    seq = nn.Sequential(pruned_linear(50, 40)[0], nn.ReLU(), pruned_linear(40, 30, seed=1)[0], nn.ReLU(),
                        nn.Linear(30, 3)).eval()
    model = TwoLayer(pruned_linear(30, 32, seed=2)[0], pruned_linear(32, 16, keep=0.2, seed=3)[0])
    with pytest.warns(UserWarning, match="stays dense"):
        saved_seq = export_block_sparse(seq, 8, min_speedup=1e9, bench_batch=16)
    saved_model = export_block_sparse(model, 8, min_speedup=None)
    state_seq, state_model = save_load(saved_seq), save_load(saved_model)

    def no_timing(*args, **kwargs):
        raise AssertionError("reloading must not time anything")

    monkeypatch.setattr(ex, "_time_ratio", no_timing)
    fresh_seq = export_block_sparse(seq, 8, min_speedup=None)        # all "bsr" before loading
    assert fresh_seq[0].mode == "bsr"
    fresh_seq.load_state_dict(state_seq)
    assert [fresh_seq[0].mode, fresh_seq[2].mode] == ["dense", "dense"]
    assert fresh_seq[0].speedup == saved_seq[0].speedup
    x = torch.randn(8, 50)
    torch.testing.assert_close(fresh_seq(x), seq(x), atol=1e-5, rtol=0)

    assert isinstance(saved_model.fc2, BlockSparseLinear)
    skeleton = TwoLayer(BlockSparseLinear(30, 32, 8), BlockSparseLinear(32, 16, 8))   # other (empty) patterns
    skeleton.load_state_dict(state_model)
    xm = torch.randn(4, 30)
    torch.testing.assert_close(skeleton(xm), model(xm), atol=1e-5, rtol=0)
    assert skeleton.fc1.n_blocks == saved_model.fc1.n_blocks and skeleton.fc1.mode == "bsr"


def test_load_errors():
    layer = BlockSparseLinear.from_dense(pruned_linear(16, 16)[0], 8, min_speedup=None)
    other = BlockSparseLinear(32, 16, 8)
    with pytest.raises(RuntimeError, match="the checkpoint holds a 16->16 layer, the current model a 32->16 one"):
        other.load_state_dict(layer.state_dict())
    state = layer.state_dict()
    state["weight_col_indices"] = state["weight_col_indices"] + 5
    with pytest.raises(RuntimeError, match="not a valid 16x16 BSR weight with 8x8 blocks"):
        BlockSparseLinear(16, 16, 8).load_state_dict(state)
    state = layer.state_dict()
    del state["bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "bias"'):
        BlockSparseLinear(16, 16, 8).load_state_dict(state)


# ------------------------------------------------------------------------------------------ messages


def test_error_messages_verbatim():
    lin, _ = pruned_linear(16, 16)
    with pytest.raises(TypeError, match=r"^model must be a torch\.nn\.Module, got ndarray$"):
        export_block_sparse(np.zeros(3), 8)
    for bad in (0, (8, 0), (8, 8, 8), -1, 2.5, "8"):
        with pytest.raises(ValueError, match=re.escape("block_shape must be a positive int or a pair of positive "
                                                       f"ints, got {bad!r}")):
            export_block_sparse(lin, bad)
    with pytest.raises(ValueError, match=r"^min_speedup must be None or a float > 0, got 0$"):
        export_block_sparse(lin, 8, min_speedup=0)
    with pytest.raises(ValueError, match=r"^bench_batch must be an int >= 1, got 0$"):
        export_block_sparse(lin, 8, bench_batch=0)
    with pytest.raises(TypeError, match=r"^inplace must be a bool, got int 1$"):
        export_block_sparse(lin, 8, inplace=1)
    with pytest.raises(TypeError, match=r"^linear must be a torch\.nn\.Linear, got"):
        BlockSparseLinear.from_dense(nn.ReLU(), 8)


class _Scale(nn.Module):
    def forward(self, w):
        return w * 2


def test_parametrized_layer_raises():
    from teraml.sparsity.pruner import BlockPruner

    model = TwoLayer(pruned_linear(16, 16)[0], nn.Linear(16, 16))
    BlockPruner(sparsity=0.5, total_steps=10, block_shape=8, min_blocks=1, layers=["fc1"],
                schedule=[("dense", 0.5), ("sparse", 0.5)]).prepare(model)
    message = "layer 'fc1' still has BlockPruner parametrizations; call BlockPruner.finalize() first"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        export_block_sparse(model, 8)
    with pytest.raises(RuntimeError, match=re.escape("layer 'linear' still has BlockPruner parametrizations")):
        BlockSparseLinear.from_dense(model.fc1, 8)
    # someone else's parametrization (weight norm, a scale) is not an unfinished pruner: it exports
    other = TwoLayer(pruned_linear(16, 16)[0], nn.Linear(16, 16))
    parametrize.register_parametrization(other.fc1, "weight", _Scale())
    x = torch.randn(3, 16)
    torch.testing.assert_close(export_block_sparse(other, 8, min_speedup=None)(x), other(x), atol=1e-5, rtol=1e-5)


def test_after_block_pruner_finalize():
    from teraml.sparsity.pruner import BlockPruner

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    pruner = BlockPruner(sparsity=0.9, total_steps=120, block_shape=8, layers=["0", "2"], min_blocks=10)
    model = pruner.prepare(model)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with pytest.raises(RuntimeError, match="layer '0' still has BlockPruner parametrizations"):
        export_block_sparse(model, pruner.block_shape)
    for _ in range(120):
        loss = model(torch.randn(16, 64)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(opt)
    pruner.finalize()
    model.eval()
    fast = export_block_sparse(model, pruner.block_shape, min_speedup=None)
    assert [fast[0].n_blocks, fast[2].n_blocks] == [13, 26]      # n_keep(0.9, 128), n_keep(0.9, 256)
    x = torch.randn(33, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=0)


def test_a_chain_that_starts_with_a_dense_linear_is_timed_with_its_own_input():
    # BlockPruner's defaults leave small layers dense, so a chain often starts with a plain Linear
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    with torch.no_grad():
        model[2].weight[:, 32:] = 0
    fast = export_block_sparse(model.eval(), 16, min_speedup=1e-9, bench_batch=32)
    x = torch.randn(7, 64)
    torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_dtype_without_a_block_sparse_kernel_turns_the_layer_dense():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
    with torch.no_grad():
        model[0].weight[:, 16:] = 0
        model[2].weight[:, 16:] = 0
    fast = export_block_sparse(model, 8, min_speedup=None)
    assert fast[0].mode == "bsr"
    with pytest.warns(UserWarning, match=r"BlockSparseLinear \(bfloat16\) turns dense"):
        fast.to(torch.bfloat16)
    assert fast[0].mode == "dense"
    x = torch.randn(4, 64)
    torch.testing.assert_close(fast(x.to(torch.bfloat16)).float(), model(x), atol=0.1, rtol=0.05)


def test_only_batches_of_16_or_more_are_padded():
    from teraml.sparsity.export import _padded_batch

    assert [_padded_batch(n) for n in (1, 7, 15, 16, 17, 520)] == [1, 7, 15, 16, 32, 528]
