import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teraml.aggregate import Aggregator, LabelDP, PrivacyLedger, PrivacyWarning, make_bags
from teraml.aggregate.bags import bag_sse
from teraml.aggregate.privacy import _gaussian_delta, analytic_gaussian_sigma, normalize_bags
from teraml.datasets import make_aggregate_classification, make_aggregate_regression

# ------------------------------------------------------------------------------------- C4: bags


def _brute_force_sse(s, k):
    """Smallest within-bag SSE over all partitions into n//k bags of size k (one of size k + n%k)."""
    n = s.size
    m, r = n // k, n % k
    sizes = [k] * (m - 1) + [k + r]
    best = math.inf

    def rec(remaining, sizes_left, acc):
        nonlocal best
        if acc >= best:
            return
        if not sizes_left:
            best = min(best, acc)
            return
        size, rest = sizes_left[0], sizes_left[1:]
        first = remaining[0]  # canonical: the smallest remaining row goes into the next bag
        for combo in itertools.combinations(remaining[1:], size - 1):
            group = (first, *combo)
            vals = s[list(group)]
            left = [i for i in remaining if i not in group]
            rec(left, rest, acc + float(((vals - vals.mean()) ** 2).sum()))

    for perm_sizes in set(itertools.permutations(sizes)):
        rec(list(range(n)), list(perm_sizes), 0.0)
    return best


@pytest.mark.parametrize("n, k", [(6, 2), (7, 2), (7, 3), (8, 3), (9, 4), (10, 3), (10, 4), (5, 5), (6, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_c4_prior_bags_are_optimal(n, k, seed):
    s = np.random.default_rng(seed).standard_normal(n) * 3
    ids = make_bags(k, method="prior", scores=s)
    sizes = np.bincount(ids)
    assert sizes.sum() == n and sizes.size == n // k
    assert sorted(sizes.tolist()) == sorted([k] * (n // k - 1) + [k + n % k])
    assert bag_sse(s, ids) == pytest.approx(_brute_force_sse(s, k), abs=1e-9)


def test_c4_remainder_goes_where_it_costs_least():
    # sorted scores: a tight group of 5 at the top and spread-out values below; k=2 leaves one extra row,
    # which belongs in the tight group
    s = np.array([0.0, 10.0, 20.0, 30.0, 100.0, 100.1, 100.2])
    ids = make_bags(2, method="prior", scores=s)
    assert len(set(ids[4:].tolist())) == 1 and np.bincount(ids)[ids[4]] == 3
    # file order does not matter: shuffling the rows shuffles the bags with them
    perm = np.random.default_rng(0).permutation(7)
    ids2 = make_bags(2, method="prior", scores=s[perm])
    assert bag_sse(s[perm], ids2) == pytest.approx(bag_sse(s, ids))


def test_c4_monotone_transform_gives_same_bags():
    """With n divisible by k the bags are runs of the sorted order, so any increasing transform gives them.

    (With a remainder, the one larger bag goes where the SSE *in the given scale* is smallest, which a
    nonlinear transform such as the sigmoid can move.)
    """
    rng = np.random.default_rng(3)
    eta = rng.standard_normal(1000) * 2
    a = make_bags(10, method="prior", scores=eta)
    b = make_bags(10, method="prior", scores=1 / (1 + np.exp(-eta)))
    assert np.array_equal(a, b)


def test_random_bags_partition_and_determinism():
    ids = make_bags(4, n_samples=103, random_state=5)
    assert ids.dtype == np.int64 and ids.min() == 0 and ids.max() == 24
    assert sorted(np.bincount(ids).tolist()) == [4] * 24 + [7]
    assert np.array_equal(ids, make_bags(4, n_samples=103, random_state=5))
    assert not np.array_equal(ids, make_bags(4, n_samples=103, random_state=6))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 40), seed=st.integers(0, 10_000), prior=st.booleans())
def test_c9_bags_always_form_a_partition(n, k, seed, prior):
    if k > n:
        with pytest.raises(ValueError, match=rf"k must be <= n_samples \({n}\); got k={k}"):
            make_bags(k, n_samples=n)
        return
    if prior:
        ids = make_bags(k, method="prior", scores=np.random.default_rng(seed).standard_normal(n))
    else:
        ids = make_bags(k, n_samples=n, random_state=seed)
    sizes = np.bincount(ids)
    assert ids.shape == (n,) and sizes.sum() == n and sizes.size == n // k
    assert sizes.min() >= k and sizes.max() <= 2 * k - 1 if k > 1 else sizes.max() == 1


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: make_bags(0, n_samples=5), ValueError, "k must be an int >= 1; got 0"),
        (lambda: make_bags(2.5, n_samples=5), TypeError, "k must be an int >= 1; got float 2.5"),
        (lambda: make_bags(2, method="sorted", n_samples=5), ValueError,
         "method must be one of 'random', 'prior'; got 'sorted'"),
        (lambda: make_bags(2), ValueError, "method='random' needs n_samples; got None"),
        (lambda: make_bags(2, method="prior"), ValueError, r"method='prior' needs scores of shape \(n_samples,\); got None"),
        (lambda: make_bags(2, method="prior", scores=np.zeros((3, 2))), ValueError,
         r"method='prior' needs scores of shape \(n_samples,\)"),
        (lambda: make_bags(9, n_samples=5), ValueError, r"k must be <= n_samples \(5\); got k=9"),
    ],
)
def test_c11_bag_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------------------------- C5: mechanisms


def test_c5_laplace_std():
    k, eps, clip = 4, 0.7, (-2.0, 2.0)
    n_bags = 100_000
    agg = Aggregator(np.zeros(n_bags * k), mechanism=LabelDP(eps, clip), random_state=0)
    rel = agg.release(np.repeat(np.arange(n_bags), k))
    expected = math.sqrt(2) * 4.0 / (k * eps)
    assert rel.bag_means.std() == pytest.approx(expected, rel=0.03)
    assert np.allclose(rel.noise_var, expected**2)


@pytest.mark.parametrize("eps", [0.1, 0.5, 0.9, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6])
def test_c5_analytic_gaussian(eps, delta):
    sigma = analytic_gaussian_sigma(eps, delta)
    assert abs(_gaussian_delta(sigma, eps) - delta) <= 1e-9
    assert _gaussian_delta(sigma * (1 - 1e-6), eps) > delta  # the smallest such sigma
    if eps < 1:
        classic = math.sqrt(2 * math.log(1.25 / delta)) / eps
        assert sigma <= classic
    mech = LabelDP(eps, (0, 2), mechanism="gaussian", delta=delta)
    assert mech.scale([4]) == pytest.approx(sigma * 2 / 4)
    assert mech.noise_var([4]) == pytest.approx((sigma * 2 / 4) ** 2)


def test_c5_dp_accounting_cross_check():
    dp_accounting = pytest.importorskip("dp_accounting")
    eps, delta = 1.0, 1e-5
    sigma = analytic_gaussian_sigma(eps, delta)
    pld = dp_accounting.pld.privacy_loss_distribution.from_gaussian_mechanism(sigma)
    assert pld.get_epsilon_for_delta(delta) == pytest.approx(eps, rel=0.01)


# ------------------------------------------------------------------------------------- C6 / C7: ledger


def test_c6_ledger_composition_and_statement():
    y = np.random.default_rng(0).normal(size=100)
    mech = LabelDP(0.5, (-3, 3))
    agg = Aggregator(y, mechanism=mech, random_state=1)
    first = np.where(np.arange(100) < 50, np.arange(100) // 5, -1)
    second = np.where(np.arange(100) >= 50, np.arange(100) // 5, -1)
    agg.release(first)
    agg.release(second)
    assert agg.ledger.total() == (0.5, 0.0)  # disjoint rows: parallel composition
    agg.release(make_bags(5, n_samples=100, random_state=2))
    assert agg.ledger.total() == (1.0, 0.0)  # every row twice: sequential composition
    text = agg.ledger.statement()
    for word in ("epsilon 0.5", "clip [-3, 3]", "replace-one-label adjacency", "composition", "(1, 0)-label-DP"):
        assert word in text
    s = agg.ledger.summary()
    assert s["n_releases"] == 3 and s["max_releases_per_row"] == 2 and s["noiseless_reaggregated_rows"] == 0


def test_release_values_and_clipping():
    y = np.array([1.0, 2.0, 3.0, 10.0, -7.0, 0.5])
    rel = Aggregator(y).release(np.array([5, 5, 9, 9, -1, 9]))
    assert rel.bags.tolist() == [0, 0, 1, 1, -1, 1]  # ids 5 and 9 in sorted order
    assert rel.bag_means.tolist() == [1.5, 13.5 / 3] and rel.bag_sizes.tolist() == [2, 3]
    assert np.isnan(rel.y[4]) and rel.y[0] == 1.5
    assert rel.epsilon == math.inf and "no differential-privacy guarantee" in rel.privacy_statement()
    agg = Aggregator(y, mechanism=LabelDP(1e9, (0, 4)), random_state=0)  # huge epsilon: noise ~ 0
    with pytest.warns(UserWarning, match=r"40.0% of labels lie outside clip=\(0, 4\) and were clipped"):
        rel = agg.release(np.array([0, 0, 1, 1, 1, -1]))
    assert rel.n_clipped == 2
    assert np.allclose(rel.bag_means, [1.5, (3 + 4 + 0) / 3], atol=1e-6)
    assert "labels clipped to [0, 4]" in rel.privacy_statement()


def test_c7_noiseless_reaggregation_refused_then_warned():
    y = np.arange(12.0)
    agg = Aggregator(y)
    agg.release(make_bags(4, n_samples=12, random_state=0))
    with pytest.raises(ValueError, match="12 rows would be aggregated again with a noiseless release involved, which "
                                         "lets labels be solved for; add a DP mechanism or pass allow_reaggregation=True"):
        agg.release(make_bags(4, n_samples=12, random_state=1))
    noisy = Aggregator(y, mechanism=LabelDP(1.0, (0, 12)), random_state=0)
    noisy.release(make_bags(4, n_samples=12, random_state=0))
    noisy.release(make_bags(4, n_samples=12, random_state=1))  # both noisy: allowed
    assert noisy.ledger.total() == (2.0, 0.0)
    opt = Aggregator(y, allow_reaggregation=True)
    opt.release(make_bags(4, n_samples=12, random_state=0))
    with pytest.warns(PrivacyWarning, match="allow_reaggregation=True: labels aggregated 2 times without noise"):
        opt.release(make_bags(4, n_samples=12, random_state=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.release(make_bags(4, n_samples=12, random_state=2))  # warned once only
    assert opt.ledger.total()[0] == math.inf
    assert opt.ledger.summary()["noiseless_reaggregated_rows"] == 12
    assert "can be reconstructed" in opt.ledger.statement()


def test_c7_noiseless_rounds_reveal_every_label():
    """Pitfall 7: at n=120, k=4 the stacked ranks are 30, 59, 88, 117, 120; then labels are solvable."""
    n, k = 120, 4
    y = np.random.default_rng(0).normal(size=n)
    agg = Aggregator(y, allow_reaggregation=True, random_state=0)
    rows, rhs, ranks = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        for t in range(5):
            rel = agg.release(make_bags(k, n_samples=n, random_state=t))
            A = np.zeros((rel.bag_sizes.size, n))
            A[rel.bags, np.arange(n)] = 1.0
            rows.append(A)
            rhs.append(rel.bag_means * rel.bag_sizes)
            ranks.append(int(np.linalg.matrix_rank(np.vstack(rows))))
    assert ranks == [30, 59, 88, 117, 120]
    solved = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    assert np.allclose(solved, y, atol=1e-8)


def test_normalize_bags_and_string_ids():
    ids, m = normalize_bags(np.array(["b", "a", "b", "c"]))
    assert ids.tolist() == [1, 0, 1, 2] and m == 3
    ids, m = normalize_bags(np.array([10**12, 5, 10**12]))  # sparse ids: the np.unique path
    assert ids.tolist() == [1, 0, 1] and m == 2
    ids, m = normalize_bags(np.array([3.0, 3.0, -1.0]))
    assert ids.tolist() == [0, 0, -1] and m == 1


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: LabelDP(0, (0, 1)), ValueError, "epsilon must be a float > 0; got 0"),
        (lambda: LabelDP(-1.0, (0, 1)), ValueError, r"epsilon must be a float > 0; got -1.0"),
        (lambda: LabelDP("1", (0, 1)), TypeError, "epsilon must be a float > 0; got str '1'"),
        (lambda: LabelDP(1.0, (1, 0)), ValueError, r"clip must be a pair \(lo, hi\) of finite floats, lo < hi; got \(1, 0\)"),
        (lambda: LabelDP(1.0, 3), ValueError, r"clip must be a pair \(lo, hi\) of finite floats, lo < hi; got 3"),
        (lambda: LabelDP(1.0, (0, math.inf)), ValueError, "clip must be a pair"),
        (lambda: LabelDP(1.0, (0, 1), mechanism="exp"), ValueError, "mechanism must be 'laplace' or 'gaussian'; got 'exp'"),
        (lambda: LabelDP(1.0, (0, 1), delta=1e-5), ValueError,
         r"delta must be None for 'laplace', in \(0, 1\) for 'gaussian'; got 1e-05"),
        (lambda: LabelDP(1.0, (0, 1), mechanism="gaussian"), ValueError,
         r"delta must be None for 'laplace', in \(0, 1\) for 'gaussian'; got None"),
        (lambda: LabelDP(1.0, (0, 1), mechanism="gaussian", delta=1.5), ValueError, "delta must be None for 'laplace'"),
        (lambda: Aggregator(np.ones(3), mechanism="laplace"), TypeError, "mechanism must be a LabelDP or None; got str"),
        (lambda: Aggregator(np.array([1.0, np.nan])).release(np.array([0, 0])), ValueError,
         "y must be finite on bagged rows; got 1 non-finite values"),
        (lambda: Aggregator(np.ones(3)).release(np.array([0, -2, 1])), ValueError,
         r"bags must hold integer or string ids \(>= 0, or -1 to leave a row out\); got -2"),
        (lambda: Aggregator(np.ones(3)).release(np.array([0, 0.5, 1])), ValueError,
         r"bags must hold integer or string ids \(>= 0, or -1 to leave a row out\); got 0.5"),
        (lambda: Aggregator(np.ones(3)).release(np.array([0, 1])), ValueError, r"bags must have one id per row \(3\); got 2"),
    ],
)
def test_c11_privacy_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_ledger_empty_and_per_sample():
    led = PrivacyLedger(3)
    assert led.total() == (0.0, 0.0)
    led.record(np.array([0, -1, 0]), "gaussian", 1.0, 1e-6, (0, 1), np.array([2]))
    assert led.epsilon_per_sample().tolist() == [1.0, 0.0, 1.0]
    assert led.delta_per_sample().tolist() == [1e-6, 0.0, 1e-6]


def test_generators():
    X, y, coef = make_aggregate_regression(2000, 10, snr=4.0, noise=0.5, random_state=0)
    assert X.shape == (2000, 10) and float(coef @ coef) == pytest.approx(4.0 * 0.25)
    resid = y - X @ coef
    assert resid.std() == pytest.approx(0.5, rel=0.1)
    Xc, yc, cc = make_aggregate_classification(3000, 4, coef_norm=3.0, random_state=0)
    assert np.linalg.norm(cc) == pytest.approx(3.0) and set(np.unique(yc)) == {0.0, 1.0}
    with pytest.raises(ValueError, match="n_features must be an int >= 1; got 0"):
        make_aggregate_regression(10, 0)
    with pytest.raises(ValueError, match="snr must be a float >= 0; got -1.0"):
        make_aggregate_regression(10, 2, snr=-1.0)


def test_prior_bags_with_ties_use_the_stable_order():
    s = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    ids = make_bags(2, method="prior", scores=s)
    assert ids.tolist() == [1, 0, 2, 0, 2, 1]  # stable: equal scores keep their row order
    assert np.array_equal(ids, make_bags(2, method="prior", scores=s.copy()))


@pytest.mark.parametrize(
    "bags, match",
    [
        (np.array([1, "1", 2], dtype=object), r"all of one kind; got 1 and '1'"),
        (np.array([0, None, 1], dtype=object), "got None at row 1"),
        (np.array(["a", "-1", "b"]), "got the string '-1' at row 1"),
        (np.array([0.0, 1.5]), "got 1.5"),
        (np.zeros((3, 1), dtype=int), r"bags must be a 1-D array of ids \(one per row\); got shape \(3, 1\)"),
    ],
)
def test_mixed_or_missing_bag_ids_are_refused(bags, match):
    # defect 9: 1 and "1" formed one bag, None became a bag named "None", "-1" was a bag
    with pytest.raises(ValueError, match=match):
        normalize_bags(bags)


def test_object_ids_of_one_kind_still_work():
    assert normalize_bags(np.array([3, 1, 3, -1], dtype=object))[0].tolist() == [1, 0, 1, -1]
    assert normalize_bags(np.array(["b", "a", "b"], dtype=object))[0].tolist() == [1, 0, 1]


def test_nan_labels_on_rows_never_released_are_fine():
    # defect 10: Aggregator refused NaN even on rows left out of every release
    y = np.array([1.0, 2.0, np.nan, 4.0])
    rel = Aggregator(y).release(np.array([0, 0, -1, 1]))
    assert rel.bag_means.tolist() == [1.5, 4.0]
    with pytest.raises(ValueError, match="y must be finite on bagged rows; got 1 non-finite values"):
        Aggregator(y).release(np.array([0, 0, 1, 1]))
