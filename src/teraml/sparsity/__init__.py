"""Block-sparse pruning during training (SequentialAttention++) and a block-sparse export faster on CPU.

:class:`BlockPruner` prunes ``B_r x B_c`` blocks of a model's Linear and Conv2d weights inside your own
training loop: SA++ (Yasuda et al., NeurIPS 2024) learns one softmax weight per block (the "attention" is
that mask over weight blocks, not a transformer layer) within ACDC-style dense, sparsify and sparse phases;
ACDC, block magnitude, gradual magnitude and PowerPropagation are the same class with another ``method``.
:func:`export_block_sparse` then swaps the pruned Linear layers for :class:`BlockSparseLinear` modules
(BSR weights on the left of the product, feature-major chains) that run faster than dense on CPU.
"""

from teraml.sparsity.export import BlockSparseLinear, export_block_sparse
from teraml.sparsity.pruner import BlockPruner

__all__ = ["BlockPruner", "BlockSparseLinear", "export_block_sparse"]
