"""Block-sparse (BSR) export of pruned ``nn.Linear`` layers, for faster inference on CPU.

:func:`export_block_sparse` swaps every ``nn.Linear`` whose weight has at most half of its
``B_r x B_c`` blocks non-zero for a :class:`BlockSparseLinear`. That module keeps only the non-zero
blocks and computes ``Y = addmm(bias, W_bsr, pad(X^T))[:R, :n]^T``: the sparse weight on the left of
the product (``F.linear(X, W_bsr)`` is several times slower than dense on CPU), ``W`` zero-padded to its
block grid (``to_sparse_bsr`` needs divisible sizes; nothing is ever cut off) and the batch padded to a
multiple of 16. Compute is ``O(n (1 - s) R C)`` for a layer at sparsity ``s`` and batch ``n``.

Inside an ``nn.Sequential``, converted layers separated only by element-wise modules (ReLU, GELU, Tanh,
Sigmoid, Identity, Dropout) run as one *feature-major chain*: the activations stay transposed
(features x batch) from the first layer to the last, so there is one transpose in and one out instead of
two per layer. Unconverted ``nn.Linear`` layers next to them join the chain as a dense ``addmm`` with
the weight on the left (same cost as ``F.linear``, no transposes). On a 2-core AMD EPYC (1 thread) the
digits MLP 64-256-256-10 with 8x8 blocks ran 1.8/2.3/3.0x dense at 90/95/98 % sparsity as one chain and
0.9/1.0/1.0x layer by layer. A layer or chain that a min-of-5 timing finds slower than ``min_speedup`` x
dense stays dense (with a warning); the chosen mode is saved in the state dict, so a reloaded model
needs no new timing.

Small batches: each block-sparse product has a fixed cost of some tens of microseconds, so at batch 1
or 16 an exported layer or chain is slower than dense (the digits MLP above at batch 1: 0.4x; at
batch 16: 0.6x; at 256: 1.5-2.3x). The timing fallback runs at ``bench_batch``: export for the batch
sizes you serve.

What counts as zero: an entry ``w`` with ``|w| <= eps * max|W| / C`` (``eps`` the machine epsilon of the
weight's dtype, ``C`` = in_features), for example a 1e-30 left over by a masked product. Dropping such
entries changes no output by more than ``eps * max|W| * max|x|``, one rounding unit of the layer's
largest product, and the export writes them as true zeros (``to_sparse_bsr`` would store any block that
holds one). A block is zero when all its entries are.

Storage: the BSR weight lives in three plain buffers (``weight_crow_indices``, ``weight_col_indices``,
``weight_values``), from which :attr:`BlockSparseLinear.weight` builds the BSR tensor on each call (a
few microseconds, no copy). torch 2.13 can save a BSR buffer (and reload it with ``weights_only=True``),
but ``copy.deepcopy`` of a BSR tensor raises ``NotImplementedError`` and safetensors stores strided
tensors only; plain buffers work everywhere.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
>>> with torch.no_grad():
...     for layer in (model[0], model[2]):
...         layer.weight[:, 16:] = 0             # 3/4 of the 8x8 blocks are zero
>>> fast = export_block_sparse(model, (8, 8), min_speedup=None)
>>> type(fast[0]).__name__, fast[0].mode, fast[0].n_blocks
('BlockSparseLinear', 'bsr', 16)
>>> x = torch.randn(5, 64)
>>> bool(torch.allclose(fast(x), model(x), atol=1e-5))
True
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from teraml._benchutil import measure
from teraml._validation import Interval, check_bool, check_instance, check_int, check_param, is_int
from teraml.sparsity._blocks import block_nonzero
from teraml.sparsity.pruner import check_block_shape

__all__ = ["BlockSparseLinear", "export_block_sparse"]

logger = logging.getLogger(__name__)

#: Modules that act entry by entry and may sit inside a feature-major chain.
ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)
#: Batches of at least this many rows are padded to a multiple of it: a pilot (torch 2.13, 1 thread)
#: measured MKL's 8x8 kernel 3-4x slower at batches 520-540 than at 512/528/544. Smaller batches are not
#: padded: on a 2-core AMD EPYC padding batch 1 to 16 made the layer 2.5x slower (0.39x dense instead of
#: 0.99x), and no batch size gained from it there.
BATCH_MULTIPLE = 16


def _padded_batch(n: int) -> int:
    """The number of columns the batch is padded to (see :data:`BATCH_MULTIPLE`)."""
    return n if n < BATCH_MULTIPLE else _round_up(n, BATCH_MULTIPLE)
#: Largest side of the square blocks stored on CPU (see :func:`kernel_block`).
MAX_CPU_KERNEL_BLOCK = 8
#: Layers whose block density is above this stay ``nn.Linear``.
MAX_DENSITY = 0.5
#: Dtypes the CPU block-sparse matmul (MKL) supports.
CPU_DTYPES = (torch.float32, torch.float64)
_MODES = ("bsr", "dense")
_BETA_WARNING = "Sparse BSR tensor support is in beta state"


# ------------------------------------------------------------------------------------------ helpers


def kernel_block(block_shape: tuple[int, int], device: torch.device | str = "cpu") -> int:
    """Side of the square blocks a weight pruned in ``block_shape`` blocks is stored with.

    MKL multiplies square blocks only ("MKL Sparse doesn't support matrices with non-square blocks"),
    and on a 2-core AMD EPYC (1 thread) its 8x8 and 4x4 kernels ran a 1024x1024 layer pruned in 16x16
    blocks 2.8x faster than dense at 90 % sparsity where 16x16 storage gave 1.9x. So on CPU the side is
    the largest divisor of ``gcd(B_r, B_c)`` that is at most 8 (each pruned block is a whole number of
    stored blocks); elsewhere it is ``gcd(B_r, B_c)``.

    >>> kernel_block((8, 8)), kernel_block((16, 16)), kernel_block((4, 8)), kernel_block((10, 10))
    (8, 8, 4, 5)
    """
    g = math.gcd(int(block_shape[0]), int(block_shape[1]))
    if torch.device(device).type != "cpu":
        return g
    return max(d for d in range(1, min(g, MAX_CPU_KERNEL_BLOCK) + 1) if g % d == 0)


def clean_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` with every entry ``|w| <= eps * max|W| / in_features`` set to an exact 0.

    ``eps`` is the machine epsilon of the weight's dtype and ``max|W|`` the largest finite magnitude, so
    leftovers such as 1e-30 become true zeros while no output moves by more than
    ``eps * max|W| * max|x|``. NaN entries stay (and keep their block).

    >>> w = torch.tensor([[1.0, 1e-30], [0.0, -2.0]])
    >>> clean_weight(w).tolist()
    [[1.0, 0.0], [0.0, -2.0]]
    """
    w = weight.detach()
    if w.numel() == 0:
        return w.clone()
    mag = w.abs()
    scale = torch.nan_to_num(mag, nan=0.0, posinf=0.0).amax()
    thr = scale * (torch.finfo(w.dtype).eps / max(w.shape[-1], 1))
    return torch.where(mag <= thr, torch.zeros((), dtype=w.dtype, device=w.device), w)


def block_density(weight: torch.Tensor, block_shape: tuple[int, int]) -> float:
    """Fraction of the ``block_shape`` blocks of a 2-D weight holding a non-zero (edge blocks partial).

    >>> w = torch.zeros(16, 16); w[0, 0] = 1.0
    >>> block_density(w, (8, 8))
    0.25
    """
    nz = block_nonzero(weight, block_shape)
    return float(nz.sum()) / max(nz.numel(), 1)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_model(model) -> nn.Module:
    try:
        return check_instance("model", model, nn.Module, "a torch.nn.Module", sep=", ")
    except TypeError:  # the documented message names the bare type ("got ndarray")
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}") from None


def _check_options(min_speedup, bench_batch) -> tuple[float | None, int]:
    min_speedup = check_param("min_speedup", min_speedup, [None, Interval("float", 0, closed="neither")], sep=", ")
    return min_speedup, check_int("bench_batch", bench_batch, min_value=1, sep=", ")


def _check_not_parametrized(name: str, module: nn.Module) -> None:
    """RuntimeError when BlockPruner's parametrizations are still on ``module`` (other ones are left alone)."""
    from teraml.sparsity._reparam import BlockParametrization

    if parametrize.is_parametrized(module, "weight") and any(
            isinstance(p, BlockParametrization) for p in module.parametrizations.weight):
        raise RuntimeError(f"layer {name!r} still has BlockPruner parametrizations; call BlockPruner.finalize() first")


def _bsr_supported(dtype: torch.dtype, device: torch.device) -> bool:
    return device.type != "cpu" or dtype in CPU_DTYPES


def _padded_transpose(x2: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``x2`` (n, C) transposed into a zero-padded, contiguous (rows, cols) matrix.

    Padding first and transposing the whole matrix is the fast order: copying a transpose into part
    of a wider buffer ran up to 5x slower (1024 x 520 into 1024 x 528).
    """
    n, c = x2.shape
    if rows != c or cols != n:
        x2 = F.pad(x2, (0, rows - c, 0, cols - n))
    return x2.t().contiguous()


def _rows_needed(m: nn.Module) -> int:
    """Rows of the (features, batch) activation that layer ``m`` multiplies."""
    return m.padded_shape[1] if _is_bsr(m) else m.in_features


def _feature_major(members: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run a chain on the (features, batch) layout: linear layers and element-wise modules in order.

    The input is transposed and padded once, every linear layer is one ``addmm`` with the weight on
    the left (BSR for block-sparse layers, dense for the others), and the result is transposed back
    once (returned as a transposed view).
    """
    first, last = members[0], members[-1]
    if x.ndim == 0 or x.shape[-1] != first.in_features:
        got = "a 0-D tensor" if x.ndim == 0 else x.shape[-1]
        raise ValueError(f"input.shape[-1] must equal in_features: expected {first.in_features}, got {got}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, first.in_features)
    n = x2.shape[0]
    h = _padded_transpose(x2, _rows_needed(first), _padded_batch(n))
    for m in members:
        if not _is_linear(m):
            h = m(h)
            continue
        rows = _rows_needed(m)
        if h.shape[0] > rows:              # the previous layer's padding rows
            h = h[:rows]
        elif h.shape[0] < rows:
            h = F.pad(h, (0, 0, 0, rows - h.shape[0]))
        if _is_bsr(m):
            h = m._matmul(h)
        else:
            h = torch.mm(m.weight, h) if m.bias is None else torch.addmm(m.bias.unsqueeze(1), m.weight, h)
    return h[: last.out_features, :n].t().reshape(*lead, last.out_features)


def _time_ratio(dense_fn: Callable, sparse_fn: Callable, device: torch.device) -> float:
    """``t_dense / t_sparse``, each the minimum of 5 timed calls after a warm-up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.no_grad():
        t = measure(dense_fn, sparse_fn, repeats=5, max_repeats=5, sync=sync)
    return t.seconds[0] / max(t.seconds[1], 1e-12)


def _bench_input(in_features: int, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)          # never touches the global RNG
    return torch.randn(batch, in_features, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------ the layer


class BlockSparseLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight is stored as its non-zero blocks (BSR).

    ``forward`` computes ``Y = addmm(bias, W_bsr, pad(X^T))[:R, :n]^T`` for input (..., in_features):
    leading dimensions are flattened and restored, the batch is zero-padded to a multiple of 16 and
    the weight to its block grid. Output is (..., out_features), a transposed view: element-wise ops and
    another BlockSparseLinear take it at no cost, but ``F.linear`` with few (e.g. 10) outputs ran 6x
    slower on it than on a contiguous input, so call ``.contiguous()`` before such a layer (inside an
    ``nn.Sequential`` export chains them instead). The weight and bias are buffers; there is no
    backward on CPU (torch 2.13 lacks the transposed BSR product it needs).

    Build one with :meth:`from_dense` (or :func:`export_block_sparse` for a whole model). The
    constructor makes an all-zero layer, a skeleton into which ``load_state_dict`` loads any saved
    layer of the same size (the block pattern, mode and speed-up come from the state dict).

    Parameters
    ----------
    in_features, out_features : int
    block_shape : int or (int, int), default (8, 8)
        The pruning blocks ``(B_r, B_c)``; they are stored as square blocks of side
        :func:`kernel_block` (8 for 8x8 and 16x16 blocks on CPU).
    bias : bool, default True
    device, dtype : the buffers' device and dtype (float32 by default)

    Attributes
    ----------
    mode : "bsr" or "dense"
        "dense" keeps the weight as a dense matrix and calls ``F.linear`` (the fallback for layers that
        block-sparse would slow down, and for bfloat16/float16 on CPU).
    speedup : float or None
        ``t_dense / t_bsr`` measured at export (for a chain member: the chain's), None if not timed.

    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(64, 40)
    >>> with torch.no_grad():
    ...     lin.weight[:, 8:] = 0                   # one non-zero block column
    >>> fast = BlockSparseLinear.from_dense(lin, 8, min_speedup=None)
    >>> fast
    BlockSparseLinear(in_features=64, out_features=40, block_shape=(8, 8), mode='bsr', blocks=5/40)
    >>> x = torch.randn(2, 3, 64)
    >>> y = fast(x)
    >>> y.shape, bool(torch.allclose(y, lin(x), atol=1e-5))
    (torch.Size([2, 3, 40]), True)
    """

    def __init__(self, in_features: int, out_features: int, block_shape=(8, 8), *, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.in_features = check_int("in_features", in_features, min_value=1, sep=", ")
        self.out_features = check_int("out_features", out_features, min_value=1, sep=", ")
        self.block_shape = check_block_shape(block_shape)
        bias = check_bool("bias", bias, sep=", ")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        device = torch.device("cpu") if device is None else torch.device(device)
        self.kernel_block = kernel_block(self.block_shape, device)
        self.speedup: float | None = None
        self._mode = "bsr"
        k = self.kernel_block
        nbr = _round_up(self.out_features, k) // k
        self.register_buffer("weight_crow_indices", torch.zeros(nbr + 1, dtype=torch.int64, device=device))
        self.register_buffer("weight_col_indices", torch.zeros(0, dtype=torch.int64, device=device))
        self.register_buffer("weight_values", torch.zeros(0, k, k, dtype=dtype, device=device))
        self.register_buffer("weight_dense", None)
        self.register_buffer("bias", torch.zeros(self.out_features, dtype=dtype, device=device) if bias else None)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_dense(cls, linear: nn.Linear, block_shape, *, min_speedup: float | None = 1.0,
                   bench_batch: int = 256) -> BlockSparseLinear:
        """The block-sparse copy of ``linear`` (which is left unchanged), whatever its block density.

        Entries ``|w| <= eps * max|W| / in_features`` become exact zeros (see the module docstring).
        ``mode`` is "dense", with a ``UserWarning``, for bfloat16/float16 weights on CPU and when a
        min-of-5 timing at batch ``bench_batch`` finds ``t_dense / t_bsr < min_speedup``;
        ``min_speedup=None`` skips the timing.
        """
        check_instance("linear", linear, nn.Linear, "a torch.nn.Linear", sep=", ")
        block = check_block_shape(block_shape)
        min_speedup, bench_batch = _check_options(min_speedup, bench_batch)
        _check_not_parametrized("linear", linear)
        layer = cls._build(linear, block)
        _decide([("linear", linear, layer)], min_speedup, bench_batch)
        return layer

    @classmethod
    def _build(cls, linear: nn.Linear, block: tuple[int, int]) -> BlockSparseLinear:
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, block, bias=linear.bias is not None,
                    device=w.device, dtype=w.dtype)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().clone()
        layer._set_weight(clean_weight(w), "bsr" if _bsr_supported(w.dtype, w.device) else "dense")
        return layer

    def _set_weight(self, dense: torch.Tensor, mode: str) -> None:
        """Store the (R, C) ``dense`` weight (exact zeros already written) in ``mode``."""
        if mode == "dense":
            self.weight_crow_indices = self.weight_col_indices = self.weight_values = None
            self.weight_dense = dense.contiguous().clone()
        else:
            rp, cp = self.padded_shape
            padded = F.pad(dense, (0, cp - self.in_features, 0, rp - self.out_features))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_BETA_WARNING)
                bsr = padded.to_sparse_bsr((self.kernel_block, self.kernel_block))
            self.weight_dense = None
            self.weight_crow_indices = bsr.crow_indices().clone()
            self.weight_col_indices = bsr.col_indices().clone()
            self.weight_values = bsr.values().clone()
        self._mode = mode

    def _set_mode(self, mode: str) -> None:
        if mode != self._mode:
            self._set_weight(self.dense_weight(), mode)

    def _apply(self, fn, recurse=True):
        """``.to()``, ``.half()``, ...: a dtype the block-sparse kernel lacks on that device turns dense."""
        out = super()._apply(fn, recurse)
        data = self._data
        if self._mode == "bsr" and not _bsr_supported(data.dtype, data.device):
            warnings.warn(f"BlockSparseLinear ({_dtype_name(data.dtype)}) turns dense: block-sparse matmul on "
                          f"{data.device.type} supports float32/float64 only", UserWarning, stacklevel=2)
            self._set_mode("dense")
        return out

    # ---------------------------------------------------------------- views

    @property
    def mode(self) -> str:
        """"bsr" (block-sparse matmul) or "dense" (``F.linear`` on the dense weight)."""
        return self._mode

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(R, C) rounded up to the stored block grid."""
        k = self.kernel_block
        return _round_up(self.out_features, k), _round_up(self.in_features, k)

    @property
    def n_blocks(self) -> int:
        """Stored (non-zero) blocks of side ``kernel_block``; in "dense" mode, those it would store."""
        if self._mode == "bsr":
            return int(self.weight_values.shape[0])
        return int(block_nonzero(self.weight_dense, (self.kernel_block,) * 2).sum())

    @property
    def weight(self) -> torch.Tensor:
        """The weight: a (padded R, padded C) BSR tensor in "bsr" mode, the dense (R, C) matrix in "dense"."""
        if self._mode == "dense":
            return self.weight_dense
        # built once per set of buffers (a new buffer from loading or .to() has a new address): building it
        # costs about 10 microseconds, as much as a whole small layer
        key = (self.weight_values.data_ptr(), self.weight_crow_indices.data_ptr(),
               self.weight_col_indices.data_ptr(), self.weight_values.dtype, self.weight_values.device)
        cache = self.__dict__.get("_bsr_cache")
        if cache is None or cache[0] != key:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_BETA_WARNING)
                bsr = torch.sparse_bsr_tensor(self.weight_crow_indices, self.weight_col_indices, self.weight_values,
                                              self.padded_shape, check_invariants=False)
            cache = (key, bsr)
            self.__dict__["_bsr_cache"] = cache
        return cache[1]

    def __getstate__(self):
        """Copies and pickles leave the cached BSR tensor out (``copy.deepcopy`` cannot copy one)."""
        state = dict(super().__getstate__())
        state.pop("_bsr_cache", None)
        return state

    @property
    def _data(self) -> torch.Tensor:
        return self.weight_values if self._mode == "bsr" else self.weight_dense

    def dense_weight(self) -> torch.Tensor:
        """The (out_features, in_features) weight as a dense matrix (a new tensor)."""
        if self._mode == "dense":
            return self.weight_dense.clone()
        return self.weight.to_dense()[: self.out_features, : self.in_features].contiguous()

    def extra_repr(self) -> str:
        nb = math.prod(_round_up(s, self.kernel_block) // self.kernel_block for s in self.padded_shape)
        text = (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"block_shape={self.block_shape}, mode={self._mode!r}, blocks={self.n_blocks}/{nb}")
        if self.bias is None:
            text += ", bias=False"
        if self.speedup is not None:
            text += f", speedup={self.speedup:.2f}"
        return text

    # ---------------------------------------------------------------- compute

    def _matmul(self, h: torch.Tensor) -> torch.Tensor:
        """``W_bsr @ h + bias`` for ``h`` (padded C, m): the padded (R, m) result."""
        w = self.weight
        if self.bias is None:
            return torch.mm(w, h)
        rows = self.padded_shape[0]
        b = self.bias if rows == self.out_features else F.pad(self.bias, (0, rows - self.out_features))
        return torch.addmm(b.unsqueeze(1), w, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mode == "dense":
            return F.linear(x, self.weight_dense, self.bias)
        return _feature_major((self,), x)

    # ---------------------------------------------------------------- state

    def get_extra_state(self) -> dict:
        return {"mode": self._mode, "speedup": self.speedup, "block_shape": list(self.block_shape),
                "kernel_block": self.kernel_block, "in_features": self.in_features,
                "out_features": self.out_features}

    def set_extra_state(self, state) -> None:
        """Restore mode, speed-up and block sizes; the state's weights must be loaded with it
        (``load_state_dict`` does both)."""
        state = self._check_extra_state(state)
        if state["mode"] != self._mode or state["kernel_block"] != self.kernel_block:
            raise RuntimeError("set_extra_state: the mode and block size are restored by load_state_dict together "
                               "with the weights")
        self.speedup, self.block_shape = state["speedup"], tuple(state["block_shape"])

    def _check_extra_state(self, state) -> dict:
        keys = ("mode", "speedup", "block_shape", "kernel_block", "in_features", "out_features")
        if (not isinstance(state, dict) or any(k not in state for k in keys) or state["mode"] not in _MODES
                or not is_int(state["kernel_block"]) or state["kernel_block"] < 1):
            raise ValueError(f"extra state must be a dict with keys {', '.join(keys)}, mode 'bsr' or 'dense' and "
                             f"a positive int kernel_block, got {state!r}")
        if (state["out_features"], state["in_features"]) != (self.out_features, self.in_features):
            raise ValueError(f"the checkpoint holds a {state['in_features']}->{state['out_features']} layer, "
                             f"the current model a {self.in_features}->{self.out_features} one")
        return state

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # The block pattern (and so the buffers' shapes) may differ from this module's: replace, don't copy.
        for hook in self._load_state_dict_pre_hooks.values():
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        extra_key = prefix + "_extra_state"
        if extra_key not in state_dict:
            missing_keys.append(extra_key)
            return
        try:
            state = self._check_extra_state(state_dict[extra_key])
        except ValueError as exc:
            error_msgs.append(f"While loading {extra_key}: {exc}")
            return
        names = (["weight_crow_indices", "weight_col_indices", "weight_values"] if state["mode"] == "bsr"
                 else ["weight_dense"]) + (["bias"] if self.bias is not None else [])
        if strict:
            for key in state_dict:
                if key.startswith(prefix) and key != extra_key and key[len(prefix):].split(".", 1)[0] not in names:
                    unexpected_keys.append(key)
        absent = [prefix + n for n in names if prefix + n not in state_dict]
        if absent:
            missing_keys.extend(absent)
            return
        k = int(state["kernel_block"])
        rp, cp = _round_up(self.out_features, k), _round_up(self.in_features, k)
        got = {n: state_dict[prefix + n] for n in names}
        want = {"weight_dense": (self.out_features, self.in_features), "bias": (self.out_features,),
                "weight_crow_indices": (rp // k + 1,)}
        bad = [n for n, t in got.items() if not isinstance(t, torch.Tensor) or t.layout != torch.strided
               or (n in want and tuple(t.shape) != want[n])]
        if state["mode"] == "bsr" and not bad:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_BETA_WARNING)
                    torch.sparse_bsr_tensor(got["weight_crow_indices"], got["weight_col_indices"],
                                            got["weight_values"], (rp, cp), check_invariants=True)
                if tuple(got["weight_values"].shape[1:]) != (k, k):
                    raise RuntimeError(f"blocks are {tuple(got['weight_values'].shape[1:])}, not {(k, k)}")
            except (RuntimeError, ValueError, TypeError) as exc:
                error_msgs.append(f"While loading {prefix}weight_*: not a valid {rp}x{cp} BSR weight with "
                                  f"{k}x{k} blocks: {exc}")
                return
        if bad:
            shapes = ", ".join(f"{prefix}{n}: {tuple(got[n].shape) if isinstance(got[n], torch.Tensor) else got[n]!r}"
                               for n in bad)
            error_msgs.append(f"size mismatch for a {self.in_features}->{self.out_features} BlockSparseLinear "
                              f"with {k}x{k} blocks ({state['mode']} mode): {shapes}")
            return
        assign = local_metadata.get("assign_to_params_buffers", False)
        ref = self._data
        for n in ("weight_crow_indices", "weight_col_indices", "weight_values", "weight_dense"):
            self._buffers[n] = None
        for n, t in got.items():
            t = t.detach()
            if not assign:
                floating = n in ("bias", "weight_values", "weight_dense")
                t = t.to(device=ref.device, dtype=ref.dtype if floating else torch.int64, copy=True)
            self._buffers[n] = t
        self._mode, self.kernel_block = state["mode"], k
        self.speedup, self.block_shape = state["speedup"], tuple(state["block_shape"])


# ------------------------------------------------------------------------------------------ chains


class _FeatureMajorSequential(nn.Sequential):
    """An ``nn.Sequential`` that runs its feature-major chains (see :func:`_chain_end`) in one go.

    Children, their names and the state dict are those of the original Sequential; chains are found
    again at each call (a few microseconds).
    """

    def forward(self, input):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            stop = _chain_end(mods, i)
            if stop > i + 1:
                input = _feature_major(mods[i:stop], input)
                i = stop
            else:
                input = mods[i](input)
                i += 1
        return input


def _is_bsr(m: nn.Module) -> bool:
    return isinstance(m, BlockSparseLinear) and m.mode == "bsr"


def _is_linear(m: nn.Module) -> bool:
    return type(m) is nn.Linear or isinstance(m, BlockSparseLinear)


def _chain_end(mods: Sequence[nn.Module], start: int, is_bsr: Callable[[nn.Module], bool] = _is_bsr) -> int:
    """End (exclusive) of the feature-major chain starting at ``mods[start]``, else ``start + 1``.

    A chain is a maximal run "linear layer, then one or more times (element-wise modules, linear
    layer)" whose sizes match and which holds a block-sparse layer (``is_bsr``). Linear layers are
    ``nn.Linear`` (exact type) and :class:`BlockSparseLinear`; in a chain, dense ones also run with
    the weight on the left, which costs what ``F.linear`` costs and saves the transposes around them
    (``F.linear`` on a transposed input with 10 outputs ran 6x slower than on a contiguous one).
    """
    if not _is_linear(mods[start]):
        return start + 1
    end, j, sparse = start + 1, start + 1, is_bsr(mods[start])
    while j < len(mods):
        if isinstance(mods[j], ELEMENTWISE):
            j += 1
        elif _is_linear(mods[j]) and mods[j].in_features == mods[end - 1].out_features:
            sparse = sparse or is_bsr(mods[j])
            j += 1
            end = j
        else:
            break
    return end if sparse and end > start + 1 else start + 1


def _decide(group: list[tuple[str, nn.Module, nn.Module]], min_speedup, bench_batch: int) -> None:
    """Choose the mode of one layer or chain: ``group`` lists (name, original module, new module) in
    order; a chain's other modules (element-wise, unconverted linear) appear as ("", module, module)
    and run in both timings."""
    names = [name for name, old, new in group if new is not old]
    layers = [new for _, old, new in group if new is not old]
    first = layers[0]
    dtype, device = first._data.dtype, first._data.device
    if any(layer.mode == "dense" for layer in layers):      # an unsupported dtype: no timing
        for name, layer in zip(names, layers):
            if layer.mode == "dense":
                warnings.warn(f"{name!r} ({_dtype_name(dtype)}) stays dense: CPU block-sparse matmul supports "
                              "float32/float64 only", UserWarning, stacklevel=3)
                logger.info("%r (%s) stays dense: block-sparse matmul does not support this dtype on %s", name,
                            _dtype_name(dtype), device.type)
            layer._set_mode("dense")
        return
    if min_speedup is None:
        return
    olds = [old for _, old, _ in group]
    head = next(m for m in olds if hasattr(m, "in_features"))   # a chain may start with a dense Linear
    x = _bench_input(head.in_features, bench_batch, dtype, device)
    news = [new for _, _, new in group]
    if len(news) == 1:
        ratio = _time_ratio(lambda: olds[0](x), lambda: news[0](x), device)
    else:
        def dense():
            h = x
            for m in olds:
                h = m(h)
            return h
        ratio = _time_ratio(dense, lambda: _feature_major(news, x), device)
    for layer in layers:
        layer.speedup = ratio
    if ratio < min_speedup:
        label = " -> ".join(repr(n) for n in names)
        warnings.warn(f"{label} stays dense: block-sparse measured {ratio:.2f}x dense at batch {bench_batch} "
                      f"(min_speedup={min_speedup!r})", UserWarning, stacklevel=3)
        logger.info("%s stays dense: block-sparse measured %.2fx dense", label, ratio)
        for layer in layers:
            layer._set_mode("dense")


# ------------------------------------------------------------------------------------------ the export


def export_block_sparse(model: nn.Module, block_shape, *, min_speedup: float | None = 1.0, bench_batch: int = 256,
                        inplace: bool = False) -> nn.Module:
    """Swap the block-sparse ``nn.Linear`` layers of ``model`` for :class:`BlockSparseLinear` modules.

    Every ``nn.Linear`` (exact type: subclasses may read ``.weight`` elsewhere) whose block density, the
    fraction of its ``block_shape`` blocks holding a non-zero after tiny leftovers are zeroed, is at
    most 0.5 is converted; others are logged at INFO and stay. Inside an ``nn.Sequential``, converted
    layers separated only by ReLU, GELU, Tanh, Sigmoid, Identity or Dropout form a feature-major chain
    (the Sequential becomes a subclass that runs it; children and state-dict keys are unchanged).

    A layer or chain stays in "dense" mode, with a ``UserWarning``, when a min-of-5 timing at batch
    ``bench_batch`` gives ``t_dense / t_bsr < min_speedup`` (``None``: no timing), and a layer also
    when its weight is bfloat16/float16 on CPU. The mode is saved in the state dict: a model exported
    again (or built from :class:`BlockSparseLinear` skeletons) reloads it, with
    ``torch.load(..., weights_only=True)``, without timing anything.

    Parameters
    ----------
    model : torch.nn.Module
        After ``BlockPruner.finalize()`` (a parametrized Linear raises ``RuntimeError``). A model that
        is itself an ``nn.Linear`` is returned converted (a new module even with ``inplace=True``).
    block_shape : int or (int, int)
        The pruning blocks, e.g. ``pruner.block_shape``.
    min_speedup : float > 0 or None, default 1.0
    bench_batch : int >= 1, default 256
    inplace : bool, default False
        Convert ``model`` itself instead of a deep copy.

    Returns
    -------
    The exported model (modules keep their ``training`` flags; call ``eval()`` for inference).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    >>> with torch.no_grad():
    ...     model[0].weight[:, 8:] = 0                  # 3/4 of its 8x8 blocks are zero
    >>> fast = export_block_sparse(model, 8, min_speedup=None)
    >>> [type(m).__name__ for m in fast], fast[0].mode
    (['BlockSparseLinear', 'ReLU', 'Linear'], 'bsr')
    >>> x = torch.randn(4, 32)
    >>> bool(torch.allclose(fast(x), model(x), atol=1e-5))
    True
    """
    _check_model(model)
    block = check_block_shape(block_shape)
    min_speedup, bench_batch = _check_options(min_speedup, bench_batch)
    inplace = check_bool("inplace", inplace, sep=", ")
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _check_not_parametrized(name, module)
    if not inplace:
        model = copy.deepcopy(model)

    new: dict[int, tuple[str, nn.Module, BlockSparseLinear]] = {}
    for name, module in model.named_modules():
        if type(module) is nn.Linear:
            density = block_density(clean_weight(module.weight), block)
            if density > MAX_DENSITY:
                logger.info("%r stays nn.Linear: block density %.3f > %s", name, density, MAX_DENSITY)
                continue
            new[id(module)] = (name, module, BlockSparseLinear._build(module, block))
            new[id(module)][2].train(module.training)
        elif isinstance(module, nn.Linear) and not isinstance(module, BlockSparseLinear):
            logger.info("%r stays as is: %s is a subclass of nn.Linear", name, type(module).__name__)

    # Chains inside plain nn.Sequential containers (their children in order), then single layers.
    groups, chained, chain_parents = [], set(), []
    for module in model.modules():
        if type(module) is not nn.Sequential:
            continue
        mods = list(module._modules.values())
        i = 0
        while i < len(mods):
            stop = _chain_end(mods, i, lambda m: id(m) in new and new[id(m)][2].mode == "bsr")
            if stop > i + 1:
                group = [new[id(m)] if id(m) in new else ("", m, m) for m in mods[i:stop]]
                groups.append(group)
                chained.update(id(m) for m in mods[i:stop] if id(m) in new)
                chain_parents.append(module)
            i = stop
    groups += [[entry] for key, entry in new.items() if key not in chained]
    order = {id(m): i for i, m in enumerate(model.modules())}
    groups.sort(key=lambda g: order[id(g[0][1])])
    for group in groups:
        _decide(group, min_speedup, bench_batch)

    for parent in list(model.modules()):
        for child_name, child in parent._modules.items():
            if child is not None and id(child) in new:
                parent._modules[child_name] = new[id(child)][2]
    for parent in chain_parents:
        parent.__class__ = _FeatureMajorSequential
    if id(model) in new:
        return new[id(model)][2]
    return model
