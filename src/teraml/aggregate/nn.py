"""Torch losses for learning from aggregates, and a sampler whose minibatches hold whole bags.

``interpolated_bag_loss`` computes ``(1 - rho) L_bag + rho L_inst`` on a minibatch with
``index_add_``. When ``rho < 1`` every minibatch must hold whole bags (a row-shuffling loader splits
bags silently and biases the bag term): use :class:`BagBatchSampler`.

Not imported by ``teraml.aggregate`` (so that package stays torch-free).

>>> import torch
>>> from teraml.aggregate.nn import interpolated_bag_loss
>>> pred = torch.tensor([1.0, 3.0, 2.0, 2.0]); bags = torch.tensor([0, 0, 1, 1])
>>> target = torch.tensor([2.0, 2.0, 2.0, 2.0])        # bag means, broadcast
>>> float(interpolated_bag_loss(pred, target, bags, rho=0.0))   # bag means are exact
0.0
>>> float(interpolated_bag_loss(pred, target, bags, rho=1.0))   # instance loss sees the spread
0.5
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from teraml._validation import Interval, check_choice, check_int, check_param, check_tensor

__all__ = ["interpolated_bag_loss", "InterpolatedBagLoss", "BagBatchSampler"]


_RHO = [Interval("float", 0, 1, text="a float in [0, 1] (0 = bag-level, 1 = instance-level)")]


def _check(rho, loss, reduction):
    check_param("rho", rho, _RHO)
    check_choice("loss", loss, ("squared", "log"))
    check_choice("reduction", reduction, ("mean", "sum"))


def _bag_index(bags):
    """Bag ids as an index into a table: used directly when they are small non-negative ints (no sort)."""
    if bags.numel() == 0:
        return bags.long(), 0
    lo, hi = torch.aminmax(bags)
    lo, hi = int(lo), int(hi)
    if lo >= 0 and hi < 2 * bags.numel() + 1024 and not bags.is_floating_point():
        return bags.long(), hi + 1
    _, ids = torch.unique(bags, return_inverse=True)
    return ids, int(ids.max()) + 1


def interpolated_bag_loss(input, target, bags, *, rho=1.0, loss="squared", reduction="mean"):
    """``(1 - rho) sum_a k_a l(y~_a, f̄_a) + rho sum_i l(y~_a(i), f_i)`` on one minibatch.

    ``input``: predictions (``squared``) or logits (``log``), shape (B,); ``target``: the bag
    aggregate broadcast to rows, shape (B,); ``bags``: integer bag ids (any values). The bag mean of
    the predictions is the mean of f (probabilities for ``log``), never g(mean logit).
    ``reduction="mean"`` divides by the number of rows.
    """
    _check(rho, loss, reduction)
    check_tensor("input", input)
    check_tensor("target", target)
    check_tensor("bags", bags, floating=False)
    if input.shape != target.shape or input.ndim != 1 or bags.shape != input.shape:
        raise ValueError(f"input, target and bags must be 1-D of the same length; got {tuple(input.shape)}, "
                         f"{tuple(target.shape)}, {tuple(bags.shape)}")
    f = input if loss == "squared" else torch.sigmoid(input)
    total = input.new_zeros(())
    if rho > 0:
        if loss == "squared":
            inst = (target - f).pow(2).sum()
        else:
            inst = F.binary_cross_entropy_with_logits(input, target, reduction="sum")
        total = total + rho * inst
    if rho < 1:
        ids, m = _bag_index(bags)
        k = torch.zeros(m, dtype=input.dtype, device=input.device).index_add_(0, ids, torch.ones_like(input))
        kk = k.clamp(min=1)  # ids with no rows contribute k = 0
        fbar = torch.zeros(m, dtype=f.dtype, device=f.device).index_add_(0, ids, f) / kk
        ybar = torch.zeros(m, dtype=target.dtype, device=target.device).index_add_(0, ids, target) / kk
        if loss == "squared":
            bag = (k * (ybar - fbar).pow(2)).sum()
        else:
            fb = fbar.clamp(1e-12, 1 - 1e-12)
            bag = (k * -(ybar * fb.log() + (1 - ybar) * (1 - fb).log())).sum()
        total = total + (1 - rho) * bag
    return total / input.shape[0] if reduction == "mean" and input.shape[0] else total


class InterpolatedBagLoss(torch.nn.Module):
    """Module form of :func:`interpolated_bag_loss`: ``InterpolatedBagLoss(rho, loss)(input, target, bags)``."""

    def __init__(self, rho=1.0, loss="squared", reduction="mean"):
        super().__init__()
        _check(rho, loss, reduction)
        self.rho, self.loss, self.reduction = rho, loss, reduction

    def forward(self, input, target, bags):
        return interpolated_bag_loss(input, target, bags, rho=self.rho, loss=self.loss, reduction=self.reduction)


class BagBatchSampler(torch.utils.data.Sampler):
    """Yields lists of row indices, ``bags_per_batch`` whole bags at a time (rows with id -1 skipped).

    >>> s = BagBatchSampler([0, 0, 1, 1, 2, -1], 2, shuffle=False)
    >>> list(s)
    [[0, 1, 2, 3], [4]]
    """

    def __init__(self, bags, bags_per_batch, *, shuffle=True, generator=None):
        b = np.asarray(bags.cpu() if isinstance(bags, torch.Tensor) else bags)
        if b.ndim != 1 or not np.issubdtype(b.dtype, np.integer):
            raise ValueError(f"bags must hold integer or string ids (>= 0, or -1 to leave a row out); got {bags!r}")
        bags_per_batch = check_int("bags_per_batch", bags_per_batch, min_value=1)
        keep = np.flatnonzero(b >= 0)
        order = keep[np.argsort(b[keep], kind="stable")]
        ids_sorted = b[order]
        cuts = np.flatnonzero(np.diff(ids_sorted)) + 1
        self._groups = np.split(order, cuts) if order.size else []
        self.bags_per_batch = int(bags_per_batch)
        self.shuffle = bool(shuffle)
        self.generator = generator

    def __iter__(self):
        n = len(self._groups)
        if self.shuffle:
            perm = torch.randperm(n, generator=self.generator).tolist()
        else:
            perm = range(n)
        perm = list(perm)
        for i in range(0, n, self.bags_per_batch):
            yield np.concatenate([self._groups[j] for j in perm[i:i + self.bags_per_batch]]).tolist()

    def __len__(self):
        return -(-len(self._groups) // self.bags_per_batch)
