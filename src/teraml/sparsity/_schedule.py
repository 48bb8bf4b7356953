"""Phase schedules: the presets, their step boundaries, and the sparsity curves of the sparsify phases."""

from __future__ import annotations

import math
from fractions import Fraction

#: Fractions of total_steps per method and preset (D = dense, Z = sparsify, S = sparse).
PRESETS: dict[str, dict[str, list[tuple[str, float]]]] = {
    "imagenet": {
        "sapp": [("dense", 0.10)] + [("sparsify", 0.025), ("sparse", 0.025), ("dense", 0.05)] * 6
                + [("sparsify", 0.15), ("sparse", 0.15)],
        "acdc": [("dense", 0.10)] + [("sparse", 0.05), ("dense", 0.05)] * 6 + [("sparse", 0.05), ("dense", 0.10),
                                                                               ("sparse", 0.15)],
        "magnitude": [("dense", 0.85), ("sparse", 0.15)],
        "gmp": [("dense", 0.10), ("sparsify", 0.75), ("sparse", 0.15)],
    },
    "criteo": {
        "sapp": [("dense", 0.20)] + [("sparsify", 0.015), ("sparse", 0.015), ("dense", 0.03)] * 9
                + [("sparsify", 0.06), ("sparse", 0.20)],
        "acdc": [("dense", 0.20)] + [("sparse", 0.03), ("dense", 0.03)] * 10 + [("sparse", 0.20)],
        "magnitude": [("dense", 0.80), ("sparse", 0.20)],
        "gmp": [("dense", 0.20), ("sparsify", 0.60), ("sparse", 0.20)],
    },
}
PRESETS["imagenet"]["powerprop"] = PRESETS["imagenet"]["magnitude"]
PRESETS["criteo"]["powerprop"] = PRESETS["criteo"]["magnitude"]

KINDS = ("dense", "sparsify", "sparse")


def boundaries(phases: list[tuple[str, float]], total_steps: int) -> list[int]:
    """``b_j = floor(c_j T + 0.5)`` for the cumulative fractions ``c_j``; phase j covers ``[b_{j-1}, b_j)``.

    >>> boundaries([("dense", 0.5), ("sparse", 0.5)], 7)
    [0, 4, 7]
    """
    out, c = [0], Fraction(0)
    for _, frac in phases:      # exact sums of the decimal fractions: 0.1 + 0.05 + ... hits the ties exactly
        c += Fraction(repr(float(frac)))
        out.append(math.floor(c * total_steps + Fraction(1, 2)))
    out[-1] = total_steps
    return out


def table(phases: list[tuple[str, float]], total_steps: int) -> list[tuple[str, int, int]]:
    """``(kind, start, stop)`` of every phase."""
    b = boundaries(phases, total_steps)
    return [(kind, b[j], b[j + 1]) for j, (kind, _) in enumerate(phases)]


def safe_total_steps(phases: list[tuple[str, float]]) -> int:
    """The smallest N such that every total_steps >= N gives every phase at least one step.

    A phase of fraction f spans ``floor(c T + f T + 1/2) - floor(c T + 1/2) >= floor(f T)`` steps, so
    ``N = ceil(1 / min f)`` suffices (a smaller T may still work, depending on the rounding).
    """
    return math.ceil(1.0 / min(f for _, f in phases) - 1e-9)


def sapp_curve(u: float, exponent: float) -> float:
    """SA++'s sparsify ramp ``(1 - e^{-c u}) / (1 - e^{-c})``: fast at first, 0 at u = 0, 1 at u = 1."""
    return (1.0 - math.exp(-exponent * u)) / (1.0 - math.exp(-exponent))


def gmp_curve(u: float) -> float:
    """Zhu and Gupta's cubic ramp ``1 - (1 - u)^3``."""
    return 1.0 - (1.0 - u) ** 3
