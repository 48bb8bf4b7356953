"""The ``teraml`` command.

    teraml --version
    teraml demo [--quiet] [--out DIR] [--only NAME ...] [--retrain]
    teraml bench NAME [--quick] [--quiet] [--out DIR] [benchmark options, e.g. --long]
    teraml datasets
    teraml tinylm [--retrain] [--quiet]
    teraml hac EDGES (--threshold T | --n-clusters K) --out DIR [--epsilon 0.1] [--points] ...
    teraml select EMBEDDINGS --budget M [-k K] [--score loss|kmeans] [--losses FILE] [--state FILE] [-o OUT] ...
    teraml anonymize TABLE --sensitive COLS [-k 10] [--method auto|mdav|kd|kmeans] [--drop COLS] [-o OUT] ...

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
    if src.is_dir() and args.engine != "spark":   # Spark reads a folder of Parquet files
        return _hac_error(f"{src} is a folder, not a file (--engine spark reads a Parquet folder)")
    created = not out.exists()
    try:  # fail before the clustering, not after it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _hac_error(f"cannot create --out {out}: {exc.strerror or exc}")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine = args.engine
            if engine == "spark":
                from teraml._spark import spark_session

                engine = spark_session(args.spark_master)
            if args.points:
                g = Graph.from_points(read_points(src, header=args.header), n_neighbors=args.k, metric=args.metric)
            elif args.engine == "spark":   # Spark reads the file itself; the edges are never collected
                from teraml.hac.engines.spark import read_edges

                g = read_edges(str(src), columns=(args.src_col, args.dst_col, args.weight_col),
                               duplicates=args.duplicates, session=engine,
                               format=None if args.format == "auto" else args.format)
            else:
                fmt = None if args.format == "auto" else args.format
                g = Graph.read(src, format=fmt, columns=(args.src_col, args.dst_col, args.weight_col),
                               duplicates=args.duplicates)
            model = TeraHAC(threshold=args.threshold, n_clusters=args.n_clusters, epsilon=args.epsilon,
                            engine=engine, max_partition_size=args.max_partition_size,
                            affinity_levels=args.affinity_levels,
                            max_rounds=args.max_rounds, n_jobs=args.n_jobs, random_state=args.seed,
                            verbose=not args.quiet).fit(g)
        for w in caught:   # pandas/pyspark deprecation notices are not the user's business
            if not issubclass(w.category, (DeprecationWarning, FutureWarning)):
                print(f"teraml hac: warning: {w.message}", file=sys.stderr)
    except Exception as exc:
        spark_error = type(exc).__module__.startswith(("pyspark", "py4j"))   # Spark could not read EDGES
        if not (spark_error or isinstance(exc, (ValueError, TypeError, OSError, ImportError))):
            raise
        if created and not any(out.iterdir()):
            out.rmdir()
        msg = str(exc).strip().splitlines()[0] if spark_error else str(exc)
        return _hac_error(f"Spark failed on {src.name}: {msg}" if spark_error else msg)
    try:
        if hasattr(model, "merges_"):
            _write_spark_outputs(out, g, model, args, src, t0)
        else:
            _write_hac_outputs(out, g, model, args, src, t0)
    except OSError as exc:
        return _hac_error(f"cannot write to --out {out}: {exc.strerror or exc}")
    if not args.quiet:
        names = "labels, merges, nodes (Parquet)" if hasattr(model, "merges_") else "labels.csv, merges.csv, nodes.csv"
        print(f"{g.n_nodes} nodes, {g.n_edges} edges -> {model.n_clusters_} clusters in {model.n_rounds_} rounds "
              f"({time.perf_counter() - t0:.1f} s); wrote {out}/{names}, summary.json")
    return 0


def _write_spark_outputs(out: Path, g, model, args, src: Path, t0: float) -> None:
    """The Spark engine's outputs: labels, merges and nodes as Parquet folders written by Spark."""
    import json
    import warnings

    import pandas as pd

    spark = model.labels_.sparkSession
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # pyspark's notice about pandas 3
        warnings.simplefilter("ignore", DeprecationWarning)
        model.labels_.write.mode("overwrite").parquet(str(out / "labels"))
        model.merges_.write.mode("overwrite").parquet(str(out / "merges"))
        nodes = pd.DataFrame({"index": range(g.n_nodes), "node": g.node_ids})
        spark.createDataFrame(nodes).write.mode("overwrite").parquet(str(out / "nodes"))
    summary = {"input": str(src), "parameters": {k: v for k, v in vars(args).items() if k != "func"},
               "cleaning": g.report, "n_nodes": g.n_nodes, "n_edges": g.n_edges, "n_clusters": model.n_clusters_,
               "rounds": model.round_stats_, "seconds": time.perf_counter() - t0, "version": __version__}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


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


_SELECT_FLAGS = {"random_state": "--seed", "n_clusters": "-k/--n-clusters", "uniform_mix": "--uniform-mix",
                 "loss_fn must return": "--losses must give"}


def _select_error(msg: str) -> int:
    for name, flag in _SELECT_FLAGS.items():   # the library's parameter names, as this command spells them
        msg = msg.replace(name, flag)
    print(f"teraml select: error: {msg}", file=sys.stderr)
    return 2


def cmd_anonymize(args) -> int:
    """Release a table with its sensitive columns replaced by look-alike group means (k-anonymous on them)."""
    import json
    import warnings

    from teraml.anonymize._io import anonymize_table, read_table, write_table

    def error(msg):
        print(f"teraml anonymize: error: {msg}", file=sys.stderr)
        return 2

    src = Path(args.table)
    if not src.exists():
        return error(f"{src} does not exist")
    out = Path(args.out) if args.out else src.with_name(src.stem + ".lookalike" + (".csv" if src.suffix == ".csv"
                                                                                     else ".parquet"))
    if out.suffix not in (".csv", ".parquet"):
        return error(f"-o/--out must end in .csv or .parquet; got {out.name}")
    report_path = out.with_name(out.name + ".report.json")
    if not args.overwrite and (out.exists() or report_path.exists()):
        return error(f"{out} exists; pass --overwrite")

    def split(text):
        return [c.strip() for c in text.split(",") if c.strip()]

    sensitive, extra = split(args.sensitive), split(args.cluster_columns)
    if not sensitive:
        return error(f"--sensitive: expected at least one column name, got {args.sensitive!r}")
    dup = sorted({c for c in sensitive + extra if (sensitive + extra).count(c) > 1})
    if dup:
        return error(f"--sensitive/--cluster-columns: duplicate column(s) {dup}")
    if args.cluster_on != "sensitive" and not extra:
        return error(f"--cluster-on {args.cluster_on} needs --cluster-columns (the non-sensitive numeric columns "
                     "that define look-alikes; ids must not be among them)")
    if args.cluster_on == "sensitive" and extra:
        return error("--cluster-columns is only used with --cluster-on all or nonsensitive")
    cluster = {"sensitive": sensitive, "all": sensitive + extra, "nonsensitive": extra}[args.cluster_on]
    try:
        table = read_table(src, list(dict.fromkeys(sensitive + cluster)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            released, report = anonymize_table(
                table, sensitive, cluster_columns=cluster, drop=split(args.drop), shuffle=args.shuffle, path=src,
                k=args.k, method=args.method, standardize=args.standardize, random_state=args.seed,
                verbose=not args.quiet)
        for w in caught:   # (the identifiability warning is about mapping test rows, which a release does not do)
            if "identifiable" not in str(w.message):
                print(f"teraml anonymize: warning: {w.message}", file=sys.stderr)
    except (ValueError, TypeError) as exc:
        msg = str(exc).replace("sensitive_features", "--sensitive").replace("random_state:", "--seed:")
        return error("-" + msg if msg.startswith("k: ") else msg)
    write_table(released, out)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        print(f"{report['rows']} rows, {report['n_groups']} groups of {report['group_size_min']}.."
              f"{report['group_size_max']} ({report['method']}); k on {', '.join(sensitive)}: {report['k_achieved']}; "
              f"information loss {report['information_loss']:.4f}")
        print(f"release: {out}\nreport: {report_path}")
        print("only the sensitive columns are k-anonymous; the release is not differentially private")
    return 0


def cmd_select(args) -> int:
    """Select a weighted subset of an embeddings file (two steps when the losses come later)."""
    import json
    import warnings
    from dataclasses import replace

    import numpy as np

    from teraml.selection._io import (
        fingerprint,
        load_state,
        read_embeddings,
        read_losses,
        save_state,
        write_selection,
    )
    from teraml.selection.sensitivity import SensitivitySampler, check_X

    if args.engine == "spark":
        return _select_spark(args)
    src = Path(args.embeddings)
    if not src.exists():
        return _select_error(f"{src} does not exist")
    out = Path(args.out)
    if out.suffix not in (".parquet", ".csv"):
        return _select_error(f"-o/--out must end in .parquet or .csv; got {out.name}")
    state_path = Path(args.state) if args.state else out.with_name(out.name + ".state.npz")
    try:
        lam = "balanced" if args.lam == "balanced" else float(args.lam)
    except ValueError:
        return _select_error(f"lam must be 'balanced' or a finite float >= 0; got {args.lam!r}")
    params = {"budget": args.budget, "score": args.score, "n_clusters": args.k, "z": args.z, "lam": lam,
              "normalize": args.normalize, "uniform_mix": args.uniform_mix, "clusterer": args.clusterer,
              "random_state": args.seed}
    t0 = time.perf_counter()
    stages = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X, ids = read_embeddings(src, column=args.column, id_column=args.id_column, header=args.header)
            X = check_X(X)
            stages["read"] = time.perf_counter() - t0
            fp = fingerprint(X)
            n = X.shape[0]
            losses = read_losses(args.losses, n, ids) if args.losses else None
            sampler = SensitivitySampler(**params, verbose=not args.quiet)
            if args.score == "loss" and losses is not None and (args.state or state_path.exists()):
                if not state_path.exists():
                    return _select_error(f"state file {state_path} does not exist")
                arrays, meta = load_state(state_path)
                if meta["fingerprint"] != fp:
                    return _select_error(f"state file {state_path} does not match EMBEDDINGS")
                flags = {"budget": "--budget", "score": "--score", "n_clusters": "-k", "z": "--z",
                         "random_state": "--seed"}   # what the clustering depends on (lam, uniform_mix may change)
                for key, flag in flags.items():
                    if key in meta["params"] and params[key] != meta["params"][key]:
                        return _select_error(f"{flag} {params[key]!r} differs from the first step's "
                                             f"{meta['params'][key]!r} (state file {state_path}); repeat the first "
                                             "step's --budget, -k, --score, --z and --seed")
                L = losses[arrays["representatives"]]
                if np.isnan(L).any():
                    return _select_error(f"{args.losses} lacks the losses of {int(np.isnan(L).sum())} of the "
                                         f"{L.size} representatives")
                sampler._finish(arrays, L)
            elif args.score == "loss" and losses is None:   # step one: cluster, write the representatives, stop
                sampler._fit_clustering(X)
                reps = np.sort(sampler.representatives_)
                k = reps.size
                save_state(state_path, sampler, {k_: v for k_, v in params.items() if k_ != "clusterer"}, fp)
                from teraml.selection import Selection
                first = Selection(reps, np.ones(k), np.ones(k, np.int64), np.ones(k), np.full(k, "representative"),
                                  np.full(k, np.nan), n_total=n, n_loss_queries=0)
                write_selection(out, first, ids)
                _print_warnings(caught)
                print(f"teraml select: wrote the {k} representatives to {out} and the clustering to {state_path}; "
                      f"compute their losses, then run again with --losses FILE --state {state_path}",
                      file=sys.stderr)
                return 0
            else:
                if losses is not None:
                    known = losses

                    def loss_fn(idx):
                        got = known[idx]
                        if np.isnan(got).any():
                            raise ValueError(f"{args.losses} lacks the losses of {int(np.isnan(got).sum())} of the "
                                             f"{got.size} representatives; run the first step without --losses, or "
                                             f"pass --state of the first step (no state file at {state_path})")
                        return got
                else:
                    loss_fn = None
                sampler.fit(X, loss_fn)
            sel = sampler.sample()
            if losses is not None:   # fill in every loss the file knows
                filled = np.where(np.isnan(sel.losses), losses[sel.indices], sel.losses)
                sel = replace(sel, losses=filled)
            write_selection(out, sel, ids)
        _print_warnings(caught)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        return _select_error(str(exc))
    stages.update(sampler.timings_)
    m = int(sel.counts[sel.role == "sample"].sum())
    summary = {"n": int(X.shape[0]), "k": int(sampler.n_clusters_), "m": m, "unique": len(sel),
               "clustering_cost": sampler.clustering_cost_, "lam": sampler.lam_,
               "ess": sel.effective_sample_size, "seconds": {k_: round(v, 4) for k_, v in stages.items()},
               "total_seconds": round(time.perf_counter() - t0, 4), "out": str(out)}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _select_spark(args) -> int:
    """``teraml select --engine spark``: select_spark on a Parquet file or folder, whose rows are named by their
    integer ids (the output's ``index`` is empty). One step: under the loss score the losses come with
    ``--losses`` (a table of id and loss, or a .npy indexed by id)."""
    import json
    import warnings
    from dataclasses import replace

    import numpy as np

    from teraml.selection._io import read_losses_by_id, write_selection

    src = Path(args.embeddings)
    if not src.exists():
        return _select_error(f"{src} does not exist")
    if not (src.is_dir() or src.suffix == ".parquet"):
        return _select_error(f"--engine spark reads Parquet (a .parquet file or a folder of them); got {src.name}")
    out = Path(args.out)
    if out.suffix not in (".parquet", ".csv"):
        return _select_error(f"-o/--out must end in .parquet or .csv; got {out.name}")
    if args.clusterer != "auto":
        return _select_error(f"--clusterer {args.clusterer} applies to --engine local; --engine spark clusters with "
                             "pyspark.ml KMeans (leave --clusterer at auto)")
    if args.state:
        return _select_error("--state applies to --engine local (the two-step run); --engine spark runs in one step")
    if args.score == "loss" and not args.losses:
        return _select_error("--engine spark with --score loss needs --losses FILE (a table with columns id and loss, "
                             "or a .npy indexed by id); the two-step run without --losses is --engine local only")
    try:
        lam = "balanced" if args.lam == "balanced" else float(args.lam)
    except ValueError:
        return _select_error(f"lam must be 'balanced' or a finite float >= 0; got {args.lam!r}")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from teraml._spark import spark_session
            from teraml.selection.spark import score_spark

            known_ids = known = None
            loss_fn = None
            if args.losses:
                known_ids, known = read_losses_by_id(args.losses)
                name = Path(args.losses).name

                def lookup(ids):
                    got = np.full(ids.size, np.nan)
                    if known_ids.size:
                        pos = np.clip(np.searchsorted(known_ids, ids), 0, known_ids.size - 1)
                        hit = known_ids[pos] == ids
                        got[hit] = known[pos[hit]]
                    return got

                def loss_fn(ids):
                    got = lookup(ids)
                    if np.isnan(got).any():
                        raise ValueError(f"{name} lacks the losses of {int(np.isnan(got).sum())} of the {got.size} "
                                         "representatives")
                    return got

            spark_session(args.spark_master, what="select_spark")
            scores = score_spark(str(src), args.budget, features_col=args.column, id_col=args.id_column,
                                 loss_fn=loss_fn if args.score == "loss" else None, score=args.score,
                                 n_clusters=args.k, z=args.z, lam=lam, normalize=args.normalize,
                                 uniform_mix=args.uniform_mix, random_state=args.seed, verbose=not args.quiet)
            try:
                sel = scores.sample()
            finally:
                scores.unpersist()
            if known is not None:   # fill in every loss the file knows
                sel = replace(sel, losses=np.where(np.isnan(sel.losses), lookup(sel.indices), sel.losses))
            write_selection(out, sel, None)
        _print_warnings(caught)
    except ImportError as exc:
        print(f"teraml select: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, KeyError) as exc:
        return _select_error(str(exc))
    m = int(sel.counts[sel.role == "sample"].sum())
    summary = {"engine": "spark", "n": scores.n_total, "k": scores.n_clusters, "m": m, "unique": len(sel),
               "clustering_cost": scores.clustering_cost, "lam": scores.lam, "ess": sel.effective_sample_size,
               "seconds": {k_: round(v, 4) for k_, v in scores.timings.items()},
               "total_seconds": round(time.perf_counter() - t0, 4), "out": str(out)}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"teraml select: warning: {w.message}", file=sys.stderr)


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
    h.add_argument("--engine", default="local", choices=["local", "spark"],
                   help="local (in-process) or spark (reads EDGES with Spark, writes Parquet folders)")
    h.add_argument("--spark-master", default="local[*]",
                   help="with --engine spark and no active session: the master of the new SparkSession")
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

    se = sub.add_parser("select", help="sensitivity sampling: pick a small weighted subset of an embeddings file",
                        description="Select --budget items of EMBEDDINGS (.npy, Parquet or CSV, one row per item). "
                        "With the loss score and no --losses, the first run writes the k representatives and a "
                        "state file; compute their losses and run again with --losses FILE --state STATE.")
    se.add_argument("embeddings", metavar="EMBEDDINGS", help=".npy (memory-mapped), Parquet or CSV")
    se.add_argument("--budget", type=int, required=True, help="items to select (k representatives + m draws)")
    se.add_argument("-k", "--n-clusters", dest="k", type=int, default=None, help="clusters (default budget/5)")
    se.add_argument("--score", default="loss", choices=["loss", "kmeans"])
    se.add_argument("--losses", default=None, help="losses: a length-n .npy (NaN = unknown) or a table with "
                    "(index or id, loss)")
    se.add_argument("--state", default=None, help="state file of a two-step run (default OUT.state.npz)")
    se.add_argument("-o", "--out", default="selection.parquet", help="output .parquet or .csv")
    se.add_argument("--column", default="embedding", help="Parquet/CSV list column of the vectors")
    se.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                    help="CSV: the first line is a header (--header) or data (--no-header); default: detected (a "
                         "first line with a field that is not a number is a header); no row is ever dropped")
    se.add_argument("--id-column", default="id", help="id column (kept in the output)")
    se.add_argument("--clusterer", default="auto", choices=["auto", "kmeans", "minibatch", "torch"])
    se.add_argument("--engine", default="local", choices=["local", "spark"],
                    help="local (in-process) or spark (select_spark on a Parquet file or folder: rows are named by "
                         "their integer ids, the losses come with --losses, and --clusterer stays auto)")
    se.add_argument("--spark-master", default="local[*]",
                    help="with --engine spark: the master of a new SparkSession (an active one is used as it is)")
    se.add_argument("--z", type=float, default=2.0)
    se.add_argument("--lam", default="balanced", help="'balanced' or a float >= 0")
    se.add_argument("--normalize", default="global", choices=["global", "cluster"])
    se.add_argument("--uniform-mix", type=float, default=0.0)
    se.add_argument("--seed", type=int, default=None)
    se.add_argument("--quiet", action="store_true")
    se.set_defaults(func=cmd_select)

    an = sub.add_parser("anonymize", help="look-alike clustering: release a table whose sensitive columns are "
                        "k-anonymous group means",
                        description="Replace the --sensitive columns of TABLE (CSV or Parquet) by the mean of a "
                        "group of at least -k look-alike rows; other columns pass through unchanged (read as text "
                        "from CSV, so ids keep their form); rows are shuffled. Writes OUT and OUT.report.json. "
                        "Only the sensitive columns are k-anonymous, and the release is not differentially "
                        "private.")
    an.add_argument("table", metavar="TABLE", help="CSV (header line required) or Parquet")
    an.add_argument("--sensitive", required=True, help="comma-separated sensitive column names (numeric)")
    an.add_argument("-k", type=int, default=10, help="minimum group size (default 10)")
    an.add_argument("--method", default="auto", choices=["auto", "mdav", "kd", "kmeans"])
    an.add_argument("--cluster-on", default="sensitive", choices=["sensitive", "all", "nonsensitive"],
                    help="columns that define look-alikes: the sensitive ones (default), those and "
                         "--cluster-columns (all), or --cluster-columns only (nonsensitive)")
    an.add_argument("--cluster-columns", default="", help="with --cluster-on all/nonsensitive: comma-separated "
                    "non-sensitive numeric columns")
    an.add_argument("--drop", default="", help="comma-separated columns to leave out of the release (e.g. ids)")
    an.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True)
    an.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                    help="shuffle the released rows (default; the row order can re-identify people)")
    an.add_argument("-o", "--out", default=None, help="output .csv or .parquet (default TABLE.lookalike.csv/.parquet)")
    an.add_argument("--seed", type=int, default=None)
    an.add_argument("--overwrite", action="store_true")
    an.add_argument("--quiet", action="store_true")
    an.set_defaults(func=cmd_anonymize)

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
