"""Shared input checks that raise clear errors.

Every message names the parameter, what was expected and what was given, for example
``"n_samples must be an int >= 1; got -3"``. The helpers return the (possibly converted) value,
so callers write ``n = check_int("n_samples", n_samples, min_value=1)``.

torch is never imported here at module level: :func:`check_tensor` imports it lazily.

Example
-------
>>> from teraml._validation import check_int
>>> check_int("k", 3, min_value=1)
3
>>> check_int("k", 0, min_value=1)
Traceback (most recent call last):
...
ValueError: k must be an int >= 1; got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "type_name",
    "describe",
    "range_text",
    "check_bool",
    "check_int",
    "check_float",
    "check_choice",
    "check_random_state",
    "check_array",
    "check_same_length",
    "check_tensor",
]


def type_name(value: Any) -> str:
    """Return a readable, fully qualified type name, e.g. ``numpy.ndarray`` or ``str``."""
    t = type(value)
    module = t.__module__
    if module in ("builtins", None):
        return t.__qualname__
    root = module.split(".")[0]
    return f"{root}.{t.__qualname__}"


def describe(value: Any, limit: int = 60) -> str:
    """Return a short repr of ``value`` for an error message."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def range_text(kind: str, min_value=None, max_value=None, *, min_inclusive=True, max_inclusive=True) -> str:
    """Describe an allowed range: ``"an int in [1, 16]"``, ``"a float > 0"``, ``"an int >= 1"``."""
    article = "an" if kind[0] in "aeiou" else "a"
    min_value, max_value = _num(min_value), _num(max_value)
    if min_value is not None and max_value is not None:
        lo = "[" if min_inclusive else "("
        hi = "]" if max_inclusive else ")"
        return f"{article} {kind} in {lo}{min_value}, {max_value}{hi}"
    if min_value is not None:
        return f"{article} {kind} {'>=' if min_inclusive else '>'} {min_value}"
    if max_value is not None:
        return f"{article} {kind} {'<=' if max_inclusive else '<'} {max_value}"
    return f"{article} {kind}"


def _num(x):
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a bool (numpy bools accepted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool; got {type_name(value)} {describe(value)}")


def check_int(name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) within ``[min_value, max_value]``.

    A wrong type raises ``TypeError``, a value out of range ``ValueError``; both messages show the
    allowed range, e.g. ``"lsh_num_projs must be an int in [1, 16]; got 0"``.
    """
    expected = range_text("int", min_value, max_value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}; got {type_name(value)} {describe(value)}")
    value = int(value)
    if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
        raise ValueError(f"{name} must be {expected}; got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Check that ``value`` is a finite real number within the given bounds."""
    if value is None and allow_none:
        return None
    expected = range_text("float", min_value, max_value, min_inclusive=min_inclusive, max_inclusive=max_inclusive)
    if allow_none:
        expected += " or None"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; got {type_name(value)} {describe(value)}")
    value = float(value)
    bad = not math.isfinite(value)
    if min_value is not None:
        bad |= value < min_value if min_inclusive else value <= min_value
    if max_value is not None:
        bad |= value > max_value if max_inclusive else value >= max_value
    if bad:
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``: ``"split must be one of 'train', 'validation'; got 'test'"``."""
    choices = list(choices)
    if value not in choices or not isinstance(value, type(choices[0])):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {describe(value)}")
    return value


def check_random_state(name: str, value: Any) -> np.random.Generator:
    """Turn ``None``, an int seed or a ``numpy.random.Generator`` into a Generator."""
    if value is None:
        return np.random.default_rng()
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, np.random.RandomState):
        return np.random.default_rng(value.randint(0, 2**31 - 1))
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if value < 0:
            raise ValueError(f"{name} must be None, an int >= 0 or a numpy.random.Generator; got {value}")
        return np.random.default_rng(int(value))
    raise TypeError(
        f"{name} must be None, an int >= 0 or a numpy.random.Generator; got {type_name(value)} {describe(value)}"
    )


def check_array(
    name: str,
    value: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    dtype: Any = np.float64,
    min_rows: int = 1,
    finite: bool = True,
) -> np.ndarray:
    """Convert ``value`` to a numpy array, checking dimensionality, dtype and finiteness.

    Torch tensors and other array-likes are rejected with ``TypeError`` unless numpy can convert
    them; strings and ``None`` are always rejected.
    """
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array-like of numbers; got {type_name(value)}")
    try:
        arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array-like of numbers; got {type_name(value)} ({exc})") from None
    if dtype is None and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be an array-like of numbers; got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}; got a {arr.ndim}-D array of shape {arr.shape}")
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s); got shape {arr.shape}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values; got NaN or inf")
    return arr


def check_same_length(names: Sequence[str], *arrays: Any) -> int:
    """Check that all arrays share their first dimension; return it."""
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        parts = ", ".join(f"{n} has {length}" for n, length in zip(names, lengths))
        raise ValueError(f"{', '.join(names)} must have the same number of rows; got {parts}")
    return lengths[0]


def check_tensor(name: str, value: Any, *, floating: bool = True, ndim: int | Sequence[int] | None = None):
    """Check that ``value`` is a ``torch.Tensor`` (floating dtype by default) of the given ndim."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type_name(value)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}; got {value.ndim}-D of shape {tuple(value.shape)}")
    return value
