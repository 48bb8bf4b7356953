"""TeraHAC engines: ``LocalEngine`` (in-process, numba, threads over partitions)."""

from teraml.hac.engines.local import LocalEngine

__all__ = ["LocalEngine"]
