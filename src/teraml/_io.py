"""Reading tables (CSV and Parquet) with pyarrow, shared by the command-line readers of every component.

CSV files may start with a byte-order mark, quote fields and contain blank lines; a short or long row is a
``ValueError`` naming its physical line.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_csv", "line_of_row", "first_null", "is_numeric_type", "has_header", "pyarrow_modules"]


def read_csv(path, string_columns=(), header=True, strings_can_be_null=True):
    """A CSV file as a pyarrow table (``string_columns`` read as text); bad rows raise ValueError with a line.

    ``strings_can_be_null=False`` keeps text such as ``NA`` or an empty field as the string it is.
    """
    pa, _ = pyarrow_modules()
    import pyarrow.csv as pcsv

    name = Path(path).name
    bad = []

    def on_invalid_row(row):
        bad.append(row)
        return "error"

    def read(use_threads):
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(autogenerate_column_names=not header, use_threads=use_threads),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in string_columns},
                                                strings_can_be_null=strings_can_be_null),
        )

    try:
        return read(True)
    except pa.ArrowInvalid as exc:
        if bad and bad[0].number is None:  # threads do not know row numbers: find it again in one thread
            bad.clear()
            try:
                read(False)
            except pa.ArrowInvalid:
                pass
        if bad:
            row = bad[0]
            where = f"line {line_of_row(path, row.number)}" if row.number is not None else "a row"
            raise ValueError(f"{name}: {where} has {row.actual_columns} fields, expected {row.expected_columns}: "
                             f"{row.text!r}") from None
        if "Empty CSV file" in str(exc):
            raise ValueError(f"{name} is empty") from None
        raise ValueError(f"{name} is not a readable CSV file: {exc}") from None



def line_of_row(path, number: int) -> int:
    """The physical line (1-based) where pyarrow's row ``number`` starts (1-based, blank lines not counted).

    Rows are CSV records, so a quoted field that spans lines counts once.
    """
    import csv

    seen, end = 0, 0
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        for record in reader:
            start, end = end + 1, reader.line_num
            if record and not (len(record) == 1 and not record[0].strip()):
                seen += 1
                if seen == number:
                    return start
    return number



def first_null(column) -> int:
    import pyarrow.compute as pc

    return int(pc.index(pc.is_null(column), True).as_py())



def is_numeric_type(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)



def has_header(path) -> bool:
    """True when the first non-blank line of a CSV file has a field that is not a number."""
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                for field in line.strip().split(","):
                    try:
                        float(field)
                    except ValueError:
                        return True
                return False
    return False



def pyarrow_modules():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ImportError("reading CSV or Parquet needs pyarrow: pip install pyarrow") from exc
    return pa, pq
