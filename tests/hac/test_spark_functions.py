"""The Spark engine's per-group functions, without Spark: on any row order and any batch split they equal the
local engine's kernels on the same partition (spec terahac §2.4: Spark delivers group rows in arbitrary order;
§2.5: parallel edges are summed left to right in ascending (old src, old dst))."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyspark")

from teraml.hac import Graph  # noqa: E402
from teraml.hac._kernels import (  # noqa: E402
    Clusters,
    Partitions,
    RoundOutput,
    affinity_level,
    affinity_partition,
    best_edges,
    build_csr,
    roots,
    segment_sum,
    subgraph_hac,
)
from teraml.hac.engines.spark import _contract_batches, _link_group, _subgraph_group  # noqa: E402


def _random_graph(seed, n=30, p=0.2):
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    keep = rng.random(iu[0].size) < p
    if keep.sum() < 2:
        keep[:2] = True
    return Graph.from_edges(iu[0][keep], iu[1][keep], rng.uniform(0.01, 1, keep.sum()), n_nodes=n), rng


def _state(g, rng):
    """Sizes and M of a mid-run state: random cluster sizes, finite M for some."""
    n = g.n_nodes
    size = rng.integers(1, 5, n).astype(np.int64)
    M = np.where(rng.random(n) < 0.5, np.inf, rng.uniform(0.05, 1, n))
    return size, M


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.0, 0.1, 0.5]), shuffle=st.booleans())
def test_subgraph_group_equals_the_kernel(seed, eps, shuffle):
    g, rng = _random_graph(seed)
    n = g.n_nodes
    size, M = _state(g, rng)
    csr = build_csr(g.src, g.dst, g.weight, n)
    members = np.sort(rng.choice(n, size=int(rng.integers(2, n)), replace=False)).astype(np.int64)
    part = np.full(n, -1, dtype=np.int64)
    part[members] = members[0]
    # the local engine on the global arrays
    out = RoundOutput(np.empty(members.size, np.int64), np.empty(members.size, np.int64),
                      np.empty(members.size), np.zeros(1, np.int64), size.copy(), M.copy(), np.arange(n))
    subgraph_hac(0, 1, Partitions(np.array([0, members.size]), members, part, np.zeros(n, np.int64)), csr,
                 Clusters(size, M), eps, 0.0, out)
    c = int(out.count[0])
    # the Spark group: every member's rows to every neighbour
    rows = []
    for u in members.tolist():
        for e in range(csr.indptr[u], csr.indptr[u + 1]):
            x = int(csr.nbr[e])
            rows.append((int(members[0]), u, x, float(csr.wt[e]), int(size[u]), float(M[u]), int(size[x])))
    pdf = pd.DataFrame(rows, columns=["key", "u", "x", "S", "nu", "Mu", "nx"])
    if shuffle:
        pdf = pdf.sample(frac=1.0, random_state=seed)
    got = _subgraph_group(pdf, eps, 0.0)
    merges = got[got["kind"] == 0].sort_values("seq")
    assert merges["a"].tolist() == out.a[:c].tolist() and merges["b"].tolist() == out.b[:c].tolist()
    assert np.array_equal(merges["w"].to_numpy(), out.w[:c])              # bit for bit
    mem = got[got["kind"] == 1].set_index("a").loc[members[np.isin(members, pdf["u"])]]
    root = roots(out.rep)
    assert mem["b"].tolist() == root[mem.index.to_numpy()].tolist()
    alive = mem["b"].to_numpy() == mem.index.to_numpy()
    assert np.array_equal(mem["size"].to_numpy()[alive], out.size[mem.index.to_numpy()[alive]])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.integers(2, 12), shuffle=st.booleans())
def test_link_group_equals_affinity_partition(seed, cap, shuffle):
    g, rng = _random_graph(seed, n=40, p=0.1)
    size, _ = _state(g, rng)
    csr = build_csr(g.src, g.dst, g.weight, g.n_nodes)
    best, B = best_edges(csr, size)
    active = np.flatnonzero(B > 0)
    order = active[np.lexsort((active, -B[active]))]
    want = affinity_partition(order, best, cap, g.n_nodes)
    pdf = pd.DataFrame({"v": active, "to": best[active], "w": B[active], "cnt": 1})
    if shuffle:
        pdf = pdf.sample(frac=1.0, random_state=seed)
    got = _link_group(pdf, cap, 1).set_index("v")["key"]
    assert got.loc[active].tolist() == want[active].tolist()
    # a further level: the sets' heaviest outgoing edges, then the capped union
    want2 = affinity_level(want, csr, size, cap)
    keys = np.unique(want[active])
    bw = np.full(g.n_nodes, -1.0)
    bto = np.full(g.n_nodes, -1, dtype=np.int64)
    for u in active.tolist():
        for e in range(csr.indptr[u], csr.indptr[u + 1]):
            x = int(csr.nbr[e])
            pu, px = want[u], want[x]
            if px < 0 or px == pu:
                continue
            w = csr.wt[e] / (float(size[u]) * float(size[x]))
            if w > bw[pu] or (w == bw[pu] and px < bto[pu]):
                bw[pu], bto[pu] = w, px
    cnt = np.bincount(want[active], minlength=g.n_nodes)
    sets = pd.DataFrame({"v": keys, "to": bto[keys], "w": bw[keys], "cnt": cnt[keys]})
    if shuffle:
        sets = sets.sample(frac=1.0, random_state=seed)
    newkey = _link_group(sets, cap, 2).set_index("v")["key"]
    assert newkey.loc[want[active]].tolist() == want2[active].tolist()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 7))
def test_contraction_batches_equal_segment_sum(seed, batch):
    """Sorted rows cut into Arrow batches anywhere (a run may span batches): the same sums as the local kernel."""
    g, rng = _random_graph(seed, n=25, p=0.3)
    n = g.n_nodes
    rep = np.arange(n)
    for b in range(1, n):                      # absorb some ids into smaller survivors
        if rng.random() < 0.4:
            rep[b] = rng.integers(0, b)
    root = roots(rep)
    want = segment_sum(g.src, g.dst, g.weight, root, n)
    a, b = root[g.src], root[g.dst]
    keep = a != b
    rows = pd.DataFrame({"a": np.minimum(a, b)[keep], "b": np.maximum(a, b)[keep], "src": g.src[keep],
                         "dst": g.dst[keep], "S": g.weight[keep]}).sort_values(["a", "b", "src", "dst"])
    batches = [rows.iloc[i:i + batch] for i in range(0, len(rows), batch)]
    got = pd.concat(list(_contract_batches(iter(batches))), ignore_index=True) if len(rows) else None
    if got is None:
        assert want[0].size == 0
        return
    assert got["src"].tolist() == want[0].tolist() and got["dst"].tolist() == want[1].tolist()
    assert np.array_equal(got["S"].to_numpy(), want[2])
