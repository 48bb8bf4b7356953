"""Speed measurements of the block-sparse export, for the sparsity benchmark (one thread, one process).

:func:`layer_speed` times one :class:`~teraml.sparsity.export.BlockSparseLinear` against ``F.linear``
on the same weights; :func:`kernel_table` times one layer's product with every CPU kernel in reach
(dense, our BSR ``addmm``, CSR ``addmm``, ``F.linear`` on a BSR weight, ``scipy.sparse.bsr_matrix``).
Each time is the minimum over ``repeats`` rounds of the mean of ``inner`` back-to-back calls, the
functions alternating round by round (:func:`teraml._benchutil.measure`), with torch on one thread.

>>> row = layer_speed(64, 64, 8, 0.9, 32, repeats=2, inner=1)
>>> row["stored_blocks"], row["max_abs_err"] < 1e-5
(6, True)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from teraml._benchutil import measure
from teraml.sparsity.export import BlockSparseLinear
from teraml.sparsity.pruner import check_block_shape

__all__ = ["single_thread", "random_block_weight", "layer_speed", "kernel_table"]

_BETA_WARNING = "Sparse BSR tensor support is in beta state"


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block; the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def random_block_weight(out_features: int, in_features: int, block_shape, sparsity: float, *, seed: int = 0,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An (out, in) Gaussian weight (std ``in_features ** -0.5``) with exactly ``round(sparsity * nb)``
    of its ``nb`` blocks at zero (edge blocks partial), chosen at random.

    >>> w = random_block_weight(16, 24, 8, 0.5)
    >>> int((w.reshape(2, 8, 3, 8) != 0).any(3).any(1).sum())
    3
    """
    br, bc = check_block_shape(block_shape)
    g = torch.Generator().manual_seed(seed)
    nbr, nbc = -(-out_features // br), -(-in_features // bc)
    nb = nbr * nbc
    keep = torch.ones(nb, dtype=torch.bool)
    keep[torch.randperm(nb, generator=g)[: round(sparsity * nb)]] = False
    mask = keep.reshape(nbr, nbc).repeat_interleave(br, 0).repeat_interleave(bc, 1)[:out_features, :in_features]
    w = torch.randn(out_features, in_features, generator=g, dtype=torch.float64) * in_features ** -0.5
    return (w * mask).to(dtype)


def _loop(fn: Callable, inner: int) -> Callable:
    def run():
        for _ in range(inner):
            out = fn()
        return out
    return run


def _times(fns: list[Callable], repeats: int, inner: int) -> tuple[list[float], list]:
    with torch.no_grad():
        t = measure(*[_loop(f, inner) for f in fns], repeats=repeats, max_repeats=repeats)
    return [s / inner for s in t.seconds], t.results


def _layer(out_features, in_features, block_shape, sparsity, seed):
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(random_block_weight(out_features, in_features, block_shape, sparsity, seed=seed))
        linear.bias.copy_(torch.randn(out_features, generator=torch.Generator().manual_seed(seed + 1)) * 0.1)
    return linear


def layer_speed(out_features: int, in_features: int, block_shape, sparsity: float, batch: int, *,
                repeats: int = 7, inner: int = 5, seed: int = 0, min_speedup: float | None = None) -> dict:
    """Time one exported layer against ``F.linear`` on the same weights, on one thread.

    Returns a dict: ``out_features, in_features, block_shape, kernel_block, sparsity, batch,
    stored_blocks, mode, dense_s, ours_s, speedup`` (``dense_s / ours_s``) and ``max_abs_err``.
    ``min_speedup`` is passed to :meth:`BlockSparseLinear.from_dense` (None: always block-sparse).
    """
    linear = _layer(out_features, in_features, block_shape, sparsity, seed)
    with single_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        layer = BlockSparseLinear.from_dense(linear, block_shape, min_speedup=min_speedup)
    x = torch.randn(batch, in_features, generator=torch.Generator().manual_seed(seed + 2))
    w, b = linear.weight.detach(), linear.bias.detach()
    with single_thread():
        (t_dense, t_ours), (ref, out) = _times([lambda: F.linear(x, w, b), lambda: layer(x)], repeats, inner)
    return {"out_features": out_features, "in_features": in_features, "block_shape": layer.block_shape,
            "kernel_block": layer.kernel_block, "sparsity": sparsity, "batch": batch,
            "stored_blocks": layer.n_blocks, "mode": layer.mode, "dense_s": t_dense, "ours_s": t_ours, "speedup": t_dense / t_ours,
            "max_abs_err": float((out - ref).abs().max())}


def kernel_table(out_features: int = 1024, in_features: int = 1024, block_shape=8, sparsity: float = 0.9,
                 batch: int = 256, *, repeats: int = 7, inner: int = 5, seed: int = 0) -> list[dict]:
    """One layer's ``X W^T + b`` with each CPU kernel, same weights, one thread.

    Rows (dicts with ``kernel, seconds, speedup, max_abs_err``; speed-up and error against the dense
    row): dense ``F.linear``; ours (:class:`BlockSparseLinear`: BSR ``addmm`` on the padded ``X^T``);
    CSR ``addmm`` (``to_sparse_csr()``, same layout); ``F.linear`` with the BSR weight; and
    ``scipy.sparse.bsr_matrix`` times ``X^T`` (float32, blocks of ``block_shape``, padded).
    Transposes are part of every timed call.
    """
    import scipy.sparse

    br, bc = check_block_shape(block_shape)
    linear = _layer(out_features, in_features, (br, bc), sparsity, seed)
    layer = BlockSparseLinear.from_dense(linear, (br, bc), min_speedup=None)
    x = torch.randn(batch, in_features, generator=torch.Generator().manual_seed(seed + 2))
    w, b = linear.weight.detach(), linear.bias.detach()
    bcol = b.unsqueeze(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BETA_WARNING)
        w_csr = w.to_sparse_csr()
        w_bsr = layer.weight
    rp, cp = -(-out_features // br) * br, -(-in_features // bc) * bc
    w_sp = scipy.sparse.bsr_matrix(F.pad(w, (0, cp - in_features, 0, rp - out_features)).numpy(), blocksize=(br, bc))
    x_np, b_np = x.numpy(), b.numpy()[:, None]

    def scipy_bsr():
        xt = np.zeros((cp, batch), dtype=np.float32)
        xt[:in_features] = x_np.T
        return torch.from_numpy(((w_sp @ xt)[:out_features] + b_np).T)

    def linear_bsr():
        xp = F.pad(x, (0, cp - in_features))
        return F.linear(xp, w_bsr, F.pad(b, (0, w_bsr.shape[0] - out_features)))[:, :out_features]

    kernels = {
        "dense F.linear": lambda: F.linear(x, w, b),
        "BSR addmm (BlockSparseLinear)": lambda: layer(x),
        "CSR addmm (to_sparse_csr)": lambda: torch.addmm(bcol, w_csr, x.t().contiguous()).t(),
        "F.linear on BSR": linear_bsr,
        "scipy.sparse.bsr_matrix @ X^T": scipy_bsr,
    }
    with single_thread():
        seconds, results = _times(list(kernels.values()), repeats, inner)
    ref = results[0]
    return [{"kernel": name, "seconds": s, "speedup": seconds[0] / s, "max_abs_err": float((r - ref).abs().max())}
            for name, s, r in zip(kernels, seconds, results)]
