"""Doctest collection of ``src/teraml``: the modules that need pyspark are skipped where it is not installed."""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("pyspark") is None:
    collect_ignore_glob += ["src/teraml/hac/engines/spark.py", "src/teraml/selection/spark.py"]
if importlib.util.find_spec("transformers") is None:
    collect_ignore_glob += ["src/teraml/kvcache/hf.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob += ["src/teraml/kvcache/*.py"]
