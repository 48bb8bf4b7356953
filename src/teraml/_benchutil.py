"""Small helpers shared by the components' benchmarks (``teraml.<component>._bench``).

Benchmarks live inside algorithm packages so that ``teraml demo`` can run a quick version of them;
those packages may not import ``teraml.report``, so the shared pieces sit here.

>>> check("S1", "speed-up", 0.5, 1.0, 2.0, ">= 1.5", True)["pass"]
True
"""

from __future__ import annotations

import time

__all__ = ["check", "best_time"]


def check(cid, criterion, ours, baseline, ratio, threshold, passed, note="") -> dict:
    """One acceptance-check record; ``passed=None`` means reported only."""
    return {"id": cid, "criterion": criterion, "ours": ours, "baseline": baseline, "ratio": ratio,
            "threshold": threshold, "pass": None if passed is None else bool(passed), "note": note}


def best_time(fn, repeats=3, min_total=0.0, max_repeats=25) -> float:
    """Best of at least ``repeats`` runs after a warm-up; short functions repeat until ``min_total`` s."""
    fn()  # warm-up
    times = []
    while len(times) < repeats or (sum(times) < min_total and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
