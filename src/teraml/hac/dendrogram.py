"""Dendrograms of graph HAC: merges, flat clusterings, scipy linkage export.

Merge ``i`` joins nodes ``left[i]`` and ``right[i]`` (leaves are ``0..n-1``, merge ``i`` creates node
``n + i``; children precede parents) at average-linkage *similarity* ``similarity[i]``. A graph HAC
stops when no pair is similar enough, so the result may be a forest (fewer than n - 1 merges), and a
(1+eps)-approximate dendrogram may be non-monotone by up to (1+eps).

>>> d = Dendrogram(4, [0, 2, 4], [1, 3, 5], [0.9, 0.8, 0.1])
>>> d.flatten(0.5).tolist(), d.cut(1).tolist()
([0, 0, 1, 1], [0, 0, 0, 0])
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

from teraml._validation import check_choice, check_int
from teraml.hac._kernels import flatten_top, greedy_merges

__all__ = ["Dendrogram"]


class Dendrogram:
    """Merges of a hierarchical clustering: ``left``, ``right``, ``similarity``, ``size``, ``round``."""

    def __init__(self, n_leaves, left, right, similarity, size=None, round=None, node_ids=None):
        self.n_leaves = int(n_leaves)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.similarity = np.asarray(similarity, dtype=np.float64)
        m = self.left.size
        if not (self.right.size == m == self.similarity.size) or m > max(0, self.n_leaves - 1):
            raise ValueError(f"left, right and similarity must have the same length <= n_leaves - 1; got "
                             f"{self.left.size}, {self.right.size}, {self.similarity.size} for {self.n_leaves} leaves")
        if size is None:
            sz = np.ones(self.n_leaves + m, dtype=np.int64)
            for i in range(m):
                sz[self.n_leaves + i] = sz[self.left[i]] + sz[self.right[i]]
            size = sz[self.n_leaves:]
        self.size = np.asarray(size, dtype=np.int64)
        self.round = np.full(m, -1, dtype=np.int32) if round is None else np.asarray(round, dtype=np.int32)
        self.node_ids = np.arange(self.n_leaves) if node_ids is None else np.asarray(node_ids)

    @property
    def n_merges(self) -> int:
        return int(self.left.size)

    def __repr__(self) -> str:
        return f"Dendrogram(n_leaves={self.n_leaves}, n_merges={self.n_merges})"

    def _labels_from_top(self, top: np.ndarray) -> np.ndarray:
        """Relabel per-leaf cluster roots to 0..k-1 ordered by each cluster's smallest leaf."""
        _, first, inv = np.unique(top, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
        return order[inv].astype(np.int64)

    def flatten(self, threshold) -> np.ndarray:
        """Flat clusters at ``threshold``: each leaf goes to its highest ancestor with similarity >= threshold.

        This is subtree semantics, right for non-monotone trees (a union-find over merges >= t, or scipy's
        ``fcluster(..., "distance")``, differ there). Labels are 0..k-1 ordered by smallest leaf.
        """
        return self._labels_from_top(flatten_top(self.n_leaves, self.left, self.right, self.similarity,
                                                  float(threshold)))

    def n_components(self) -> int:
        return self.n_leaves - self.n_merges

    def cut(self, n_clusters) -> np.ndarray:
        """Exactly ``n_clusters`` flat clusters (0..k-1 ordered by smallest leaf), as scikit-learn cuts.

        Cut by merges, not by a similarity level: keep n - k merges, each time the available merge (both
        children formed) of largest similarity, so the count is exact even when a (1+eps)-approximate
        dendrogram is non-monotone and no similarity level gives k clusters. For a monotone dendrogram
        this equals cutting at a level. A forest of more than ``n_clusters`` trees gives its trees, with a
        warning. ``n_clusters`` may not exceed the number of leaves.

        >>> Dendrogram(4, [0, 2, 4], [1, 3, 5], [0.9, 0.8, 0.1]).cut(3).tolist()
        [0, 0, 1, 2]
        """
        k = check_int("n_clusters", n_clusters, min_value=1, max_value=max(1, self.n_leaves), sep=", ")
        if self.n_components() > k:
            warnings.warn(f"the dendrogram is a forest of {self.n_components()} trees, more than n_clusters={k}; "
                          "returning its components", UserWarning, stacklevel=2)
            return self.flatten(-np.inf)
        keep = greedy_merges(self.n_leaves, self.left, self.right, self.similarity, self.n_leaves - k)
        return self._labels_from_top(flatten_top(self.n_leaves, self.left, self.right, keep.astype(np.float64), 0.5))

    def is_monotone(self) -> bool:
        """True iff no merge is more similar than a merge below it."""
        n, m = self.n_leaves, self.n_merges
        child = np.concatenate([self.left, self.right])
        parent = np.concatenate([np.arange(m), np.arange(m)])
        inner = child >= n
        return bool(np.all(self.similarity[child[inner] - n] >= self.similarity[parent[inner]]))

    def to_linkage(self, transform="one_minus") -> np.ndarray:
        """A scipy linkage matrix (n - 1, 4) with distance ``1 - w`` (or ``1/w`` with ``"reciprocal"``).

        A forest is completed by filler merges at (max distance + 1).
        """
        check_choice("transform", transform, ("one_minus", "reciprocal"), phrase="or", sep=", ")
        if transform == "one_minus" and self.n_merges and self.similarity.max() > 1:
            raise ValueError("similarities exceed 1: use transform='reciprocal'")
        if not self.is_monotone():
            warnings.warn("the dendrogram is not monotone; scipy may draw it with crossings", UserWarning, stacklevel=2)
        dist = (1.0 - self.similarity) if transform == "one_minus" else 1.0 / self.similarity
        n, m = self.n_leaves, self.n_merges
        Z = np.zeros((max(0, n - 1), 4))
        Z[:m, 0], Z[:m, 1], Z[:m, 2], Z[:m, 3] = self.left, self.right, dist, self.size
        # filler merges join the remaining roots
        has_parent = np.zeros(n + max(0, n - 1), dtype=bool)
        has_parent[self.left] = True
        has_parent[self.right] = True
        roots = deque(np.flatnonzero(~has_parent[:n + m]).tolist())
        sizes = np.concatenate([np.ones(n, dtype=np.int64), self.size, np.zeros(max(0, n - 1 - m), dtype=np.int64)])
        filler = (dist.max() if m else 0.0) + 1.0
        i = m
        while len(roots) > 1:
            a, b = roots.popleft(), roots.popleft()
            Z[i] = (a, b, filler, sizes[a] + sizes[b])
            sizes[n + i] = sizes[a] + sizes[b]
            roots.append(n + i)
            i += 1
        return Z

    _COLUMNS = ("left", "right", "similarity", "size", "round")

    def save(self, path) -> None:
        """Save as ``.npz`` or ``.parquet`` (by suffix; Parquet keeps one row per merge, leaves and node ids in
        the file's metadata).

        >>> import tempfile, os
        >>> d = Dendrogram(3, [0, 3], [1, 2], [0.9, 0.2])
        >>> path = os.path.join(tempfile.mkdtemp(), "tree.parquet")
        >>> d.save(path); Dendrogram.load(path).similarity.tolist()
        [0.9, 0.2]
        """
        path = str(path)
        if path.endswith(".parquet"):
            import json

            import pyarrow as pa
            import pyarrow.parquet as pq

            ids = self.node_ids.tolist()
            meta = {"teraml.dendrogram": json.dumps({"n_leaves": self.n_leaves, "node_ids": ids,
                                                     "node_ids_dtype": self.node_ids.dtype.str})}
            table = pa.table({c: getattr(self, c) for c in self._COLUMNS}).replace_schema_metadata(meta)
            pq.write_table(table, path)
            return
        if not path.endswith(".npz"):
            raise ValueError(f"path must end in .npz or .parquet, got {path!r}")
        np.savez(path, n_leaves=self.n_leaves, left=self.left, right=self.right, similarity=self.similarity,
                 size=self.size, round=self.round, node_ids=self.node_ids)

    @classmethod
    def load(cls, path) -> Dendrogram:
        """Load a dendrogram written by :meth:`save` (``.npz`` or ``.parquet``)."""
        path = str(path)
        if path.endswith(".parquet"):
            import json

            import pyarrow.parquet as pq

            table = pq.read_table(path)
            meta = json.loads(table.schema.metadata[b"teraml.dendrogram"])
            cols = {c: table.column(c).to_numpy() for c in cls._COLUMNS}
            node_ids = np.array(meta["node_ids"], dtype=meta.get("node_ids_dtype"))   # uint64 ids stay exact
            return cls(int(meta["n_leaves"]), cols["left"], cols["right"], cols["similarity"], cols["size"],
                       cols["round"], node_ids)
        z = np.load(path, allow_pickle=False)
        return cls(int(z["n_leaves"]), z["left"], z["right"], z["similarity"], z["size"], z["round"], z["node_ids"])
