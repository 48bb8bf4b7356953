"""TeraHAC engines: the contract (:class:`Engine`) and ``LocalEngine`` (in-process, numba, threads).

>>> from teraml.hac.engines import Engine, LocalEngine
>>> isinstance(LocalEngine(n_jobs=2), Engine)
True
"""

from teraml.hac.engines._base import Engine, RoundStats
from teraml.hac.engines.local import LocalEngine

__all__ = ["Engine", "RoundStats", "LocalEngine"]
