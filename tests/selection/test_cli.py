"""teraml select: the three input formats, the two-step run, CSV by hand, and exit codes."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from teraml import cli
from teraml.selection import select


def _run(capsys, *argv):
    rc = cli.main(["select", *map(str, argv)])
    return rc, capsys.readouterr().err


def _read(path):
    return pq.read_table(path).to_pydict() if str(path).endswith(".parquet") else None


@pytest.fixture
def emb(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1500, 6)) + np.repeat(rng.normal(scale=4, size=(5, 6)), 300, axis=0)).astype(np.float32)
    loss = np.abs(X[:, 0]).astype(np.float64) + 0.1
    np.save(tmp_path / "e.npy", X)
    np.save(tmp_path / "loss.npy", loss)
    ids = np.arange(1500) * 10 + 7
    pq.write_table(pa.table({"id": ids, "embedding": pa.array(list(X), type=pa.list_(pa.float32()))}),
                   tmp_path / "list.parquet")
    pq.write_table(pa.table({"id": ids, **{f"f{j}": X[:, j] for j in range(6)}}), tmp_path / "cols.parquet")
    return tmp_path, X, loss, ids


def test_three_input_formats_give_one_output(emb, capsys):
    d, X, loss, ids = emb
    outs = []
    for name in ("e.npy", "list.parquet", "cols.parquet"):
        out = d / f"{name}.out.parquet"
        rc, err = _run(capsys, d / name, "--budget", 100, "--score", "kmeans", "--clusterer", "kmeans", "--seed", 3,
                       "-o", out, "--quiet")
        assert rc == 0, err
        outs.append(_read(out))
        summary = json.loads(err.strip().splitlines()[-1])
        assert summary["n"] == 1500 and summary["m"] == 100 and summary["unique"] == len(outs[-1]["index"])
    assert outs[0]["index"] == outs[1]["index"] == outs[2]["index"]
    assert outs[0]["weight"] == outs[1]["weight"] == outs[2]["weight"]
    assert outs[1]["id"] == [int(ids[i]) for i in outs[1]["index"]] and outs[0]["id"] == outs[0]["index"]


def test_two_step_run_equals_select(emb, capsys):
    d, X, loss, ids = emb
    out = d / "sel.parquet"
    rc, err = _run(capsys, d / "e.npy", "--budget", 120, "--clusterer", "kmeans", "--seed", 5, "-o", out, "--quiet")
    assert rc == 0 and "run again with --losses" in err
    first = _read(out)
    assert set(first["role"]) == {"representative"} and len(first["index"]) == 24
    # the user computes the representatives' losses only, and hands them back by id
    reps = first["index"]
    pq.write_table(pa.table({"id": [int(ids[i]) for i in reps], "loss": loss[reps]}), d / "rep_losses.parquet")
    rc, err = _run(capsys, d / "list.parquet", "--budget", 120, "--clusterer", "kmeans", "--seed", 5, "-o",
                   d / "l.parquet", "--quiet")
    assert rc == 0
    rc, err = _run(capsys, d / "list.parquet", "--budget", 120, "--clusterer", "kmeans", "--seed", 5, "-o",
                   d / "l.parquet", "--losses", d / "rep_losses.parquet", "--quiet")
    assert rc == 0, err
    got = _read(d / "l.parquet")
    sel = select(X, 120, loss_fn=lambda i: loss[i], clusterer="kmeans", random_state=5)
    assert got["index"] == sel.indices.tolist()
    np.testing.assert_allclose(got["weight"], sel.weights, rtol=1e-12)
    assert got["role"] == sel.role.tolist()
    # a changed input is refused
    X2 = X.copy()
    X2[0, 0] += 1
    np.save(d / "e2.npy", X2)
    rc, err = _run(capsys, d / "e2.npy", "--budget", 120, "--losses", d / "loss.npy", "--state",
                   d / "sel.parquet.state.npz", "-o", d / "x.parquet", "--seed", 5, "--quiet")
    assert rc == 2 and "does not match EMBEDDINGS" in err
    # and so is a changed parameter
    rc, err = _run(capsys, d / "e.npy", "--budget", 130, "--losses", d / "loss.npy", "--state",
                   d / "sel.parquet.state.npz", "-o", d / "x.parquet", "--seed", 5, "--quiet")
    assert rc == 2 and "--budget 130 differs from the first step's 120" in err


def test_one_step_with_all_losses_known(emb, capsys):
    d, X, loss, ids = emb
    rc, err = _run(capsys, d / "e.npy", "--budget", 80, "--losses", d / "loss.npy", "--clusterer", "kmeans", "--seed",
                   1, "-o", d / "o.parquet", "--quiet")
    assert rc == 0, err
    got = _read(d / "o.parquet")
    assert all(v is not None for v in got["loss"])            # every loss the file knows is filled in
    sel = select(X, 80, loss_fn=lambda i: loss[i], clusterer="kmeans", random_state=1)
    assert got["index"] == sel.indices.tolist()


def test_hand_made_csv_with_bom_blank_line_and_odd_ids(tmp_path, capsys):
    (tmp_path / "h.csv").write_bytes(b'\xef\xbb\xbfid,a,b,c\nitem-1,1.0,2.0,3.0\n\n"item 2",1.5,2.5,3.5\n'
                                     b'x3,0.1,0.2,0.3\nx4,5,5,5\n007,1,0,0\nx6,0,1,0\n')
    rc, err = _run(capsys, tmp_path / "h.csv", "--budget", 4, "-k", 2, "--seed", 0, "-o", tmp_path / "o.csv",
                   "--quiet")
    assert rc == 0, err
    text = (tmp_path / "o.csv").read_text()
    reps = [line.split(",")[1].strip('"') for line in text.splitlines()[1:]]
    ids = ["item-1", "item 2", "x3", "x4", "007", "x6"]
    assert len(reps) == 2 and set(reps) <= set(ids)
    losses = {i: float(j) for j, i in enumerate(ids)}
    (tmp_path / "l.csv").write_text("id,loss\n" + "".join(f'"{i}",{v}\n' for i, v in losses.items() if i in reps))
    rc, err = _run(capsys, tmp_path / "h.csv", "--budget", 4, "-k", 2, "--seed", 0, "-o", tmp_path / "o.csv",
                   "--losses", tmp_path / "l.csv", "--quiet")
    assert rc == 0, err
    rows = [line.split(",") for line in (tmp_path / "o.csv").read_text().splitlines()[1:]]
    assert {r[1].strip('"') for r in rows} >= set(reps) and all(r[2].strip('"') in ("representative", "sample")
                                                                  for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--budget", 5000], r"budget must be an integer in \[1, 1500\]; got 5000"),
    (["--budget", 10, "--engine", "spark"], "--engine spark reads Parquet"),
    (["--budget", 10, "-o", "x.txt"], "must end in .parquet or .csv"),
    (["--budget", 10, "--lam", "big"], "lam must be 'balanced' or a finite float >= 0; got 'big'"),
    (["--budget", 10, "--z", 0.5, "--score", "kmeans"], "z must be a finite float >= 1; got 0.5"),
    (["--budget", 10, "--losses", "LOSSES_SHORT"], r"must hold 1500 losses \(NaN where unknown\); got shape \(3,\)"),
])
def test_bad_input_exits_2(emb, capsys, argv, message):
    d, *_ = emb
    np.save(d / "short.npy", np.ones(3))
    argv = [str(d / "short.npy") if a == "LOSSES_SHORT" else a for a in argv]
    if "-o" not in argv:
        argv += ["-o", d / "o.parquet"]
    rc, err = _run(capsys, d / "e.npy", *argv, "--quiet")
    assert rc == 2 and "teraml select: error:" in err
    assert __import__("re").search(message, err), err


def test_missing_file_and_missing_representative_losses(emb, capsys):
    d, X, loss, ids = emb
    rc, err = _run(capsys, d / "nope.npy", "--budget", 10)
    assert rc == 2 and "does not exist" in err
    partial = np.full(1500, np.nan)
    partial[:10] = 1.0
    np.save(d / "partial.npy", partial)
    rc, err = _run(capsys, d / "e.npy", "--budget", 60, "--losses", d / "partial.npy", "-o", d / "o.parquet", "--quiet")
    assert rc == 2 and "lacks the losses of" in err


def test_headerless_csv_keeps_every_row(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(200, 3))
    np.savetxt(tmp_path / "nohdr.csv", X, delimiter=",")
    rc, err = _run(capsys, tmp_path / "nohdr.csv", "--budget", 30, "--score", "kmeans", "--seed", 0, "-o",
                   tmp_path / "o.parquet", "--quiet")
    assert rc == 0, err
    assert json.loads(err.strip().splitlines()[-1])["n"] == 200
    sel = select(X.astype(np.float32), 30, score="kmeans", random_state=0)
    assert _read(tmp_path / "o.parquet")["index"] == sel.indices.tolist()
    rc, err = _run(capsys, tmp_path / "nohdr.csv", "--budget", 30, "--score", "kmeans", "--header", "-o",
                   tmp_path / "o.parquet", "--quiet")
    assert rc == 0 and '"n": 199' in err     # told that the first line is a header, it is one


def test_ids_unique_matched_as_text_and_losses_given_once(tmp_path, capsys):
    X = np.random.default_rng(1).normal(size=(60, 2))
    ids = [str(i) for i in range(59)] + ["x59"]
    lines = "id,a,b\n" + "".join(f"{i},{a},{b}\n" for i, (a, b) in zip(ids, X))
    (tmp_path / "e.csv").write_text(lines)
    rc, err = _run(capsys, tmp_path / "e.csv", "--budget", 12, "-k", 3, "--seed", 0, "-o", tmp_path / "o.parquet",
                   "--quiet")
    assert rc == 0, err
    reps = _read(tmp_path / "o.parquet")["id"]
    # numeric-looking ids in the losses file still match the text ids of the embeddings
    pq.write_table(pa.table({"id": [int(r) if r.isdigit() else r for r in reps] if all(r.isdigit() for r in reps)
                             else reps, "loss": [1.0] * len(reps)}), tmp_path / "l.parquet")
    rc, err = _run(capsys, tmp_path / "e.csv", "--budget", 12, "-k", 3, "--seed", 0, "-o", tmp_path / "o.parquet",
                   "--losses", tmp_path / "l.parquet", "--lam", 0.5, "--quiet")   # lam may change in step two
    assert rc == 0, err
    (tmp_path / "d.csv").write_text(lines.replace("\n5,", "\n3,", 1))
    rc, err = _run(capsys, tmp_path / "d.csv", "--budget", 12, "-o", tmp_path / "o2.parquet", "--quiet")
    assert rc == 2 and "must hold unique ids; '3' is on rows 3 and 5" in err
    pq.write_table(pa.table({"index": [0, 0], "loss": [1.0, 2.0]}), tmp_path / "dup.parquet")
    rc, err = _run(capsys, tmp_path / "e.csv", "--budget", 12, "-k", 3, "--seed", 0, "-o", tmp_path / "o.parquet",
                   "--losses", tmp_path / "dup.parquet", "--quiet")
    assert rc == 2 and "column 'index' names 0 2 times" in err
    rc, err = _run(capsys, tmp_path / "e.csv", "--budget", 12, "--seed", "-1", "-o", tmp_path / "o3.parquet",
                   "--quiet")
    assert rc == 2 and "--seed must be" in err
