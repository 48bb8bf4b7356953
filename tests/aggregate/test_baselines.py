import numpy as np

from teraml.aggregate import Aggregator, make_bags
from teraml.aggregate._baselines import (
    LLPEM,
    easyllp_fit,
    feature_kmeans_bags,
    feature_value_bags,
    pseudo_labels,
)
from teraml.datasets import make_aggregate_classification


def test_pseudo_labels_are_unbiased_per_row_mean():
    y = np.array([1.0, 0, 1, 1, 0, 0])
    rel = Aggregator(y).release(np.array([0, 0, 0, 1, 1, 1]))
    t = pseudo_labels(rel.y, rel.bags)
    assert np.isclose(t.mean(), y.mean()) and np.allclose(t, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_llpem_and_easyllp_learn_something():
    X, y, _ = make_aggregate_classification(3000, 5, random_state=0)
    rel = Aggregator(y).release(make_bags(5, n_samples=3000, random_state=0))
    em = LLPEM().fit(X, rel.y, rel.bags)
    acc = (em.predict(X) == y).mean()
    assert acc > 0.7
    e = easyllp_fit(X, rel.y, rel.bags, loss="log")
    assert ((e.predict(X) > 0.5) == y).mean() > 0.7


def test_llpem_zero_positive_bags_stay_negative():
    X, y, _ = make_aggregate_classification(400, 3, random_state=1)
    bags = make_bags(4, n_samples=400, random_state=1)
    rel = Aggregator(y).release(bags)
    em = LLPEM(max_iter=3).fit(X, rel.y, rel.bags)
    assert em.n_iter_ >= 1


def test_feature_bags_are_partitions():
    X = np.random.default_rng(0).normal(size=(203, 4))
    b = feature_kmeans_bags(X, 10)
    assert (b >= 0).all() and sorted(np.bincount(b).tolist()) == [10] * 19 + [13]
    v = feature_value_bags(X, 5)
    assert (v >= 0).all() and np.bincount(v).min() >= 1
