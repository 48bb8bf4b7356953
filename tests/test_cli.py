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
