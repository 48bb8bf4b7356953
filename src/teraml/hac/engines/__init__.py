"""TeraHAC engines: the contract (:class:`Engine`), ``LocalEngine`` (in-process, numba, threads) and, in
``teraml.hac.engines.spark`` (imported on demand: it needs pyspark), ``SparkEngine``.

>>> from teraml.hac.engines import Engine, LocalEngine
>>> isinstance(LocalEngine(n_jobs=2), Engine)
True
"""

from teraml.hac.engines._base import Engine, RoundStats
from teraml.hac.engines.local import LocalEngine

__all__ = ["Engine", "RoundStats", "LocalEngine"]
