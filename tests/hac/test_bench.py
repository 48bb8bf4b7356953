"""CI smoke of the HAC benchmark (spec terahac §6.3): the quick run end to end, checks well-formed."""

import matplotlib

matplotlib.use("Agg")

from teraml.hac import _bench  # noqa: E402


def test_quick_benchmark_runs_and_reports_every_check():
    sec = _bench.run(quick=True, verbose=False)
    res = sec.results
    ids = {c["id"] for c in res["checks"]}
    assert {"Q2", "Q3", "Q5", "Q6", "R1", "R2", "R3", "R4", "S1", "E2"} <= ids
    by = {(c["id"], c["criterion"]): c for c in res["checks"]}
    # quality on the planted partition and rounds are not noisy: they must hold even in the quick run
    assert all(c["pass"] for (cid, _), c in by.items() if cid in ("Q3", "R1", "R2", "R3", "R4"))
    rows = {(r[0], r[1]): r for r in res["rows"]}
    assert rows[("D1", "exact_hac")][2] > 0.85                      # exact graph average linkage on digits
    assert rows[("D1", "sklearn connectivity average (k=10; other objective)")][2] < 0.1   # pitfall 1
    assert sec.figures and sec.tables
