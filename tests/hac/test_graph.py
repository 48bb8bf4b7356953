"""Graph: cleaning, k-NN graphs, CSV/Parquet I/O and the validation messages of the HAC inputs."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from teraml.hac import Graph, exact_hac


def test_graph_cleaning_and_io(tmp_path):
    with pytest.warns(UserWarning, match="dropped 1 self-loops and 1 zero-weight edges"):
        g = Graph.from_edges(["b", "a", "a", "c", "c"], ["a", "b", "a", "b", "a"], [0.3, 0.5, 1.0, 0.0, 0.7])
    assert g.node_ids.tolist() == ["a", "b", "c"] and g.n_edges == 2
    assert g.weight.tolist() == [0.5, 0.7] and g.report["duplicate_rows"] == 1
    g2 = Graph.from_edges([0, 1], [1, 0], [0.3, 0.5], duplicates="sum")
    assert g2.weight.tolist() == [0.8]
    for suffix in ("csv", "parquet"):
        if suffix == "parquet":
            pytest.importorskip("pyarrow")
        p = tmp_path / f"e.{suffix}"
        g.write(p)
        h = Graph.read(p)
        assert h.node_ids.tolist() == g.node_ids.tolist() and np.allclose(h.weight, g.weight)
    S = g.to_sparse()
    assert (S != S.T).nnz == 0
    assert Graph.from_sparse(sp.csr_matrix(S)).n_edges == 2


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: Graph.from_edges([0], [1], [-0.31]), ValueError,
         r"weight must be >= 0 \(0 means no edge\); found 1 negative values, min -0.31 \(first at row 0\)"),
        (lambda: Graph.from_edges([0, 1], [1, 2], [0.1, np.nan]), ValueError,
         r"weight must be finite; found 1 NaN/inf values \(first at row 1\)"),
        (lambda: Graph.from_edges([0, 1], [1, 2], np.array([0.1, None], dtype=object)), ValueError,
         r"weight has 1 missing values \(first at row 1\)"),
        (lambda: Graph.from_edges([0], [1], np.array(["x"])), TypeError, "weight must be numeric, got dtype string"),
        (lambda: Graph.from_edges([0, 1], [1, 0], [0.3, 0.5], duplicates="error"), ValueError,
         r"1 node pairs appear with different weights, e.g. \(0, 1\): 0.3 vs 0.5; use duplicates='max' or 'sum'"),
        (lambda: Graph.from_edges([0.0], [3.5], [1.0]), TypeError, "node ids must be all integers or all strings, got float 3.5"),
        (lambda: Graph.from_edges([0], [130], [1.0], n_nodes=100), ValueError, r"node ids must be in \[0, n_nodes=100\), got max 130"),
        (lambda: Graph.from_edges([0, 1], [0, 1], [1.0, 1.0]), ValueError,
         r"graph has no edge with weight > 0 after cleaning \(dropped 2 self-loops, 0 zero weights\)"),
        (lambda: Graph.from_sparse(sp.csr_matrix((5, 7))), ValueError, r"similarity matrix must be square, got shape \(5, 7\)"),
        (lambda: Graph.from_points(np.array([[1.0, 0], [0, 0], [1, 1]])), ValueError,
         "X has 1 all-zero rows; cosine similarity is undefined"),
        (lambda: Graph.from_points(np.array([[1.0, np.nan], [0, 1], [1, 1]])), ValueError, "X has 1 rows with NaN/inf"),
        (lambda: exact_hac(Graph.from_edges([0], [1], [1.0]), threshold=-0.2), ValueError,
         r"threshold must be a finite float >= 0 \(a similarity, not a distance\), got -0.2"),
        (lambda: exact_hac(np.zeros((3, 3))), TypeError, "graph must be a teraml.hac.Graph, got numpy.ndarray"),
    ],
)
def test_validation_messages(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cleaning warnings precede some errors
        with pytest.raises(exc, match=match):
            call()


def test_csv_missing_column(tmp_path):
    p = tmp_path / "edges.csv"
    p.write_text("a,b,w\n0,1,0.5\n")
    with pytest.raises(ValueError, match=r"edges.csv lacks column 'src'; found \['a', 'b', 'w'\]; pass columns=/--weight-col"):
        Graph.read(p)
    g = Graph.read(p, columns=("a", "b", "w"))
    assert g.n_edges == 1


def test_csv_reader_handles_bom_blank_lines_quotes_and_names_a_short_row(tmp_path):
    # defect 1: a blank line, trailing blank lines, a UTF-8 BOM (lost the src column) and a short row
    p = tmp_path / "edges.csv"
    p.write_bytes(b'\xef\xbb\xbfsrc,dst,weight\n1,2,0.5\n\n"2",3,0.7\n3,1,0.25\n\n\n')
    g = Graph.read(p)
    assert g.node_ids.tolist() == [1, 2, 3] and sorted(g.weight.tolist()) == [0.25, 0.5, 0.7]
    p.write_text("src,dst,weight\n1,2,0.5\n\n2,3,0.7\n3,1\n")
    with pytest.raises(ValueError, match=r"edges.csv: line 5 has 2 fields, expected 3: '3,1'"):
        Graph.read(p)
    p.write_text("src,dst,weight\n1,,0.5\n")
    with pytest.raises(ValueError, match=r"dst has 1 missing values \(first at row 0\)"):
        Graph.read(p)
    p.write_text("")
    with pytest.raises(ValueError, match="edges.csv is empty"):
        Graph.read(p)
    p.write_text("src,dst,weight\n1,2,x\n")
    with pytest.raises(TypeError, match=r"weight must be numeric, got dtype string \(row 0: 'x'\)"):
        Graph.read(p)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_uint64_ids_are_kept_exactly(tmp_path, suffix):
    # defect 3: ids >= 2^63 wrapped to negative numbers
    big = [2**64 - 1, 2**63, 5]
    g = Graph.from_edges(np.array(big, dtype=np.uint64), np.array([1, 2, 3], dtype=np.uint64), [0.5, 0.4, 0.3])
    assert g.node_ids.dtype == np.uint64 and set(big) <= set(g.node_ids.tolist())
    assert Graph.from_edges(big, [1, 2, 3], [0.5, 0.4, 0.3]).node_ids.tolist() == g.node_ids.tolist()  # Python ints
    p = tmp_path / f"e.{suffix}"
    g.write(p)
    h = Graph.read(p)
    assert h.node_ids.dtype == np.uint64 and h.node_ids.tolist() == g.node_ids.tolist()
    with pytest.raises(TypeError, match="negative ids and ids >= 2\\^63"):
        Graph.from_edges([-1, 2], np.array([2**63, 3], dtype=np.uint64), [0.5, 0.4])


@pytest.mark.parametrize("header", [None, True, False])
def test_points_csv_header_detected_or_given_and_no_row_dropped(tmp_path, header):
    # defect 2: a points file without a header lost its first point
    from teraml.hac.graph import read_points

    p = tmp_path / "pts.csv"
    p.write_text("x,y\n1.0,2.0\n3.0,4.0\n" if header in (None, True) else "1.0,2.0\n3.0,4.0\n5,6\n")
    X = read_points(p, header=header)
    assert X.tolist() == ([[1.0, 2.0], [3.0, 4.0]] if header in (None, True) else [[1, 2], [3, 4], [5, 6]])
    if header is False:
        assert read_points(p).shape == (3, 2)          # detected: no header
        p.write_text("x,y\n1.0,2.0\n")
        with pytest.raises(TypeError, match="column 'f0' must be numeric"):
            read_points(p, header=False)
