"""Files of ``teraml select``: embeddings in, selection out, and the state of a two-step run.

Embeddings: a ``.npy`` file (memory-mapped, never copied whole), Parquet (read by pyarrow in record batches
into float32: a list column, or every numeric column but the id column) or CSV (the same columns; a header
line is required). The selection is written as Parquet or CSV with the columns ``index, id, role, weight,
probability, count, loss``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from teraml._io import first_null, has_header, is_numeric_type, pyarrow_modules, read_csv

__all__ = ["read_embeddings", "write_selection", "fingerprint", "save_state", "load_state", "read_losses",
           "read_losses_by_id"]

_OUT_COLUMNS = ("index", "id", "role", "weight", "probability", "count", "loss")


def _available_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 2**40


def _allocate(n: int, d: int) -> np.ndarray:
    """An (n, d) float32 buffer: in memory, or a temporary memmap when it would take over half the free RAM."""
    if n * d * 4 > _available_memory() // 2:
        fh = tempfile.NamedTemporaryFile(prefix="teraml-select-", suffix=".f32", delete=False)
        fh.close()
        return np.memmap(fh.name, dtype=np.float32, mode="w+", shape=(n, d))
    return np.empty((n, d), dtype=np.float32)


def read_embeddings(path, *, column: str = "embedding", id_column: str = "id",
                    header: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X, ids) from ``.npy``, ``.parquet`` or ``.csv``; ids are the id column's values (unique), or row positions.

    A CSV header is detected (a first line with a field that is not a number) unless ``header`` says; without
    one the columns are all features and no row is lost."""
    X, ids = _read_embeddings(path, column, id_column, header)
    if ids.size and np.unique(ids).size != ids.size:
        uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
        dup = uniq[counts > 1][0].item()
        rows = np.flatnonzero(ids == dup)[:2].tolist()
        raise ValueError(f"{Path(path).name}: column {id_column!r} must hold unique ids; {dup!r} is on rows "
                         f"{rows[0]} and {rows[1]}")
    return X, ids


def _read_embeddings(path, column, id_column, header):
    path = Path(path)
    name = path.name
    if path.suffix == ".npy":
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{name} is not a readable .npy array: {exc}") from None
        return X, np.arange(X.shape[0] if X.ndim else 0, dtype=np.int64)
    if path.suffix == ".parquet" or path.is_dir():
        return _read_parquet(path, column, id_column)
    if header is None:
        header = has_header(path)
    table = read_csv(path, string_columns=(id_column,) if header else (), header=bool(header))
    return _from_table(table, name, column, id_column)


def _feature_names(schema, name, column, id_column):
    import pyarrow as pa

    if column in schema.names:
        t = schema.field(column).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise TypeError(f"{name}: column {column!r} must be a list of numbers, got {t}")
        return [column], True
    cols = [f.name for f in schema if f.name != id_column and is_numeric_type(f.type)]
    others = [f.name for f in schema if f.name != id_column and f.name not in cols]
    if not cols:
        raise ValueError(f"{name} has no list column {column!r} and no numeric columns; found {schema.names}; "
                         "pass --column or --id-column")
    if others:
        raise TypeError(f"{name}: columns {others} are not numeric; a text id column needs --id-column")
    return cols, False


def _read_parquet(path, column, id_column):
    _, pq = pyarrow_modules()
    name = path.name
    try:
        dataset = pq.ParquetFile(path) if path.is_file() else None
    except Exception as exc:   # pyarrow raises ArrowInvalid/OSError for files that are not Parquet
        raise ValueError(f"{name} is not a readable Parquet file: {exc}") from None
    if dataset is None:
        return _from_table(pq.read_table(path), name, column, id_column)
    schema = dataset.schema_arrow
    cols, is_list = _feature_names(schema, name, column, id_column)
    n = dataset.metadata.num_rows
    read = cols + ([id_column] if id_column in schema.names else [])
    X, ids, row = None, [], 0
    for batch in dataset.iter_batches(columns=read, batch_size=65536):
        block = _block(batch, cols, is_list, name, row)
        if X is None:
            X = _allocate(n, block.shape[1])
        elif block.shape[1] != X.shape[1]:
            raise ValueError(f"{name}: rows have {X.shape[1]} and {block.shape[1]} values")
        X[row:row + block.shape[0]] = block
        if id_column in schema.names:
            ids.append(_ids(batch.column(id_column), name, id_column, row))
        row += block.shape[0]
    if X is None:
        raise ValueError(f"X must be 2-D with at least 1 row and 1 column; got shape (0, {len(cols)})")
    ids = np.concatenate(ids) if ids else np.arange(n, dtype=np.int64)
    return X, ids


def _from_table(table, name, column, id_column):
    cols, is_list = _feature_names(table.schema, name, column, id_column)
    block = _block(table, cols, is_list, name, 0)
    ids = (_ids(table.column(id_column), name, id_column, 0) if id_column in table.column_names
           else np.arange(table.num_rows, dtype=np.int64))
    return block, ids


def _block(batch, cols, is_list, name, offset) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if is_list:
        col = batch.column(cols[0])
        if col.null_count:
            raise ValueError(f"{name}: column {cols[0]!r} has {col.null_count} missing values (first at row "
                             f"{offset + first_null(col)})")
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths.min() != lengths.max() or lengths.min() == 0):
            bad = int(np.argmax(lengths != lengths[0])) if lengths.min() != lengths.max() else 0
            raise ValueError(f"{name}: column {cols[0]!r} needs one length for every row; row {offset + bad} has "
                             f"{int(lengths[bad])} values, row {offset} has {int(lengths[0])}")
        flat = pc.list_flatten(col)
        if not is_numeric_type(flat.type):
            raise TypeError(f"{name}: column {cols[0]!r} must hold numbers, got {flat.type}")
        d = int(lengths[0]) if lengths.size else 0
        return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d)
    out = np.empty((batch.num_rows, len(cols)), dtype=np.float32)
    for j, c in enumerate(cols):
        col = batch.column(c)
        if col.null_count:
            raise ValueError(f"{name}: column {c!r} has {col.null_count} missing values (first at row "
                             f"{offset + first_null(col)})")
        out[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return out


def _ids(col, name, id_column, offset) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise ValueError(f"{name}: column {id_column!r} has {col.null_count} missing values (first at row "
                         f"{offset + first_null(col)})")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.utf8_trim_whitespace(col)
        text = np.asarray(col.to_numpy(zero_copy_only=False), dtype=str)
        try:
            as_int = pc.cast(col, pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return text
        # integers only when every id reads back exactly as written ("007" and "+5" stay text)
        return as_int if np.array_equal(as_int.astype(str), text) else text
    return col.to_numpy(zero_copy_only=False)


def write_selection(path, sel, ids) -> None:
    """The selection as ``.parquet`` (default) or ``.csv``, one row per selected item.

    ``ids`` holds every row's id (``sel.indices`` are row positions), or is None when ``sel.indices`` are ids
    already (the Spark engine, which has no row positions: ``index`` is then empty)."""
    import pyarrow as pa

    _, pq = pyarrow_modules()
    path = Path(path)
    if ids is None:
        index, id_values = pa.nulls(len(sel), pa.int64()), sel.indices
    else:
        index, id_values = sel.indices, np.asarray(ids)[sel.indices]
    table = pa.table({"index": index, "id": id_values, "role": sel.role,
                      "weight": sel.weights, "probability": sel.probabilities, "count": sel.counts,
                      "loss": pa.array(sel.losses, from_pandas=True)})   # unknown losses are nulls
    if path.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


def fingerprint(X) -> dict:
    """n, d, dtype and the sha256 of 64 evenly spaced rows: enough to notice a changed input."""
    n = int(X.shape[0])
    rows = np.unique(np.linspace(0, n - 1, num=min(64, n)).astype(np.int64)) if n else np.empty(0, np.int64)
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(X[rows]))).hexdigest()
    return {"n": n, "d": int(X.shape[1]), "dtype": str(X.dtype), "sha256": digest}


def save_state(path, sampler, params: dict, fp: dict) -> None:
    """The clustering and scores of the first step of a two-step run (no embeddings)."""
    state = sampler._state()
    meta = json.dumps({"params": params, "fingerprint": fp})
    with open(path, "wb") as fh:
        np.savez_compressed(fh, meta=np.array(meta), **state)


def load_state(path) -> tuple[dict, dict]:
    """(arrays, meta) of a state file."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def _no_repeats(values, name, column) -> None:
    uniq, counts = np.unique(values, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{name}: column {column!r} names {uniq[counts > 1][0].item()!r} {int(counts.max())} times; give "
                         "each loss once")


def read_losses(path, n: int, ids) -> np.ndarray:
    """Losses for all n rows (NaN where unknown) from a length-n ``.npy`` or a table with (index or id, loss)."""
    path = Path(path)
    name = path.name
    out = np.full(n, np.nan)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.shape != (n,):
            raise ValueError(f"{name} must hold {n} losses (NaN where unknown); got shape {arr.shape}")
        return arr.astype(np.float64)
    pa, pq = pyarrow_modules()
    table = pq.read_table(path) if path.suffix == ".parquet" else read_csv(path, string_columns=("id",))
    if "loss" not in table.column_names:
        raise ValueError(f"{name} lacks column 'loss'; found {table.column_names}")
    loss = table.column("loss")
    if not is_numeric_type(loss.type):
        raise TypeError(f"{name}: column 'loss' must be numeric, got {loss.type}")
    values = loss.to_numpy(zero_copy_only=False).astype(np.float64)
    if "index" in table.column_names:
        raw = table.column("index")
        if not (pa.types.is_integer(raw.type) or (pa.types.is_floating(raw.type) and np.all(
                np.mod(raw.to_numpy(zero_copy_only=False), 1) == 0))):
            raise TypeError(f"{name}: column 'index' must hold whole row numbers, got {raw.type}")
        idx = raw.to_numpy(zero_copy_only=False).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name}: index must be in [0, {n}); got {idx.min()}..{idx.max()}")
        _no_repeats(idx, name, "index")
        out[idx] = values
        return out
    if "id" in table.column_names:
        # ids match as text on both sides: 30 in one file and "30" in the other are one id
        col = np.asarray(table.column("id").to_numpy(zero_copy_only=False)).astype(str)
        col = np.char.strip(col)
        _no_repeats(col, name, "id")
        pos = {v: i for i, v in enumerate(np.asarray(ids).astype(str).tolist())}
        missing = [v for v in col.tolist() if v not in pos]
        if missing:
            raise ValueError(f"{name}: {len(missing)} ids are not in EMBEDDINGS, e.g. {missing[0]!r}")
        out[[pos[v] for v in col.tolist()]] = values
        return out
    raise ValueError(f"{name} needs a column 'index' or 'id' beside 'loss'; found {table.column_names}")


def read_losses_by_id(path) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending, int64; their losses, float64) from a table with columns (``id``, ``loss``), or from a
    ``.npy`` whose position i holds the loss of id i (NaN where unknown): the losses of the Spark engine, whose
    rows are named by integer ids."""
    path = Path(path)
    name = path.name
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must hold one loss per id (a 1-D numeric array); got shape {arr.shape}, dtype "
                             f"{arr.dtype}")
        return np.arange(arr.size, dtype=np.int64), arr.astype(np.float64)
    pa, pq = pyarrow_modules()
    import pyarrow.compute as pc

    table = pq.read_table(path) if path.suffix == ".parquet" else read_csv(path, string_columns=("id",))
    for col in ("id", "loss"):
        if col not in table.column_names:
            raise ValueError(f"{name} lacks column {col!r}; found {table.column_names}")
    loss = table.column("loss")
    if not is_numeric_type(loss.type):
        raise TypeError(f"{name}: column 'loss' must be numeric, got {loss.type}")
    raw = table.column("id")
    if raw.null_count:
        raise ValueError(f"{name}: column 'id' has {raw.null_count} missing values (first at row {first_null(raw)})")
    if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
        raw = pc.utf8_trim_whitespace(raw)
    try:
        ids = pc.cast(raw, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise TypeError(f"{name}: column 'id' must hold integer ids (the Spark engine's ids), got {raw.type}") from None
    _no_repeats(ids, name, "id")
    order = np.argsort(ids, kind="stable")
    return ids[order].astype(np.int64), loss.to_numpy(zero_copy_only=False).astype(np.float64)[order]
