"""Reports of demo and benchmark runs: JSON results, matplotlib PNG plots, one self-contained HTML page.

The HTML page embeds its images (base64 PNG), so it can be mailed or attached as a single file;
the PNGs are also written beside it.

Example
-------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt, tempfile
>>> rep = Report("example")
>>> sec = rep.section("Numbers", "Two rows.")
>>> sec.table("squares", ["x", "x^2"], [[1, 1], [2, 4]])
>>> fig, ax = plt.subplots(); _ = ax.plot([1, 2], [1, 4])
>>> sec.figure("a line", fig)
>>> path = rep.write(tempfile.mkdtemp())
>>> path.name
'index.html'
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from teraml._validation import type_name

__all__ = ["Report", "Section", "to_jsonable", "write_json", "write_bench", "format_value", "bench_parser", "section_from_demo",
           "format_checks", "collect_checks", "bench_main"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, dataclasses and non-finite floats to JSON-safe values.

    >>> to_jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": float("nan")})
    {'a': 1.5, 'b': [0, 1], 'c': None}
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):  # numpy scalars become the Python scalars they hold
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (via :func:`to_jsonable`), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")
    return path


def format_value(value: Any) -> str:
    """Format a table cell: floats to 4 significant digits, None as an en dash.

    >>> format_value(3.14159), format_value(None), format_value(12345678.0), format_value(np.bool_(True))
    ('3.142', '–', '1.235e+07', 'yes')
    """
    if value is None:
        return "–"
    if isinstance(value, np.generic):  # numpy scalars format as the Python scalars they hold
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        v = value
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "figure"


@dataclasses.dataclass
class _Table:
    caption: str
    headers: list[str]
    rows: list[list[Any]]


@dataclasses.dataclass
class _Figure:
    caption: str
    png: bytes
    filename: str


class Section:
    """A titled part of a :class:`Report`: paragraphs, tables and figures, in the order added."""

    def __init__(self, title: str, text: str = ""):
        self.title = title
        self.items: list[Any] = []
        if text:
            self.text(text)

    def text(self, text: str) -> None:
        """Add a paragraph (plain text; blank lines separate paragraphs)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type_name(text)}")
        self.items.append(("text", text))

    def table(self, caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Add a table; each row must have ``len(headers)`` cells."""
        headers = [str(h) for h in headers]
        rows = [list(r) for r in rows]
        for i, r in enumerate(rows):
            if len(r) != len(headers):
                raise ValueError(f"rows[{i}] must have {len(headers)} cells (one per header); got {len(r)}")
        self.items.append(_Table(caption, headers, rows))

    def figure(self, caption: str, fig: Any, *, dpi: int = 110) -> None:
        """Add a matplotlib figure (rendered to PNG now, then closed)."""
        import matplotlib.pyplot as plt

        if not hasattr(fig, "savefig"):
            raise TypeError(f"fig must be a matplotlib Figure; got {type_name(fig)}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        self.items.append(_Figure(caption, buf.getvalue(), ""))


class Report:
    """A report: a title, sections, and JSON results; :meth:`write` makes ``index.html``."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []
        self.results: dict[str, Any] = {}

    def section(self, title: str, text: str = "") -> Section:
        """Add and return a new :class:`Section`."""
        sec = Section(title, text)
        self.sections.append(sec)
        return sec

    def write(self, out_dir: str | Path, *, results_json: bool = True) -> Path:
        """Write ``index.html``, the PNGs and (unless ``results_json=False``) ``results.json`` into ``out_dir``;
        return the HTML path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for sec in self.sections:
            for item in sec.items:
                if isinstance(item, _Figure):
                    base = _slug(f"{sec.title}-{item.caption}")[:60]
                    name, k = f"{base}.png", 1
                    while name in used:
                        k += 1
                        name = f"{base}-{k}.png"
                    used.add(name)
                    item.filename = name
                    (out / name).write_bytes(item.png)
        if results_json:
            write_json(self.results, out / "results.json")
        path = out / "index.html"
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def to_html(self) -> str:
        """The whole page as one self-contained HTML string."""
        esc = html.escape
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        parts.append(f"<p class='sub'>{esc(self.subtitle)} · generated {stamp}</p>")
        if len(self.sections) > 1:
            parts.append("<nav><ul>")
            for i, sec in enumerate(self.sections):
                parts.append(f"<li><a href='#s{i}'>{esc(sec.title)}</a></li>")
            parts.append("</ul></nav>")
        for i, sec in enumerate(self.sections):
            parts.append(f"<section id='s{i}'><h2>{esc(sec.title)}</h2>")
            for item in sec.items:
                if isinstance(item, tuple) and item[0] == "text":
                    for para in item[1].split("\n\n"):
                        parts.append(f"<p>{esc(para)}</p>")
                elif isinstance(item, _Table):
                    parts.append("<table>")
                    if item.caption:
                        parts.append(f"<caption>{esc(item.caption)}</caption>")
                    parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in item.headers) + "</tr>")
                    for row in item.rows:
                        cells = "".join(f"<td>{esc(format_value(c))}</td>" for c in row)
                        parts.append(f"<tr>{cells}</tr>")
                    parts.append("</table>")
                elif isinstance(item, _Figure):
                    data = base64.b64encode(item.png).decode("ascii")
                    parts.append(
                        f"<figure><img alt='{esc(item.caption)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{esc(item.caption)}</figcaption></figure>"
                    )
            parts.append("</section>")
        parts.append("</body></html>")
        return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.1em}.sub{color:#666;margin-top:0}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
nav ul{columns:2;font-size:.95em}
"""


def write_bench(
    name: str,
    results: dict,
    *,
    sections: Sequence[Section] = (),
    out_dir: str | Path = "results",
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write a benchmark's ``results/<name>.json`` and its report ``results/<name>/index.html`` (with the
    plots beside it; the JSON is written once, not again inside the report folder).

    Returns ``(json_path, html_path)``.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"name must be a lowercase identifier like 'hyperattention'; got {name!r}")
    out = Path(out_dir)
    json_path = write_json(results, out / f"{name}.json")
    rep = Report(title or f"teraml benchmark: {name}")
    rep.sections.extend(sections)
    rep.results = results
    html_path = rep.write(out / name, results_json=False)
    return json_path, html_path


def section_from_demo(demo) -> Section:
    """Render a :class:`teraml._demo.DemoSection` (text, tables, figures) as a report :class:`Section`."""
    sec = Section(demo.title, demo.text)
    for caption, headers, rows in demo.tables:
        sec.table(caption, headers, rows)
    for caption, fig in demo.figures:
        sec.figure(caption, fig)
    return sec


def format_checks(checks) -> str:
    """One line per acceptance check (dicts with id, criterion, ours, ratio, threshold, pass).

    >>> print(format_checks([{"id": "S1", "criterion": "speed-up", "ours": 0.5, "ratio": 3.0, "threshold": ">= 2",
    ...                       "pass": True}]))
    PASS  S1  speed-up  ours 0.5  ratio 3  (>= 2)
    """
    if not checks:
        return ""
    width = max(len(c["criterion"]) for c in checks)
    lines = []
    for c in checks:
        verdict = "PASS" if c["pass"] else ("----" if c["pass"] is None else "FAIL")
        ratio = "" if c.get("ratio") is None else f"ratio {c['ratio']:.4g}"
        ours = c["ours"] if not isinstance(c["ours"], float) else f"{c['ours']:.4g}"
        lines.append(f"{verdict}  {c['id']:<3} {c['criterion']:<{width}}  ours {ours}  {ratio}  ({c['threshold']})")
    return "\n".join(lines)


def collect_checks(results: dict) -> list[dict]:
    """The acceptance checks of a benchmark's results: its own ``checks`` and those of each part, in order."""
    out = list(results.get("checks", []))
    for value in results.values():
        if isinstance(value, dict):
            out.extend(value.get("checks", []))
    return out


def bench_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Run the registered benchmark ``name`` (``teraml bench NAME ...``): parse ``--quick/--quiet/--out`` and the
    benchmark's own options from ``argv``, run it, write ``results/<name>.json`` and its report, print the checks.

    Returns the exit status: 1 if any check failed, 2 for an unknown name.
    """
    import importlib
    import sys

    from teraml._demo import BENCHMARKS

    if name not in BENCHMARKS:
        print(f"teraml bench: unknown benchmark {name!r}; available: {', '.join(sorted(BENCHMARKS))}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name])
    parser = bench_parser((module.__doc__ or name).strip().splitlines()[0], prog=f"teraml bench {name}")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = vars(parser.parse_args(argv))
    out, quiet = args.pop("out"), args.pop("quiet")
    import matplotlib

    matplotlib.use("Agg")
    section = module.run(verbose=not quiet, **args)
    jpath, hpath = write_bench(name, section.results, sections=[section_from_demo(section)], out_dir=out)
    checks = collect_checks(section.results)
    print(format_checks(checks))
    print(f"results: {jpath}\nreport: {hpath}")
    return 0 if all(c["pass"] is not False for c in checks) else 1


def bench_parser(description: str, prog: str | None = None):
    """The argument parser every benchmark shares: ``--quick``, ``--quiet``, ``--out``."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--quick", action="store_true", help="a short run (smaller sizes, fewer repeats)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    return p
