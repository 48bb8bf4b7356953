"""Block grids of weight matrices: layout, block scores, the keep count and the stable block selection.

A pruned weight is seen as a matrix ``W`` (R x C): ``nn.Linear`` as (out, in); ``nn.Conv2d`` (groups=1)
permuted (Cout, Cin, kh, kw) -> (Cout, kh, kw, Cin) and flattened to (Cout, kh*kw*Cin), so a block is
``B_c`` consecutive input channels at one tap times ``B_r`` output channels. Edge blocks may be partial.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def grid(R: int, C: int, block: tuple[int, int]) -> tuple[int, int]:
    """``(nbr, nbc)``: the number of block rows and columns (edge blocks partial).

    >>> grid(400, 390, (8, 8))
    (50, 49)
    """
    return math.ceil(R / block[0]), math.ceil(C / block[1])


def n_keep(sparsity: float, nb: int) -> int:
    """Blocks kept at ``sparsity`` out of ``nb``: ``max(1, nb - round(sparsity * nb))`` (Python ``round``).

    >>> n_keep(0.9, 64), n_keep(0.99, 10), n_keep(0.0, 7)
    (6, 1, 7)
    """
    return max(1, nb - round(sparsity * nb))


def to_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The (R, C) matrix view of a Linear (2-D) or Conv2d (4-D) weight (taps before input channels)."""
    if weight.dim() == 2:
        return weight
    cout = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(cout, -1)


def from_matrix(mat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`to_matrix` for a weight of ``shape``."""
    if len(shape) == 2:
        return mat
    cout, cin, kh, kw = shape
    return mat.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2)


def matrix_shape(shape: torch.Size) -> tuple[int, int]:
    """(R, C) of the matrix view of a weight of ``shape``."""
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    return int(shape[0]), int(shape[1] * shape[2] * shape[3])


def block_sums(mat: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Sums of ``mat`` over each block, shape (nbr, nbc); partial edge blocks sum their true entries."""
    R, C = mat.shape
    br, bc = block
    nbr, nbc = grid(R, C, block)
    padded = torch.nn.functional.pad(mat, (0, nbc * bc - C, 0, nbr * br - R))
    return padded.reshape(nbr, br, nbc, bc).sum(dim=(1, 3))


def block_counts(R: int, C: int, block: tuple[int, int]) -> torch.Tensor:
    """How many true entries each block holds (``br * bc`` except at the edges)."""
    return block_sums(torch.ones(R, C, dtype=torch.float64), block)


def score_mag(mat: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Each block's mean of ``W^2`` over its true entries (float64), shape (nbr, nbc)."""
    m = mat.detach().to(torch.float64)
    return block_sums(m * m, block) / block_counts(*m.shape, block)


def block_nonzero(mat: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Whether each block holds a non-zero entry, shape (nbr, nbc)."""
    return block_sums((mat.detach() != 0).to(torch.float64), block) > 0


def expand(blocks: torch.Tensor, R: int, C: int, block: tuple[int, int]) -> torch.Tensor:
    """A (nbr, nbc) block tensor repeated to the (R, C) matrix (edge blocks cut to size)."""
    return blocks.repeat_interleave(block[0], dim=0).repeat_interleave(block[1], dim=1)[:R, :C]


def select(mask: torch.Tensor, k: int, *, primary: torch.Tensor, mag: torch.Tensor,
           nonzero: torch.Tensor) -> torch.Tensor:
    """Keep ``k`` blocks of ``mask`` (all of them if it holds fewer), ranked by a stable key.

    The key, best first: the block holds a non-zero weight (all-zero blocks rank last: with dead inputs
    they never regrow, and a BSR export would drop them below the target density), then ``primary``
    (the attention logits for SA++, never the clipped weights that saturate into ties; the magnitude
    otherwise), then ``mag``, then the lowest index. ``torch.topk`` orders ties unstably; this does not.

    >>> import torch
    >>> m = torch.ones(1, 4, dtype=torch.bool)
    >>> s = torch.tensor([[1.0, 3.0, 3.0, 2.0]])
    >>> select(m, 2, primary=s, mag=s, nonzero=torch.ones(1, 4, dtype=torch.bool)).tolist()
    [[False, True, True, False]]
    """
    flat = mask.reshape(-1).cpu().numpy()
    candidates = np.flatnonzero(flat)
    out = np.zeros_like(flat)
    if k >= candidates.size:
        out[candidates] = True
    else:
        nz = nonzero.reshape(-1).cpu().numpy()[candidates].astype(np.int8)
        p = primary.detach().reshape(-1).to(torch.float64).cpu().numpy()[candidates]
        g = mag.detach().reshape(-1).to(torch.float64).cpu().numpy()[candidates]
        order = np.lexsort((candidates, -g, -p, -nz))     # last key sorts first
        out[candidates[order[:k]]] = True
    return torch.from_numpy(out).reshape(mask.shape).to(mask.device)
