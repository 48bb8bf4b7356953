"""Weighted similarity graphs for hierarchical clustering: construction, cleaning, k-NN, I/O.

A :class:`Graph` is undirected with each edge stored once, ``src < dst`` as dense int64 ids
``0..n-1`` and float64 weights > 0; a missing pair has similarity 0. Original node ids (ints or
strings) are kept in ``node_ids`` (ascending) and every output maps back to them. Cleaning drops
self-loops and zero weights (one warning with the counts), merges duplicate rows naming one pair
(``duplicates="max"``, ``"sum"`` or ``"error"``) and reports what it did in ``report``.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     g = Graph.from_edges([10, 20, 20, 30], [20, 10, 30, 30], [0.5, 0.7, 0.2, 1.0])
>>> str(caught[0].message)
'dropped 1 self-loops and 0 zero-weight edges'
>>> g.n_nodes, g.src.tolist(), g.dst.tolist(), g.weight.tolist(), g.node_ids.tolist()
(3, [0, 1], [1, 2], [0.7, 0.2], [10, 20, 30])
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from teraml._io import first_null, has_header, is_numeric_type, pyarrow_modules, read_csv
from teraml._validation import Interval, Options, check_choice, check_instance, check_int, check_param

__all__ = ["Graph", "SIMILARITY_THRESHOLD"]

#: The constraint of a similarity threshold t (``exact_hac``, ``TeraHAC``): a finite float >= 0.
SIMILARITY_THRESHOLD = Interval("float", 0, text="a finite float >= 0 (a similarity, not a distance)")

_DUPLICATES = ("max", "sum", "error")


def _first_row(mask) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_weights(weight) -> np.ndarray:
    w = np.asarray(weight)
    if w.dtype == object:
        missing = np.array([x is None or (isinstance(x, float) and np.isnan(x)) for x in w])
        if missing.any():
            raise ValueError(f"weight has {int(missing.sum())} missing values (first at row {_first_row(missing)})")
        try:
            w = w.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"weight must be numeric, got dtype {w.dtype}") from None
    if not (np.issubdtype(w.dtype, np.number) or w.dtype == np.bool_):
        raise TypeError(f"weight must be numeric, got dtype {'string' if w.dtype.kind in 'US' else w.dtype}")
    w = w.astype(np.float64)
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"weight must be finite; found {int(bad.sum())} NaN/inf values (first at row {_first_row(bad)})")
    neg = w < 0
    if neg.any():
        raise ValueError(f"weight must be >= 0 (0 means no edge); found {int(neg.sum())} negative values, "
                         f"min {w.min():g} (first at row {_first_row(neg)})")
    return w


_INT64_MAX = np.iinfo(np.int64).max


def _common_int(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Integer id arrays in one dtype: int64, or uint64 when an id is >= 2^63 (never wrapped)."""
    big = any(a.size and (a.dtype == object or a.dtype.kind == "u") and a.max() > _INT64_MAX for a in arrays)
    if not big:
        return tuple(a.astype(np.int64) for a in arrays)
    if any(a.size and a.min() < 0 for a in arrays):
        raise TypeError("node ids must fit one integer type; got negative ids and ids >= 2^63")
    try:
        return tuple(a.astype(np.uint64) for a in arrays)
    except OverflowError:
        raise TypeError("node ids must be integers below 2^64 (or strings)") from None


def _as_ids(x) -> np.ndarray:
    """An id array; a list of Python ints beyond int64 stays exact (numpy alone would make it float64)."""
    a = np.asarray(x)
    if a.dtype.kind == "f" and not isinstance(x, np.ndarray):
        o = np.asarray(x, dtype=object)
        if o.ndim == 1 and all(type(v) is int for v in o.tolist()):
            return o
    return a


def _node_index(src, dst, n_nodes):
    """Dense ids for the endpoint arrays; returns (src_idx, dst_idx, node_ids)."""
    s, d = _as_ids(src), _as_ids(dst)
    if s.shape != d.shape or s.ndim != 1:
        raise ValueError(f"src and dst must be 1-D of the same length; got shapes {s.shape} and {d.shape}")
    if s.dtype.kind in "iu" and d.dtype.kind in "iu" and s.dtype != d.dtype:
        s, d = _common_int(s, d)   # np.concatenate of int64 and uint64 would give float64
    both = np.concatenate([s, d])
    if both.dtype.kind in "iu":
        ids = _common_int(both)[0]
    elif both.dtype.kind == "f":
        frac = both[both != np.round(both)] if both.size else both
        if frac.size or not np.all(np.isfinite(both)):
            v = float(frac[0] if frac.size else both[~np.isfinite(both)][0])
            raise TypeError(f"node ids must be all integers or all strings, got float {v!r}")
        ids = both.astype(np.int64)
    elif both.dtype.kind in "US" or both.dtype == object:
        kinds = {type(x) for x in both.tolist()}
        if kinds <= {str}:
            ids = both.astype(str)
        elif kinds <= {int}:
            ids = _common_int(np.array(both.tolist(), dtype=object))[0]
        else:
            bad = next(x for x in both.tolist() if not isinstance(x, str))
            raise TypeError(f"node ids must be all integers or all strings, got {type(bad).__name__} {bad!r}")
    else:
        raise TypeError(f"node ids must be all integers or all strings, got dtype {both.dtype}")
    if n_nodes is not None:
        n_nodes = check_int("n_nodes", n_nodes, min_value=1, sep=", ")
        if ids.dtype.kind not in "iu":
            raise TypeError("node ids must be integers when n_nodes is given")
        if ids.size and (ids.min() < 0 or ids.max() >= n_nodes):
            raise ValueError(f"node ids must be in [0, n_nodes={n_nodes}), got {'max ' + str(ids.max()) if ids.max() >= n_nodes else 'min ' + str(ids.min())}")
        node_ids = np.arange(n_nodes, dtype=np.int64)
        idx = ids
    else:
        node_ids, idx = np.unique(ids, return_inverse=True)
    n = s.size
    return idx[:n].astype(np.int64), idx[n:].astype(np.int64), node_ids


class Graph:
    """An undirected weighted similarity graph (see the module docstring).

    Attributes: ``n_nodes``, ``src``, ``dst`` (int64, ``src < dst``), ``weight`` (float64 > 0),
    ``node_ids`` (original ids, ascending), ``report`` (cleaning counts).
    """

    def __init__(self, n_nodes, src, dst, weight, node_ids=None, report=None):
        self.n_nodes = int(n_nodes)
        self.src = np.asarray(src, dtype=np.int64)
        self.dst = np.asarray(dst, dtype=np.int64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.node_ids = np.arange(self.n_nodes, dtype=np.int64) if node_ids is None else np.asarray(node_ids)
        self.report = dict(report or {})

    @property
    def n_edges(self) -> int:
        return int(self.src.size)

    def __repr__(self) -> str:
        return f"Graph(n_nodes={self.n_nodes}, n_edges={self.n_edges})"

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_edges(cls, src, dst, weight, *, n_nodes=None, duplicates="max") -> Graph:
        """Build from edge arrays; ids may be ints or strings (remapped to 0..n-1 in ascending order).

        >>> Graph.from_edges(np.array([0, 1]), np.array([1, 2]), np.array([0.5, 0.25])).n_edges
        2
        """
        check_choice("duplicates", duplicates, _DUPLICATES, sep=", ")
        w = _check_weights(weight)
        s, d, node_ids = _node_index(src, dst, n_nodes)
        if w.shape != s.shape:
            raise ValueError(f"weight must have one value per edge ({s.size}), got {w.size}")
        n = int(node_ids.size)
        report = {"input_rows": int(s.size)}
        loops = s == d
        zeros = (w == 0) & ~loops
        report["self_loops"] = int(loops.sum())
        report["zero_weights"] = int(zeros.sum())
        if loops.any() or zeros.any():
            warnings.warn(f"dropped {int(loops.sum())} self-loops and {int(zeros.sum())} zero-weight edges",
                          UserWarning, stacklevel=2)
        keep = ~(loops | zeros)
        s, d, w = s[keep], d[keep], w[keep]
        lo, hi = np.minimum(s, d), np.maximum(s, d)
        key = lo * n + hi
        order = np.lexsort((w, key))
        key, w = key[order], w[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        report["duplicate_rows"] = int(key.size - starts.size)
        if key.size == 0:
            raise ValueError(f"graph has no edge with weight > 0 after cleaning (dropped {report['self_loops']} "
                             f"self-loops, {report['zero_weights']} zero weights)")
        if duplicates == "max":
            last = np.r_[starts[1:], key.size] - 1
            w_out = w[last]
        elif duplicates == "sum":
            # left to right over each pair's weights in ascending order (np.add.reduceat may sum pairwise), the
            # order the Spark engine's reader uses too, so both give the same bits
            from teraml.hac._kernels import run_sums

            w_out = run_sums(key, np.zeros_like(key), w)[1]
        else:
            last = np.r_[starts[1:], key.size] - 1
            differ = w[starts] != w[last]
            if differ.any():
                j = int(np.flatnonzero(differ)[0])
                k0 = key[starts[j]]
                a, b = node_ids[k0 // n], node_ids[k0 % n]
                a, b = (a.item(), b.item()) if hasattr(a, "item") else (a, b)
                raise ValueError(f"{int(differ.sum())} node pairs appear with different weights, e.g. ({a}, {b}): "
                                 f"{w[starts[j]]:g} vs {w[last[j]]:g}; use duplicates='max' or 'sum'")
            w_out = w[starts]
        ukey = key[starts]
        if ukey.size == 0:
            raise ValueError(f"graph has no edge with weight > 0 after cleaning (dropped {report['self_loops']} "
                             f"self-loops, {report['zero_weights']} zero weights)")
        report["edges"] = int(ukey.size)
        return cls(n, ukey // n, ukey % n, w_out, node_ids, report)

    @classmethod
    def from_sparse(cls, S, *, duplicates="max") -> Graph:
        """Build from a square scipy.sparse similarity matrix (both triangles read; ``duplicates`` merges them)."""
        check_instance("S", S, (sp.spmatrix, sp.sparray), "a square scipy.sparse matrix", sep=", ")
        if S.shape[0] != S.shape[1]:
            raise ValueError(f"similarity matrix must be square, got shape {S.shape}")
        C = sp.coo_array(S)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the diagonal of a similarity matrix is routine
            g = cls.from_edges(C.row.astype(np.int64), C.col.astype(np.int64), C.data, n_nodes=S.shape[0],
                               duplicates=duplicates)
        return g

    @classmethod
    def from_points(cls, X, *, n_neighbors=10, metric="cosine") -> Graph:
        """Exact k-NN similarity graph of points: cosine ``1 - d`` (pairs <= 0 dropped) or euclidean ``1/(1+d)``.

        ``X`` is a dense (n, d) array or a scipy.sparse matrix of n feature rows. A point's own row is dropped
        by index (duplicates of it may be its first neighbours); edges are symmetrised by max.

        >>> Graph.from_points(np.random.default_rng(0).normal(size=(50, 4)), n_neighbors=5).n_nodes
        50
        """
        from sklearn.neighbors import NearestNeighbors

        if sp.issparse(X):
            X = sp.csr_array(X, dtype=np.float64)
            X.sum_duplicates()
            bad = np.zeros(X.shape[0], dtype=bool)
            bad[np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[~np.isfinite(X.data)]] = True
            sq_norm = np.asarray(X.multiply(X).sum(axis=1)).ravel() if not bad.any() else None
        else:
            X = np.asarray(X, dtype=np.float64)
            bad = ~np.all(np.isfinite(X), axis=1) if X.ndim == 2 else None
            sq_norm = None
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"X must be a 2-D array of at least 2 points, got shape {X.shape}")
        if bad.any():
            raise ValueError(f"X has {int(bad.sum())} rows with NaN/inf")
        check_choice("metric", metric, ("cosine", "euclidean"), phrase="or", sep=", ")
        if metric == "cosine":
            zero = (sq_norm if sq_norm is not None else np.linalg.norm(X, axis=1)) == 0
            if zero.any():
                raise ValueError(f"X has {int(zero.sum())} all-zero rows; cosine similarity is undefined")
        n_neighbors = check_int("n_neighbors", n_neighbors, min_value=1, max_value=X.shape[0] - 1, sep=", ")
        nn = NearestNeighbors(n_neighbors=n_neighbors + 1, metric=metric, algorithm="brute").fit(X)
        dist, ind = nn.kneighbors(X)
        n = X.shape[0]
        rows = np.repeat(np.arange(n), n_neighbors + 1)
        cols, dist = ind.ravel(), dist.ravel()
        not_self = cols != rows
        rows, cols, dist = rows[not_self], cols[not_self], dist[not_self]
        # keep the n_neighbors nearest others per row
        per_row = np.bincount(rows, minlength=n)
        rank = np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        keep = rank < n_neighbors
        rows, cols, dist = rows[keep], cols[keep], dist[keep]
        sim = 1.0 - dist if metric == "cosine" else 1.0 / (1.0 + dist)
        pos = sim > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return cls.from_edges(rows[pos], cols[pos], sim[pos], n_nodes=n, duplicates="max")

    # ------------------------------------------------------------------------------------------ I/O

    def to_sparse(self) -> sp.csr_array:
        """The symmetric n x n similarity matrix."""
        s = np.concatenate([self.src, self.dst])
        d = np.concatenate([self.dst, self.src])
        w = np.concatenate([self.weight, self.weight])
        return sp.csr_array((w, (s, d)), shape=(self.n_nodes, self.n_nodes))

    @staticmethod
    def _format(path, format):
        fmt = format or Path(path).suffix.lstrip(".").lower()
        return check_param("format", fmt, [Options("csv", "parquet"), "'csv' or 'parquet' (or a .csv / .parquet path)"],
                           sep=", ")

    def write(self, path, *, format=None) -> None:
        """Write ``src, dst, weight`` rows with the original node ids (.csv or .parquet)."""
        fmt = self._format(path, format)
        src, dst = self.node_ids[self.src], self.node_ids[self.dst]
        if fmt == "csv":
            with open(path, "w", newline="") as fh:
                wr = csv.writer(fh)
                wr.writerow(["src", "dst", "weight"])
                for a, b, w in zip(src.tolist(), dst.tolist(), self.weight.tolist()):
                    wr.writerow([a, b, repr(w)])
        else:
            pa, pq = pyarrow_modules()
            pq.write_table(pa.table({"src": src, "dst": dst, "weight": self.weight}), path)

    @classmethod
    def read(cls, path, *, format=None, columns=("src", "dst", "weight"), duplicates="max") -> Graph:
        r"""Read an edge list (CSV with a header, or Parquet) with the given column names.

        CSV is read by pyarrow (multithreaded; a UTF-8 byte-order mark, quoting and blank lines are handled).
        Ids are read as written: integers (int64, or uint64 up to 2^64 - 1) when every id of both columns is
        one, else strings. A short or malformed row is a ``ValueError`` naming its line, a missing value in
        any column one naming its row (rows count from 0, after the header).

        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "edges.csv")
        >>> _ = open(path, "w").write("src,dst,weight\n\na,b,0.5\nb,c,0.25\n")
        >>> Graph.read(path).node_ids.tolist()
        ['a', 'b', 'c']
        """
        fmt = cls._format(path, format)
        name = Path(path).name
        table = read_csv(path, columns[:2]) if fmt == "csv" else pyarrow_modules()[1].read_table(path)
        for c in columns:
            if c not in table.column_names:
                raise ValueError(f"{name} lacks column {c!r}; found {table.column_names}; pass columns=/--weight-col")
        src, dst = _id_columns(table.column(columns[0]), table.column(columns[1]), columns[:2])
        return cls.from_edges(src, dst, _weight_column(table.column(columns[2])), duplicates=duplicates)


def _id_columns(src, dst, names):
    """Endpoint columns of a table as numpy ids: int64, uint64 (ids >= 2^63) or str, the same for both."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, col in zip(names, (src, dst)):
        if col.null_count:
            raise ValueError(f"{name} has {col.null_count} missing values (first at row {first_null(col)})")
    cols = [src, dst]
    if all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in cols):
        cols = [pc.utf8_trim_whitespace(c) for c in cols]
        for target in (pa.int64(), pa.uint64()):
            try:
                return tuple(pc.cast(c, target).to_numpy() for c in cols)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return tuple(np.asarray(c.to_numpy(zero_copy_only=False), dtype=str) for c in cols)
    return tuple(c.to_numpy(zero_copy_only=False) for c in cols)


def _weight_column(col) -> np.ndarray:
    """The weight column as float64 (missing values and text are errors naming the row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise ValueError(f"weight has {col.null_count} missing values (first at row {first_null(col)})")
    if not (is_numeric_type(col.type) or pa.types.is_boolean(col.type)):
        values = col.to_pylist()
        for i, x in enumerate(values):
            try:
                float(x)
            except (TypeError, ValueError):
                raise TypeError(f"weight must be numeric, got dtype string (row {i}: {x!r})") from None
        return np.asarray(values, dtype=np.float64)
    return pc.cast(col, pa.float64()).to_numpy()


def read_points(path, *, header=None) -> np.ndarray:
    r"""Points for :meth:`Graph.from_points` from ``.npy``, ``.parquet`` or CSV (every column a coordinate).

    A CSV header is detected (a first line with a field that is not a number) unless ``header`` is True or
    False; no row is ever dropped silently.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "points.csv")
    >>> _ = open(path, "w").write("1.0,2.0\n3.0,4.0\n")
    >>> read_points(path).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".parquet":
        table = pyarrow_modules()[1].read_table(path)
    else:
        if header is None:
            header = has_header(path)
        table = read_csv(path, header=bool(header))
    for name in table.column_names:
        col = table.column(name)
        if col.null_count:
            raise ValueError(f"{path.name}: column {name!r} has {col.null_count} missing values "
                             f"(first at row {first_null(col)})")
        if not is_numeric_type(col.type):
            raise TypeError(f"{path.name}: column {name!r} must be numeric, got {col.type}; a header line needs "
                            "--header (or header=True)")
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names]
                           ).astype(np.float64)
