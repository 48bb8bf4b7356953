
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, Ridge

from teraml.aggregate import AggregateRegressor, Aggregator, aggregated_loss, make_bags
from teraml.aggregate.estimators import _log_loss_terms, _sigmoid
from teraml.datasets import make_aggregate_classification, make_aggregate_regression


def unequal_bags(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 9)))
    sizes[-1] -= sum(sizes) - n
    if sizes[-1] == 0:
        sizes.pop()
    ids = np.repeat(np.arange(len(sizes)), sizes)
    return ids[rng.permutation(n)]


def release(y, bags):
    return Aggregator(y).release(bags)


# ------------------------------------------------------------------------------------- C1


def test_c1_instance_loss_identity_with_unequal_sizes():
    X, y, _ = make_aggregate_regression(500, 4, random_state=0)
    bags = unequal_bags(500)
    rel = release(y, bags)
    f = X @ np.array([0.3, -0.1, 0.2, 0.5]) + 0.1
    k = rel.bag_sizes
    fbar = np.bincount(rel.bags, weights=f) / k
    L_inst = float(((rel.y - f) ** 2).sum())
    L_bag = float((k * (rel.bag_means - fbar) ** 2).sum())
    R = float(((f - fbar[rel.bags]) ** 2).sum())
    assert abs(L_inst - L_bag - R) <= 1e-10 * L_inst


# ------------------------------------------------------------------------------------- C2


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_c2_closed_form_special_cases(alpha):
    X, y, _ = make_aggregate_regression(600, 5, random_state=1)
    bags = unequal_bags(600, 1)
    rel = release(y, bags)
    k = rel.bag_sizes.astype(float)
    xbar = np.stack([np.bincount(rel.bags, weights=X[:, j]) for j in range(5)], 1) / k[:, None]
    r0 = Ridge(alpha=alpha).fit(xbar, rel.bag_means, sample_weight=k)
    e0 = AggregateRegressor(rho=0.0, alpha=alpha).fit(X, rel.y, bags=rel.bags)
    assert np.allclose(e0.coef_, r0.coef_, atol=1e-8) and abs(e0.intercept_ - r0.intercept_) < 1e-8
    r1 = Ridge(alpha=alpha).fit(X, rel.y)
    e1 = AggregateRegressor(rho=1.0, alpha=alpha).fit(X, rel.y, bags=rel.bags)
    assert np.allclose(e1.coef_, r1.coef_, atol=1e-8) and abs(e1.intercept_ - r1.intercept_) < 1e-8
    rr = Ridge(alpha=alpha).fit(X, y)
    for rho in (0.0, 0.4, 1.0):
        ek = AggregateRegressor(rho=rho, alpha=alpha).fit(X, y)  # k = 1
        assert np.allclose(ek.coef_, rr.coef_, atol=1e-8)
    es = AggregateRegressor(rho=0.3, alpha=alpha).fit(sp.csr_matrix(X), rel.y, bags=rel.bags)
    ed = AggregateRegressor(rho=0.3, alpha=alpha).fit(X, rel.y, bags=rel.bags)
    assert np.allclose(es.coef_, ed.coef_, atol=1e-8)


# ------------------------------------------------------------------------------------- C3


def test_c3_log_loss_references():
    X, yb, _ = make_aggregate_classification(800, 3, random_state=0)
    bags = make_bags(4, n_samples=800, random_state=0)
    rel = release(yb, bags)
    alpha = 0.5
    # rho = 1: logistic regression on duplicated rows with weights (y~, 1 - y~)
    Xd = np.vstack([X, X])
    yd = np.concatenate([np.ones(800), np.zeros(800)])
    wd = np.concatenate([rel.y, 1 - rel.y])
    ref = LogisticRegression(C=1 / (2 * alpha), tol=1e-10, max_iter=5000).fit(Xd, yd, sample_weight=wd)
    est = AggregateRegressor(loss="log", rho=1.0, alpha=alpha).fit(X, rel.y, bags=rel.bags)
    assert np.allclose(est.coef_, ref.coef_.ravel(), atol=1e-4) and abs(est.intercept_ - ref.intercept_[0]) < 1e-4
    # k = 1: plain logistic regression
    ref1 = LogisticRegression(C=1 / (2 * alpha), tol=1e-10, max_iter=5000).fit(X, yb)
    est1 = AggregateRegressor(loss="log", rho=0.3, alpha=alpha).fit(X, yb)
    assert np.allclose(est1.coef_, ref1.coef_.ravel(), atol=1e-4)


def _bagged(X, rel):
    from teraml.aggregate.estimators import _Bagged, _Design

    return _Bagged(_Design(X, True), rel.bag_means, rel.bags, rel.bag_sizes.size)


@pytest.mark.parametrize("loss", ["log", "squared"])
@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_c3_objective_gradient_finite_differences(rho, loss):
    from teraml.aggregate.estimators import interpolated_objective

    X, yb, _ = make_aggregate_classification(120, 3, random_state=1)
    rel = release(yb, make_bags(5, n_samples=120, random_state=1))
    bag = _bagged(X, rel)
    theta = np.array([0.3, -0.2, 0.5, 0.1])
    v, g = interpolated_objective(theta, bag, rho, 0.2, loss)
    num = np.zeros(4)
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-6
        num[j] = (interpolated_objective(theta + e, bag, rho, 0.2, loss)[0]
                  - interpolated_objective(theta - e, bag, rho, 0.2, loss)[0]) / 2e-6
    assert np.allclose(g, num, rtol=1e-5, atol=1e-5)
    vm, gm = interpolated_objective(theta, bag, rho, 0.2, loss, mean=True)
    assert vm == pytest.approx(v / 120) and np.allclose(gm, g / 120)


@pytest.mark.parametrize("rho", [0.0, 0.1, 1.0])
def test_closed_form_minimises_the_squared_objective(rho):
    from teraml.aggregate.estimators import interpolated_objective

    X, y, _ = make_aggregate_regression(300, 4, snr=2.0, random_state=3)
    rel = release(y, make_bags(6, n_samples=300, random_state=3))
    est = AggregateRegressor(rho=rho, alpha=0.5).fit(X, rel.y, bags=rel.bags)
    theta = np.r_[est.coef_, est.intercept_]
    _, g = interpolated_objective(theta, _bagged(X, rel), rho, 0.5, "squared")
    assert np.abs(g).max() < 1e-8 * max(1.0, np.abs(X).sum())


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_log_fit_is_a_stationary_point_of_the_objective(rho):
    from teraml.aggregate.estimators import interpolated_objective

    X, yb, _ = make_aggregate_classification(400, 3, random_state=2)
    rel = release(yb, make_bags(8, n_samples=400, random_state=2))
    est = AggregateRegressor(loss="log", rho=rho, alpha=0.1).fit(X, rel.y, bags=rel.bags)
    _, g = interpolated_objective(np.r_[est.coef_, est.intercept_], _bagged(X, rel), rho, 0.1, "log", mean=True)
    assert np.abs(g).max() < 1e-6


# ------------------------------------------------------------------------------------- C8


def test_c8_aggregated_losses_are_unbiased():
    rng = np.random.default_rng(0)
    n, k = 400, 8
    X, y, coef = make_aggregate_regression(n, 3, random_state=0)
    pred = X @ (coef * 0.5)
    true_mse = float(((y - pred) ** 2).mean())
    Xc, yc, cc = make_aggregate_classification(n, 3, random_state=0)
    pc = _sigmoid(Xc @ (cc * 0.5))
    true_ll = float(_log_loss_terms(yc, pc).mean())
    est_sq, est_ll = [], []
    for _ in range(200):
        b = make_bags(k, n_samples=n, random_state=int(rng.integers(1 << 30)))
        est_sq.append(aggregated_loss(release(y, b).y, pred, bags=b))
        est_ll.append(aggregated_loss(release(yc, b).y, pc, bags=b, loss="log"))
    for est, truth in ((est_sq, true_mse), (est_ll, true_ll)):
        se = np.std(est) / np.sqrt(len(est))
        assert abs(np.mean(est) - truth) <= 3 * se, (np.mean(est), truth, se)


# ------------------------------------------------------------------------------------- C9


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 10))
def test_c9_rho_monotonicity(seed, k):
    X, y, _ = make_aggregate_regression(300, 3, snr=1.0, random_state=seed)
    rel = release(y, make_bags(k, n_samples=300, random_state=seed))
    Rs, Lb = [], []
    for rho in (0.0, 0.01, 0.1, 0.5, 1.0):
        e = AggregateRegressor(rho=rho).fit(X, rel.y, bags=rel.bags)
        f = e.predict(X)
        fbar = np.bincount(rel.bags, weights=f) / rel.bag_sizes
        Rs.append(float(((f - fbar[rel.bags]) ** 2).sum()))
        Lb.append(float((rel.bag_sizes * (rel.bag_means - fbar) ** 2).sum()))
    assert all(a >= b - 1e-9 * max(1.0, a) for a, b in zip(Rs, Rs[1:]))
    assert all(a <= b + 1e-9 * max(1.0, b) for a, b in zip(Lb, Lb[1:]))


# ------------------------------------------------------------------------------------- auto


def test_auto_beats_both_ends_at_low_snr():
    X, y, coef = make_aggregate_regression(2000, 20, snr=0.25, random_state=3)
    rel = release(y, make_bags(10, n_samples=2000, random_state=3))
    risks = {}
    for rho in (0.0, 1.0, "auto"):
        e = AggregateRegressor(rho=rho, random_state=0).fit(X, rel.y, bags=rel.bags)
        risks[rho] = float(((e.coef_ - coef) ** 2).sum())
    assert risks["auto"] <= min(risks[0.0], risks[1.0])
    e = AggregateRegressor(random_state=0).fit(X, rel.y, bags=rel.bags)
    assert 0 < e.rho_ < 1 and e.cv_scores_.shape == (21,) and e.rho_grid_.shape == (21,)


def test_auto_log_runs_and_predicts_probabilities():
    X, yb, _ = make_aggregate_classification(1000, 4, random_state=2)
    rel = release(yb, make_bags(5, n_samples=1000, random_state=2))
    e = AggregateRegressor(loss="log", rho_grid=4, cv=3, random_state=0).fit(X, rel.y, bags=rel.bags)
    p = e.predict(X)
    assert ((p > 0) & (p < 1)).all() and e.rho_ in e.rho_grid_


def test_dropped_rows_and_nan_targets():
    X, y, _ = make_aggregate_regression(200, 3, random_state=0)
    bags = make_bags(4, n_samples=200, random_state=0)
    bags[:20] = -1
    rel = release(y, bags)
    assert np.isnan(rel.y[:20]).all()
    e = AggregateRegressor(rho=0.5).fit(X, rel.y, bags=rel.bags)
    e2 = AggregateRegressor(rho=0.5).fit(X[20:], rel.y[20:], bags=rel.bags[20:])
    assert np.allclose(e.coef_, e2.coef_)


# ------------------------------------------------------------------------------------- C10


def test_c10_metadata_routing_with_group_kfold():
    import sklearn
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold, cross_validate

    X, y, _ = make_aggregate_regression(600, 4, random_state=0)
    rel = release(y, make_bags(6, n_samples=600, random_state=0))
    with sklearn.config_context(enable_metadata_routing=True):
        est = AggregateRegressor(rho=0.5).set_fit_request(bags=True)
        scorer = make_scorer(aggregated_loss, greater_is_better=False).set_score_request(bags=True)
        out = cross_validate(est, X, rel.y, cv=GroupKFold(3), scoring=scorer,
                             params={"bags": rel.bags, "groups": rel.bags})
    assert np.isfinite(out["test_score"]).all() and (out["test_score"] <= 0.5).all()


def test_cv_by_bag_recipe_and_a_missing_bags_is_an_error():
    # defect 8: with routing on, passing only groups silently fitted one bag per row
    import sklearn
    from sklearn.model_selection import GroupKFold, cross_validate

    X, y, _ = make_aggregate_regression(600, 4, random_state=0)
    rel = release(y, make_bags(6, n_samples=600, random_state=0))
    with sklearn.config_context(enable_metadata_routing=True):
        est = AggregateRegressor(rho=0.5).set_fit_request(bags=True)
        out = cross_validate(est, X, rel.y, cv=GroupKFold(3), params={"bags": rel.bags, "groups": rel.bags},
                             return_estimator=True)
        assert all(e.n_bags_ in (66, 67) for e in out["estimator"])   # 100 whole bags, 2 of 3 folds each
        with pytest.raises(ValueError, match=r"bags is requested \(set_fit_request\(bags=True\)\) but was not "
                                             "passed"):
            cross_validate(est, X, rel.y, cv=GroupKFold(3), params={"groups": rel.bags}, error_score="raise")
    # without routing the same recipe is cross_validate(..., groups=bags, params={"bags": bags})
    out = cross_validate(AggregateRegressor(rho=0.5), X, rel.y, cv=GroupKFold(3), groups=rel.bags,
                         params={"bags": rel.bags}, return_estimator=True)
    assert all(e.n_bags_ in (66, 67) for e in out["estimator"])


def test_bags_of_shape_n_by_1_get_a_clear_message():
    # defect 10: bags (n, 1) were reported as "got X: 442, y: 442, bags: 442"
    X, y, _ = make_aggregate_regression(40, 2, random_state=0)
    with pytest.raises(ValueError, match=r"bags must be a 1-D array of ids \(one per row\); got shape \(40, 1\)"):
        AggregateRegressor(rho=1.0).fit(X, y, bags=np.zeros((40, 1), dtype=int))


# ------------------------------------------------------------------------------------- C11


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "hinge"}, "loss must be one of 'squared', 'log'; got 'hinge'"),
        ({"rho": 2.0}, r"rho must be 'auto' or a float in \[0, 1\] \(0 = bag-level, 1 = instance-level\); got 2.0"),
        ({"rho": "best"}, r"rho must be 'auto' or a float in \[0, 1\]"),
        ({"alpha": -1.0}, "alpha must be a float >= 0; got -1.0"),
        ({"rho_grid": 1}, r"rho_grid must be an int >= 2 or a 1-D array in \[0, 1\]; got 1"),
        ({"rho_grid": [0.5, 2.0]}, r"rho_grid must be an int >= 2 or a 1-D array in \[0, 1\]; got \[0.5, 2.0\]"),
        ({"cv": 1}, "cv must be an int >= 2; got 1"),
    ],
)
def test_c11_parameter_messages(kwargs, match):
    X, y, _ = make_aggregate_regression(50, 2, random_state=0)
    with pytest.raises(ValueError, match=match):
        AggregateRegressor(**kwargs).fit(X, y)


def test_c11_data_messages():
    X, y, _ = make_aggregate_regression(40, 2, random_state=0)
    bags = make_bags(4, n_samples=40, random_state=0)
    with pytest.raises(ValueError, match="X, y and bags must have the same number of rows; got X: 40, y: 40, bags: 39"):
        AggregateRegressor(rho=1.0).fit(X, y, bags=bags[:39])
    with pytest.raises(ValueError, match=r"y must be constant within each bag \(the bag's aggregate\); bag \d+ has 4 distinct values"):
        AggregateRegressor(rho=1.0).fit(X, y, bags=bags)
    rel = release(y, bags)
    yy = rel.y.copy()
    yy[rel.bags == 0] = np.nan
    with pytest.raises(ValueError, match="y must be finite on bagged rows; got 4 non-finite values"):
        AggregateRegressor(rho=1.0).fit(X, yy, bags=rel.bags)
    with pytest.raises(ValueError, match=r"rho=0 needs more bags \(10\) than parameters \(11\); use rho > 0 or alpha > 0"):
        Xw = np.random.default_rng(0).normal(size=(40, 10))
        AggregateRegressor(rho=0.0).fit(Xw, rel.y, bags=rel.bags)
    with pytest.raises(ValueError, match=r"rho='auto' needs at least cv=5 bags; got 2"):
        AggregateRegressor().fit(X, release(y, make_bags(20, n_samples=40, random_state=0)).y,
                                 bags=make_bags(20, n_samples=40, random_state=0))
    with pytest.warns(UserWarning, match=r"2 bag targets outside \[0, 1\] for loss='log' were clipped"):
        yl = np.repeat([1.2, 0.5, -0.1, 0.3], 10)
        AggregateRegressor(loss="log", rho=1.0).fit(X, yl, bags=np.repeat(np.arange(4), 10))
    with pytest.raises(ValueError, match=r"bags must hold integer or string ids"):
        AggregateRegressor(rho=1.0).fit(X, y, bags=np.full(40, -3))


# ------------------------------------------------------------------------------------- CI smoke of Q3 / Q6


def test_q3_smoke_instance_vs_bag_by_snr():
    def risks(snr, k, seed):
        X, y, coef = make_aggregate_regression(2000, 50, snr=snr, random_state=seed)
        rel = release(y, make_bags(k, n_samples=2000, random_state=seed))
        b = AggregateRegressor(rho=0.0).fit(X, rel.y, bags=rel.bags)
        i = AggregateRegressor(rho=1.0).fit(X, rel.y, bags=rel.bags)
        return (float(((b.coef_ - coef) ** 2).sum()), float(((i.coef_ - coef) ** 2).sum()))

    bag, inst = risks(0.25, 20, 0)
    assert inst < bag
    bag, inst = risks(4.0, 5, 0)
    assert bag < inst


def test_q6_smoke_no_noise_means_k_star_one():
    from teraml.aggregate import LabelDP  # noqa: F401  (documented: eps=inf means no mechanism)

    X, y, coef = make_aggregate_regression(5000, 50, random_state=7)
    out = []
    for k in (1, 2, 4, 8):
        rel = release(y, make_bags(k, n_samples=5000, random_state=7))
        e = AggregateRegressor(rho=1.0).fit(X, rel.y, bags=rel.bags)
        out.append(float(((e.coef_ - coef) ** 2).sum()))
    assert int(np.argmin(out)) == 0
