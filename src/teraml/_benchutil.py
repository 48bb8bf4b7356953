"""Small helpers shared by the components' benchmarks (``teraml.<package>._bench``): one timer, one check record.

Benchmarks live inside the algorithm packages so that ``teraml bench NAME`` runs from an installed wheel
and ``teraml demo`` can run a quick version of them; those packages may not import ``teraml.report``, so
the shared pieces sit here.

>>> check("S1", "speed-up", 0.5, 1.0, 2.0, ">= 1.5", True)["pass"]
True
>>> t = measure(lambda: sum(range(1000)), lambda: sorted(range(1000)), repeats=3)
>>> len(t.seconds), t.results[0]
(2, 499500)
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["check", "measure", "best_time", "Timing"]


def check(cid, criterion, ours, baseline, ratio, threshold, passed, note="") -> dict:
    """One acceptance-check record; ``passed=None`` means reported only."""
    return {"id": cid, "criterion": criterion, "ours": ours, "baseline": baseline, "ratio": ratio,
            "threshold": threshold, "pass": None if passed is None else bool(passed), "note": note}


@dataclasses.dataclass
class Timing:
    """What :func:`measure` found: per function, the statistic of its times, all times and its last result."""

    seconds: list[float]
    times: list[list[float]]
    results: list[Any]


def measure(*fns: Callable[[], Any], repeats: int = 3, min_total: float = 0.0, max_repeats: int = 25,
            warmup: bool = True, once_over: float | None = None, sync: Callable[[], None] | None = None,
            statistic: str = "min") -> Timing:
    """The one benchmark timer: run ``fns`` alternately (a, b, a, b, ...) so that drift hits them alike.

    Each function gets a warm-up call first (unless ``warmup=False``, when the first timed call also
    gives the result), then at least ``repeats`` timed calls, more while the total time is below
    ``min_total`` seconds (up to ``max_repeats``). ``once_over``: when the first timed round takes longer
    than this many seconds, stop after it (long runs are timed once). ``sync`` is called after every
    call (``torch.cuda.synchronize`` on a GPU). ``statistic``: ``"min"`` (the best time, robust to noise on
    a shared machine) or ``"median"``.
    """
    if statistic not in ("min", "median"):
        raise ValueError(f"statistic must be one of 'min', 'median'; got {statistic!r}")
    results: list[Any] = [None] * len(fns)

    def call(i):
        results[i] = fns[i]()
        if sync is not None:
            sync()

    if warmup:
        for i in range(len(fns)):
            call(i)
    times: list[list[float]] = [[] for _ in fns]
    while True:
        for i in range(len(fns)):
            t0 = time.perf_counter()
            call(i)
            times[i].append(time.perf_counter() - t0)
        done = len(times[0])
        if once_over is not None and done == 1 and sum(t[0] for t in times) > once_over:
            break
        if done >= max_repeats or (done >= repeats and sum(map(sum, times)) >= min_total):
            break
    reduce = min if statistic == "min" else statistics.median
    return Timing([reduce(t) for t in times], times, results)


def best_time(fn: Callable[[], Any], repeats: int = 3, min_total: float = 0.0, max_repeats: int = 25) -> float:
    """The best of at least ``repeats`` timed calls of ``fn`` after a warm-up (:func:`measure` for one)."""
    return measure(fn, repeats=repeats, min_total=min_total, max_repeats=max_repeats).seconds[0]


def peak_rss_gb() -> float:
    """This process's peak resident memory in GiB: ``VmHWM`` of /proc/self/status (``ru_maxrss`` would also count
    the parent's memory from before ``exec`` in a subprocess), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 2**20
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    scale = 2**30 if sys.platform == "darwin" else 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
