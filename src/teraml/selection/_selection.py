"""The result of every selection method: :class:`Selection` (indices, weights and where they came from)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teraml._validation import check_array

__all__ = ["Selection"]

#: The roles of selected items: taken whole (weight 1) or drawn.
ROLES = ("warm_start", "representative", "sample")


@dataclass(frozen=True, eq=False)
class Selection:
    """A weighted subset: ``sum(weights * loss[indices])`` estimates ``sum(loss)`` over all ``n_total`` items.

    ``indices`` (int64, unique row positions, ascending), ``weights`` (float64 > 0), ``counts`` (times drawn;
    1 for take-all items), ``probabilities`` (p of one draw; 1 for take-all items), ``role`` ("warm_start",
    "representative" or "sample"), ``losses`` (known losses, NaN elsewhere), ``n_total`` (rows of the data) and
    ``n_loss_queries`` (loss evaluations spent so far: the representatives, and the sampled rows once
    :meth:`estimate_mean` evaluated them).

    >>> s = Selection(np.array([0, 3]), np.array([1.0, 3.0]), np.array([1, 2]), np.array([1.0, 0.25]),
    ...               np.array(["representative", "sample"]), np.array([0.5, np.nan]), n_total=4, n_loss_queries=1)
    >>> s.estimate_mean(np.array([0.5, 1.5]))[0]        # (1 * 0.5 + 3 * 1.5) / 4
    1.25
    """

    indices: np.ndarray
    weights: np.ndarray
    counts: np.ndarray
    probabilities: np.ndarray
    role: np.ndarray
    losses: np.ndarray
    n_total: int
    n_loss_queries: int

    def __getstate__(self) -> dict:   # the loss function is not pickled (a lambda cannot be)
        return {k: v for k, v in self.__dict__.items() if k != "_loss_source"}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def n_unique(self) -> int:
        """Distinct items selected (``len(self)``)."""
        return int(self.indices.size)

    @property
    def effective_sample_size(self) -> float:
        """Kish's effective sample size ``(sum w)^2 / sum w^2``."""
        w = self.weights
        return float(w.sum() ** 2 / np.dot(w, w)) if w.size else 0.0

    def estimate_mean(self, losses) -> tuple[float, float]:
        """(estimate of the mean loss over all items, its standard error).

        ``losses`` is an array aligned with ``indices``, or a ``loss_fn(indices) -> losses``. The loss function the
        selection was made with (``select``'s ``loss_fn``, the same object) is called once, on the rows whose loss
        is not known yet (NaN in ``self.losses``), and the answers are kept; any other callable (another model's
        losses) is called on every selected row, so that no loss of the first model leaks into its estimate.
        The estimate is ``sum(w * loss) / n_total``:
        take-all rows count exactly, sampled rows by inverse probability; the standard error is that of the
        i.i.d. draws, ``sd(loss / p over the draws) / sqrt(m) / n_total`` (0 when everything was taken whole).
        """
        if callable(losses):
            same = losses is getattr(self, "_loss_source", None)
            todo = np.flatnonzero(np.isnan(self.losses)) if same else np.arange(self.indices.size)
            known = self.losses.copy() if same else np.full(self.indices.size, np.nan)
            if todo.size:
                got = check_array("loss_fn's result", losses(self.indices[todo].copy()), ndim=1, finite=False)
                if got.shape != (todo.size,) or not np.all(np.isfinite(got)) or np.any(got < 0):
                    bad = int(np.sum(~np.isfinite(got)) + np.sum(np.isfinite(got) & (got < 0))) \
                        if got.ndim == 1 else got.size
                    raise ValueError(f"loss_fn must return {todo.size} finite losses >= 0; got shape {got.shape}, "
                                     f"{bad} invalid")
                known[todo] = got
                object.__setattr__(self, "losses", known)
                object.__setattr__(self, "n_loss_queries", self.n_loss_queries + int(todo.size))
                object.__setattr__(self, "_loss_source", losses)
            values = known
        else:
            values = check_array("losses", losses, ndim=(1, 2))
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            if values.shape != self.indices.shape:
                raise ValueError(f"losses must have one value per selected item ({self.indices.size}); "
                                 f"got shape {values.shape}")
            if np.any(values < 0):
                raise ValueError(f"losses must be >= 0; got {int(np.sum(values < 0))} negative values")
        total = float(np.dot(self.weights, values))
        drawn = self.role == "sample"
        m = int(self.counts[drawn].sum())
        if m > 1:
            ratio = np.repeat(values[drawn] / self.probabilities[drawn], self.counts[drawn])
            se = float(np.std(ratio, ddof=1) / np.sqrt(m))
        else:
            se = 0.0 if m == 0 else float("nan")
        return total / self.n_total, se / self.n_total

    def to_dict(self) -> dict:
        """Columns as plain arrays (``index``, ``weight``, ``count``, ``probability``, ``role``, ``loss``)."""
        return {"index": self.indices, "weight": self.weights, "count": self.counts,
                "probability": self.probabilities, "role": self.role, "loss": self.losses}
