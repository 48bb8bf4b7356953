"""Data selection: clustering-based sensitivity sampling (Axiotis et al., ICML 2024) and its baselines.

:func:`select` is the one entry point: a small weighted subset whose weighted average loss matches the full
data's, for k + m loss queries. :class:`SensitivitySampler` re-draws from one clustering, :func:`active_select`
runs the warm-start protocol, and :mod:`teraml.selection.baselines` holds uniform, k-center greedy and the
uncertainty scores. :func:`select_spark` runs :func:`select` on a Spark DataFrame (``teraml[spark]``; pyspark is
imported only when it is called).

>>> import numpy as np
>>> from teraml.selection import select
>>> X = np.random.default_rng(0).normal(size=(500, 4))
>>> sel = select(X, 40, loss_fn=lambda idx: np.abs(X[idx, 0]), random_state=0)
>>> sel.indices.dtype, bool(np.all(sel.weights > 0))
(dtype('int64'), True)
"""

from teraml.selection._selection import Selection
from teraml.selection.active import active_select
from teraml.selection.regression import SubsampledLinearRegression, leverage_scores
from teraml.selection.sensitivity import SensitivitySampler, select

__all__ = ["select", "SensitivitySampler", "Selection", "active_select", "SubsampledLinearRegression",
           "leverage_scores", "select_spark"]


def __getattr__(name):
    # select_spark is imported on first use: ``import teraml.selection`` stays free of the Spark code
    if name == "select_spark":
        from teraml.selection.spark import select_spark

        return select_spark
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
