"""Index helpers of HyperAttention: gather and scatter rows by permutations, without copies of broadcast dims.

>>> import torch
>>> x = torch.arange(12.0).view(2, 3, 2)
>>> perm = torch.tensor([[2, 0, 1], [1, 2, 0]])
>>> bool(torch.equal(scatter_rows(gather_rows(x, perm), perm), x))
True
"""

from __future__ import annotations

import itertools
import math

import torch

__all__ = ["flat_index", "gather_rows", "scatter_rows", "lead_chunks"]


def flat_index(x_lead: tuple, shape: list, n: int, idx: torch.Tensor) -> torch.Tensor:
    """Flat row indices into x.reshape(-1, e) for idx (broadcast to ``shape`` + (m,))."""
    base = (torch.arange(math.prod(x_lead), device=idx.device) * n).view(*x_lead, 1) if x_lead else torch.zeros(1, dtype=torch.long, device=idx.device)
    base = base.expand(*shape, 1)
    return (base + idx.expand(*shape, idx.shape[-1])).reshape(-1)


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (..., n, e) gathered along -2 by idx (..., m); x's leading dims broadcast without copies."""
    shape = list(torch.broadcast_shapes(x.shape[:-2], idx.shape[:-1]))
    n, e = x.shape[-2:]
    flat = flat_index(tuple(x.shape[:-2]), shape, n, idx)
    return x.reshape(-1, e).index_select(0, flat).view(*shape, idx.shape[-1], e)


def scatter_rows(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Inverse of ``gather_rows(y, perm)`` for a permutation: out[..., perm[i], :] = x[..., i, :]."""
    n, e = x.shape[-2:]
    flat = flat_index(tuple(x.shape[:-2]), list(x.shape[:-2]), n, perm)
    return torch.empty_like(x).reshape(-1, e).index_copy(0, flat, x.reshape(-1, e)).view(x.shape)


def lead_chunks(lead: tuple, max_rows: int):
    """Index tuples over the leading dims ``lead`` so that each chunk covers at most ``max_rows`` of them."""
    j, count, total = 0, 1, math.prod(lead)
    while j < len(lead) and total // count > max_rows:
        count *= lead[j]
        j += 1
    return itertools.product(*[range(s_) for s_ in lead[:j]])
