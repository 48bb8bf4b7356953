"""Argument checks of the SDPA-convention attention functions (HyperAttention and its HF registration).

Every message names the argument, what was expected and what was given, as ``teraml._validation`` does;
shape mismatches read ``"key.shape[-1] must equal query.shape[-1]: expected 64, got 32"``.
"""

from __future__ import annotations

import torch

from teraml._validation import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_tensor,
    describe,
    type_name,
)
from teraml.attention.lsh import BUCKET_ORDERS

__all__ = ["check_sdpa_inputs", "check_hyper_params", "check_scale", "check_no_mask_or_dropout",
           "check_projections", "check_generator"]


def _equal(what: str, got: int, expected: int, of: str) -> None:
    if got != expected:
        raise ValueError(f"{what} must equal {of}: expected {expected}, got {got}")


def check_sdpa_inputs(query, key, value, enable_gqa: bool, is_causal: bool) -> None:
    """query (B, H, L, E) or (B, L, E); key, value (B, H_kv, S, E) and (B, H_kv, S, E_v), as SDPA."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, t, floating=False)
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, t)
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
    for name, t in (("query", query), ("key", key)):
        if t.shape[-2] < 1:
            raise ValueError(f"{name}.shape[-2] must be >= 1; got {t.shape[-2]}")
    if query.shape[-1] < 1:
        raise ValueError(f"query.shape[-1] must be >= 1; got {query.shape[-1]}")
    if is_causal and query.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"is_causal=True requires equal query and key lengths; got {query.shape[-2]} and {key.shape[-2]} "
            "(use exact attention for KV-cache decoding)"
        )


def check_hyper_params(lsh_num_projs, block_size, sample_size, min_seq_len, bucket_order) -> None:
    """The HyperAttention parameters shared by the function, the module and the HF registration."""
    check_int("lsh_num_projs", lsh_num_projs, min_value=1, max_value=16)
    check_int("block_size", block_size, min_value=1)
    check_int("sample_size", sample_size, min_value=0)
    check_int("min_seq_len", min_seq_len, min_value=1)
    check_choice("bucket_order", bucket_order, BUCKET_ORDERS)


def check_scale(scale) -> float | None:
    """The softmax scale: a finite float > 0, or None for ``E ** -0.5``."""
    return check_float("scale", scale, min_value=0.0, min_inclusive=False, allow_none=True)


def check_no_mask_or_dropout(attn_mask, dropout_p) -> None:
    """HyperAttention takes neither an attention mask nor dropout (``NotImplementedError``)."""
    if attn_mask is not None:
        what = (f"a Tensor of shape {tuple(attn_mask.shape)}" if isinstance(attn_mask, torch.Tensor)
                else type_name(attn_mask))
        raise NotImplementedError(f"attn_mask must be None; got {what} (use is_causal, or SDPA for arbitrary masks)")
    if dropout_p != 0.0:
        raise NotImplementedError(f"dropout_p must be 0.0; got {describe(dropout_p)}")


def check_projections(projections, head_dim: int, num_projs: int) -> torch.Tensor:
    """A (head_dim, num_projs) tensor of hyperplanes."""
    check_tensor("projections", projections, floating=False)
    if tuple(projections.shape) != (head_dim, num_projs):
        raise ValueError(f"projections must have shape ({head_dim}, {num_projs}); got {tuple(projections.shape)}")
    return projections


def check_generator(generator):
    """A ``torch.Generator`` or None."""
    return check_instance("generator", generator, torch.Generator, "a torch.Generator or None", allow_none=True)
