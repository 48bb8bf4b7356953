"""The engine contract: LocalEngine, n_jobs, and the round driver on a pure-Python engine."""

import math

import numpy as np
import pytest

from teraml.datasets import make_planted_partition_graph
from teraml.hac import Graph, TeraHAC
from teraml.hac._reference import subgraph_hac_dicts
from teraml.hac.engines import Engine, LocalEngine


def _merge_table(m):
    d = m.dendrogram_
    return d.left, d.right, d.similarity, d.size, d.round


def test_n_jobs_gives_identical_merges():
    src, dst, w, _ = make_planted_partition_graph(3000, 20, random_state=1)
    g = Graph.from_edges(src, dst, w, n_nodes=3000)
    a = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=1).fit(g)
    b = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=2).fit(g)
    c = TeraHAC(threshold=0.0, max_partition_size=50, n_jobs=-1).fit(g)
    assert a.n_rounds_ == b.n_rounds_ == c.n_rounds_
    for x, y, z in zip(_merge_table(a), _merge_table(b), _merge_table(c)):
        assert np.array_equal(x, y) and np.array_equal(x, z)  # bit-identical, similarities included
    assert max(s["partitions"] for s in a.round_stats_) > 1


class PurePythonEngine:
    """A minimal engine: the graph in plain dicts, partitions in plain Python, and the shared per-partition
    function (SubgraphHAC through its dict adapter), as a distributed engine would run it inside each group.
    Supports ``partitioner="single"`` and ``"affinity"`` with one level."""

    def load(self, graph, ranks):
        self.n = graph.n_nodes
        self.S = {}
        for u, v, w in zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist()):
            a, b = sorted((int(ranks[u]), int(ranks[v])))
            self.S[(a, b)] = w
        self.size = dict.fromkeys(range(self.n), 1)
        self.M = dict.fromkeys(range(self.n), math.inf)
        self.node = {int(ranks[u]): u for u in range(self.n)}
        self.rows = []

    def _adjacency(self):
        adj = {}
        for (a, b), s in self.S.items():
            adj.setdefault(a, {})[b] = s
            adj.setdefault(b, {})[a] = s
        return adj

    def _best(self, adj):
        best, B = {}, {}
        for u, row in adj.items():
            for x, s in row.items():
                w = s / (float(self.size[u]) * float(self.size[x]))
                if u not in B or w > B[u] or (w == B[u] and x < best[u]):
                    best[u], B[u] = x, w
        return best, B

    def n_active(self, prune):
        return sum(b >= prune for b in self._best(self._adjacency())[1].values())

    def _partitions(self, active, best, B, cap, partitioner):
        if partitioner == "single":
            return {active[0]: active}
        parent, count = {u: u for u in active}, dict.fromkeys(active, 1)

        def find(u):
            while parent[u] != u:
                u = parent[u]
            return u

        for u in sorted(active, key=lambda u: (-B[u], u)):
            v = best[u]
            if v not in parent:
                continue
            ru, rv = find(u), find(v)
            if ru != rv and count[ru] + count[rv] <= cap:
                ru, rv = min(ru, rv), max(ru, rv)
                parent[rv] = ru
                count[ru] += count[rv]
        groups = {}
        for u in active:
            groups.setdefault(find(u), []).append(u)
        return groups

    def run_round(self, rnd, prune, epsilon, cap, partitioner, levels=1):
        if partitioner == "affinity" and levels != 1:
            raise NotImplementedError("this test engine builds one affinity level")
        adj = self._adjacency()
        best, B = self._best(adj)
        active = sorted(u for u in B if B[u] >= prune)
        if not active:
            return None
        groups = {k: g for k, g in sorted(self._partitions(active, best, B, cap, partitioner).items())
                  if len(g) >= 2}
        rep, merges = {}, 0
        run_size, new_size, new_M = dict(self.size), {}, {}
        for members in groups.values():           # every partition reads the sizes and M of the round's start
            out, sizes, Ms = subgraph_hac_dicts(members, {u: adj[u] for u in members}, self.size, self.M, epsilon,
                                                prune)
            for a, b, w, _ in out:
                run_size[a] += run_size[b]
                self.rows.append((self.node[a], self.node[b], w, run_size[a], rnd))
                self.node[a] = self.n + len(self.rows) - 1
                rep[b] = a
            merges += len(out)
            new_size.update(sizes)
            new_M.update(Ms)
        assert merges, "a round must merge"
        self.size.update(new_size)
        self.M.update(new_M)

        def root(u):
            while u in rep:
                u = rep[u]
            return u

        new = {}
        for (a, b), s in sorted(self.S.items()):          # parallel edges summed in ascending (old src, old dst)
            ra, rb = root(a), root(b)
            if ra != rb:
                key = (min(ra, rb), max(ra, rb))
                new[key] = new[key] + s if key in new else s
        edges, self.S = len(self.S), new
        return {"round": rnd, "active": len(active), "edges": edges, "partitions": len(groups),
                "max_partition": max((len(g) for g in groups.values()), default=1), "merges": merges, "seconds": 0.0}

    def result(self):
        cols = list(zip(*self.rows)) if self.rows else [[], [], [], [], []]
        return (np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.int64), np.array(cols[2]),
                np.array(cols[3], dtype=np.int64), np.array(cols[4], dtype=np.int32))


def test_engines_satisfy_the_protocol():
    assert isinstance(LocalEngine(), Engine) and isinstance(PurePythonEngine(), Engine)
    assert not isinstance(object(), Engine)
    with pytest.raises(TypeError, match="engine must be 'local'"):
        TeraHAC(threshold=0.1, engine=object()).fit(Graph.from_edges([0], [1], [1.0]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0, "epsilon": 0.1, "max_partition_size": 6},
        {"threshold": 0.05, "epsilon": 0.5, "max_partition_size": 10, "random_state": 3},
        {"threshold": 0.0, "epsilon": 0.0, "max_partition_size": 4},
        {"n_clusters": 5, "epsilon": 0.2, "partitioner": "single"},
    ],
)
@pytest.mark.parametrize("seed", range(3))
def test_the_round_driver_gives_the_same_merges_on_a_pure_python_engine(kwargs, seed, er_graph):
    g = er_graph(120, 0.06, seed)
    ref = TeraHAC(affinity_levels=1, **kwargs).fit(g)
    ours = TeraHAC(affinity_levels=1, engine=PurePythonEngine(), **kwargs).fit(g)
    assert ours.n_rounds_ == ref.n_rounds_ and (ref.n_rounds_ > 1 or kwargs.get("partitioner") == "single")
    for x, y in zip(_merge_table(ours), _merge_table(ref)):
        assert np.array_equal(x, y)  # bit-identical, similarities included
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in ours.round_stats_] == \
        [{k: v for k, v in s.items() if k != "seconds"} for s in ref.round_stats_]
    assert np.array_equal(ours.labels_, ref.labels_)


def test_max_rounds_asks_the_engine_for_active_clusters(er_graph):
    from sklearn.exceptions import ConvergenceWarning

    g = er_graph(80, 0.08, 1)
    with pytest.warns(ConvergenceWarning, match=r"max_rounds=1 rounds with \d+ active clusters"):
        m = TeraHAC(threshold=0.0, max_rounds=1, max_partition_size=3, affinity_levels=1,
                    engine=PurePythonEngine()).fit(g)
    assert m.n_rounds_ == 1
