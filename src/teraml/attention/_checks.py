"""Argument checks of the SDPA-convention attention functions (HyperAttention and its HF registration).

Every message names the argument, what was expected and what was given, as ``teraml._validation`` does;
shape mismatches read ``"key.shape[-1] must equal query.shape[-1]: expected 64, got 32"``.
"""

from __future__ import annotations

import math

import torch

from teraml._validation import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_tensor,
)
from teraml.attention.lsh import BUCKET_ORDERS

__all__ = ["check_sdpa_tensors", "check_sdpa_shapes", "check_hyper_params", "check_scale", "check_dropout",
           "key_bias_from_mask", "check_projections", "check_generator"]


def _equal(what: str, got: int, expected: int, of: str) -> None:
    if got != expected:
        raise ValueError(f"{what} must equal {of}: expected {expected}, got {got}")


def check_sdpa_tensors(query, key, value) -> None:
    """query, key and value are floating-point tensors."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, t, floating=False)
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, t)


def check_sdpa_shapes(query, key, value, enable_gqa: bool) -> None:
    """query (B, H, L, E) or (B, L, E); key, value (B, H_kv, S, E) and (B, H_kv, S, E_v), as SDPA."""
    nd = (query.ndim, key.ndim, value.ndim)
    if len(set(nd)) != 1 or nd[0] not in (3, 4):
        raise ValueError(
            "query, key and value must all be 3-D (batch, seq, dim) or 4-D (batch, heads, seq, dim); "
            f"got query.ndim={query.ndim}, key.ndim={key.ndim}" + (
                f", value.ndim={value.ndim}" if value.ndim != key.ndim else "")
        )
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype or t.device != query.device:
            raise ValueError(
                f"{name} must share query's dtype and device: expected "
                f"{str(query.dtype).replace('torch.', '')}/{query.device}, "
                f"got {str(t.dtype).replace('torch.', '')}/{t.device}"
            )
    _equal("key.shape[-1]", key.shape[-1], query.shape[-1], "query.shape[-1]")
    _equal("value.shape[-2]", value.shape[-2], key.shape[-2], "key.shape[-2]")
    for name, t in (("key", key), ("value", value)):
        _equal(f"{name}.shape[0]", t.shape[0], query.shape[0], "query.shape[0]")
    if query.ndim == 4:
        _equal("value.shape[1]", value.shape[1], key.shape[1], "key.shape[1]")
        hq, hk = query.shape[1], key.shape[1]
        if not enable_gqa and hq != hk:
            raise ValueError(f"key heads must equal query heads when enable_gqa=False: expected {hq}, got {hk}")
        if enable_gqa and (hk == 0 or hq % hk != 0):
            raise ValueError(f"query heads must be a multiple of key heads when enable_gqa=True: got {hq} and {hk}")
    if key.shape[-2] < 1:
        raise ValueError(f"key.shape[-2] must be >= 1; got {key.shape[-2]}")
    if query.shape[-1] < 1:
        raise ValueError(f"query.shape[-1] must be >= 1; got {query.shape[-1]}")


def check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order) -> None:
    """The HyperAttention parameters shared by the function, the module and the HF registration."""
    check_int("lsh_num_projs", lsh_num_projs, min_value=1, max_value=16)
    check_int("block_size", block_size, min_value=1)
    check_int("sample_size", sample_size, min_value=0)
    check_int("min_seq_len", min_seq_len, min_value=1)
    check_choice("bucket_order", bucket_order, BUCKET_ORDERS)


def check_scale(scale) -> float | None:
    """The softmax scale of teraml's kernels: a finite float >= 0 (0 gives uniform attention), or None for
    ``E ** -0.5``. (The exact path passes any scale SDPA takes straight to SDPA.)"""
    return check_float("scale", scale, min_value=0.0, allow_none=True)


def check_dropout(dropout_p: float, n_k: int, min_seq_len: int, return_lse: bool) -> None:
    """teraml's kernels take no dropout: SDPA's exact path does."""
    if dropout_p == 0.0:
        return
    if return_lse:
        raise ValueError(f"dropout_p={dropout_p} is not supported with return_lse=True (the LSE comes from teraml's "
                         "own kernels)")
    raise ValueError(f"dropout_p={dropout_p} is supported only on the exact path (key length <= min_seq_len, which "
                     f"runs SDPA); the key length is {n_k} > min_seq_len={min_seq_len}")


_MASK_FORMS = ("a key-padding mask: bool (True = attend) or float (added to the scores), broadcastable to "
               "(B, H, L, S) and the same for every query row, e.g. of shape (B, 1, 1, S)")


def key_bias_from_mask(attn_mask, query, key) -> torch.Tensor | None:
    """A key-padding ``attn_mask`` as a per-key bias (B, H, S) (fp32, fp64 for fp64 inputs; -inf = masked).

    teraml's kernels take masks that do not depend on the query row; any other mask is a ``ValueError``
    naming the supported forms (SDPA's exact path, at key lengths <= min_seq_len, takes every mask).
    """
    if attn_mask is None:
        return None
    check_tensor("attn_mask", attn_mask, floating=False)
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(f"attn_mask must be a bool or floating tensor; got {attn_mask.dtype}")
    three_d = query.ndim == 3
    B, L, S = query.shape[0], query.shape[-2], key.shape[-2]
    H = 1 if three_d else query.shape[1]
    target = (B, L, S) if three_d else (B, H, L, S)
    try:
        fits = torch.broadcast_shapes(tuple(attn_mask.shape), target) == target
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"attn_mask must be {_MASK_FORMS}; got shape {tuple(attn_mask.shape)} for {target}")
    mask = attn_mask.unsqueeze(-3) if three_d and attn_mask.ndim >= 3 else attn_mask
    if mask.ndim >= 2 and mask.shape[-2] != 1:
        first = mask[..., :1, :]
        if not bool((mask == first).all()):
            raise ValueError(f"attn_mask must be {_MASK_FORMS}; got one of shape {tuple(attn_mask.shape)} that differs "
                             "between query rows (a causal mask: use is_causal=True with the key-padding part)")
        mask = first
    row = mask.reshape(*mask.shape[:-2], mask.shape[-1]) if mask.ndim >= 2 else mask
    acc = torch.float64 if query.dtype == torch.float64 else torch.float32
    if row.dtype == torch.bool:
        bias = torch.zeros(row.shape, dtype=acc, device=row.device).masked_fill(~row, -math.inf)
    else:
        bias = row.to(acc)
        if bool(torch.isnan(bias).any()):
            raise ValueError("attn_mask must not contain NaN")
    return bias.expand(B, H, S)


def check_projections(projections, head_dim: int, num_projs: int) -> torch.Tensor:
    """A (head_dim, num_projs) tensor of hyperplanes."""
    check_tensor("projections", projections, floating=False)
    if tuple(projections.shape) != (head_dim, num_projs):
        raise ValueError(f"projections must have shape ({head_dim}, {num_projs}); got {tuple(projections.shape)}")
    return projections


def check_generator(generator):
    """A ``torch.Generator`` or None."""
    return check_instance("generator", generator, torch.Generator, "a torch.Generator or None", allow_none=True)
