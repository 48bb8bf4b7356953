"""The parametrizations a BlockPruner puts on each pruned weight (``torch.nn.utils.parametrize``).

``BlockParametrization`` computes the weight the layer uses from its stored tensor:

* "sapp": ``W * expand(A * M)`` with ``A = clip(nb * softmax(vec L), low, high)``: one learned logit per
  block, a per-layer softmax scaled to mean 1 (so training starts from the dense net);
* "acdc", "magnitude", "gmp": ``W * expand(M)``;
* "powerprop": the stored tensor is ``V`` and each block is ``W_b = V_b sqrt(|V_b|^2 + eps^2)`` (with weight
  decay on V this is group LASSO on W); then ``* expand(M)``. ``eps`` keeps the gradient finite at a
  zeroed block.

``M`` (a boolean buffer ``mask``) and ``L`` (the Parameter ``logits``) have the block grid's shape.
"""

from __future__ import annotations

import torch
from torch import nn

from teraml.sparsity._blocks import block_sums, expand, from_matrix, grid, matrix_shape, to_matrix

POWERPROP_EPS = 1e-6


class BlockParametrization(nn.Module):
    """Block mask (and SA++ attention, or PowerProp) of one weight; see the module docstring."""

    def __init__(self, shape: torch.Size, block: tuple[int, int], method: str, clip: tuple[float, float] | None,
                 *, device=None, dtype=torch.float32):
        super().__init__()
        self.shape = tuple(shape)
        self.block = tuple(block)
        self.method = method
        self.clip = clip
        R, C = matrix_shape(shape)
        self.R, self.C = R, C
        self.nbr, self.nbc = grid(R, C, self.block)
        self.register_buffer("mask", torch.ones(self.nbr, self.nbc, dtype=torch.bool, device=device))
        if method == "sapp":
            # float32 at least (a float64 model gets float64 logits)
            self.logits = nn.Parameter(torch.zeros(self.nbr, self.nbc, device=device,
                                                   dtype=torch.promote_types(dtype, torch.float32)))

    @property
    def n_blocks(self) -> int:
        return self.nbr * self.nbc

    def attention(self) -> torch.Tensor:
        """SA++'s block weights ``A`` (before the mask), mean 1 before clipping."""
        # in float64, so that the initial weights are exactly 1 (nb * (1/nb) rounds to 1 in float32)
        a = self.n_blocks * torch.softmax(self.logits.reshape(-1).double(), dim=0).reshape(self.nbr, self.nbc)
        if self.clip is not None:
            a = a.clamp(self.clip[0], self.clip[1])
        return a.to(self.logits.dtype)

    def block_factor(self, dtype) -> torch.Tensor:
        """The per-block multiplier of the weight: ``A * M`` (SA++) or ``M``."""
        if self.method == "sapp":
            return self.attention().to(dtype) * self.mask.to(dtype)
        return self.mask.to(dtype)

    def powerprop(self, V: torch.Tensor) -> torch.Tensor:
        """``W_b = V_b sqrt(|V_b|^2 + eps^2)`` per block."""
        Vm = to_matrix(V)
        norms2 = block_sums(Vm * Vm, self.block)
        scale = torch.sqrt(norms2 + POWERPROP_EPS**2)
        return from_matrix(Vm * expand(scale, self.R, self.C, self.block), V.shape)

    def unmasked(self, X: torch.Tensor) -> torch.Tensor:
        """The weight before the block factor (``W``, or ``W(V)`` for PowerProp)."""
        return self.powerprop(X) if self.method == "powerprop" else X

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        W = self.unmasked(X)
        factor = expand(self.block_factor(W.dtype), self.R, self.C, self.block)
        return from_matrix(to_matrix(W) * factor, W.shape).contiguous()


class PowerPropParametrization(BlockParametrization):
    """PowerProp's block parametrization: stores ``V``; ``right_inverse`` maps the initial W to ``V0``."""

    def right_inverse(self, W: torch.Tensor) -> torch.Tensor:
        """The stored tensor for a given weight (at ``prepare``, with every block kept and A = 1).

        PowerProp inverts ``|W_b| = t^{1/2} (t + eps^2)^{1/2}`` with ``t = |V_b|^2`` exactly, so
        ``W(V0)`` equals the initial weight.
        """
        Wm = to_matrix(W)
        w2 = block_sums(Wm * Wm, self.block)
        eps2 = POWERPROP_EPS**2
        t = (-eps2 + torch.sqrt(eps2 * eps2 + 4.0 * w2)) / 2.0
        scale = torch.where(t > 0, 1.0 / torch.sqrt(t + eps2), torch.zeros_like(t))
        return from_matrix(Wm * expand(scale, self.R, self.C, self.block), W.shape)
