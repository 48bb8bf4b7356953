import subprocess
import sys

import pytest

import teraml
from teraml import _validation as v


def test_version():
    assert isinstance(teraml.__version__, str) and teraml.__version__.count(".") == 2


def test_import_loads_neither_torch_nor_pyspark():
    code = "import teraml, teraml.datasets, teraml.models, teraml.report, teraml.cli, sys; " \
           "bad = [m for m in ('torch', 'pyspark', 'transformers') if m in sys.modules]; " \
           "assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


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
