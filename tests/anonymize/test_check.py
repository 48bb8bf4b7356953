"""k_anonymity: exact comparison, columns by name or index, its errors, and parity with pycanon."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.anonymize import k_anonymity


def _brute(A):
    rows = [tuple(r) for r in np.asarray(A).tolist()]
    return min(rows.count(r) for r in rows)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16))
def test_equals_a_brute_force_count(n, d, levels, seed):
    A = np.random.default_rng(seed).integers(0, levels, size=(n, d)).astype(np.float64)
    assert k_anonymity(A) == _brute(A)
    assert k_anonymity(A, [0]) == _brute(A[:, :1])


def test_exact_by_default_and_decimals_can_merge():
    a = 0.1 + 0.2                        # 0.30000000000000004
    X = np.array([[a], [0.3], [a], [0.3]])
    assert k_anonymity(X) == 2
    X = np.array([[a], [0.3], [0.3]])
    assert k_anonymity(X) == 1            # a last-bit difference is another tuple
    assert k_anonymity(X, decimals=6) == 3
    assert k_anonymity(np.array([[0.0], [-0.0]])) == 2      # compared by value, not by bytes


def test_dataframes_by_name_and_text_columns():
    df = pd.DataFrame({"zip": ["100", "100", "200", "200", "200"], "age": [30, 30, 40, 40, 40],
                       "x": [1.0, 2, 3, 4, 5]})
    assert k_anonymity(df, ["zip", "age"]) == 2
    assert k_anonymity(df, ["zip"]) == 2
    assert k_anonymity(df, [2]) == 1
    assert k_anonymity(df) == 1
    assert k_anonymity(df, "zip") == 2


@pytest.mark.filterwarnings("ignore:In a future version, the keys of `groups`")
def test_pycanon_parity():
    pycanon = pytest.importorskip("pycanon.anonymity")
    rng = np.random.default_rng(0)
    for _seed in range(5):
        df = pd.DataFrame(rng.integers(0, 3, size=(80, 3)).astype(float), columns=list("abc"))
        for cols in (["a"], ["a", "b"], ["a", "b", "c"]):
            assert k_anonymity(df, cols) == pycanon.k_anonymity(df, cols)


@pytest.mark.parametrize("X, kw, exc, match", [
    (np.empty((0, 2)), {}, ValueError, r"^X: expected at least one row, got 0$"),
    (np.array([[1.0], [np.nan]]), {}, ValueError, r"^X: contains NaN; "),
    (pd.DataFrame({"a": [1.0, None]}), {}, ValueError, r"^X: contains NaN; "),
    (np.ones((3, 2)), {"decimals": -1}, ValueError, r"^decimals: expected None or an integer >= 0, got -1$"),
    (np.ones((3, 2)), {"decimals": 1.5}, TypeError, r"^decimals: expected None or an integer >= 0, got 1\.5 \(float\)$"),
    (np.ones((3, 2)), {"columns": [5]}, ValueError, r"^columns: index 5 out of range for X with 2 columns$"),
    (np.ones((3, 2)), {"columns": []}, ValueError, r"^columns: expected at least one column, got \[\]$"),
    (pd.DataFrame({"a": [1]}), {"columns": ["b"]}, ValueError, r"^columns: unknown column\(s\) \['b'\]; X has columns \['a'\]$"),
    # arrays go through _validation.check_array (text columns need a DataFrame)
    (np.ones(3), {}, ValueError, r"^X must be 2-D; got a 1-D array of shape \(3,\)$"),
    ("table.csv", {}, TypeError, r"^X must be an array-like of numbers; got str$"),
    (np.array([["a", "b"]]), {}, TypeError, r"^X must be an array-like of numbers; got dtype <U1$"),
])
def test_errors(X, kw, exc, match):
    with pytest.raises(exc, match=match):
        k_anonymity(X, **kw)


def test_big_integers_are_not_merged_by_a_float_cast():
    big = np.array([2**53 + 1, 2**53], dtype=np.int64)
    assert k_anonymity(pd.DataFrame({"a": big})) == 1
    assert k_anonymity(pd.DataFrame({"a": big, "b": [1.0, 1.0]})) == 1
    assert k_anonymity(big[:, None]) == 1
