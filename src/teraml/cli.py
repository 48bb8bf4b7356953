"""The ``teraml`` command.

    teraml --version
    teraml demo [--quiet] [--out DIR] [--only NAME ...] [--retrain]
    teraml bench NAME [--quick] [--quiet] [--out DIR] [benchmark options, e.g. --long]
    teraml datasets
    teraml tinylm [--retrain] [--quiet]
    teraml hac EDGES (--threshold T | --n-clusters K) --out DIR [--epsilon 0.1] [--points] ...

``teraml demo`` runs every registered component's demo on offline data, prints a summary table and
writes an HTML report (``teraml-report/index.html``). ``teraml bench NAME`` runs the registered benchmark
``teraml.<package>._bench`` (from a checkout or an installed wheel), which writes ``results/NAME.json`` and
its report with plots in ``results/NAME/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from teraml._version import __version__

__all__ = ["main", "build_parser"]


def available_benchmarks() -> list[str]:
    """Names of the registered benchmarks (``teraml.<package>._bench`` modules)."""
    from teraml._demo import BENCHMARKS

    return sorted(BENCHMARKS)


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
    from teraml.report import bench_main

    names = available_benchmarks()
    if args.name not in names:
        print(f"teraml bench: unknown benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    try:
        return bench_main(args.name, args.options)
    except SystemExit as exc:  # the benchmark's own parser rejected an option (it printed why)
        return 2 if exc.code else 0


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


def _hac_error(msg: str) -> int:
    print(f"teraml hac: error: {msg}", file=sys.stderr)
    return 2


def cmd_hac(args) -> int:
    """Cluster an edge list (or points) with TeraHAC; write labels, merges, nodes and summary.json."""
    import warnings

    from teraml.hac import Graph, TeraHAC
    from teraml.hac.graph import read_points

    if (args.threshold is None) == (args.n_clusters is None):
        return _hac_error("exactly one of --threshold or --n-clusters must be given")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _hac_error(f"--out {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        return _hac_error(f"{out} is not empty; pass --overwrite")
    src = Path(args.edges)
    if not src.exists():
        return _hac_error(f"{src} does not exist")
    if src.is_dir():
        return _hac_error(f"{src} is a folder, not a file")
    created = not out.exists()
    try:  # fail before the clustering, not after it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _hac_error(f"cannot create --out {out}: {exc.strerror or exc}")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.points:
                g = Graph.from_points(read_points(src, header=args.header), n_neighbors=args.k, metric=args.metric)
            else:
                fmt = None if args.format == "auto" else args.format
                g = Graph.read(src, format=fmt, columns=(args.src_col, args.dst_col, args.weight_col),
                               duplicates=args.duplicates)
            model = TeraHAC(threshold=args.threshold, n_clusters=args.n_clusters, epsilon=args.epsilon,
                            engine=args.engine, max_partition_size=args.max_partition_size,
                            affinity_levels=args.affinity_levels,
                            max_rounds=args.max_rounds, n_jobs=args.n_jobs, random_state=args.seed,
                            verbose=not args.quiet).fit(g)
        for w in caught:
            print(f"teraml hac: warning: {w.message}", file=sys.stderr)
    except (ValueError, TypeError, OSError) as exc:
        if created and not any(out.iterdir()):
            out.rmdir()
        return _hac_error(str(exc))
    try:
        _write_hac_outputs(out, g, model, args, src, t0)
    except OSError as exc:
        return _hac_error(f"cannot write to --out {out}: {exc.strerror or exc}")
    if not args.quiet:
        print(f"{g.n_nodes} nodes, {g.n_edges} edges -> {model.n_clusters_} clusters in {model.n_rounds_} rounds "
              f"({time.perf_counter() - t0:.1f} s); wrote {out}/labels.csv, merges.csv, nodes.csv, summary.json")
    return 0


def _write_hac_outputs(out: Path, g, model, args, src: Path, t0: float) -> None:
    import csv
    import json

    d = model.dendrogram_
    ids = g.node_ids.tolist()
    with open(out / "labels.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["node", "cluster"])
        wr.writerows(zip(ids, model.labels_.tolist()))
    with open(out / "merges.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["id", "left", "right", "similarity", "size", "round"])
        for i in range(d.n_merges):
            wr.writerow([d.n_leaves + i, int(d.left[i]), int(d.right[i]), repr(float(d.similarity[i])),
                         int(d.size[i]), int(d.round[i])])
    with open(out / "nodes.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["index", "node"])
        wr.writerows(enumerate(ids))
    summary = {"input": str(src), "parameters": {k: v for k, v in vars(args).items() if k != "func"},
               "cleaning": g.report, "n_nodes": g.n_nodes, "n_edges": g.n_edges, "n_clusters": model.n_clusters_,
               "rounds": model.round_stats_, "seconds": time.perf_counter() - t0, "version": __version__}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


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

    b = sub.add_parser("bench", help="run a benchmark (writes results/NAME.json and a report with plots)",
                       description="Run a benchmark: " + ", ".join(available_benchmarks()) + ". Options after NAME "
                       "(--quick, --quiet, --out DIR and the benchmark's own) go to the benchmark; "
                       "`teraml bench NAME --help` lists them.")
    b.add_argument("name", help="benchmark name: " + ", ".join(available_benchmarks()))
    b.add_argument("options", nargs=argparse.REMAINDER, help="--quick, --quiet, --out DIR, ...")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("datasets", help="list the offline datasets")
    s.set_defaults(func=cmd_datasets)

    h = sub.add_parser("hac", help="TeraHAC: average-linkage clustering of an edge list (or points)")
    h.add_argument("edges", metavar="EDGES", help="CSV (with header) or Parquet edge list; with --points, a point file")
    grp = h.add_mutually_exclusive_group()
    grp.add_argument("--threshold", type=float, help="similarity threshold t")
    grp.add_argument("--n-clusters", type=int, help="number of clusters")
    h.add_argument("--epsilon", type=float, default=0.1)
    h.add_argument("--engine", default="local", help="local (spark is not built yet)")
    h.add_argument("--out", required=True, help="output folder")
    h.add_argument("--points", action="store_true", help="EDGES holds points (.npy/CSV/Parquet): build a k-NN graph")
    h.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="with --points: the CSV has a header line (--header) or not (--no-header); default: detected "
                        "(a first line with a field that is not a number is a header); no row is ever dropped")
    h.add_argument("--k", type=int, default=10, help="neighbours for --points")
    h.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    h.add_argument("--format", default="auto", choices=["auto", "csv", "parquet"])
    h.add_argument("--src-col", default="src")
    h.add_argument("--dst-col", default="dst")
    h.add_argument("--weight-col", default="weight")
    h.add_argument("--duplicates", default="max", choices=["max", "sum", "error"])
    h.add_argument("--max-partition-size", type=int, default=None)
    h.add_argument("--affinity-levels", type=int, default=3, help="affinity levels per partition (1: best edges only)")
    h.add_argument("--max-rounds", type=int, default=1000)
    h.add_argument("--n-jobs", type=int, default=None, help="threads over partitions (-1: all cores)")
    h.add_argument("--seed", type=int, default=None)
    h.add_argument("--overwrite", action="store_true")
    h.add_argument("--quiet", action="store_true")
    h.set_defaults(func=cmd_hac)

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
