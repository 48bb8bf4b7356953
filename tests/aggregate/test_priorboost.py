import math
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from teraml.aggregate import (
    AggregateRegressor,
    Aggregator,
    LabelDP,
    PriorBoost,
    PrivacyWarning,
    make_bags,
    suggest_bag_size,
)
from teraml.datasets import make_aggregate_regression


def _data(n=6000, d=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    coef = rng.standard_normal(d) * math.sqrt(4 / d)
    y = X @ coef + 0.5 * rng.standard_normal(n)
    Xt = rng.standard_normal((4000, d))
    yt = Xt @ coef + 0.5 * rng.standard_normal(4000)
    return X, y, Xt, yt


def _mse(model, Xt, yt):
    return float(((model.predict(Xt) - yt) ** 2).mean())


# ------------------------------------------------------------------------------------- C6 / C7


def test_c6_privacy_spent():
    X, y, _, _ = _data(3000, 5)
    mech = LabelDP(1.0, (-6, 6))
    d = PriorBoost(10, n_rounds=3, resample="disjoint", mechanism=mech, random_state=0).fit(X, y)
    assert d.privacy_spent_ == (1.0, 0.0) and len(d.releases_) == 3
    f = PriorBoost(10, n_rounds=3, resample="full", mechanism=mech, random_state=0).fit(X, y)
    assert f.privacy_spent_ == pytest.approx((3.0, 0.0))
    text = f.ledger_.statement()
    assert "epsilon 1" in text and "clip [-6, 6]" in text and "adjacency" in text and "composition" in text


def test_c7_full_without_noise_raises_before_any_query():
    X, y, _, _ = _data(600, 3)
    calls = []

    def oracle(bags):
        calls.append(1)
        return Aggregator(y).release(bags)

    with pytest.raises(ValueError, match="resample='full' without DP noise re-aggregates every label 4 times, so labels "
                                         r"can be reconstructed; set mechanism, use resample='disjoint', or pass "
                                         "allow_reaggregation=True"):
        PriorBoost(4, n_rounds=4, resample="full").fit(X, y)
    agg = Aggregator(y)
    with pytest.raises(ValueError, match="re-aggregates every label 4 times"):
        PriorBoost(4, n_rounds=4, resample="full").fit(X, oracle=agg)
    assert agg.ledger.summary()["n_releases"] == 0
    with pytest.warns(PrivacyWarning, match="allow_reaggregation=True: labels aggregated 4 times without noise"):
        pb = PriorBoost(4, n_rounds=4, resample="full", allow_reaggregation=True, random_state=0).fit(X, y)
    assert pb.privacy_spent_[0] == math.inf
    assert not calls


def test_oracle_returning_means_and_type_errors():
    X, y, _, _ = _data(2000, 4)
    agg = Aggregator(y, mechanism=LabelDP(2.0, (-12, 12)), random_state=0)
    pb = PriorBoost(10, n_rounds=2, random_state=0).fit(X, oracle=lambda b: agg.release(b).bag_means)
    assert pb.privacy_spent_[0] == math.inf  # plain means are counted as noiseless
    with pytest.raises(TypeError, match="oracle must return an AggregateRelease or 100 bag means; got str"):
        PriorBoost(10, n_rounds=2, random_state=0).fit(X, oracle=lambda b: "nope")


@pytest.mark.parametrize(
    "kwargs, fit_kwargs, exc, match",
    [
        ({"k": 0}, {}, ValueError, "k must be an int >= 1; got 0"),
        ({"k": 4, "n_rounds": 0}, {}, ValueError, "n_rounds must be an int >= 1; got 0"),
        ({"k": 4, "resample": "all"}, {}, ValueError, "resample must be 'disjoint' or 'full'; got 'all'"),
        ({"k": 4, "prior_rho": 1.5}, {}, ValueError, r"prior_rho must be a float in \[0, 1\]; got 1.5"),
        ({"k": 4}, {"both": True}, ValueError, "pass exactly one of y or oracle; got both"),
        ({"k": 4}, {"neither": True}, ValueError, "pass exactly one of y or oracle; got neither"),
        ({"k": 4, "mechanism": LabelDP(1.0, (0, 1))}, {"oracle_only": True}, ValueError,
         "mechanism applies only with y; an oracle adds its own noise"),
        ({"k": 200, "n_rounds": 4}, {}, ValueError, "resample='disjoint' leaves 150 rows per round, fewer than k=200"),
        ({"k": 700}, {}, ValueError, r"k must be <= n_samples \(600\); got k=700"),
    ],
)
def test_c11_priorboost_messages(kwargs, fit_kwargs, exc, match):
    X, y, _, _ = _data(600, 3)
    pb = PriorBoost(**kwargs)
    with pytest.raises(exc, match=match):
        if fit_kwargs.get("both"):
            pb.fit(X, y, oracle=Aggregator(y))
        elif fit_kwargs.get("neither"):
            pb.fit(X)
        elif fit_kwargs.get("oracle_only"):
            pb.fit(X, oracle=Aggregator(y))
        else:
            pb.fit(X, y)


def test_disjoint_warns_when_chunks_hold_few_bags():
    X, y, _, _ = _data(1000, 20)
    with pytest.warns(UserWarning, match="resample='disjoint' gives each round 25 bags for 20 features; the prior "
                                         "will be noisy"):
        PriorBoost(10, n_rounds=4, random_state=0).fit(X, y)


# ------------------------------------------------------------------------------------- quality smoke (CI)


def test_q7_q8_prior_bags_vs_random_bags_smoke():
    X, y, Xt, yt = _data()
    full = _mse(LinearRegression().fit(X, y), Xt, yt)
    coef_true = np.linalg.lstsq(X, y, rcond=None)[0]
    prior_bags = make_bags(20, method="prior", scores=X @ coef_true)
    rel = Aggregator(y).release(prior_bags)
    oracle = _mse(AggregateRegressor(rho=1.0).fit(X, rel.y, bags=rel.bags), Xt, yt)
    rel_r = Aggregator(y).release(make_bags(20, n_samples=X.shape[0], random_state=0))
    rand = _mse(AggregateRegressor(rho=1.0).fit(X, rel_r.y, bags=rel_r.bags), Xt, yt)
    assert oracle <= 1.05 * full
    assert rand >= 3 * full


def test_q9_q10_priorboost_full_smoke():
    X, y, Xt, yt = _data()
    full = _mse(LinearRegression().fit(X, y), Xt, yt)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pb = PriorBoost(10, n_rounds=10, resample="full", allow_reaggregation=True, random_state=0).fit(X, y)
    assert any(issubclass(x.category, PrivacyWarning) for x in w)
    assert _mse(pb, Xt, yt) <= 1.10 * full
    spread = [r["score_spread"] for r in pb.rounds_]
    assert spread[0] >= 0.9 and min(spread[7:]) <= 0.01


# ------------------------------------------------------------------------------------- C12


def test_c12_suggest_bag_size():
    for eps, expected in ((0.5, 8), (5.0, 1), (50.0, 1)):
        k, risk = suggest_bag_size(5000, 50, epsilon=eps, clip=(-4, 4), snr=1, label_std=math.sqrt(2),
                                   estimator="instance")
        assert k == expected and risk.shape == (7,)
    k, risk = suggest_bag_size(5000, 50, epsilon=0.5, clip=(-4, 4), estimator="bag")
    assert k == 1
    k, _ = suggest_bag_size(5000, 50, epsilon=1.0, clip=(-4, 4), mechanism="gaussian", delta=1e-6)
    assert k >= 1
    with pytest.raises(ValueError, match="estimator must be one of 'bag', 'instance', 'interpolating'; got 'x'"):
        suggest_bag_size(100, 2, epsilon=1.0, clip=(0, 1), estimator="x")
    with pytest.raises(ValueError, match="epsilon must be a float > 0; got 0"):
        suggest_bag_size(100, 2, epsilon=0, clip=(0, 1))
    with pytest.raises(ValueError, match=r"delta must be None for 'laplace', in \(0, 1\) for 'gaussian'; got None"):
        suggest_bag_size(100, 2, epsilon=1.0, clip=(0, 1), mechanism="gaussian")


def test_priorboost_generator_and_predict_shapes():
    X, y, coef = make_aggregate_regression(3000, 5, noise=0.5, random_state=0)
    pb = PriorBoost(10, n_rounds=3, mechanism=LabelDP(2.0, (-8, 8)), random_state=0).fit(X, y)
    assert pb.predict(X[:7]).shape == (7,) and len(pb.rounds_) == 3 and pb.prior_ is not None


def test_priorboost_is_reproducible():
    # defect 11: the first prior's rho='auto' folds were unseeded, so two fits with one random_state differed
    # (its 4 check_estimator failures are covered by tests/test_estimators.py)
    X, y, _, _ = _data(2000, 5)
    a = PriorBoost(10, n_rounds=3, random_state=3).fit(X, y)
    b = PriorBoost(10, n_rounds=3, random_state=3).fit(X, y)
    assert np.array_equal(a.estimator_.coef_, b.estimator_.coef_) and a.prior_.rho_ == b.prior_.rho_
