"""Aggregate-learning benchmark (spec §6(b)): Q1-Q12 quality, S1-S5 speed, rebuilt LLP baselines.

    python bench/aggregate.py [--quick]     # or: teraml bench aggregate [--quick]

Writes results/aggregate.json and results/aggregate/index.html.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

from teraml.aggregate import _bench  # noqa: E402
from teraml.report import bench_main  # noqa: E402


def main() -> int:
    return bench_main("aggregate", lambda a: _bench.run(quick=a.quick, verbose=not a.quiet), __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
