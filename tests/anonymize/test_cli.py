"""`teraml anonymize`: hand-made files (a byte-order mark, blank lines, quoted commas, odd ids), errors, Parquet."""

import json

import numpy as np
import pandas as pd
import pytest

from teraml import cli
from teraml.anonymize import k_anonymity

PEOPLE = ('\ufeffid,age,bmi,city,y\n007,34,22.5,"Paris, FR",1\n\nuser 2,51,30.1,Lyon,0\n0042,29,19.9,Nice,1\n'
          '7,45,27.0,Lille,0\n  x ,38,24.4,Metz,1\n008,60,31.2,Pau,0\n')


@pytest.fixture
def people(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    return path


def test_release_of_a_hand_made_csv(people, capsys):
    assert cli.main(["anonymize", str(people), "--sensitive", "age,bmi", "-k", "3", "--seed", "0"]) == 0
    out = people.with_name("people.lookalike.csv")
    assert "k on age, bmi: 3" in capsys.readouterr().out
    rel = pd.read_csv(out, dtype={"id": str, "city": str}, keep_default_na=False)
    src = pd.read_csv(people, dtype={"id": str, "city": str}, keep_default_na=False, encoding="utf-8-sig")
    assert list(rel.columns) == ["id", "age", "bmi", "city", "y"] and len(rel) == 6
    # ids keep their exact text, and the other columns stay attached to their row
    assert sorted(rel["id"]) == sorted(src["id"]) and "007" in set(rel["id"]) and "  x " in set(rel["id"])
    merged = rel.merge(src, on="id", suffixes=("", "_src"))
    assert (merged["city"] == merged["city_src"]).all() and (merged["y"] == merged["y_src"]).all()
    # re-read from the text file, the release is still exactly 3-anonymous on the sensitive columns
    assert k_anonymity(rel, ["age", "bmi"]) == 3
    np.testing.assert_allclose(rel["age"].sum(), src["age"].sum(), rtol=1e-12)
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["k_achieved"] == 3 and report["shuffled"] and "not differential privacy" in report["guarantee"]
    # the rows are shuffled (seeded), not left in file order
    assert list(rel["id"]) != list(src["id"])
    assert cli.main(["anonymize", str(people), "--sensitive", "age,bmi", "-k", "3", "--seed", "0", "--quiet"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_parquet_out_and_in_with_a_dropped_id(people, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "rel.parquet"
    assert cli.main(["anonymize", str(people), "--sensitive", "age", "-k", "2", "--drop", "id", "--no-shuffle",
                     "-o", str(out), "--quiet"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["age", "bmi", "city", "y"]
    assert table.column("city").to_pylist()[0] == "Paris, FR"        # --no-shuffle keeps the file order
    out2 = tmp_path / "rel2.csv"
    assert cli.main(["anonymize", str(out), "--sensitive", "age", "-k", "3", "-o", str(out2), "--quiet"]) == 0
    assert k_anonymity(pd.read_csv(out2), ["age"]) >= 3


def test_cluster_on_other_columns(people, tmp_path):
    out = tmp_path / "rel.csv"
    assert cli.main(["anonymize", str(people), "--sensitive", "age", "-k", "3", "--cluster-on", "nonsensitive",
                     "--cluster-columns", "bmi", "-o", str(out), "--quiet"]) == 0
    rel = pd.read_csv(out)
    assert k_anonymity(rel, ["age"]) >= 3


@pytest.mark.parametrize("args, message", [
    (["--sensitive", "city"], "column 'city' has type string; expected numeric (encode categories first)"),
    (["--sensitive", "age,foo"], "--sensitive: unknown column(s) ['foo']"),
    (["--sensitive", "age", "-k", "10"], "-k: expected k <= n_samples = 6, got k = 10"),
    (["--sensitive", "age", "-k", "0"], "-k: expected an integer >= 1, got 0"),
    (["--sensitive", ","], "--sensitive: expected at least one column name"),
    (["--sensitive", "age,age"], "duplicate column(s) ['age']"),
    (["--sensitive", "age", "--cluster-on", "all"], "--cluster-on all needs --cluster-columns"),
    (["--sensitive", "age", "--cluster-columns", "bmi"], "--cluster-columns is only used with"),
    (["--sensitive", "age", "--drop", "age"], "--drop: ['age'] are sensitive columns"),
    (["--sensitive", "age", "--drop", "nope"], "--drop: unknown column(s) ['nope']"),
    (["--sensitive", "age", "-o", "out.txt"], "-o/--out must end in .csv or .parquet"),
])
def test_errors_exit_2_with_a_message(people, capsys, args, message):
    assert cli.main(["anonymize", str(people), "--quiet", "--overwrite", "-k", "2"] + args) == 2
    assert message in capsys.readouterr().err


def test_missing_values_name_the_line(tmp_path, capsys):
    path = tmp_path / "nan.csv"
    path.write_text("id,age\n1,3\n2,\n3,5\n")
    assert cli.main(["anonymize", str(path), "--sensitive", "age", "-k", "1", "--quiet"]) == 2
    assert "column 'age' has 1 missing value(s) (first on line 3)" in capsys.readouterr().err
    assert cli.main(["anonymize", str(tmp_path / "none.csv"), "--sensitive", "age", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_text_that_looks_missing_passes_through_verbatim(tmp_path):
    path = tmp_path / "na.csv"
    path.write_text("id,note,age\n1,NA,30\n2,null,31\n3,,32\n4,N/A,33\n5,1e5,34\n6,NaN,35\n")
    out = tmp_path / "rel.csv"
    assert cli.main(["anonymize", str(path), "--sensitive", "age", "-k", "3", "--no-shuffle", "-o", str(out),
                     "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["NA", "null", "", "N/A", "1e5", "NaN"]


@pytest.mark.parametrize("text, message", [
    ("id,x,x,age\n1,2,3,4\n", "duplicate column name(s) ['x']"),
    ("id,age\n", "expected at least one data row, got 0"),
    ('id,note,age\n1,"a\nb",1\n2,x,\n3,y,4\n', "first on line 4"),
])
def test_malformed_tables(tmp_path, capsys, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert cli.main(["anonymize", str(path), "--sensitive", "age", "-k", "1", "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_seed_errors_name_the_flag(people, capsys):
    assert cli.main(["anonymize", str(people), "--sensitive", "age", "-k", "2", "--seed", "-1", "--quiet",
                     "--overwrite"]) == 2
    assert "--seed: expected" in capsys.readouterr().err
