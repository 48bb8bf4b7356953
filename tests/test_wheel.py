"""The package as a user gets it: a wheel installed into a fresh virtual environment outside the checkout.

The wheel is built from this checkout (no network: the build uses the setuptools already installed) and
installed without dependencies into a new venv, which borrows the running environment's packages through a
``.pth`` line (so torch, numpy, ... are not downloaded again). ``teraml bench hac --quick`` then runs from
the installed wheel in a temporary folder, and its results are checked.
"""

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(ROOT)], check=True)
    wheel = next((tmp / "dist").glob("teraml-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "_borrowed_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    return env_dir, wheel


def _run(env_dir, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_wheel_holds_the_package_and_its_license(installed):
    import zipfile

    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "teraml/hac/_bench.py" in names and "teraml/attention/naive.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_installed_wheel_runs_the_hac_benchmark(installed, tmp_path):
    env_dir, _ = installed
    where = _run(env_dir, "python", "-c", "import teraml; print(teraml.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout   # the wheel, not the checkout
    res = _run(env_dir, "teraml", "bench", "hac", "--quick", "--quiet", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr[-3000:]    # 1: a check failed (reported, not an error)
    results = json.loads((tmp_path / "results" / "hac.json").read_text())
    assert not (tmp_path / "results" / "hac" / "results.json").exists()   # the results are written once
    assert (tmp_path / "results" / "hac" / "index.html").exists()
    checks = results["checks"]
    ids = {c["id"] for c in checks}
    assert {"Q2", "Q3", "Q5", "Q6", "R1", "R2", "R3", "R4", "S1", "E2"} <= ids
    # quality on the planted partition and rounds are not noisy: they must hold even in the quick run
    assert all(c["pass"] for c in checks if c["id"] in ("Q3", "R1", "R2", "R3", "R4"))
    rows = {(r[0], r[1]): r for r in results["rows"]}
    assert rows[("D1", "exact_hac")][2] > 0.85                      # exact graph average linkage on digits
    assert rows[("D1", "sklearn connectivity average (k=10; other objective)")][2] < 0.1   # missing pairs = 0
    for line in ("PASS  R2", "results:", "report:"):
        assert line in res.stdout
