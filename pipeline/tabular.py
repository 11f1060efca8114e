"""Tabular data as the core's Examples hold it: reading CSV, Parquet or TFRecord files into
Arrow with errors that say file, line and column; writing Parquet; and the list-typed
record batches TFDV and TFT take. Shared by the components (ExampleGen, StatisticsGen,
Transform, ...) and by tracking (monitoring serving data); pyarrow is imported inside the
functions."""
from __future__ import annotations

import csv
import os
import re

__all__ = ["InputDataError", "read_table", "read_file", "types_compatible", "find_bad_value", "write_parquet",
           "table_columns", "to_list_batch", "format_of"]


class InputDataError(ValueError):
    """Input data that cannot be ingested; the message names file, line and column."""


def format_of(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in ("csv", "parquet", "tfrecord"):
            raise InputDataError(f"format {fmt!r}: expected 'auto', 'csv', 'parquet' or 'tfrecord'")
        return fmt
    name = path.lower()
    for ext, f in ((".csv", "csv"), (".csv.gz", "csv"), (".parquet", "parquet"), (".tfrecord", "tfrecord"),
                   (".tfrecord.gz", "tfrecord"), (".tfrecords", "tfrecord")):
        if name.endswith(ext):
            return f
    raise InputDataError(f"file {path}: cannot tell its format from the name; expected .csv, .parquet "
                         f"or .tfrecord, or pass format=...")


def _find_bad_utf8(path: str) -> tuple[int, int, int]:
    """(line, column, byte) of the first byte that is not valid UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return line, col, data[e.start]
    return 0, 0, 0


def _find_ragged(path: str, encoding: str) -> tuple[int, int, int, str] | None:
    with open(path, newline="", encoding="utf-8" if encoding == "utf8" else encoding, errors="replace") as f:
        r = csv.reader(f)
        header = next(r, None)
        if header is None:
            return None
        for row in r:
            if len(row) != len(header) and row:
                return r.line_num, len(header), len(row), ",".join(row)[:200]
    return None


def find_bad_value(path: str, column: str, type_name: str) -> tuple[int, str] | None:
    conv = {"int64": int, "double": float, "bool": lambda v: {"true": 1, "false": 0}[v.lower()]}.get(type_name)
    if conv is None:
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        r = csv.DictReader(f)
        for row in r:
            v = row.get(column)
            if v in (None, "", "NA", "NaN", "nan", "null", "NULL", "N/A", "n/a"):
                continue
            try:
                conv(v)
            except (ValueError, KeyError):
                return r.line_num, v
    return None


_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)\s*$"


def _check_header(path: str, names: list[str]) -> None:
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names, 1):
        seen.setdefault(n, []).append(i)
    dups = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dups:
        what = "; ".join(f"{n!r} at columns {', '.join(map(str, pos))}" for n, pos in dups.items())
        raise InputDataError(f"file {path}: the header repeats column names ({what}); expected each column "
                             f"name once")


def _check_mostly_numeric(path: str, t, string_columns) -> None:
    """A column pyarrow read as strings because a few of its values are not numbers (one
    'abc' among thousands of numbers turns the whole column into strings) is an error
    naming the column, the first such value and its line, unless ``string_columns`` names it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    for name, col in zip(t.column_names, t.columns):
        if name in string_columns or not pa.types.is_string(col.type):
            continue
        present = col.drop_null()
        n = len(present)
        if n == 0:
            continue
        head = present.slice(0, 1000)  # a column of words is told from its first values: skip the full scan
        if (pc.sum(pc.match_substring_regex(head, _NUMBER, ignore_case=True)).as_py() or 0) < 0.5 * len(head):
            continue
        numeric = pc.sum(pc.match_substring_regex(present, _NUMBER, ignore_case=True)).as_py() or 0
        if numeric == n or numeric < 0.9 * n:
            continue
        bad = find_bad_value(path, name, "double")
        where = f", line {bad[0]}" if bad else ""
        value = f" {bad[1]!r}" if bad else " values that are not numbers"
        raise InputDataError(
            f"file {path}{where}, column {name!r}: expected a number (as {numeric:,} of the column's {n:,} values "
            f"are), found{value}; fix the data, or pass string_columns=[{name!r}] to ExampleGen to keep the "
            f"column as strings")


def _read_csv(path: str, encoding: str, string_columns=()):
    import pyarrow as pa
    from pyarrow import csv as pacsv
    if os.path.getsize(path) == 0:
        raise InputDataError(f"file {path} is empty: expected a CSV header line and at least one data row")
    ropts = pacsv.ReadOptions(encoding=encoding, block_size=1 << 24)
    copts = pacsv.ConvertOptions(strings_can_be_null=True,
                                 column_types={c: pa.string() for c in string_columns})
    try:
        t = pacsv.read_csv(path, read_options=ropts, convert_options=copts)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        msg = str(e)
        if "invalid UTF8" in msg or isinstance(e, UnicodeDecodeError):
            line, col, byte = _find_bad_utf8(path)
            raise InputDataError(f"file {path}, line {line}, column {col}: byte 0x{byte:02x} is not valid "
                                 f"UTF-8; expected UTF-8 text (or pass encoding=... to ExampleGen)") from None
        if "Expected" in msg and "columns" in msg:
            bad = _find_ragged(path, encoding)
            if bad:
                line, want, got, text = bad
                raise InputDataError(f"file {path}, line {line}: expected {want} columns (as in the header), "
                                     f"found {got}: {text!r}") from None
        m = re.search(r"In CSV column #(\d+): .*CSV conversion error to (\w+): invalid value '([^']*)'", msg)
        if m:
            import pyarrow.csv as pc2
            cols = next(iter([pc2.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names]))
            col = cols[int(m.group(1))]
            bad = find_bad_value(path, col, m.group(2))
            line = f", line {bad[0]}" if bad else ""
            raise InputDataError(f"file {path}{line}, column {col!r}: expected {m.group(2)} values "
                                 f"(as in the rows before), found {m.group(3)!r}") from None
        if "Empty CSV file" in msg:
            raise InputDataError(f"file {path} is empty: expected a CSV header line and at least one data row") from None
        raise InputDataError(f"file {path}: cannot read as CSV: {msg}") from None
    if encoding == "utf8" and any(pa.types.is_binary(f.type) for f in t.schema):
        # pyarrow keeps a column with invalid UTF-8 as binary instead of failing
        line, col, byte = _find_bad_utf8(path)
        if line:
            raise InputDataError(f"file {path}, line {line}, column {col}: byte 0x{byte:02x} is not valid "
                                 f"UTF-8; expected UTF-8 text (or pass encoding=... to ExampleGen)")
    if t.num_rows == 0:
        raise InputDataError(f"file {path} has a header ({', '.join(t.column_names)}) but no data rows; "
                             f"expected at least one row")
    _check_mostly_numeric(path, t, string_columns)
    return t


def _read_tfrecord(path: str):
    import pyarrow as pa
    import tensorflow as tf
    from tfx_bsl.coders import example_coder
    comp = "GZIP" if path.endswith(".gz") else ""
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=comp)]
    except tf.errors.DataLossError as e:
        raise InputDataError(f"file {path}: not a valid TFRecord file: {e.message}") from None
    if not records:
        raise InputDataError(f"file {path} holds no records; expected serialized tf.Example records")
    try:
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    except Exception as e:
        raise InputDataError(f"file {path}: records are not tf.Example: {e}") from None
    cols = {}
    for name, col in zip(batch.schema.names, batch.columns):
        lengths = col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        if (lengths <= 1).all():
            import numpy as np
            offsets = col.offsets.to_numpy(zero_copy_only=False)[:-1] - col.offsets[0].as_py()
            has = lengths == 1
            flat = col.flatten().take(pa.array(np.where(has, offsets, 0), mask=~has))
            if pa.types.is_binary(flat.type) or pa.types.is_large_binary(flat.type):
                flat = flat.cast(pa.string())
            cols[name] = flat
        else:
            cols[name] = col
    return pa.table(cols)


def read_file(path: str, fmt: str, encoding: str, string_columns=()):
    """One file as an Arrow table. ``string_columns``: columns read as strings whatever
    they hold (a CSV column of mostly numbers with a few other values is otherwise an error)."""
    f = format_of(path, fmt)
    if f == "csv":
        t = _read_csv(path, encoding, tuple(string_columns))
    elif f == "parquet":
        import pyarrow.parquet as pq
        try:
            t = pq.read_table(path)
        except Exception as e:
            raise InputDataError(f"file {path}: not a readable Parquet file: {e}") from None
        if t.num_rows == 0:
            raise InputDataError(f"file {path} holds no rows; expected at least one")
    else:
        t = _read_tfrecord(path)
    _check_header(path, t.column_names)
    return t


def types_compatible(old, new) -> bool:
    import pyarrow as pa
    if old == new or pa.types.is_null(old) or pa.types.is_null(new):
        return True
    return pa.types.is_integer(old) and pa.types.is_floating(new) or \
        pa.types.is_floating(old) and pa.types.is_integer(new)


def _unify(tables: list, files: list[str]):
    import pyarrow as pa
    first = tables[0]
    for t, f in zip(tables[1:], files[1:]):
        if t.column_names != first.column_names:
            raise InputDataError(f"file {f}: columns {t.column_names} differ from {files[0]}'s "
                                 f"{first.column_names}; expected every file to have the same columns")
        for name in first.column_names:
            if not types_compatible(first.schema.field(name).type, t.schema.field(name).type):
                raise InputDataError(f"file {f}, column {name!r}: type {t.schema.field(name).type} differs from "
                                     f"{first.schema.field(name).type} in {files[0]}")
    return pa.concat_tables(tables, promote=True)


def read_table(files: list[str], format: str = "auto", encoding: str = "utf8", string_columns=()):
    tables = [read_file(f, format, encoding, string_columns) for f in files]
    return tables[0] if len(tables) == 1 else _unify(tables, files)


def write_parquet(table, path: str) -> None:
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, row_group_size=128 * 1024)


def table_columns(table) -> dict:
    return {f.name: str(f.type) for f in table.schema}


def to_list_batch(batch):
    """Arrow batch with plain columns -> the list-typed columns TFDV and TFT expect
    (a null becomes a missing value, not a value)."""
    import numpy as np
    import pyarrow as pa
    arrays = []
    for col in batch.columns:
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            arrays.append(col)
            continue
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = col.cast(pa.binary())
        elif pa.types.is_boolean(col.type):
            col = col.cast(pa.int64())
        elif pa.types.is_null(col.type):
            col = col.cast(pa.binary())
        if col.null_count == 0:
            offsets = np.arange(len(col) + 1, dtype=np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), col))
            continue
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(col) + 1, dtype=np.int32)
        np.cumsum(valid, out=offsets[1:])
        values = col.drop_null()
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        arrays.append(pa.Array.from_buffers(pa.list_(values.type), len(col),
                                            [validity, pa.py_buffer(offsets)], children=[values]))
    return pa.RecordBatch.from_arrays(arrays, batch.schema.names)
