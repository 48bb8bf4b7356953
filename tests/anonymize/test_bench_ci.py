"""The CI subset of the anonymize benchmark: fixed seeds, so every check is deterministic."""

from teraml.anonymize import _bench


def test_ci_subset_of_the_benchmark_passes():
    res = _bench._run(quick=True, verbose=False)
    ids = {c["id"] for c in res["checks"]}
    assert {"E1", "E1max", "E1km", "E2", "E2r", "B2", "B3", "B3drop", "B3k", "B4r", "B4kd", "B4p", "B4t"} <= ids
    # speed thresholds live in the benchmark, not in tests: here the timings only have to be there
    speed = {"B4a", "B4r", "B4kd", "B4p", "B4t"}
    failed = [c for c in res["checks"] if c["pass"] is False and c["id"] not in speed]
    assert not failed, failed
    assert all(c["ratio"] > 0 for c in res["checks"] if c["id"] in speed)
    # every peer that is installed ran on the same splits, and the release is k-anonymous by both checkers
    releases = res["b3"]["diabetes"]["releases"]
    assert {"full", "teraml MDAV", "teraml kd", "drop S", "Laplace eps=1", "Gaussian, matched distortion"} <= set(releases)
    assert releases["teraml MDAV"]["k_ours"] >= 10
    sec = _bench._section(res, True)
    assert len(sec.figures) == 2 and len(sec.tables) == 3


def test_information_loss_of_a_release():
    import numpy as np

    X = np.array([[0.0], [2.0], [10.0], [12.0]])
    assert _bench.information_loss(X, X) == 0.0
    assert _bench.information_loss(X, np.full_like(X, X.mean())) == 1.0
    assert 0 < _bench.information_loss(X, np.array([[1.0], [1.0], [11.0], [11.0]])) < 0.05
