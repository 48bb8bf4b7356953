"""Python's own standard-library source text as a deterministic, offline byte corpus."""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
import zlib
from pathlib import Path

import numpy as np

from teraml._validation import InstanceOf, Satisfies, check_choice, check_param

__all__ = ["stdlib_text", "stdlib_files", "unigram_entropy", "SEPARATOR"]

#: Bytes placed between two files of the corpus.
SEPARATOR = b"\n\0\n"
_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_SPLITS = ("train", "validation")


def _split_of(relpath: str) -> str:
    return "validation" if zlib.crc32(relpath.encode("utf-8")) % 10 == 0 else "train"


@functools.lru_cache(maxsize=1)
def stdlib_files() -> tuple[tuple[str, str], ...]:
    """All ``(relative_path, split)`` pairs of the corpus, sorted by relative path.

    The files are the running interpreter's standard-library ``*.py`` files
    (``sysconfig.get_paths()["stdlib"]``), without ``test/``, ``tests/``, ``idle_test/`` and
    ``site-packages``. A file is in ``"validation"`` iff ``zlib.crc32(relpath) % 10 == 0``.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
        for fn in filenames:
            if fn.endswith(".py"):
                rel = Path(dirpath, fn).relative_to(root).as_posix()
                out.append(rel)
    out.sort()
    return tuple((rel, _split_of(rel)) for rel in out)


@functools.lru_cache(maxsize=2)
def _stdlib_text_cached(split: str) -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [(root / rel).read_bytes() for rel, s in stdlib_files() if s == split]
    if not parts:
        raise RuntimeError(f"no standard-library *.py files found under {root}")
    return SEPARATOR.join(parts)


def stdlib_text(split: str = "train") -> bytes:
    """Python's standard-library source files as one deterministic byte string.

    Parameters
    ----------
    split : {"train", "validation"}
        About 90% of the files go to ``"train"``, the rest (``crc32(relpath) % 10 == 0``) to
        ``"validation"``. Files are sorted by relative path and joined with ``b"\\n\\0\\n"``.

    The text depends only on the interpreter's version (CPython 3.11 gives about 11 MB of train and
    1.2 MB of validation bytes). Nothing is downloaded.

    >>> text = stdlib_text("validation")
    >>> isinstance(text, bytes) and len(text) > 100_000
    True
    """
    check_choice("split", split, _SPLITS)
    return _stdlib_text_cached(split)


def stdlib_text_sha256(split: str = "train") -> str:
    """SHA-256 hex digest of :func:`stdlib_text` for ``split`` (recorded in checkpoint manifests)."""
    return hashlib.sha256(stdlib_text(split)).hexdigest()


def unigram_entropy(data: bytes | np.ndarray) -> float:
    """Empirical entropy of the byte distribution of ``data``, in bits per byte.

    >>> unigram_entropy(b"abab")
    1.0
    """
    check_param("data", data, [InstanceOf((bytes, bytearray, memoryview)),
                               Satisfies(lambda a: a.dtype == np.uint8, "a uint8 numpy array", types=np.ndarray),
                               "bytes or a uint8 numpy array"])
    arr = data.ravel() if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), dtype=np.uint8)
    if arr.size == 0:
        raise ValueError("data must be non-empty; got 0 bytes")
    counts = np.bincount(arr, minlength=256).astype(np.float64)
    p = counts[counts > 0] / arr.size
    return float(-(p * np.log2(p)).sum())
