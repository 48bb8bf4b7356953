"""Learning from aggregate responses (ICLR'24) and PriorBoost (ICML'24): bags and label-DP releases.

* :class:`AggregateRegressor`: linear / logistic models from bag aggregates, interpolating bag- and
  instance-level losses (``rho``, or ``rho="auto"`` chosen from aggregates only);
* :class:`PriorBoost`: adaptive prior-sorted bags that approach full-label quality;
* :func:`make_bags`, :class:`LabelDP`, :class:`Aggregator` (with a per-row :class:`PrivacyLedger`),
  :func:`suggest_bag_size`, :func:`aggregated_loss` (a scikit-learn scorer).

>>> import numpy as np
>>> from teraml.aggregate import Aggregator, LabelDP, make_bags
>>> y = np.random.default_rng(0).normal(size=1000)
>>> bags = make_bags(10, n_samples=1000, random_state=0)
>>> rel = Aggregator(y, mechanism=LabelDP(1.0, (-4, 4)), random_state=0).release(bags)
>>> rel.bag_means.shape
(100,)
"""

from teraml.aggregate.bags import make_bags
from teraml.aggregate.estimators import AggregateRegressor, aggregated_loss, suggest_bag_size
from teraml.aggregate.priorboost import PriorBoost
from teraml.aggregate.privacy import AggregateRelease, Aggregator, LabelDP, PrivacyLedger, PrivacyWarning

__all__ = [
    "AggregateRegressor",
    "PriorBoost",
    "suggest_bag_size",
    "aggregated_loss",
    "make_bags",
    "LabelDP",
    "Aggregator",
    "AggregateRelease",
    "PrivacyLedger",
    "PrivacyWarning",
]
