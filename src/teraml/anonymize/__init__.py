"""Look-alike clustering: k-anonymous sensitive columns that keep model quality, with its risk theory.

:class:`LookAlikeAnonymizer` replaces each row's sensitive columns by the mean of a group of at least
``k`` similar rows (MDAV, a recursive kd split, or size-repaired k-means), keeping the other columns,
the labels and the row order. :func:`k_anonymity` checks the release, and :func:`lookalike_risk` gives
the asymptotic risk of least squares trained on full, look-alike and sensitive-dropped data
(Javanmard and Mirrokni, *Anonymous Learning via Look-Alike Clustering*, NeurIPS 2023).

The guarantee covers the sensitive columns only: every released sensitive tuple is shared by at least
``k`` rows. It is not differential privacy (``k - 1`` known members reveal the k-th, and two releases
can be intersected).

>>> import numpy as np
>>> from teraml.anonymize import LookAlikeAnonymizer, k_anonymity
>>> X = np.column_stack([[0., 1, 2, 10, 11, 12], [5., 6, 7, 8, 9, 10]])
>>> Xt = LookAlikeAnonymizer([0], k=3).fit_transform(X)
>>> Xt[:, 0].tolist(), k_anonymity(Xt, [0])
([1.0, 1.0, 1.0, 11.0, 11.0, 11.0], 3)
"""

from teraml.anonymize._anonymizer import LookAlikeAnonymizer
from teraml.anonymize._check import k_anonymity
from teraml.anonymize._theory import lookalike_risk

__all__ = ["LookAlikeAnonymizer", "k_anonymity", "lookalike_risk"]
