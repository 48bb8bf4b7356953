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
from teraml.report import bench_parser, format_checks, section_from_demo, write_bench  # noqa: E402


def main() -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="add n=65536 to the speed sweep (slow)")
    args = parser.parse_args()
    section = _bench.run(quick=args.quick, verbose=not args.quiet, long=args.long)
    res = section.results
    jpath, hpath = write_bench("hyperattention", res, sections=[section_from_demo(section)], out_dir=args.out)
    checks = [c for part in ("quality", "speed", "lm") for c in res[part]["checks"]]
    print(format_checks(checks))
    print(f"results: {jpath}\nreport: {hpath}")
    return 0 if all(c["pass"] is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
