"""The input checks every teraml package uses: one place, one message format.

Every message names the parameter, what was expected and what was given, for example
``"n_samples must be an int >= 1; got -3"``. A value of the wrong type raises ``TypeError`` (the
message then shows the type too: ``"k must be an int >= 1; got str '3'"``), a value of the right
type out of range raises ``ValueError``. Components whose documented messages read ``", got"``
pass ``sep=", "``.

Two ways to use it:

* the ``check_*`` helpers for one value: ``n = check_int("n_samples", n_samples, min_value=1)``;
  each returns the (converted) value;
* a parameter table for an estimator: a class-level ``_parameter_constraints`` maps each
  parameter to the list of what it may be (:class:`Interval`, :class:`Options`,
  :class:`InstanceOf`, :class:`Satisfies`, or ``None``; a string in the list replaces the generated
  text of the error), and :func:`check_params` enforces the whole table at ``fit`` (scikit-learn's
  pattern, in a small version of our own).

torch is never imported here at module level: :func:`check_tensor` imports it lazily.

Example
-------
>>> from teraml._validation import Interval, Options, check_int, check_params
>>> check_int("k", 3, min_value=1)
3
>>> check_int("k", 0, min_value=1)
Traceback (most recent call last):
...
ValueError: k must be an int >= 1; got 0
>>> table = {"rho": [Options("auto"), Interval("float", 0, 1)], "cv": [Interval("int", 2)]}
>>> check_params({"rho": "auto", "cv": 5}, table)
{'rho': 'auto', 'cv': 5}
>>> check_params({"rho": 1.5, "cv": 5}, table)
Traceback (most recent call last):
...
ValueError: rho must be 'auto' or a float in [0, 1]; got 1.5
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "type_name",
    "describe",
    "range_text",
    "Interval",
    "Options",
    "InstanceOf",
    "Satisfies",
    "BOOL",
    "VERBOSE",
    "describe_allowed",
    "is_int",
    "is_real",
    "param_error",
    "check_param",
    "check_params",
    "check_bool",
    "check_int",
    "check_float",
    "check_choice",
    "check_instance",
    "check_path",
    "check_random_state",
    "check_array",
    "check_same_length",
    "check_columns",
    "check_tensor",
]


# ------------------------------------------------------------------------------------------ formatting


def type_name(value: Any) -> str:
    """Return a readable, fully qualified type name, e.g. ``numpy.ndarray`` or ``str``."""
    t = type(value)
    module = t.__module__
    if module in ("builtins", None):
        return t.__qualname__
    root = module.split(".")[0]
    return f"{root}.{t.__qualname__}"


def describe(value: Any, limit: int = 60) -> str:
    """Return a short repr of ``value`` for an error message (numpy scalars as plain numbers)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, np.generic):
        value = value.item()
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


def is_int(value) -> bool:
    """True for Python and numpy integers, False for bools (which Python counts as integers)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """True for real Python and numpy numbers, False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _fail(name: str, expected: str, value: Any, *, wrong_type: bool, sep: str = "; ", shown: str | None = None,
          form: str = "must"):
    """The one error of this module: TypeError for a wrong type, ValueError for a bad value.

    ``form="must"`` reads ``"k must be an int >= 1; got 0"``; ``form="expected"`` reads
    ``"k: expected an int >= 1, got 0"`` (a wrong type shows it after the value: ``got 2.5 (float)``).
    """
    if form == "expected":
        if shown is None:
            shown = f"{describe(value)} ({type_name(value)})" if wrong_type else describe(value)
        return (TypeError if wrong_type else ValueError)(f"{name}: expected {expected}, got {shown}")
    if shown is None:
        shown = f"{type_name(value)} {describe(value)}" if wrong_type else describe(value)
    exc = TypeError if wrong_type else ValueError
    return exc(f"{name} must be {expected}{sep}got {shown}")


def param_error(name: str, text: str, *, wrong_type: bool = False) -> Exception:
    """An error about parameter ``name`` that no constraint describes, in the ``form="expected"`` style.

    Returns (does not raise) ``ValueError(f"{name}: {text}")``, or ``TypeError`` when ``wrong_type``.

    >>> raise param_error("columns", "unknown column(s) ['foo']; X has columns ['a', 'b']")
    Traceback (most recent call last):
    ...
    ValueError: columns: unknown column(s) ['foo']; X has columns ['a', 'b']
    """
    return (TypeError if wrong_type else ValueError)(f"{name}: {text}")


# ------------------------------------------------------------------------------------------ constraints


class Interval:
    """Numbers of one kind in a range.

    ``kind`` is ``"int"`` (integers, not bools) or ``"float"`` (any finite real, ints included;
    converted to float). ``closed`` says which ends belong: ``"both"``, ``"left"``, ``"right"`` or
    ``"neither"``. ``text`` replaces the generated description.

    >>> Interval("float", 0, 1, closed="left").describe()
    'a float in [0, 1)'
    >>> Interval("int", 1).describe(), Interval("int", 1).accepts(True)
    ('an int >= 1', False)
    """

    def __init__(self, kind: str, low=None, high=None, *, closed: str = "both", text: str | None = None):
        if kind not in ("int", "float"):
            raise ValueError(f"kind must be 'int' or 'float'; got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be one of 'both', 'left', 'right', 'neither'; got {closed!r}")
        self.kind, self.low, self.high, self.closed, self.text = kind, low, high, closed, text

    def type_ok(self, value) -> bool:
        return is_int(value) if self.kind == "int" else is_real(value)

    def accepts(self, value) -> bool:
        if not self.type_ok(value):
            return False
        x = int(value) if self.kind == "int" else float(value)
        if self.kind == "float" and not math.isfinite(x):
            return False
        lo_in = self.closed in ("both", "left")
        hi_in = self.closed in ("both", "right")
        if self.low is not None and (x < self.low if lo_in else x <= self.low):
            return False
        return not (self.high is not None and (x > self.high if hi_in else x >= self.high))

    def convert(self, value):
        return int(value) if self.kind == "int" else float(value)

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        return range_text(self.kind, self.low, self.high, min_inclusive=self.closed in ("both", "left"),
                          max_inclusive=self.closed in ("both", "right"))

    describe_part = describe


class Options:
    """One of a few given values (strings or numbers), compared by type and equality.

    Alone it reads ``"one of 'a', 'b'"`` (or ``"'a' or 'b'"`` with ``phrase="or"``); inside a list
    of constraints its values are listed with the others: ``"None, -1 or an int >= 1"``.

    >>> Options("squared", "log").describe(), Options("disjoint", "full", phrase="or").describe()
    ("one of 'squared', 'log'", "'disjoint' or 'full'")
    """

    def __init__(self, *values, phrase: str = "one of", text: str | None = None):
        if not values:
            raise ValueError("Options needs at least one value")
        if phrase not in ("one of", "or"):
            raise ValueError(f"phrase must be 'one of' or 'or'; got {phrase!r}")
        self.values, self.phrase, self.text = tuple(values), phrase, text

    def type_ok(self, value) -> bool:
        return any(_same_kind(v, value) for v in self.values)

    def accepts(self, value) -> bool:
        return any(_same_kind(v, value) and value == v for v in self.values)

    def convert(self, value):
        return value

    def describe_part(self) -> str:
        return _join([repr(v) for v in self.values])

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        if self.phrase == "or" or len(self.values) == 1:
            return self.describe_part()
        return "one of " + ", ".join(repr(v) for v in self.values)


def _same_kind(option, value) -> bool:
    """Whether ``value`` has the kind of ``option``: str, bool or (non-bool) number."""
    if isinstance(option, str):
        return isinstance(value, str)
    if isinstance(option, bool):
        return isinstance(value, (bool, np.bool_))
    return is_real(value)


class InstanceOf:
    """An instance of a class (or of one of several): ``InstanceOf(LabelDP)`` reads ``"a LabelDP"``."""

    def __init__(self, types: type | tuple, text: str | None = None):
        self.types = types if isinstance(types, tuple) else (types,)
        self.text = text

    def type_ok(self, value) -> bool:
        return isinstance(value, self.types)

    accepts = type_ok

    def convert(self, value):
        return value

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        names = [t.__name__ for t in self.types]
        return _join([("an " if n[0].lower() in "aeiou" else "a ") + n for n in names])

    describe_part = describe


class Satisfies:
    """Any value for which ``predicate(value)`` is true (a failed check is a ``ValueError``).

    ``types`` (optional) restricts the accepted types, so that other types raise ``TypeError``.

    >>> pair = Satisfies(lambda v: len(v) == 2, "a pair", types=(tuple, list))
    >>> pair.accepts((1, 2)), pair.type_ok("ab")
    (True, False)
    """

    def __init__(self, predicate: Callable[[Any], bool], text: str, *, types: type | tuple | None = None):
        self.predicate, self.text = predicate, text
        self.types = types if types is None or isinstance(types, tuple) else (types,)

    def type_ok(self, value) -> bool:
        return self.types is None or isinstance(value, self.types)

    def accepts(self, value) -> bool:
        if not self.type_ok(value):
            return False
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError, IndexError, OverflowError):
            return False

    def convert(self, value):
        return value

    def describe(self) -> str:
        return self.text

    describe_part = describe


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


#: A flag parameter: ``True``/``False`` (numpy bools too).
BOOL = [InstanceOf((bool, np.bool_), "a bool")]
#: ``verbose``: a bool or, as in scikit-learn, an int >= 0.
VERBOSE = [InstanceOf((bool, np.bool_), "a bool"), Interval("int", 0)]


def describe_allowed(allowed: Sequence) -> str:
    """The expected-value text of a list of constraints (``None`` reads ``"None"``).

    >>> describe_allowed([None, Options(-1), Interval("int", 1)])
    'None, -1 or an int >= 1'
    """
    if len(allowed) == 1:
        c = allowed[0]
        return "None" if c is None else c.describe()
    return _join(["None" if c is None else c.describe_part() for c in allowed])


def check_param(name: str, value: Any, allowed: Sequence, *, sep: str = "; ", expected: str | None = None,
                form: str = "must"):
    """Check ``value`` against a list of constraints; return it (converted by the one that accepts it).

    ``allowed`` holds constraints and ``None`` (the value None is allowed); a ``str`` in it is the
    text the error shows instead of the generated one (as is ``expected``). ``TypeError`` when no
    constraint takes the value's type, ``ValueError`` otherwise. ``form="expected"`` writes
    ``"<name>: expected <what>, got <value>"`` instead of ``"<name> must be <what>; got <value>"``.

    >>> check_param("n_jobs", 0, [None, Options(-1), Interval("int", 1)], sep=", ")
    Traceback (most recent call last):
    ...
    ValueError: n_jobs must be None, -1 or an int >= 1, got 0
    >>> check_param("t", -1.0, [None, Interval("float", 0), "a similarity >= 0"])
    Traceback (most recent call last):
    ...
    ValueError: t must be a similarity >= 0; got -1.0
    """
    texts = [c for c in allowed if isinstance(c, str)]
    allowed = [c for c in allowed if not isinstance(c, str)]
    for c in allowed:
        if c is None:
            if value is None:
                return None
        elif c.accepts(value):
            return c.convert(value)
    wrong_type = not any(c is not None and c.type_ok(value) for c in allowed)
    text = expected or (texts[0] if texts else describe_allowed(allowed))
    raise _fail(name, text, value, wrong_type=wrong_type, sep=sep, form=form)


def check_params(params: Any, constraints: Mapping[str, Sequence], *, sep: str = "; ",
                 expected: Mapping[str, str] | None = None, form: str = "must") -> dict:
    """Check every parameter of a table; ``params`` is a mapping or an object (read by attribute).

    Returns ``{name: converted value}`` in table order. ``expected`` replaces the generated text of
    single parameters.
    """
    get = params.__getitem__ if isinstance(params, Mapping) else lambda n: getattr(params, n)
    expected = expected or {}
    return {name: check_param(name, get(name), allowed, sep=sep, expected=expected.get(name), form=form)
            for name, allowed in constraints.items()}


# ------------------------------------------------------------------------------------------ single values


def check_bool(name: str, value: Any, *, sep: str = "; ") -> bool:
    """Check that ``value`` is a bool (numpy bools accepted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise _fail(name, "a bool", value, wrong_type=True, sep=sep)


def check_int(name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None,
              allow_none: bool = False, sep: str = "; ") -> int | None:
    """Check that ``value`` is an integer (not a bool) within ``[min_value, max_value]``.

    A wrong type raises ``TypeError``, a value out of range ``ValueError``; both messages show the
    allowed range, e.g. ``"lsh_num_projs must be an int in [1, 16]; got 0"``.
    """
    allowed = [Interval("int", min_value, max_value)] + ([None] if allow_none else [])
    return check_param(name, value, allowed, sep=sep)


def check_float(
    name: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    allow_none: bool = False,
    finite_word: bool = False,
    sep: str = "; ",
) -> float | None:
    """Check that ``value`` is a finite real number within the given bounds (returned as float).

    ``finite_word`` writes ``"a finite float >= 0"`` in the message (the check is the same).
    """
    closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}
    iv = Interval("float", min_value, max_value, closed=closed[(bool(min_inclusive), bool(max_inclusive))])
    if finite_word:
        iv.text = iv.describe().replace("a float", "a finite float", 1)
    return check_param(name, value, [iv] + ([None] if allow_none else []), sep=sep)


def check_choice(name: str, value: Any, choices: Iterable[Any], *, phrase: str = "one of", sep: str = "; ") -> Any:
    """Check that ``value`` is one of ``choices``: ``"split must be one of 'train', 'validation'; got 'test'"``.

    A value of another type raises ``TypeError`` with the same text.
    """
    opts = Options(*choices, phrase=phrase)
    return check_param(name, value, [opts], sep=sep)


def check_instance(name: str, value: Any, types: type | tuple, expected: str | None = None, *,
                   allow_none: bool = False, sep: str = "; ") -> Any:
    """Check that ``value`` is an instance of ``types`` (or None when allowed); ``TypeError`` otherwise.

    The message shows the type given: ``"model must be a torch.nn.Module; got numpy.ndarray"``.
    """
    if (allow_none and value is None) or isinstance(value, types):
        return value
    text = expected or InstanceOf(types).describe()
    if allow_none and not expected:
        text += " or None"
    raise _fail(name, text, value, wrong_type=True, sep=sep, shown=type_name(value))


def check_path(name: str, value: Any, *, allow_none: bool = False, sep: str = "; ") -> Any:
    """Check that ``value`` is a path (``str`` or ``os.PathLike``), or None when allowed."""
    return check_instance(name, value, (str, os.PathLike),
                          "a path (str or os.PathLike)" + (" or None" if allow_none else ""),
                          allow_none=allow_none, sep=sep)


def check_random_state(name: str, value: Any) -> np.random.Generator:
    """Turn ``None``, an int seed or a ``numpy.random.Generator`` into a Generator."""
    if value is None:
        return np.random.default_rng()
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, np.random.RandomState):
        return np.random.default_rng(value.randint(0, 2**31 - 1))
    return np.random.default_rng(check_param(name, value, [Interval("int", 0)],
                                             expected="None, an int >= 0 or a numpy.random.Generator"))


# ------------------------------------------------------------------------------------------ arrays


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
    _check_ndim(name, arr.ndim, arr.shape, ndim, "array")
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s); got shape {arr.shape}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values; got NaN or inf")
    return arr


def _check_ndim(name: str, got: int, shape: tuple, ndim, noun: str) -> None:
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if got not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}; got a {got}-D {noun} of shape {shape}")


def check_same_length(lengths: Mapping[str, Any]) -> int:
    """Check that arrays (or given lengths) share their number of rows; return it.

    ``lengths`` maps names to arrays or ints, in the order the message lists them.

    >>> check_same_length({"X": [[1], [2]], "y": [1, 2, 3]})
    Traceback (most recent call last):
    ...
    ValueError: X and y must have the same number of rows; got X: 2, y: 3
    """
    counts = {name: int(a) if is_int(a) else int(a.shape[0]) if hasattr(a, "shape") else len(a)
              for name, a in lengths.items()}
    if len(set(counts.values())) > 1:
        parts = ", ".join(f"{n}: {c}" for n, c in counts.items())
        raise ValueError(f"{_join(list(counts)).replace(' or ', ' and ')} must have the same number of rows; "
                         f"got {parts}")
    return next(iter(counts.values()))


def check_columns(name: str, columns: Any, all_columns: Sequence, *, by_name: bool) -> list[int]:
    """Positions in ``all_columns`` of ``columns``: names (when the table has them) or integer indices.

    A single name or index is a list of one. Errors read ``"<name>: ..."``: none given, names and
    indices mixed, names for a table without them, unknown names, indices out of range, duplicates.

    >>> check_columns("columns", ["b", "a"], ["a", "b", "c"], by_name=True)
    [1, 0]
    >>> check_columns("columns", [5], ["a", "b"], by_name=False)
    Traceback (most recent call last):
    ...
    ValueError: columns: index 5 out of range for X with 2 columns
    """
    if isinstance(columns, str) or is_int(columns):
        columns = [columns]
    try:
        columns = list(columns)
    except TypeError:
        raise param_error(name, f"expected a list of column names or integer indices, got {type_name(columns)}",
                          wrong_type=True) from None
    if not columns:
        raise param_error(name, "expected at least one column, got []")
    names = [c for c in columns if isinstance(c, str)]
    ints = [c for c in columns if is_int(c)]
    if len(names) + len(ints) != len(columns):
        bad = next(c for c in columns if not (isinstance(c, str) or is_int(c)))
        raise param_error(name, f"expected column names or integer indices, got {bad!r} ({type_name(bad)})",
                          wrong_type=True)
    if names and ints:
        raise param_error(name, f"expected names or indices, not both, got {columns!r}", wrong_type=True)
    if names:
        if not by_name:
            raise param_error(name, f"column names {names!r} need a DataFrame X (or one with feature names); "
                                    "X is an array: use integer indices")
        lookup = {c: i for i, c in enumerate(all_columns)}
        unknown = [c for c in names if c not in lookup]
        if unknown:
            raise param_error(name, f"unknown column(s) {unknown!r}; X has columns {list(all_columns)!r}")
        positions = [lookup[c] for c in names]
    else:
        d = len(all_columns)
        for c in ints:
            if not 0 <= int(c) < d:
                raise param_error(name, f"index {int(c)} out of range for X with {d} columns")
        positions = [int(c) for c in ints]
    dup = sorted({c for c in columns if columns.count(c) > 1}, key=columns.index)
    if dup:
        raise param_error(name, f"duplicate column(s) {dup!r}")
    return positions


def check_tensor(name: str, value: Any, *, floating: bool = True, ndim: int | Sequence[int] | None = None):
    """Check that ``value`` is a ``torch.Tensor`` (floating dtype by default) of the given ndim."""
    import torch

    check_instance(name, value, torch.Tensor, "a torch.Tensor")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {value.dtype}")
    _check_ndim(name, value.ndim, tuple(value.shape), ndim, "tensor")
    return value
