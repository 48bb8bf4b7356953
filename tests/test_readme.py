"""The README's Python snippets run as written, each in a fresh interpreter from an empty folder.

A snippet that imports nothing from teraml continues the one before it (it uses the names defined there)
and runs after it. Snippets that need the trained tiny LM run only when its checkpoint is cached (training takes
minutes; ``make test-all`` trains it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    runs: list[str] = []
    for block in blocks:
        starts_fresh = re.search(r"^(from teraml|import teraml)", block, re.M) is not None
        if starts_fresh or not runs:
            runs.append(block)
        else:
            runs[-1] += block  # continues the previous snippet
    return runs


SNIPPETS = _snippets()


def test_readme_has_a_snippet_per_component():
    text = "\n".join(SNIPPETS)
    for package in ("teraml.attention", "teraml.aggregate", "teraml.hac", "teraml.datasets", "teraml.models",
                    "teraml.selection", "teraml.kvcache"):
        assert package in text or package.replace("teraml.", "from teraml import ") in text, package


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path):
    code = SNIPPETS[index]
    if "tinylm" in code:
        from teraml.models import tinylm

        if not tinylm.is_cached():
            pytest.skip("needs the trained tiny LM (run `teraml bench tinylm` or `make test-all` once)")
    # a last line documented to raise (`...  # ValueError: ...`) must raise that error
    match = re.search(r"#\s*(\w+Error):", code.strip().splitlines()[-1])
    expect_error = match.group(1) if match else None
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    if expect_error:
        assert proc.returncode != 0, "the last line documents an error but the snippet ran"
        last_line = proc.stderr.strip().splitlines()[-1]
        assert last_line.startswith(expect_error), proc.stderr[-2000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
