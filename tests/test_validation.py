"""teraml._validation: the single-value helpers and the parameter tables every package uses."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from teraml import _validation as v
from teraml._validation import (
    BOOL,
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    Satisfies,
    check_param,
    check_params,
)


def test_check_int():
    assert v.check_int("k", 3, min_value=1) == 3
    with pytest.raises(ValueError, match=r"lsh_num_projs must be an int in \[1, 16\]; got 0"):
        v.check_int("lsh_num_projs", 0, min_value=1, max_value=16)
    with pytest.raises(TypeError, match=r"k must be an int >= 1; got float 1.5"):
        v.check_int("k", 1.5, min_value=1)
    with pytest.raises(TypeError, match="k must be an int"):
        v.check_int("k", True)


def test_check_float():
    assert v.check_float("s", 2, min_value=0.0, min_inclusive=False) == 2.0
    assert v.check_float("s", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"scale must be a float > 0 or None; got -1.0"):
        v.check_float("scale", -1.0, min_value=0.0, min_inclusive=False, allow_none=True)
    with pytest.raises(ValueError, match="got inf"):
        v.check_float("scale", float("inf"))
    with pytest.raises(TypeError, match="scale must be a float; got str"):
        v.check_float("scale", "1")


def test_check_choice_and_bool():
    assert v.check_choice("order", "gray", ["gray", "binary"]) == "gray"
    with pytest.raises(ValueError, match="bucket_order must be one of 'gray', 'reference', 'binary'; got 'grey'"):
        v.check_choice("bucket_order", "grey", ["gray", "reference", "binary"])
    with pytest.raises(TypeError, match="verbose must be a bool; got int"):
        v.check_bool("verbose", 1)


def test_check_random_state():
    a = v.check_random_state("random_state", 3).random()
    b = v.check_random_state("random_state", 3).random()
    assert a == b
    with pytest.raises(ValueError, match="random_state must be None, an int >= 0"):
        v.check_random_state("random_state", -1)
    with pytest.raises(TypeError, match="random_state must be None"):
        v.check_random_state("random_state", "x")


def test_check_array():
    import numpy as np

    x = v.check_array("X", [[1, 2], [3, 4]], ndim=2)
    assert x.dtype == np.float64
    with pytest.raises(ValueError, match=r"X must be 2-D; got a 1-D array of shape \(3,\)"):
        v.check_array("X", [1, 2, 3], ndim=2)
    with pytest.raises(ValueError, match="X must contain only finite values"):
        v.check_array("X", [[np.nan]], ndim=2)
    with pytest.raises(TypeError, match="X must be an array-like of numbers; got str"):
        v.check_array("X", "abc")
    assert v.check_same_length({"X": [1, 2], "y": np.zeros(2), "bags": 2}) == 2
    with pytest.raises(ValueError, match="X, y and bags must have the same number of rows; got X: 2, y: 3, bags: 2"):
        v.check_same_length({"X": [1, 2], "y": [1, 2, 3], "bags": 2})


def test_check_tensor():
    torch = pytest.importorskip("torch")
    import numpy as np

    with pytest.raises(TypeError, match="key must be a torch.Tensor; got numpy.ndarray"):
        v.check_tensor("key", np.zeros(3))
    with pytest.raises(TypeError, match="query must have a floating dtype; got torch.int64"):
        v.check_tensor("query", torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize(
    "constraint, value, ok",
    [
        (Interval("float", 0, 1, closed="left"), 0.0, True),
        (Interval("float", 0, 1, closed="left"), 1.0, False),
        (Interval("float", 0, 1, closed="right"), 0.0, False),
        (Interval("float", 0, 1, closed="neither"), 0.5, True),
        (Interval("float", 0), float("inf"), False),
        (Interval("float", None, 3), -1e300, True),
        (Interval("int", 1), np.int32(3), True),
        (Interval("int", 1), 3.0, False),
        (Interval("int", 1), True, False),
        (Options("a", "b"), "a", True),
        (Options("a", "b"), "c", False),
        (Options(-1), -1, True),
        (Options(-1), "-1", False),
        (InstanceOf(dict), {}, True),
        (Satisfies(lambda x: len(x) == 2, "a pair"), (1, 2), True),
        (Satisfies(lambda x: len(x) == 2, "a pair"), 3, False),   # a predicate that raises rejects
    ],
)
def test_constraints_accept_exactly_their_values(constraint, value, ok):
    assert constraint.accepts(value) is ok


def test_descriptions_read_like_the_house_messages():
    assert Interval("float", 0, 1, closed="right").describe() == "a float in (0, 1]"
    assert Options("squared", "log").describe() == "one of 'squared', 'log'"
    assert Options("disjoint", "full", phrase="or").describe() == "'disjoint' or 'full'"
    assert v.describe_allowed([None, Options(-1), Interval("int", 1)]) == "None, -1 or an int >= 1"
    assert v.describe_allowed([Options("auto"), Interval("float", 0, 1)]) == "'auto' or a float in [0, 1]"
    assert InstanceOf((dict, list)).describe() == "a dict or a list"
    assert v.describe_allowed(VERBOSE) == "a bool or an int >= 0"


def test_check_param_raises_type_error_for_a_type_no_constraint_takes():
    allowed = [None, Interval("int", 1)]
    assert check_param("k", None, allowed) is None and check_param("k", np.int64(4), allowed) == 4
    with pytest.raises(TypeError, match="k must be None or an int >= 1; got str '4'"):
        check_param("k", "4", allowed)
    with pytest.raises(ValueError, match="k must be None or an int >= 1, got 0"):
        check_param("k", 0, allowed, sep=", ")
    with pytest.raises(ValueError, match="t must be a similarity; got -1.0"):
        check_param("t", -1.0, [Interval("float", 0), "a similarity"])
    with pytest.raises(TypeError, match="b must be a bool; got int 1"):
        check_param("b", 1, BOOL)
    assert isinstance(check_param("x", 2, [Interval("float", 0)]), float)   # converted by the accepting one


def test_check_params_reads_objects_and_mappings_in_table_order():
    class Est:
        alpha, cv = 0.5, 3

    table = {"cv": [Interval("int", 2)], "alpha": [Interval("float", 0)]}
    assert list(check_params(Est(), table).items()) == [("cv", 3), ("alpha", 0.5)]
    with pytest.raises(ValueError, match="cv must be an int >= 2; got 1"):
        check_params({"cv": 1, "alpha": 0.0}, table)
    with pytest.raises(ValueError, match="alpha must be non-negative; got -1.0"):
        check_params({"cv": 2, "alpha": -1.0}, table, expected={"alpha": "non-negative"})


def test_instance_path_and_choice_helpers():
    assert v.check_instance("d", {}, dict) == {}
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got numpy.ndarray"):
        v.check_instance("model", np.zeros(2), dict, "a torch.nn.Module")
    assert v.check_instance("d", None, dict, allow_none=True) is None
    assert v.check_path("p", Path("x")) == Path("x") and v.check_path("p", None, allow_none=True) is None
    with pytest.raises(TypeError, match=r"cache must be a path \(str or os.PathLike\) or None; got int"):
        v.check_path("cache", 3, allow_none=True)
    with pytest.raises(TypeError, match="split must be one of 'train', 'validation'; got int 3"):
        v.check_choice("split", 3, ("train", "validation"))
    assert os.fspath(v.check_path("p", "a/b")) == "a/b"


@given(x=st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2), st.none(),
                   st.booleans()))
def test_check_param_accepts_iff_a_constraint_does(x):
    allowed = [None, Options("auto"), Interval("float", 0, 1)]
    ok = any(c.accepts(x) if c is not None else x is None for c in allowed)
    try:
        check_param("p", x, allowed)
        assert ok
    except TypeError:
        assert not ok and not (isinstance(x, (str, int, float)) and not isinstance(x, bool))
    except ValueError:
        assert not ok


def test_expected_form_and_param_error():
    from teraml._validation import param_error

    with pytest.raises(TypeError, match=r"^k: expected an integer >= 1, got 2\.5 \(float\)$"):
        check_param("k", 2.5, [Interval("int", 1, text="an integer >= 1")], form="expected")
    with pytest.raises(ValueError, match=r"^method: expected one of 'a', 'b', got 'c'$"):
        check_params({"method": "c"}, {"method": [Options("a", "b")]}, form="expected")
    assert str(param_error("X", "expected at least one row, got 0")) == "X: expected at least one row, got 0"
    assert isinstance(param_error("X", "bad", wrong_type=True), TypeError)


def test_check_columns():
    from teraml._validation import check_columns

    assert check_columns("c", "b", ["a", "b"], by_name=True) == [1]
    assert check_columns("c", np.int64(1), ["a", "b"], by_name=False) == [1]
    with pytest.raises(TypeError, match=r"^c: expected column names or integer indices, got True \(bool\)$"):
        check_columns("c", [0, True], ["a", "b"], by_name=False)
    with pytest.raises(ValueError, match=r"^c: duplicate column\(s\) \['a'\]$"):
        check_columns("c", ["a", "a"], ["a", "b"], by_name=True)
