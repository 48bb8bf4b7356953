"""HyperAttention benchmark (spec §6(b)): quality Q1-Q7, speed S1-S4 against torch SDPA, peers, tiny LM L0-L5.

    python bench/hyperattention.py [--quick] [--long]     # or: teraml bench hyperattention [--quick]

Writes results/hyperattention.json and results/hyperattention/index.html (tables + plots).
``--quick`` caps n at 8192 and runs a short LM check; ``--long`` adds n=65536 to the speed sweep.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

from teraml.attention import _bench  # noqa: E402
from teraml.report import bench_main  # noqa: E402


def _long(parser):
    parser.add_argument("--long", action="store_true", help="add n=65536 to the speed sweep (slow)")


def main() -> int:
    return bench_main("hyperattention", lambda a: _bench.run(quick=a.quick, verbose=not a.quiet, long=a.long),
                      __doc__.splitlines()[0], _long)


if __name__ == "__main__":
    sys.exit(main())
