"""HAC benchmark (partial; spec terahac §6.2): TeraHAC vs exact HAC and scikit-learn on offline graphs.

    python bench/hac.py [--quick]     # or: teraml bench hac [--quick]

Writes results/hac.json and results/hac/index.html.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

from teraml.hac import _bench  # noqa: E402
from teraml.report import bench_main  # noqa: E402


def main() -> int:
    return bench_main("hac", lambda a: _bench.run(quick=a.quick, verbose=not a.quiet), __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
