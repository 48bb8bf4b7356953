"""k-anonymity of a table: the smallest number of rows that share one exact tuple on given columns."""

from __future__ import annotations

import numpy as np

from teraml._validation import Interval, check_param, param_error, type_name


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")


def resolve_columns(name: str, columns, all_columns: list, *, by_name: bool) -> list[int]:
    """Positions of ``columns`` (names when X has them, else integer indices) in ``all_columns``."""
    if isinstance(columns, (str, int, np.integer)) and not isinstance(columns, bool):
        columns = [columns]
    try:
        columns = list(columns)
    except TypeError:
        raise param_error(name, f"expected a list of column names or integer indices, got {type_name(columns)}",
                          wrong_type=True) from None
    if not columns:
        raise param_error(name, "expected at least one column, got []")
    positions = []
    names = [c for c in columns if isinstance(c, str)]
    ints = [c for c in columns if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_))]
    if len(names) + len(ints) != len(columns):
        bad = next(c for c in columns if c not in names and c not in ints)
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


def _min_run(A: np.ndarray) -> int:
    """Smallest multiplicity of identical rows, compared by value (so -0.0 equals 0.0)."""
    order = np.lexsort(A.T[::-1]) if A.shape[1] else np.arange(A.shape[0])
    S = A[order]
    starts = np.concatenate([[True], np.any(S[1:] != S[:-1], axis=1)])
    bounds = np.append(np.flatnonzero(starts), S.shape[0])
    return int(np.diff(bounds).min())


def k_anonymity(X, columns=None, *, decimals=None) -> int:
    """The k of a table on ``columns``: the minimum count of rows sharing one exact tuple.

    ``X`` is a 2-D array or a DataFrame (text columns allowed in a DataFrame); ``columns`` are names
    or integer indices (None: all columns). Values are compared exactly, so means that differ in the
    last bit count as different tuples; ``decimals`` rounds numeric columns first (this can merge
    groups and overstate k). Missing values are rejected: tools disagree on whether NaN matches NaN.
    O(n log n |columns|).

    >>> import numpy as np
    >>> k_anonymity(np.array([[1.0, 7], [1.0, 8], [2.0, 9], [2.0, 9]]), [0])
    2
    >>> k_anonymity(np.array([[1.0, 7], [1.0, 8], [2.0, 9], [2.0, 9]]))
    1
    """
    decimals = check_param("decimals", decimals, [None, Interval("int", 0)], form="expected",
                           expected="None or an integer >= 0")
    if _is_frame(X):
        all_columns = list(X.columns)
        by_name = True
    else:
        if X is None or isinstance(X, (str, bytes)):
            raise param_error("X", f"expected a 2-D array or a DataFrame, got {type_name(X)}", wrong_type=True)
        X = np.asarray(X)
        if X.ndim != 2:
            raise param_error("X", f"expected a 2-D array or a DataFrame, got a {X.ndim}-D array of shape {X.shape}")
        all_columns = list(range(X.shape[1]))
        by_name = False
    if X.shape[0] == 0:
        raise param_error("X", "expected at least one row, got 0")
    cols = list(range(len(all_columns))) if columns is None else resolve_columns(
        "columns", columns, all_columns, by_name=by_name)
    if not cols:
        raise param_error("columns", "expected at least one column, got []")
    if _is_frame(X):
        sub = X.iloc[:, cols]
        if bool(sub.isna().to_numpy().any()):
            raise param_error("X", "contains NaN; k-anonymity with missing values is undefined "
                                   "(checkers disagree on whether NaN matches NaN): impute or drop them first")
        numeric = all(getattr(t, "kind", "O") in "biuf" for t in sub.dtypes)
        if numeric and len(set(map(str, sub.dtypes))) == 1:
            A = sub.to_numpy()      # one dtype: no cast, so int64 ids above 2**53 stay distinct
        else:
            if decimals is not None:
                sub = sub.round(decimals)
            return int(sub.groupby(list(sub.columns), sort=False).size().min())
    else:
        A = X[:, cols]
        if A.dtype == object or not (np.issubdtype(A.dtype, np.number) or A.dtype == np.bool_):
            raise param_error("X", f"expected numeric columns (a DataFrame for text), got dtype {A.dtype}",
                              wrong_type=True)
        if np.issubdtype(A.dtype, np.floating) and np.isnan(A).any():
            raise param_error("X", "contains NaN; k-anonymity with missing values is undefined "
                                   "(checkers disagree on whether NaN matches NaN): impute or drop them first")
    if decimals is not None and np.issubdtype(A.dtype, np.floating):
        A = np.round(A, decimals)
    return _min_run(A)
