"""The CI subset of the selection benchmark (spec 6(c)): fixed seeds, so the results are deterministic."""

from teraml.selection import _bench


def test_ci_subset_of_the_benchmark_passes():
    res = _bench._run(quick=True, verbose=False)
    ids = {c["id"] for c in res["checks"]}
    assert {"E1d", "E1b", "E1k", "E2n", "E3"} <= ids
    failed = [c for c in res["checks"] if c["pass"] is False]
    assert not failed, failed
    sec = _bench._section(res, True)
    assert len(sec.figures) == 2 and sec.tables
