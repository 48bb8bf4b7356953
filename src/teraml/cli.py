"""The ``teraml`` command.

    teraml --version
    teraml demo [--quiet] [--out DIR] [--only NAME ...] [--retrain]
    teraml bench NAME [--quick] [--quiet] [--out DIR]
    teraml datasets
    teraml tinylm [--retrain] [--quiet]

``teraml demo`` runs every registered component's demo on offline data, prints a summary table and
writes an HTML report (``teraml-report/index.html``). ``teraml bench NAME`` runs ``bench/NAME.py``,
which writes ``results/NAME.json`` and its plots.
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
import time
import traceback
from pathlib import Path

from teraml._version import __version__

__all__ = ["main", "build_parser"]

logger = logging.getLogger("teraml")


def _bench_dirs() -> list[Path]:
    dirs = [Path.cwd() / "bench", Path(__file__).resolve().parents[2] / "bench"]
    env = os.environ.get("TERAML_BENCH_DIR")
    if env:
        dirs.insert(0, Path(env))
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def available_benchmarks() -> list[str]:
    """Names of the benchmark scripts found in ``bench/`` (cwd first, then the source checkout)."""
    names = set()
    for d in _bench_dirs():
        names.update(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))
    return sorted(names)


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, sep, *body])


def cmd_demo(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from teraml._demo import REGISTRY, DemoContext, SummaryRow, resolve
    from teraml.report import Report, format_value, section_from_demo

    names = [n for n, _ in REGISTRY]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"teraml demo: --only got unknown section(s) {unknown}; known: {', '.join(names)}", file=sys.stderr)
            return 2
    out_dir = Path(args.out)
    report = Report("teraml demo", f"teraml {__version__}: every component on offline data")
    summary: list[SummaryRow] = []
    failures = []
    t_all = time.perf_counter()
    timings = {}
    for name, target in REGISTRY:
        if args.only and name not in args.only:
            continue
        if not args.quiet:
            print(f"[teraml demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            section = resolve(target)(DemoContext(out_dir=out_dir, verbose=not args.quiet, retrain=args.retrain))
        except Exception as exc:  # one broken section must not hide the others
            failures.append(name)
            tb = traceback.format_exc()
            print(f"[teraml demo] {name} FAILED: {exc}", file=sys.stderr)
            print(tb, file=sys.stderr)
            sec = report.section(f"{name} (failed)")
            sec.text(tb)
            summary.append(SummaryRow(name, "FAILED", str(exc)[:60], "–", None))
            continue
        timings[name] = time.perf_counter() - t0
        summary.extend(section.summary)
        sec = section_from_demo(section)
        report.sections.append(sec)
        sec.text(f"Section time: {timings[name]:.1f} s.")
        report.results[name] = section.results
    headers = ["component", "what was run", "ours", "baseline", "ratio"]
    rows = [[r.component, r.what, r.ours, r.baseline, format_value(r.ratio)] for r in summary]
    top = report.section("Summary")
    top.table("one line per component (ratio = ours / baseline)", headers, rows)
    top.text(f"Total demo time: {time.perf_counter() - t_all:.1f} s.")
    report.sections.insert(0, report.sections.pop())
    report.results["_timings_seconds"] = timings
    path = report.write(out_dir)
    print()
    print(_format_table(headers, rows))
    print()
    print(f"report: {path.resolve()}")
    return 1 if failures else 0


def cmd_bench(args) -> int:
    names = available_benchmarks()
    if args.name not in names:
        where = ", ".join(str(d) for d in _bench_dirs()) or "no bench/ folder found"
        print(f"teraml bench: unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'} "
              f"(searched {where})", file=sys.stderr)
        return 2
    for d in _bench_dirs():
        script = d / f"{args.name}.py"
        if script.is_file():
            break
    argv = [str(script)]
    if args.quick:
        argv.append("--quick")
    if args.quiet:
        argv.append("--quiet")
    argv += ["--out", args.out]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = old
    return 0


def cmd_datasets(args) -> int:
    from teraml import datasets

    for name in datasets.available():
        print(name)
    return 0


def cmd_tinylm(args) -> int:
    from teraml.models import tinylm

    ckpt = tinylm.train_tinylm(retrain=args.retrain, verbose=not args.quiet)
    m = ckpt.manifest
    print(f"checkpoint: {ckpt.path} ({'cached' if ckpt.from_cache else 'trained now'})")
    print(f"steps {m['steps']}/{m['planned_steps']}, training {m['train_seconds']:.1f} s")
    print(f"validation {m['val_bpb']:.4f} bits/byte at context {m['val_context']}; "
          f"unigram entropy {m['unigram_bpb']:.4f} bits/byte; gap {m['unigram_bpb'] - m['val_bpb']:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="teraml", description="teraml: scalable and private machine learning")
    p.add_argument("--version", action="version", version=f"teraml {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="run every component's demo and write an HTML report")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument("--out", default="teraml-report", help="report folder (default: teraml-report)")
    d.add_argument("--only", nargs="+", metavar="NAME", help="run only these sections")
    d.add_argument("--retrain", action="store_true", help="retrain the tiny LM even if cached")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="run bench/NAME.py (writes results/NAME.json and plots)")
    b.add_argument("name", help="benchmark name, e.g. tinylm")
    b.add_argument("--quick", action="store_true", help="a short run")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--out", default="results", help="results folder (default: results)")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("datasets", help="list the offline datasets")
    s.set_defaults(func=cmd_datasets)

    t = sub.add_parser("tinylm", help="train (or load) the tiny LM and print its figures")
    t.add_argument("--retrain", action="store_true", help="train even if cached")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_tinylm)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
