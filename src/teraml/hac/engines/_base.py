"""The engine contract: what :class:`~teraml.hac.TeraHAC`'s round driver asks of an engine.

The driver (``teraml.hac.terahac``) is written once against this Protocol; an engine owns the graph
between rounds (in memory, on Spark, ...) and runs the shared pure kernels of ``teraml.hac._kernels`` on
it. Engines that honour the determinism rules below give bit-identical merge tables for the same input
and seed:

* cluster ids are the ranks given to :meth:`Engine.load`; every tie goes to the smaller id;
* a round: each active cluster's best neighbour and B (best W over *all* neighbours), active iff it has
  a neighbour and B >= prune; size-capped affinity partitions (``affinity_levels`` levels); SubgraphHAC on every partition
  of >= 2 clusters; contraction summing parallel edges left to right in ascending (old src, old dst);
* merges are numbered in (round, partition key, sequence) order; merge row r is dendrogram node
  n + r, and a cluster's first dendrogram node is the leaf of the node whose rank it is.

Example: any object with these methods is an engine, e.g. ``TeraHAC(engine=MyEngine())``.

>>> from teraml.hac.engines import Engine, LocalEngine
>>> isinstance(LocalEngine(), Engine)
True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Engine", "RoundStats", "MergeBook"]

#: The statistics of one round (:meth:`Engine.run_round`'s return value), by key:
#: ``round``, ``active`` (clusters with B > prune), ``edges`` (canonical edges at the round's start),
#: ``partitions`` (of >= 2 clusters), ``max_partition`` (clusters in the largest), ``merges``, ``seconds``.
RoundStats = dict


@runtime_checkable
class Engine(Protocol):
    """An engine of TeraHAC rounds: ``load`` once, ``run_round`` until it returns None, ``result``."""

    def load(self, graph: Any, ranks: np.ndarray) -> None:
        """Take the graph (a :class:`~teraml.hac.Graph`: ``n_nodes``, ``src``, ``dst``, ``weight``) with
        cluster id ``ranks[u]`` for node u (a permutation of 0..n-1); every cluster starts as its node's
        leaf, of size 1 and M = +inf."""

    def run_round(self, rnd: int, prune: float, epsilon: float, cap: int, partitioner: str,
                  levels: int = 1) -> RoundStats | None:
        """Run one round and contract; return its :data:`RoundStats`, or None (and change nothing) when no
        cluster has a neighbour with W >= ``prune``.

        ``prune``: edges of W < prune never merge (t / (1 + epsilon)); ``cap``: the most clusters in one
        partition; ``partitioner``: ``"affinity"`` or ``"single"`` (all active clusters in one partition);
        ``levels``: affinity levels (1: sets along best edges only). A round that merges nothing is a bug:
        raise ``RuntimeError``."""

    def n_active(self, prune: float) -> int:
        """The number of clusters with a neighbour and best similarity B >= ``prune`` (0: nothing left)."""

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The merges so far as ``(left, right, similarity, size, round)`` arrays in merge order."""


class MergeBook:
    """The merge table an engine keeps for :meth:`Engine.result` (on the driver for Spark): each cluster id's current
    dendrogram node (a leaf until it merges) and the merges in (round, partition key, sequence) order.

    >>> import numpy as np
    >>> book = MergeBook(3, np.arange(3))
    >>> book.n_done, book.result()[0].size
    (0, 0)
    """

    def __init__(self, n: int, ranks: np.ndarray):
        from teraml.hac._kernels import MergeTable

        self.n = n
        self.node = np.empty(n, dtype=np.int64)   # dendrogram node of each cluster id
        self.node[np.asarray(ranks, dtype=np.int64)] = np.arange(n)   # leaves keep the node order
        cap = max(n - 1, 0)
        self.table = MergeTable(np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
                                np.empty(cap, dtype=np.float64), np.empty(cap, dtype=np.int64))
        self.mround = np.empty(cap, dtype=np.int32)
        self.n_done = 0

    def record(self, start: np.ndarray, out, run_size: np.ndarray, rnd: int) -> int:
        """Append one round's merges (``out.a/b/w`` of the partitions starting at ``start``, ``out.count`` each);
        ``run_size`` (cluster sizes at the round's start) is updated. Returns the number of merges added."""
        from teraml.hac._kernels import record_merges

        before = self.n_done
        self.n_done = record_merges(start, out, self.node, run_size, self.n, self.n_done, self.table)
        self.mround[before:self.n_done] = rnd
        return self.n_done - before

    def result(self):
        """(left, right, similarity, size, round) of the merges so far."""
        k, t = self.n_done, self.table
        return t.left[:k], t.right[:k], t.sim[:k], t.size[:k], self.mround[:k]
