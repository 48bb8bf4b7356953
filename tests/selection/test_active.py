"""active_select: the warm start, the rounds, what train_fn and loss_fn see, and the unbiased total."""

import warnings

import numpy as np
import pytest

from teraml.selection.active import active_select


def _setup(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    loss = np.abs(X[:, 0]) + 0.1
    log = {"train": [], "loss": [], "embed": 0}

    def train_fn(idx, w):
        log["train"].append((idx.copy(), w.copy()))
        return len(log["train"])          # the "model" is the call number

    def loss_fn(model, idx):
        log["loss"].append((model, idx.copy()))
        return loss[idx]

    return X, loss, log, train_fn, loss_fn


@pytest.mark.parametrize("n_rounds", [1, 2, 3])
def test_rounds_calls_and_roles(n_rounds):
    X, loss, log, train_fn, loss_fn = _setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sel, model = active_select(X, 100, train_fn=train_fn, loss_fn=loss_fn, n_rounds=n_rounds, n_clusters=5,
                                   random_state=0)
    assert len(log["train"]) == 1 + n_rounds and model == 1 + n_rounds
    assert len(log["loss"]) == n_rounds
    warm = log["train"][0][0]
    assert warm.size == 20 and np.all(log["train"][0][1] == 1)          # k' = round(0.2 * 100), unweighted
    seen = set(warm)
    for r, (m, idx) in enumerate(log["loss"]):
        assert m == r + 1                                                 # the model after the previous step
        assert not (set(idx) & seen)                                      # only unselected rows are queried
        seen |= set(log["train"][r + 1][0])
    last_idx, last_w = log["train"][-1]
    assert set(last_idx) == set(sel.indices) and np.all(last_w == 1)    # trained on everything, weights 1
    assert np.unique(sel.indices).size == sel.indices.size and len(sel) <= 100
    roles = dict(zip(*np.unique(sel.role, return_counts=True)))
    assert roles["representative"] == 5 and roles["warm_start"] >= 20
    assert np.all(sel.weights[sel.role == "warm_start"] == 1)
    assert sel.n_loss_queries == 5 * n_rounds


def test_total_is_unbiased_given_the_earlier_rounds():
    X, loss, _, train_fn, loss_fn = _setup(400, 1)
    est = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for r in range(400):
            sel, _ = active_select(X, 60, train_fn=lambda i, w: None, loss_fn=lambda m, i: loss[i], n_rounds=2,
                                   n_clusters=4, random_state=r)
            est.append(sel.estimate_mean(loss[sel.indices])[0])
    est = np.array(est)
    assert abs(est.mean() - loss.mean()) <= 4 * est.std(ddof=1) / np.sqrt(est.size)


def test_selection_weights_and_embeddings():
    X, loss, log, train_fn, loss_fn = _setup()
    calls = []

    def embed_fn(model):
        calls.append(model)
        return X * (1 + model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sel, _ = active_select(X, 80, train_fn=train_fn, loss_fn=loss_fn, embed_fn=embed_fn, n_rounds=2,
                               train_weights="selection", n_clusters=4, random_state=3)
    assert calls == [1, 2]
    assert not np.all(log["train"][-1][1] == 1)     # inverse-probability weights passed on


@pytest.mark.parametrize("kw, exc, match", [
    ({"budget": 0}, ValueError, r"budget must be an integer in \[1, 800\]; got 0"),
    ({"initial_fraction": 1.0}, ValueError, r"initial_fraction must be a float in \[0, 1\); got 1"),
    ({"n_rounds": 0}, ValueError, r"n_rounds must be an integer in \[1, 100\]; got 0"),
    ({"train_weights": "ipw"}, ValueError, "train_weights must be 'none' or 'selection'; got 'ipw'"),
    ({"train_fn": None}, TypeError, "train_fn must be a callable; got NoneType"),
    ({"embed_fn": 3}, TypeError, "embed_fn must be a callable or None; got int"),
    ({"score": "kmeans"}, TypeError, "active_select sets score itself"),
    ({"embed_fn": lambda m: np.ones((5, 2))}, ValueError, r"embed_fn must return one row per item \(800\)"),
    ({"budget": 10, "n_rounds": 5}, ValueError,
     r"the smallest of the 5 rounds selects 1 items \(budget 10, initial_fraction 0.2\): budget must be >= "
     r"n_clusters \+ 1 = 6"),
    ({"foo": 1}, TypeError, "unexpected keyword argument 'foo'"),
])
def test_validation(kw, exc, match):
    X, loss, log, train_fn, loss_fn = _setup()
    args = {"budget": 100, "train_fn": train_fn, "loss_fn": loss_fn, "n_clusters": 5, **kw}
    budget = args.pop("budget")
    with pytest.raises(exc, match=match):
        active_select(X, budget, **args)
    assert log["train"] == [] or "embed_fn" in kw    # nothing was trained before the error
