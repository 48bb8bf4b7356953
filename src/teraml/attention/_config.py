"""What one HyperAttention call runs: its parameters and the algorithm variant, passed down as one object.

:class:`Variant` holds the choices a user of :func:`~teraml.attention.hyper_attention` never makes but tests,
ablations and benchmarks do: the reference code's unmasked samples, random-permutation blocks, and which
of two equal implementations runs. The defaults are HyperAttention as documented.

>>> Variant(blocks="random").blocks
'random'
>>> Variant(unmasked="cuda")
Traceback (most recent call last):
...
ValueError: unmasked must be one of 'fused', 'matmul'; got 'cuda'
"""

from __future__ import annotations

import dataclasses
from typing import Any

from teraml._validation import check_bool, check_choice, check_int

__all__ = ["Variant", "HyperConfig"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """Algorithm variant and implementation of a HyperAttention call.

    mask_block_samples : mask sampled keys that lie in the query's own block (False: the reference code's
        double counting, biased)
    blocks : ``"lsh"`` (sort-LSH blocks) or ``"random"`` (random-permutation blocks: a baseline)
    unmasked : ``"fused"``: torch's fused attention kernels at inference when they apply (not fp64, no
        autograd), else the chunked matmul kernel; ``"matmul"``: always the chunked matmul kernel
    causal : ``"levels"``: at inference, the recursion unrolled into in-place levels when n = leaf * 2^k,
        else the recursion; ``"recursion"``: always the recursion
    source_budget : the most elements of the padded copies one fused call may hold (larger problems run
        over groups of key heads)
    """

    mask_block_samples: bool = True
    blocks: str = "lsh"
    unmasked: str = "fused"
    causal: str = "levels"
    source_budget: int = 1 << 28

    def __post_init__(self):
        check_bool("mask_block_samples", self.mask_block_samples)
        check_choice("blocks", self.blocks, ("lsh", "random"))
        check_choice("unmasked", self.unmasked, ("fused", "matmul"))
        check_choice("causal", self.causal, ("levels", "recursion"))
        check_int("source_budget", self.source_budget, min_value=1)


@dataclasses.dataclass(frozen=True)
class HyperConfig:
    """The checked parameters of one call, shared by the unmasked kernels and the causal drivers.

    ``proj`` is the (d, r) hyperplane matrix in the inputs' dtype and device, ``scale`` the softmax scale,
    ``generator`` the sampling generator (None: torch's global RNG)."""

    proj: Any
    scale: float
    block_size: int
    sample_size: int
    min_seq_len: int
    bucket_order: str
    generator: Any = None
    variant: Variant = Variant()
