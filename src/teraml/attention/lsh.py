"""Sort-LSH for HyperAttention: angular hashing with Gaussian hyperplanes and a Hamming-friendly order.

``bits = sign(x @ P)`` with ``P`` a ``d x r`` Gaussian matrix; ``code = sum_t bit_t 2^t``. Rows are
sorted stably by a *rank* of their code, so that rows with near-identical codes (nearby directions)
end up in the same block:

* ``"gray"`` (default): the rank is the inverse Gray code of the code, so the codes of consecutive
  ranks differ in exactly one bit (a Hamming walk through all 2^r buckets);
* ``"reference"``: ``code ^ (code >> 1)``, the order of the insuhan/hyper-attn code (only ~76% of
  adjacent buckets differ in one bit at r = 7);
* ``"binary"``: the code itself.

Example
-------
>>> import torch
>>> P = default_projections(4, 3)
>>> x = torch.randn(10, 4)
>>> perm = sort_lsh(x, P)
>>> sorted(perm.tolist()) == list(range(10))
True
"""

from __future__ import annotations

import torch

__all__ = ["BUCKET_ORDERS", "default_projections", "hash_codes", "bucket_rank", "sort_lsh", "order_table"]

BUCKET_ORDERS = ("gray", "reference", "binary")
_CACHE: dict[tuple, torch.Tensor] = {}


def default_projections(head_dim: int, num_projs: int, *, dtype=torch.float32, device=None, seed: int = 0):
    """The cached ``(head_dim, num_projs)`` N(0, 1) matrix from ``torch.Generator().manual_seed(seed)``.

    It is drawn on the CPU in fp32 (so every device and dtype sees the same hyperplanes) and then
    moved; the global RNG is untouched. It is never an inference tensor, so a first call under
    ``torch.inference_mode()`` does not break training afterwards.
    """
    key = (head_dim, num_projs, seed, dtype, str(device))
    p = _CACHE.get(key)
    if p is None:
        gen = torch.Generator().manual_seed(seed)
        with torch.inference_mode(False):   # a cached tensor made under inference_mode must serve autograd later
            p = torch.randn(head_dim, num_projs, generator=gen, dtype=torch.float32).to(dtype=dtype, device=device)
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = p
    return p


def hash_codes(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Integer codes ``sum_t [x @ P]_t > 0) * 2^t`` of the rows of ``x`` (``(..., n, d)`` -> ``(..., n)``, int64)."""
    r = projections.shape[-1]
    bits = (x @ projections.to(x.dtype)) > 0
    # sum_t bit_t 2^t as one small fp32 product (exact: integers below 2^24)
    weights = 2.0 ** torch.arange(r, device=x.device, dtype=torch.float32)
    return (bits.to(torch.float32) @ weights).to(torch.int64)


def _inverse_gray(code: torch.Tensor) -> torch.Tensor:
    # prefix XOR from the most significant bit down (codes have at most 16 bits)
    g = code
    for shift in (1, 2, 4, 8):
        g = g ^ (g >> shift)
    return g


def bucket_rank(code: torch.Tensor, bucket_order: str = "gray") -> torch.Tensor:
    """The sort key of each code under ``bucket_order`` (see the module docstring)."""
    if bucket_order == "gray":
        return _inverse_gray(code)
    if bucket_order == "reference":
        return code ^ (code >> 1)
    if bucket_order == "binary":
        return code
    raise ValueError(f"bucket_order must be one of 'gray', 'reference', 'binary'; got {bucket_order!r}")


def sort_lsh(x: torch.Tensor, projections: torch.Tensor, bucket_order: str = "gray") -> torch.Tensor:
    """Stable permutation (``(..., n)`` int64) that sorts the rows of ``x`` by LSH bucket rank."""
    rank = bucket_rank(hash_codes(x, projections), bucket_order)
    return torch.argsort(rank, dim=-1, stable=True)


def order_table(num_projs: int, bucket_order: str = "gray") -> torch.Tensor:
    """All ``2^r`` codes listed in the order the sort visits their buckets.

    >>> order_table(2, "gray").tolist()
    [0, 1, 3, 2]
    """
    codes = torch.arange(2**num_projs, dtype=torch.int64)
    return codes[torch.argsort(bucket_rank(codes, bucket_order), stable=True)]
