import subprocess
import sys

import pytest

from teraml import cli
from teraml._version import __version__


def test_version():
    out = subprocess.run([sys.executable, "-m", "teraml.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"teraml {__version__}"


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_datasets_command(capsys):
    assert cli.main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out.split()


def test_demo_only_datasets(tmp_path, capsys):
    rc = cli.main(["demo", "--quiet", "--only", "datasets", "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "component" in out and "datasets" in out
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Offline datasets" in html and html.count("data:image/png;base64,") == 2
    assert f"report: {(tmp_path / 'rep' / 'index.html').resolve()}" in out


def test_demo_unknown_section(capsys):
    assert cli.main(["demo", "--only", "nope"]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_demo_full_with_small_tinylm(tmp_path, monkeypatch, capsys):
    """The whole demo end to end, with the tiny LM shrunk so that it trains in seconds."""
    pytest.importorskip("transformers")
    from teraml.models import tinylm

    monkeypatch.setenv("TERAML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(tinylm.CONFIG, "hidden_size", 32)
    monkeypatch.setitem(tinylm.CONFIG, "intermediate_size", 64)
    monkeypatch.setitem(tinylm.CONFIG, "num_hidden_layers", 1)
    monkeypatch.setitem(tinylm.RECIPE, "phases", [{"steps": 10, "batch_size": 2, "context": 64},
                                                  {"steps": 2, "batch_size": 1, "context": 256}])
    monkeypatch.setitem(tinylm.RECIPE, "val_every", 5)
    rc = cli.main(["demo", "--quiet", "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "tinylm" in out
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "training curve" in html and "Offline datasets" in html


def test_bench_unknown(capsys):
    assert cli.main(["bench", "no_such_bench"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_bench_lists_tinylm():
    assert "tinylm" in cli.available_benchmarks()


def test_hac_command_on_csv_and_points(tmp_path, capsys):
    import json

    import numpy as np

    from teraml.datasets import make_planted_partition_graph

    src, dst, w, labels = make_planted_partition_graph(200, 4, random_state=0)
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,weight\n" + "".join(f"{a},{b},{float(c)!r}\n" for a, b, c in zip(src, dst, w)))
    out = tmp_path / "out"
    assert cli.main(["hac", str(edges), "--threshold", "0.1", "--out", str(out), "--quiet"]) == 0
    rows = (out / "labels.csv").read_text().splitlines()
    assert rows[0] == "node,cluster" and len(rows) == 201
    got = np.array([int(r.split(",")[1]) for r in rows[1:]])
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels, got) == 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_clusters"] == 4 and summary["n_nodes"] == 200
    assert (out / "merges.csv").read_text().startswith("id,left,right,similarity,size,round")
    # a second run into the same folder needs --overwrite: exit 2 with the message
    assert cli.main(["hac", str(edges), "--threshold", "0.1", "--out", str(out), "--quiet"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(60, 5)))
    assert cli.main(["hac", str(pts), "--points", "--n-clusters", "3", "--out", str(tmp_path / "p"), "--quiet",
                     "--n-jobs", "2", "--affinity-levels", "1", "--seed", "3"]) == 0


def test_hac_command_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "edges.csv"
    bad.write_text("a,b,w\n0,1,0.5\n")
    assert cli.main(["hac", str(bad), "--threshold", "0.1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("teraml hac: error: edges.csv lacks column 'src'")
    neg = tmp_path / "neg.csv"
    neg.write_text("src,dst,weight\n0,1,-0.5\n")
    assert cli.main(["hac", str(neg), "--threshold", "0.1", "--out", str(tmp_path / "o2")]) == 2
    assert "weight must be >= 0" in capsys.readouterr().err
    assert cli.main(["hac", str(neg), "--out", str(tmp_path / "o3")]) == 2


def test_hac_csv_with_blank_lines_bom_and_a_short_row(tmp_path, capsys):
    edges = tmp_path / "edges.csv"
    edges.write_bytes(b"\xef\xbb\xbfsrc,dst,weight\n1,2,0.9\n\n2,3,0.8\n\n")   # {1,2}-3: W = 0.8 / 2
    assert cli.main(["hac", str(edges), "--threshold", "0.4", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert (tmp_path / "o" / "labels.csv").read_text().splitlines() == ["node,cluster", "1,0", "2,0", "3,0"]
    edges.write_text("src,dst,weight\n1,2,0.9\n2,3\n")
    assert cli.main(["hac", str(edges), "--threshold", "0.5", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["teraml hac: error: edges.csv: line 3 has 2 fields, expected 3: '2,3'"]
    assert not (tmp_path / "o2").exists()          # no empty output folder left behind


def test_hac_uint64_ids_in_labels_and_merges(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text(f"src,dst,weight\n{2**64 - 1},{2**63},0.9\n{2**63},7,0.8\n")
    assert cli.main(["hac", str(edges), "--n-clusters", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    labels = (tmp_path / "o" / "labels.csv").read_text().splitlines()
    assert labels == ["node,cluster", "7,0", f"{2**63},0", f"{2**64 - 1},0"]
    assert f"2,{2**64 - 1}" in (tmp_path / "o" / "nodes.csv").read_text()


def test_hac_points_without_header_keep_every_point(tmp_path, capsys):
    import numpy as np

    pts = tmp_path / "pts.csv"
    X = np.random.default_rng(0).normal(size=(30, 3))
    pts.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in X))
    assert cli.main(["hac", str(pts), "--points", "--n-clusters", "3", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert len((tmp_path / "o" / "labels.csv").read_text().splitlines()) == 31
    assert cli.main(["hac", str(pts), "--points", "--header", "--n-clusters", "3", "--out", str(tmp_path / "o2"),
                     "--quiet"]) == 0
    assert len((tmp_path / "o2" / "labels.csv").read_text().splitlines()) == 30   # asked: first line is a header


@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_hac_bad_out_exits_2_with_one_line(tmp_path, capsys, kind):
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,weight\n1,2,0.9\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if kind == "file" else blocker / "sub"
    assert cli.main(["hac", str(edges), "--threshold", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("teraml hac: error:") and str(out) in err[0]
