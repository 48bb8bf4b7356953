"""Hierarchical agglomerative clustering of similarity graphs (graph average linkage).

Implemented so far: :class:`Graph` (construction, cleaning, k-NN graphs, CSV/Parquet I/O),
:class:`Dendrogram` (subtree flattening, cuts, scipy linkage export) and :func:`exact_hac`, the exact
sequential reference. ``TeraHAC`` (the (1+eps)-approximate round-based algorithm, local and Spark
engines) is not built yet.

>>> from teraml.hac import Graph, exact_hac
>>> from teraml.datasets import make_planted_partition_graph
>>> src, dst, w, labels = make_planted_partition_graph(200, 4, random_state=0)
>>> d = exact_hac(Graph.from_edges(src, dst, w, n_nodes=200))
>>> int(d.flatten(0.1).max()) + 1      # the 4 planted blocks
4
"""

from teraml.hac.dendrogram import Dendrogram
from teraml.hac.exact import exact_hac
from teraml.hac.graph import Graph
from teraml.hac.terahac import TeraHAC

__all__ = ["TeraHAC", "Graph", "Dendrogram", "exact_hac"]
