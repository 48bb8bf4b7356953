"""k-anonymity of a table: the smallest number of rows that share one exact tuple on given columns."""

from __future__ import annotations

import numpy as np

from teraml._validation import Interval, check_array, check_columns, check_param, param_error


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")


def min_multiplicity(A: np.ndarray) -> int:
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
        # numbers only (text needs a DataFrame); NaN gets its own message below
        X = check_array("X", X, ndim=2, dtype=None, min_rows=0, finite=False)
        all_columns = list(range(X.shape[1]))
        by_name = False
    if X.shape[0] == 0:
        raise param_error("X", "expected at least one row, got 0")
    cols = list(range(len(all_columns))) if columns is None else check_columns(
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
        if np.issubdtype(A.dtype, np.floating) and np.isnan(A).any():
            raise param_error("X", "contains NaN; k-anonymity with missing values is undefined "
                                   "(checkers disagree on whether NaN matches NaN): impute or drop them first")
    if decimals is not None and np.issubdtype(A.dtype, np.floating):
        A = np.round(A, decimals)
    return min_multiplicity(A)
