"""Loaders of the small datasets bundled inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits", "load_diabetes", "load_breast_cancer", "load_wine"]


def _bundled(loader_name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skd

    X, y = getattr(skd, loader_name)(return_X_y=True)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits: ``X`` (1797, 64) float64 in [0, 16], ``y`` (1797,) int in 0..9.

    >>> X, y = load_digits()
    >>> X.shape, int(y.max())
    ((1797, 64), 9)
    """
    return _bundled("load_digits")


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """The diabetes regression data: ``X`` (442, 10) float64 (scaled), ``y`` (442,) float64.

    >>> X, y = load_diabetes()
    >>> X.shape, y.dtype
    ((442, 10), dtype('float64'))
    """
    return _bundled("load_diabetes")


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """Wisconsin breast cancer: ``X`` (569, 30) float64, ``y`` (569,) int in {0, 1}.

    >>> X, y = load_breast_cancer()
    >>> X.shape, sorted(set(y.tolist()))
    ((569, 30), [0, 1])
    """
    return _bundled("load_breast_cancer")


def load_wine() -> tuple[np.ndarray, np.ndarray]:
    """The wine recognition data: ``X`` (178, 13) float64, ``y`` (178,) int in 0..2.

    >>> load_wine()[0].shape
    (178, 13)
    """
    return _bundled("load_wine")
