"""Models shared by the benchmarks: ``teraml.models.tinylm``, the tiny byte-level Llama.

Importing this package does not import torch; ``from teraml.models import tinylm`` does when a
function of it is called.
"""

__all__ = ["tinylm"]


def __getattr__(name):
    if name == "tinylm":
        import importlib

        return importlib.import_module("teraml.models.tinylm")
    raise AttributeError(f"module 'teraml.models' has no attribute {name!r}")
