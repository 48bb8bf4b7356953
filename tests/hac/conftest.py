"""Shared fixtures of the HAC tests: random graphs, the digits k-NN graph, adjacency dicts, exact replay."""

import numpy as np
import pytest

from teraml.datasets import load_digits
from teraml.hac import Graph


def _er_graph(n=200, p=0.05, seed=0, low=0.01, weight=None):
    """An Erdos-Renyi graph on n nodes with weights U(low, 1), or all equal to ``weight``; ``seed`` may be a
    Generator, which then continues past the draws made here. None when no edge is drawn."""
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    if not keep.any():
        return None
    w = np.full(keep.sum(), weight) if weight is not None else rng.uniform(low, 1, keep.sum())
    return Graph.from_edges(iu[0][keep], iu[1][keep], w, n_nodes=n)


def _adjacency(g):
    """{u: {x: S(u, x)}} of a graph, both directions."""
    adj = {}
    for a, b, w in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist()):
        adj.setdefault(a, {})[b] = w
        adj.setdefault(b, {})[a] = w
    return adj


def _replay(members, adj, size, M, merges):
    """Replay merges on an exact state (frozen neighbours keep their sizes): the true goodness of each merge
    and the final (adjacency, sizes, M) of the partition's clusters."""
    inP = set(members)
    A = {u: dict(adj[u]) for u in members}
    n = {u: size[u] for u in members}
    m = {u: M[u] for u in members}

    def W(u, x):
        return A[u][x] / (n[u] * (n[x] if x in inP else size[x]))

    gs = []
    for a, b, *_ in merges:
        Ba = max(W(a, x) for x in A[a])
        Bb = max(W(b, x) for x in A[b])
        w = W(a, b)
        gs.append(max(Ba, Bb) / min(w, m[a], m[b]))
        c, o = (a, b) if a < b else (b, a)
        m[c] = min(m[a], m[b], w)
        for x, s in A[o].items():
            if x != c:
                A[c][x] = A[c].get(x, 0.0) + s
        A[c].pop(o, None)
        n[c] = n[a] + n[b]
        for x in list(A[o]):
            if x != c and x in A:
                s = A[x].pop(o)
                A[x][c] = A[x].get(c, 0.0) + s
        del A[o], n[o], m[o]
    assert set(A) <= inP
    return gs, A, n, m


@pytest.fixture(scope="session")
def er_graph():
    """``er_graph(n=200, p=0.05, seed=0, low=0.01, weight=None)``: a seeded Erdos-Renyi similarity graph
    (session-scoped, so hypothesis tests may take it)."""
    return _er_graph


@pytest.fixture(scope="session")
def adjacency():
    """``adjacency(graph)``: the dict-of-dicts input of the SubgraphHAC reference."""
    return _adjacency


@pytest.fixture(scope="session")
def replay():
    """``replay(members, adj, size, M, merges) -> (true goodness of each merge, adjacency, sizes, M)``."""
    return _replay


@pytest.fixture(scope="session")
def digits_graph():
    """(graph, labels): scikit-learn's digits as a cosine 10-NN graph."""
    X, y = load_digits()
    return Graph.from_points(X, n_neighbors=10), y
