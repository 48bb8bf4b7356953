"""The rebuilt peers (RAC, SCC, affinity clustering), dendrogram purity and the certificate."""


import numpy as np
import pytest

from teraml.hac import Graph, TeraHAC, exact_hac
from teraml.hac._certificate import certify
from teraml.hac._peers import dendrogram_purity, parents_of, rac_graph, scc


def test_rounds_vs_rac_r2_r3(digits_graph):
    n = 1000
    path = Graph.from_edges(np.arange(n - 1), np.arange(1, n), np.arange(1, n) / n, n_nodes=n)  # D4
    rac_d, rac_rounds = rac_graph(path)
    m = TeraHAC(threshold=0.0, epsilon=0.1).fit(path)
    assert rac_rounds / m.n_rounds_ >= 100                    # R2 (pilot 510 vs 1)
    g1, _ = digits_graph
    d_rac, r1 = rac_graph(g1)
    m1 = TeraHAC(threshold=0.0, epsilon=0.1).fit(g1)
    assert r1 / m1.n_rounds_ >= 2.5                           # R3 (pilot 21/7)
    # RAC is exact average linkage
    assert np.allclose(np.sort(d_rac.similarity), np.sort(exact_hac(g1).similarity), rtol=1e-12)


def test_scc_affinity_and_purity(digits_graph):
    g1, y = digits_graph
    d = exact_hac(g1)
    p_exact = dendrogram_purity(parents_of(d), y)
    parent, rounds = scc(g1, tau_min=d.similarity.min())
    assert 1 <= rounds <= 50 and parent.size > g1.n_nodes
    p_scc = dendrogram_purity(parent, y)
    parent_a, _ = scc(g1, affinity=True)
    p_aff = dendrogram_purity(parent_a, y)
    assert 0.5 < p_aff <= 1 and 0.5 < p_scc <= 1 and 0.5 < p_exact <= 1
    # purity of a perfect tree is 1, of a random pairing below
    assert dendrogram_purity(parents_of(d), np.zeros(g1.n_nodes)) == 1.0


def test_certificate_catches_a_bad_merge():
    # the naive rule "W(a,b) >= B(a)/(1+eps)" alone (pitfall 3) is not a certificate: a dendrogram that merges
    # a light pair first fails the check
    g = Graph.from_edges([0, 1, 2], [1, 2, 3], [0.1, 0.9, 0.8], n_nodes=4)
    from teraml.hac import Dendrogram

    bad = Dendrogram(4, [0, 4, 5], [1, 2, 3], [0.1, 0.45, 0.8 / 3])
    c = certify(g, bad, eps=0.1)
    assert c["max_goodness"] == pytest.approx(9.0) and c["min_greedy_ratio"] < 1 / 1.1
    good = exact_hac(g)
    assert certify(g, good, eps=0.0)["max_goodness"] == pytest.approx(1.0)
