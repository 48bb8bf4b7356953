"""Benchmark of the shared tiny LM: validation bits/byte by context length vs the unigram baseline.

    python bench/tinylm.py [--quick]      # or: teraml bench tinylm [--quick]

Writes results/tinylm.json and results/tinylm/index.html.
"""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from teraml.models import tinylm  # noqa: E402
from teraml.report import Section, bench_parser, write_bench  # noqa: E402


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    ckpt = tinylm.train_tinylm(verbose=not args.quiet)
    m = ckpt.manifest
    n_windows = 2 if args.quick else 8
    contexts = [256, 1024, 4096]
    rows, bpbs = [], []
    unigram = tinylm.unigram_bits_per_byte("validation")
    for ctx in contexts:
        t0 = time.perf_counter()
        bpb = tinylm.evaluate(ckpt.model, context=ctx, n_windows=n_windows, verbose=not args.quiet)
        dt = time.perf_counter() - t0
        bpbs.append(bpb)
        rows.append([ctx, n_windows, bpb, unigram, bpb / unigram, unigram - bpb, dt])
    gap = unigram - bpbs[-1]
    checks = [
        ["gap below unigram at the longest context (bits/byte)", gap, ">= 1.5", gap >= 1.5],
        ["training time (s)", m["train_seconds"], "<= 600", m["train_seconds"] <= 600 + 5],
        ["context 4096 beats 1024 (model uses long context)", bpbs[-1] - bpbs[1], "< 0", bpbs[-1] < bpbs[1]],
    ]
    sec = Section("Tiny LM: validation bits/byte by context")
    sec.text(f"Checkpoint {ckpt.path} ({'cached' if ckpt.from_cache else 'trained in this run'}), "
             f"{m['steps']} steps in {m['train_seconds']:.0f} s.")
    sec.table("bits/byte (ratio = model / unigram)",
              ["context", "windows", "model bpb", "unigram bpb", "ratio", "gap", "eval s"], rows)
    sec.table("checks", ["check", "value", "threshold", "pass"], checks)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(contexts, bpbs, "o-", label="tiny LM")
    ax.axhline(unigram, ls="--", color="k", label="unigram entropy")
    ax.set_xlabel("context (bytes)")
    ax.set_ylabel("validation bits/byte")
    ax.legend()
    sec.figure("validation bits/byte by context length", fig)
    results = {
        "contexts": contexts,
        "bits_per_byte": bpbs,
        "unigram_bpb": unigram,
        "perplexity": [math.exp(b * math.log(2)) for b in bpbs],
        "manifest": {k: v for k, v in m.items() if k != "history"},
        "checks": [{"check": c[0], "value": c[1], "threshold": c[2], "pass": c[3]} for c in checks],
        "quick": args.quick,
    }
    jpath, hpath = write_bench("tinylm", results, sections=[sec], out_dir=args.out)
    for r in checks:
        print(f"{'PASS' if r[3] else 'FAIL'}  {r[0]}: {r[1]:.4g} ({r[2]})")
    print(f"results: {jpath}\nreport: {hpath}")


if __name__ == "__main__":
    main()
