"""Learning from aggregate responses (ICLR'24) and PriorBoost (ICML'24): bags and label-DP releases.

Implemented so far: bag construction (:func:`make_bags`, random and optimal prior-sorted) and the
label-DP release of bag means with per-row accounting (:class:`LabelDP`, :class:`Aggregator`,
:class:`AggregateRelease`, :class:`PrivacyLedger`). The estimators (``AggregateRegressor``,
``PriorBoost``) are not built yet.

>>> import numpy as np
>>> from teraml.aggregate import Aggregator, LabelDP, make_bags
>>> y = np.random.default_rng(0).normal(size=1000)
>>> bags = make_bags(10, n_samples=1000, random_state=0)
>>> rel = Aggregator(y, mechanism=LabelDP(1.0, (-4, 4)), random_state=0).release(bags)
>>> rel.bag_means.shape
(100,)
"""

from teraml.aggregate.bags import make_bags
from teraml.aggregate.estimators import AggregateRegressor, aggregated_loss
from teraml.aggregate.privacy import AggregateRelease, Aggregator, LabelDP, PrivacyLedger, PrivacyWarning

__all__ = [
    "AggregateRegressor",
    "aggregated_loss",
    "make_bags",
    "LabelDP",
    "Aggregator",
    "AggregateRelease",
    "PrivacyLedger",
    "PrivacyWarning",
]
