import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from teraml.aggregate import Aggregator, make_bags  # noqa: E402
from teraml.aggregate.nn import BagBatchSampler, InterpolatedBagLoss, interpolated_bag_loss  # noqa: E402
from teraml.datasets import make_aggregate_classification, make_aggregate_regression  # noqa: E402


def test_package_does_not_import_torch():
    code = "import teraml.aggregate, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("loss", ["squared", "log"])
@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_loss_matches_numpy_objective(loss, rho):
    if loss == "squared":
        X, y, _ = make_aggregate_regression(300, 3, random_state=0)
    else:
        X, y, _ = make_aggregate_classification(300, 3, random_state=0)
    rel = Aggregator(y).release(make_bags(6, n_samples=300, random_state=0))
    w = np.array([0.3, -0.2, 0.4])
    eta = X @ w
    f = eta if loss == "squared" else 1 / (1 + np.exp(-eta))
    k = rel.bag_sizes
    fbar = np.bincount(rel.bags, weights=f) / k
    if loss == "squared":
        inst = ((rel.y - f) ** 2).sum()
        bag = (k * (rel.bag_means - fbar) ** 2).sum()
    else:
        def ll(t, p):
            return -(t * np.log(p) + (1 - t) * np.log(1 - p))

        inst = ll(rel.y, f).sum()
        bag = (k * ll(rel.bag_means, fbar)).sum()
    expected = ((1 - rho) * bag + rho * inst) / 300
    got = interpolated_bag_loss(torch.tensor(eta), torch.tensor(rel.y), torch.tensor(rel.bags + 7), rho=rho,
                                loss=loss)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    mod = InterpolatedBagLoss(rho, loss, reduction="sum")
    assert float(mod(torch.tensor(eta), torch.tensor(rel.y), torch.tensor(rel.bags))) == pytest.approx(expected * 300)


def test_sampler_batches_hold_whole_bags_and_training_matches_closed_form():
    from teraml.aggregate import AggregateRegressor

    X, y, _ = make_aggregate_regression(2000, 4, snr=2.0, random_state=1)
    rel = Aggregator(y).release(make_bags(8, n_samples=2000, random_state=1))
    sampler = BagBatchSampler(rel.bags, 25, generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in sampler:
        ids = rel.bags[batch]
        for b in np.unique(ids):
            assert (rel.bags == b).sum() == (ids == b).sum()  # whole bag in this batch
        seen.extend(batch)
    assert sorted(seen) == list(range(2000)) and len(sampler) == 10
    ref = AggregateRegressor(rho=0.2).fit(X, rel.y, bags=rel.bags)
    Xt, yt, bt = torch.tensor(X), torch.tensor(rel.y), torch.tensor(rel.bags)
    lin = torch.nn.Linear(4, 1, dtype=torch.float64)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss_v = interpolated_bag_loss(lin(Xt).squeeze(-1), yt, bt, rho=0.2)
        loss_v.backward()
        return loss_v

    opt.step(closure)
    assert np.allclose(lin.weight.detach().numpy().ravel(), ref.coef_, atol=1e-5)


def test_nn_validation():
    t = torch.zeros(4)
    with pytest.raises(ValueError, match=r"rho must be a float in \[0, 1\] \(0 = bag-level, 1 = instance-level\); got 2"):
        interpolated_bag_loss(t, t, torch.zeros(4, dtype=torch.long), rho=2)
    with pytest.raises(ValueError, match="loss must be one of 'squared', 'log'; got 'l1'"):
        interpolated_bag_loss(t, t, torch.zeros(4, dtype=torch.long), loss="l1")
    with pytest.raises(TypeError, match="bags must be a torch.Tensor; got list"):
        interpolated_bag_loss(t, t, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="bags_per_batch must be an int >= 1; got 0"):
        BagBatchSampler([0, 1], 0)
