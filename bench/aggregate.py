"""Aggregate-learning benchmark (spec §6(b)): Q1-Q12 quality, S1-S5 speed, rebuilt LLP baselines.

    python bench/aggregate.py [--quick]     # or: teraml bench aggregate [--quick]

Writes results/aggregate.json and results/aggregate/index.html.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

from teraml.aggregate import _bench  # noqa: E402
from teraml.report import bench_parser, format_checks, section_from_demo, write_bench  # noqa: E402


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    section = _bench.run(quick=args.quick, verbose=not args.quiet)
    res = section.results
    jpath, hpath = write_bench("aggregate", res, sections=[section_from_demo(section)], out_dir=args.out)
    checks = [c for part in ("p1", "dp", "priorboost", "logistic", "speed") for c in res[part]["checks"]]
    print(format_checks(checks))
    print(f"results: {jpath}\nreport: {hpath}")
    return 0 if all(c["pass"] is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
