"""HyperAttention (Han et al., ICLR 2024): near-linear long-context attention, a drop-in for torch SDPA.

For each (batch, head), queries and keys are sorted by an angular LSH (``lsh.py``); query block t
attends exactly to key block t (the heavy entries), and every query also attends to ``sample_size``
keys drawn uniformly (with replacement) from the whole sequence, reweighted by ``n_k / m`` and masked
where the sampled key already lies in the query's own block, so each off-block key is counted once
in expectation. Both parts share one softmax, so output and log-normaliser are exact functions of
the chosen entries. The causal mask is handled by the paper's recursion: exact attention on the two
diagonal halves (recursively, down to ``min_seq_len``) plus an unmasked HyperAttention of the second
half of the queries on the first half of the keys, merged by log-sum-exp.

Samples are drawn uniformly, as in the authors' released code (insuhan/hyper-attn); the paper's
theory samples value rows with probability proportional to their squared norm.

Layout of the implementation: ``_checks.py`` (argument checks), ``_dispatch.py`` (grouped layout and the
choice of path), ``_unmasked.py`` (the unmasked kernels), ``_causal.py`` (the causal drivers), ``lsh.py``
(the sort-LSH) and ``naive.py`` (the dense reference every path is tested against).

Public rule: **exact iff n_k <= min_seq_len**, causal or not; the exact path is SDPA itself and takes every
argument SDPA takes. Beyond it a key-padding ``attn_mask`` (the same for every query row) is honoured
exactly: masked keys leave the blocks and are never sampled.

Differences from the reference code, each tested: sampled keys inside the query's block are masked
(the reference double-counts them), the bucket order is a true Gray-code walk, padded keys are masked,
the merge is an fp32 ``logaddexp`` without cap, the LSE carries gradients, random draws come from an
explicit generator and the projections are a persistent buffer of the module.

Example
-------
>>> import torch
>>> from teraml.attention import hyper_attention
>>> q, k, v = (torch.randn(1, 2, 8192, 64) for _ in range(3))
>>> out = hyper_attention(q, k, v, is_causal=True)          # same call as F.scaled_dot_product_attention
>>> out.shape
torch.Size([1, 2, 8192, 64])
"""

from __future__ import annotations

import torch

from teraml._validation import check_int, check_tensor
from teraml.attention._checks import check_hyper_params
from teraml.attention._dispatch import hyper_forward

__all__ = ["hyper_attention", "HyperAttention"]


def hyper_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False, *, lsh_num_projs=7, block_size=256, sample_size=256,
                    min_seq_len=4096, bucket_order="gray", projections=None, generator=None,
                    return_lse=False):
    """HyperAttention with the calling convention of ``torch.nn.functional.scaled_dot_product_attention``.

    Parameters
    ----------
    query : (B, H, L, E) or (B, L, E) tensor
    key, value : (B, H_kv, S, E) and (B, H_kv, S, E_v), or 3-D like ``query``
    attn_mask : None; at S <= min_seq_len any SDPA mask; beyond, a key-padding mask: bool (True = attend) or
        float (added to the scores), broadcastable to (B, H, L, S) and the same for every query row, e.g.
        (B, 1, 1, S); any other mask is a ``ValueError``
    dropout_p : 0.0; dropout only on the exact path (S <= min_seq_len, SDPA's)
    is_causal : causal attention via the paper's recursion; L != S follows SDPA (query i sees keys 0..i)
    scale : softmax scale, default ``E ** -0.5`` (>= 0 beyond min_seq_len)
    enable_gqa : query head j reads key head ``j // (H / H_kv)``, as in SDPA
    lsh_num_projs : r, the number of hyperplanes (2^r buckets), 1..16
    block_size : keys per LSH block (b)
    sample_size : uniformly sampled keys per (batch, query head) and approximated block (m); 0 = blocks only
    min_seq_len : exact attention iff S <= min_seq_len (also the floor of the causal recursion)
    bucket_order : ``"gray"`` (default), ``"reference"`` (insuhan/hyper-attn's order) or ``"binary"``
    projections : (E, r) hyperplanes; default a cached matrix from ``torch.Generator().manual_seed(0)``
    generator : ``torch.Generator`` for the samples; default torch's global RNG (as dropout)
    return_lse : also return the fp32 natural-log normaliser, shape (..., L)

    Returns
    -------
    Tensor (..., L, E_v) in ``query``'s dtype, or ``(out, lse)`` when ``return_lse``.

    Example
    -------
    >>> import torch
    >>> q = torch.randn(1, 4, 16384, 64); k = v = torch.randn(1, 2, 16384, 64)
    >>> g = torch.Generator().manual_seed(0)
    >>> out, lse = hyper_attention(q, k, v, enable_gqa=True, generator=g, return_lse=True)
    >>> out.shape, lse.dtype
    (torch.Size([1, 4, 16384, 64]), torch.float32)
    """
    return hyper_forward(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                         lsh_num_projs=lsh_num_projs, block_size=block_size, sample_size=sample_size,
                         min_seq_len=min_seq_len, bucket_order=bucket_order, projections=projections,
                         generator=generator, return_lse=return_lse)


class HyperAttention(torch.nn.Module):
    """HyperAttention as an ``nn.Module`` with persistent LSH projections.

    The ``(head_dim, lsh_num_projs)`` projections are a persistent buffer drawn from ``seed``, so a
    reloaded model hashes identically. The module owns one sampling generator per device, seeded
    from ``seed`` (not saved); a ``generator`` passed to :meth:`forward` wins.

    Example
    -------
    >>> import torch
    >>> attn = HyperAttention(64, min_seq_len=2048)
    >>> q = k = v = torch.randn(1, 2, 8192, 64)
    >>> attn(q, k, v, is_causal=True).shape
    torch.Size([1, 2, 8192, 64])
    """

    def __init__(self, head_dim: int, *, lsh_num_projs=7, block_size=256, sample_size=256, min_seq_len=4096,
                 bucket_order="gray", seed=0):
        super().__init__()
        check_int("head_dim", head_dim, min_value=1)
        check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order)
        check_int("seed", seed, min_value=0)
        self.head_dim = head_dim
        self.lsh_num_projs = lsh_num_projs
        self.block_size = block_size
        self.sample_size = sample_size
        self.min_seq_len = min_seq_len
        self.bucket_order = bucket_order
        self.seed = seed
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projections", torch.randn(head_dim, lsh_num_projs, generator=gen), persistent=True)
        self._generators: dict[str, torch.Generator] = {}

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, lsh_num_projs={self.lsh_num_projs}, block_size={self.block_size}, "
                f"sample_size={self.sample_size}, min_seq_len={self.min_seq_len}, "
                f"bucket_order={self.bucket_order!r}, seed={self.seed}")

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                enable_gqa=False, *, return_lse=False, generator=None):
        check_tensor("query", query, floating=False)
        if query.ndim >= 1 and query.shape[-1] != self.head_dim:
            raise ValueError(f"query.shape[-1] must equal head_dim: expected {self.head_dim}, got {query.shape[-1]}")
        if generator is None:
            generator = self._generator(query.device)
        return hyper_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                               lsh_num_projs=self.lsh_num_projs, block_size=self.block_size,
                               sample_size=self.sample_size, min_seq_len=self.min_seq_len,
                               bucket_order=self.bucket_order, projections=self.projections,
                               generator=generator, return_lse=return_lse)
