"""Tables in and out for ``teraml anonymize``: CSV or Parquet, other columns passed through verbatim.

The sensitive columns (and the clustering columns) must be numeric; every other column is read as text and
written back unchanged, so ids such as ``"007"`` keep their leading zeros. The rows are shuffled together
(``shuffle=True``), since the row order of a release can re-identify people.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from teraml._io import first_null, is_numeric_type, line_of_row, pyarrow_modules, read_csv
from teraml.anonymize._anonymizer import GUARANTEE, LookAlikeAnonymizer
from teraml.anonymize._check import k_anonymity


def csv_header(path) -> list[str]:
    """The column names on the first non-blank line of a CSV file (a byte-order mark is ignored)."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in csv.reader(fh):
            if any(field.strip() for field in row):
                return row
    raise ValueError(f"{Path(path).name} is empty")


def read_table(path, numeric: list[str] | None):
    """A CSV or Parquet file as a pyarrow table; with CSV, every column outside ``numeric`` is read as text.

    ``numeric=None`` reads every column by type inference (used only to list the columns).
    """
    _, pq = pyarrow_modules()
    path = Path(path)
    if path.suffix == ".parquet" or path.is_dir():
        try:
            return pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds; the message says which file
            raise ValueError(f"{path.name} is not a readable Parquet file: {exc}") from None
    header = csv_header(path)
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise ValueError(f"{path.name}: duplicate column name(s) {dup}")
    text = [c for c in header if numeric is not None and c not in numeric]
    # text stays text: "NA", "null" or an empty field is written back as it was read
    return read_csv(path, string_columns=text, strings_can_be_null=False)


def numeric_block(table, columns: list[str], path) -> np.ndarray:
    """The named columns as a float64 matrix; a missing, non-numeric or null column is a ValueError/TypeError."""
    name = Path(path).name
    dup = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if dup:
        raise ValueError(f"{name}: duplicate column name(s) {dup}")
    if table.num_rows == 0:
        raise ValueError(f"{name}: expected at least one data row, got 0")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"--sensitive: unknown column(s) {missing}; {name} has columns {table.column_names}")
    out = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        col = table.column(c)
        if not is_numeric_type(col.type):
            raise TypeError(f"{name}: column {c!r} has type {col.type}; expected numeric (encode categories first)")
        if col.null_count:
            row = first_null(col)
            where = f"line {line_of_row(path, row + 2)}" if Path(path).suffix == ".csv" else f"row {row}"
            raise ValueError(f"{name}: column {c!r} has {col.null_count} missing value(s) (first on {where}); "
                             "impute or drop them first")
        out[:, j] = col.to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def anonymize_table(table, sensitive: list[str], *, cluster_columns: list[str], drop: list[str] = (),
                    shuffle: bool = True, path="table", **params):
    """Release ``table``: the sensitive columns replaced by group means, rows shuffled, ``drop`` removed.

    Returns ``(pyarrow table, report)``; ``params`` go to :class:`LookAlikeAnonymizer` (``cluster_on`` is
    derived from ``cluster_columns``).
    """
    pa, _ = pyarrow_modules()
    unknown = [c for c in drop if c not in table.column_names]
    if unknown:
        raise ValueError(f"--drop: unknown column(s) {unknown}; {Path(path).name} has columns {table.column_names}")
    if set(drop) & set(sensitive):
        raise ValueError(f"--drop: {sorted(set(drop) & set(sensitive))} are sensitive columns; they are released "
                         "as group means, not dropped")
    used = list(dict.fromkeys(list(sensitive) + list(cluster_columns)))
    X = numeric_block(table, used, path)
    s_idx = list(range(len(sensitive)))
    on = "sensitive" if set(cluster_columns) == set(sensitive) else (
        "all" if set(sensitive) <= set(cluster_columns) else "nonsensitive")
    anon = LookAlikeAnonymizer(s_idx, cluster_on=on, **params)
    Xt = anon.fit_transform(X)
    n = table.num_rows
    seed = params.get("random_state")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    cols = {}
    for c in table.column_names:
        if c in drop:
            continue
        if c in sensitive:
            cols[c] = pa.array(Xt[order, sensitive.index(c)], type=pa.float64())
        else:
            cols[c] = table.column(c).take(pa.array(order))
    out = pa.table(cols)
    report = {"rows": n, "k": int(anon.k), "k_achieved": int(anon.k_achieved_), "n_groups": int(anon.n_clusters_),
              "group_size_min": int(anon.group_sizes_.min()), "group_size_max": int(anon.group_sizes_.max()),
              "information_loss": float(anon.information_loss_), "method": anon.method_,
              "sensitive_features": list(sensitive), "cluster_on": list(cluster_columns), "shuffled": bool(shuffle),
              "dropped": list(drop), "k_on_sensitive_check": k_anonymity(Xt[:, s_idx]),
              "guarantee": GUARANTEE}
    return out, report


def write_table(table, path) -> None:
    """Write a pyarrow table as CSV or Parquet (by suffix); floats keep every digit, so re-reading is exact."""
    _, pq = pyarrow_modules()
    path = Path(path)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
        return
    table.to_pandas().to_csv(path, index=False)
