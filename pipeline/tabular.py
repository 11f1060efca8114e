"""Tabular data as the core's Examples hold it: reading CSV, Parquet, TFRecord or Avro files into
Arrow with errors that say file, line and column; writing Parquet; and the list-typed
record batches TFDV and TFT take. Shared by the components (ExampleGen, StatisticsGen,
Transform, ...) and by tracking (monitoring serving data); pyarrow is imported inside the
functions."""
from __future__ import annotations

import csv
import os
import re

__all__ = ["InputDataError", "read_table", "read_file", "read_schema", "scan_files", "unify_schemas", "FileScan",
           "BATCH_ROWS", "types_compatible", "find_bad_value", "write_parquet",
           "table_columns", "to_list_batch", "format_of"]


class InputDataError(ValueError):
    """Input data that cannot be ingested; the message names file, line and column."""


def format_of(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in ("csv", "parquet", "tfrecord", "avro"):
            raise InputDataError(f"format {fmt!r}: expected 'auto', 'csv', 'parquet', 'tfrecord' or 'avro'")
        return fmt
    name = path.lower()
    for ext, f in ((".csv", "csv"), (".csv.gz", "csv"), (".parquet", "parquet"), (".tfrecord", "tfrecord"),
                   (".tfrecord.gz", "tfrecord"), (".tfrecords", "tfrecord"), (".avro", "avro")):
        if name.endswith(ext):
            return f
    raise InputDataError(f"file {path}: cannot tell its format from the name; expected .csv, .parquet, "
                         f".tfrecord or .avro, or pass format=...")


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


def _csv_error(path: str, encoding: str, e: Exception) -> InputDataError:
    """pyarrow's CSV error as one that names the file, line and column."""
    from pyarrow import csv as pacsv
    msg = str(e)
    if "invalid UTF8" in msg or isinstance(e, UnicodeDecodeError):
        line, col, byte = _find_bad_utf8(path)
        return InputDataError(f"file {path}, line {line}, column {col}: byte 0x{byte:02x} is not valid "
                              f"UTF-8; expected UTF-8 text (or pass encoding=... to ExampleGen)")
    if "Expected" in msg and "columns" in msg:
        bad = _find_ragged(path, encoding)
        if bad:
            line, want, got, text = bad
            return InputDataError(f"file {path}, line {line}: expected {want} columns (as in the header), "
                                  f"found {got}: {text!r}")
    m = re.search(r"In CSV column #(\d+): .*CSV conversion error to (\w+): invalid value '([^']*)'", msg)
    if m:
        cols = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
        col = cols[int(m.group(1))]
        bad = find_bad_value(path, col, m.group(2))
        line = f", line {bad[0]}" if bad else ""
        return InputDataError(f"file {path}{line}, column {col!r}: expected {m.group(2)} values "
                              f"(as in the rows before), found {m.group(3)!r}")
    if "Empty CSV file" in msg:
        return InputDataError(f"file {path} is empty: expected a CSV header line and at least one data row")
    return InputDataError(f"file {path}: cannot read as CSV: {msg}")


class _NumericTally:
    """The mostly-numeric check over a stream of batches: a string column whose first values
    are mostly numbers is counted in full; at the end, one with 90% or more (but not all)
    numbers is an error naming the first value that is not a number and its line."""

    def __init__(self, path: str, string_columns):
        self.path, self.skip = path, set(string_columns)
        self.looks_numeric: dict[str, bool] = {}
        self.present: dict[str, int] = {}
        self.numeric: dict[str, int] = {}

    def add(self, batch) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        for name, col in zip(batch.schema.names, batch.columns):
            if name in self.skip or not pa.types.is_string(col.type) or self.looks_numeric.get(name) is False:
                continue
            present = col.drop_null()
            if not len(present):
                continue
            if name not in self.looks_numeric:  # a column of words is told from its first values
                head = present.slice(0, 1000)
                hits = pc.sum(pc.match_substring_regex(head, _NUMBER, ignore_case=True)).as_py() or 0
                self.looks_numeric[name] = hits >= 0.5 * len(head)
                if not self.looks_numeric[name]:
                    continue
            self.present[name] = self.present.get(name, 0) + len(present)
            self.numeric[name] = self.numeric.get(name, 0) + (
                pc.sum(pc.match_substring_regex(present, _NUMBER, ignore_case=True)).as_py() or 0)

    def check(self) -> None:
        for name, n in self.present.items():
            numeric = self.numeric[name]
            if numeric == n or numeric < 0.9 * n:
                continue
            bad = find_bad_value(self.path, name, "double")
            where = f", line {bad[0]}" if bad else ""
            value = f" {bad[1]!r}" if bad else " values that are not numbers"
            raise InputDataError(
                f"file {self.path}{where}, column {name!r}: expected a number (as {numeric:,} of the column's "
                f"{n:,} values are), found{value}; fix the data, or pass string_columns=[{name!r}] to ExampleGen "
                f"to keep the column as strings")


BATCH_ROWS = 128 * 1024  # rows per batch of Parquet input, and per Parquet row group written


# A CSV file's column types are inferred from its first _INFER_BLOCK bytes (pyarrow infers
# from the first block it reads); its rows are then read _READ_BLOCK bytes at a time. pyarrow
# holds several blocks and their parsed columns at once: at 16 MB blocks, reading a 277 MB
# CSV file and writing it to Parquet peaked at 469 MB of RSS, at 2 MB blocks 176 MB, in
# 3.2 s instead of 3.0 s.
_INFER_BLOCK = 1 << 24
_READ_BLOCK = 1 << 21


class FileScan:
    """One input file read as a stream of Arrow record batches, in bounded memory: its
    ``schema`` is known when the scan is made (from the first block of a CSV file, as
    pyarrow infers it), then iterating yields its batches. The checks of ``read_file``
    (header, UTF-8, ragged rows, values that do not fit the inferred type, mostly-numeric
    string columns, no rows) hold for the stream, raised as ``InputDataError`` naming the
    file, line and column."""

    def __init__(self, path: str, fmt: str = "auto", encoding: str = "utf8", string_columns=()):
        self.path, self.encoding = path, encoding
        self.format = format_of(path, fmt)
        self.string_columns = tuple(string_columns)
        self._source = self._open()
        self.schema = self._source[0]
        _check_header(path, self.schema.names)

    def _open(self):
        import pyarrow as pa
        path = self.path
        if self.format == "csv":
            from pyarrow import csv as pacsv
            size = os.path.getsize(path)
            if size == 0:
                raise InputDataError(f"file {path} is empty: expected a CSV header line and at least one data row")
            ropts = pacsv.ReadOptions(encoding=self.encoding, block_size=_INFER_BLOCK)
            copts = pacsv.ConvertOptions(strings_can_be_null=True,
                                         column_types={c: pa.string() for c in self.string_columns})
            try:
                reader = pacsv.open_csv(path, read_options=ropts, convert_options=copts)
                if size > _INFER_BLOCK:  # the types as inferred, the rows in smaller blocks
                    copts.column_types = dict(zip(reader.schema.names, reader.schema.types))
                    reader.close()
                    reader = pacsv.open_csv(path, convert_options=copts, read_options=pacsv.ReadOptions(
                        encoding=self.encoding, block_size=_READ_BLOCK))
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise _csv_error(path, self.encoding, e) from None
            if self.encoding == "utf8" and any(pa.types.is_binary(f.type) for f in reader.schema):
                # pyarrow keeps a column with invalid UTF-8 as binary instead of failing
                line, col, byte = _find_bad_utf8(path)
                if line:
                    raise InputDataError(f"file {path}, line {line}, column {col}: byte 0x{byte:02x} is not valid "
                                         f"UTF-8; expected UTF-8 text (or pass encoding=... to ExampleGen)")
            return reader.schema, reader
        if self.format == "parquet":
            import pyarrow.parquet as pq
            try:
                f = pq.ParquetFile(path)
            except Exception as e:
                raise InputDataError(f"file {path}: not a readable Parquet file: {e}") from None
            if f.metadata.num_rows == 0:
                raise InputDataError(f"file {path} holds no rows; expected at least one")
            return f.schema_arrow, f
        if self.format == "avro":
            from tfpipe.sources.avro import avro_schema
            return avro_schema(path), None
        t = _read_tfrecord(path)
        return t.schema, t

    def __iter__(self):
        import pyarrow as pa
        schema, src = self._source
        if self.format == "parquet":
            try:
                yield from src.iter_batches(batch_size=BATCH_ROWS)
            except (pa.ArrowException, OSError) as e:
                raise InputDataError(f"file {self.path}: not a readable Parquet file: {e}") from None
            return
        if self.format == "tfrecord":
            yield from src.to_batches(max_chunksize=BATCH_ROWS)
            return
        if self.format == "avro":
            from tfpipe.sources.avro import avro_batches
            yield from avro_batches(self.path, schema, BATCH_ROWS)
            return
        tally, rows = _NumericTally(self.path, self.string_columns), 0
        while True:
            try:
                batch = src.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise _csv_error(self.path, self.encoding, e) from None
            rows += batch.num_rows
            tally.add(batch)
            yield batch
        if rows == 0:
            raise InputDataError(f"file {self.path} has a header ({', '.join(schema.names)}) but no data rows; "
                                 f"expected at least one row")
        tally.check()


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
    import pyarrow as pa
    scan = FileScan(path, fmt, encoding, string_columns)
    return pa.Table.from_batches(list(scan), schema=scan.schema)


def read_schema(path: str, fmt: str = "auto", encoding: str = "utf8", string_columns=()):
    """A file's columns and their types, from its first block (what ``read_file`` infers)."""
    return FileScan(path, fmt, encoding, string_columns).schema


def types_compatible(old, new) -> bool:
    import pyarrow as pa
    if old == new or pa.types.is_null(old) or pa.types.is_null(new):
        return True
    return pa.types.is_integer(old) and pa.types.is_floating(new) or \
        pa.types.is_floating(old) and pa.types.is_integer(new)


def unify_schemas(schemas: list, files: list[str]):
    """One schema for several files with the same columns: an integer column that is
    floating point in another file becomes float64, a column without values in one file
    takes the other's type; anything else that differs is an error naming both files."""
    import pyarrow as pa
    first = schemas[0]
    fields = list(first)
    for sch, f in zip(schemas[1:], files[1:]):
        if sch.names != first.names:
            raise InputDataError(f"file {f}: columns {sch.names} differ from {files[0]}'s "
                                 f"{first.names}; expected every file to have the same columns")
        for i, name in enumerate(first.names):
            old, new = fields[i].type, sch.field(name).type
            if not types_compatible(first.field(name).type, new):
                raise InputDataError(f"file {f}, column {name!r}: type {new} differs from "
                                     f"{first.field(name).type} in {files[0]}")
            if old == new or pa.types.is_null(new):
                continue
            fields[i] = pa.field(name, new if pa.types.is_null(old) else pa.float64())
    return pa.schema(fields)


def scan_files(files: list[str], format: str = "auto", encoding: str = "utf8", string_columns=()):
    """The unified schema of several input files, and their record batches in that schema,
    file after file, in bounded memory: ``(schema, batches)`` with ``batches`` a generator."""
    schemas = [read_schema(f, format, encoding, string_columns) for f in files]
    schema = unify_schemas(schemas, files)

    def batches():
        for f in files:
            for b in FileScan(f, format, encoding, string_columns):
                yield b if b.schema == schema else _cast_batch(b, schema)
    return schema, batches()


def _cast_batch(batch, schema):
    import pyarrow as pa
    return pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(batch.columns, schema)], schema=schema)


def read_table(files: list[str], format: str = "auto", encoding: str = "utf8", string_columns=()):
    """Input files as one Arrow table (see ``scan_files`` for the streaming form)."""
    import pyarrow as pa
    schema, batches = scan_files(files, format, encoding, string_columns)
    return pa.Table.from_batches(list(batches), schema=schema)


def write_parquet(table, path: str) -> None:
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, row_group_size=BATCH_ROWS)


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
