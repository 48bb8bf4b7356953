"""Long-context attention (torch): HyperAttention and the shared log-sum-exp merge.

>>> import torch
>>> from teraml.attention import hyper_attention
>>> q = k = v = torch.randn(1, 2, 1024, 64)
>>> out = hyper_attention(q, k, v, is_causal=True)   # exact below min_seq_len (4096)
>>> bool(torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)))
True
"""

from teraml.attention._merge import exact_attention, merge_attention
from teraml.attention.hf import HyperAttentionRegistration, register_hyper_attention
from teraml.attention.hyper import HyperAttention, hyper_attention

__all__ = [
    "hyper_attention",
    "HyperAttention",
    "merge_attention",
    "exact_attention",
    "register_hyper_attention",
    "HyperAttentionRegistration",
]
