"""Streaming KV-cache compression for long-context decoding (torch): SubGen and same-budget baselines.

``teraml.kvcache.hf`` (the transformers ``Cache``) loads lazily.
"""

from teraml.kvcache._common import weighted_attention
from teraml.kvcache.baselines import H2OKV, METHODS, ExactKV, KeyNormKV, SinkWindowKV, UniformKV, make_kv
from teraml.kvcache.subgen import PRESETS, SubGenKV, stream_attention, subgen_attention

__all__ = ["SubGenKV", "PRESETS", "stream_attention", "subgen_attention", "ExactKV", "SinkWindowKV", "H2OKV",
           "UniformKV", "KeyNormKV", "METHODS", "make_kv", "weighted_attention"]


def __getattr__(name):
    # ``teraml.kvcache.hf`` (and its SubGenCache, BaselineCache, enable) imports transformers: load it on first use
    if name in ("hf", "SubGenCache", "BaselineCache", "enable"):
        import importlib

        hf = importlib.import_module("teraml.kvcache.hf")
        return hf if name == "hf" else getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
