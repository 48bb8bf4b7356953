"""Hierarchical agglomerative clustering of similarity graphs (graph average linkage).

:class:`TeraHAC` is the one entry point: (1+eps)-approximate average linkage in few rounds (Dhulipala et
al., SIGMOD 2024), on the in-process engine (numba kernels, a thread pool over partitions) or on Apache Spark
(``engine="spark"``: :class:`teraml.hac.engines.spark.SparkEngine`, the same kernels per partition, bit-identical
merges; ``pip install teraml[spark]``). :class:`Graph` builds and cleans the input (edge lists, scipy.sparse, exact k-NN graphs,
CSV/Parquet), :class:`Dendrogram` holds the merges (subtree flattening, cuts, scipy linkage export) and
:func:`exact_hac` is the exact sequential reference.

>>> from teraml.hac import Graph, exact_hac
>>> from teraml.datasets import make_planted_partition_graph
>>> src, dst, w, labels = make_planted_partition_graph(200, 4, random_state=0)
>>> d = exact_hac(Graph.from_edges(src, dst, w, n_nodes=200))
>>> int(d.flatten(0.1).max()) + 1      # the 4 planted blocks
4
>>> from teraml.hac import TeraHAC
>>> TeraHAC(n_clusters=4).fit(Graph.from_edges(src, dst, w, n_nodes=200)).n_clusters_
4
"""

from teraml.hac.dendrogram import Dendrogram
from teraml.hac.exact import exact_hac
from teraml.hac.graph import Graph
from teraml.hac.terahac import TeraHAC

__all__ = ["TeraHAC", "Graph", "Dendrogram", "exact_hac"]
