"""HAC benchmark (partial; spec terahac §6.2): TeraHAC vs exact HAC and scikit-learn on offline graphs.

    python bench/hac.py [--quick]     # or: teraml bench hac [--quick]

Writes results/hac.json and results/hac/index.html.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

from teraml.hac import _bench  # noqa: E402
from teraml.report import bench_parser, format_checks, section_from_demo, write_bench  # noqa: E402


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    section = _bench.run(quick=args.quick, verbose=not args.quiet)
    jpath, hpath = write_bench("hac", section.results, sections=[section_from_demo(section)], out_dir=args.out)
    print(format_checks(section.results["checks"]))
    print(f"results: {jpath}\nreport: {hpath}")
    return 0 if all(c["pass"] is not False for c in section.results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
