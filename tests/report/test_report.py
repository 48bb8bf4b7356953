import base64
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

from teraml.report import Report, format_value, to_jsonable, write_bench, write_json


def test_report_is_self_contained(tmp_path):
    rep = Report("t<itle>", "sub")
    sec = rep.section("First & foremost", "para one\n\npara two")
    sec.table("tbl", ["a", "b"], [[1, 2.5], ["x", None]])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    sec.figure("line", fig)
    rep.section("Second").text("hello")
    rep.results = {"x": np.float64(1.0), "arr": np.arange(3)}
    path = rep.write(tmp_path)
    text = path.read_text()
    assert "t&lt;itle&gt;" in text and "First &amp; foremost" in text
    assert "<p>para one</p>" in text and "<p>para two</p>" in text
    assert "<td>2.5</td>" in text and "<td>–</td>" in text
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert m and base64.b64decode(m.group(1)).startswith(b"\x89PNG")
    assert "href='#s1'" in text  # table of contents
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "results.json").read_text()) == {"x": 1.0, "arr": [0, 1, 2]}


def test_write_bench(tmp_path):
    j, h = write_bench("toy", {"ratio": 2.0, "nan": float("nan")}, out_dir=tmp_path)
    assert j == tmp_path / "toy.json" and h == tmp_path / "toy" / "index.html"
    assert json.loads(j.read_text()) == {"ratio": 2.0, "nan": None}
    with pytest.raises(ValueError, match="name must be a lowercase identifier"):
        write_bench("Bad Name", {}, out_dir=tmp_path)


def test_bad_input():
    sec = Report("r").section("s")
    with pytest.raises(ValueError, match=r"rows\[0\] must have 2 cells \(one per header\); got 1"):
        sec.table("t", ["a", "b"], [[1]])
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure; got str"):
        sec.figure("c", "not a figure")
    with pytest.raises(TypeError, match="text must be a str; got int"):
        sec.text(3)


def test_helpers(tmp_path):
    assert format_value(0.000123) == "1.230e-04"
    assert format_value(True) == "yes"
    assert to_jsonable((np.int32(1), np.bool_(True))) == [1, True]
    p = write_json({"a": [np.float32(0.5)]}, tmp_path / "d" / "x.json")
    assert json.loads(p.read_text()) == {"a": [0.5]}
