"""Avro files (fastavro): the reading ExampleGen does for ``.avro`` files under
``input_base`` (``tfpipe.tabular`` format ``avro``), and ``AvroSource`` for
``source="avro"``.

Types are mapped from the file's Avro schema: int and long -> int64, float and double ->
float64, string and enum -> string, boolean -> bool, bytes and fixed -> binary, an array
of one of these -> a list of it (TFDV takes list columns); a union of null and one type
-> that type, null being a missing value. Anything else (records, maps, other unions,
logical types such as decimal or timestamps) is an ``InputDataError`` naming the file,
the field and its type. Rows are read in batches of ``BATCH_ROWS``.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from . import Source, SourceError

__all__ = ["AvroSource", "avro_schema", "avro_batches"]

AVRO_BATCH_ROWS = 32 * 1024
_PRIMITIVE = {"int": "int64", "long": "int64", "float": "float64", "double": "float64", "string": "string",
              "boolean": "bool_", "bytes": "binary"}
_EXPECTED = ("expected int, long, float, double, string, boolean, bytes, enum, fixed, an array of one of these, "
             "or a union of null and one of these")


def _error(msg: str):
    from tfpipe.tabular import InputDataError
    return InputDataError(msg)


def _arrow_type(t: Any, path: str, field: str, in_array: bool = False):
    import pyarrow as pa

    def bad(why: str = ""):
        shown = json.dumps(t) if not isinstance(t, str) else t
        return _error(f"file {path}, field {field!r}: Avro type {shown[:200]} is not supported{why}; {_EXPECTED}")

    if isinstance(t, str):
        if t in _PRIMITIVE:
            return getattr(pa, _PRIMITIVE[t])()
        raise bad()
    if isinstance(t, list):  # a union
        branches = [b for b in t if b != "null"]
        if len(branches) == 1 and len(t) == 2:
            return _arrow_type(branches[0], path, field, in_array)
        raise bad(" (a union of more than null and one type)")
    if isinstance(t, dict):
        if t.get("logicalType") and t["logicalType"] != "uuid":
            raise bad(f" (logical type {t['logicalType']})")
        kind = t.get("type")
        if kind in _PRIMITIVE:
            return getattr(pa, _PRIMITIVE[kind])()
        if kind == "enum":
            return pa.string()
        if kind == "fixed":
            return pa.binary()
        if kind == "array" and not in_array:
            return pa.list_(_arrow_type(t.get("items"), path, field, in_array=True))
    raise bad()


def _reader(path: str, f):
    import fastavro
    try:
        return fastavro.reader(f)
    except Exception as e:  # fastavro says "cannot read header - is it an avro file?"
        raise _error(f"file {path}: not a readable Avro file: {e}") from None


def avro_schema(path: str):
    """The Arrow schema of an Avro file, mapped from its writer's schema."""
    import pyarrow as pa
    with open(path, "rb") as f:
        schema = _reader(path, f).writer_schema
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise _error(f"file {path}: its Avro schema is {json.dumps(schema)[:200]}; expected a record, one field "
                     f"per column")
    return pa.schema([pa.field(fd["name"], _arrow_type(fd["type"], path, fd["name"])) for fd in schema["fields"]])


def avro_batches(path: str, schema, rows: int) -> Iterator[Any]:
    """The file's records as record batches in ``schema`` (``avro_schema``), ``rows`` each;
    a file with no records is an error."""
    import pyarrow as pa
    names = schema.names
    total = 0
    rows = min(rows, AVRO_BATCH_ROWS)  # records are Python dicts until a batch is made

    def batch(buf):
        cols = []
        for name, fd in zip(names, schema):
            values = [r.get(name) for r in buf]
            try:
                cols.append(pa.array(values, type=fd.type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                raise _error(f"file {path}, field {name!r}, records {total + 1}-{total + len(buf)}: values do not "
                             f"fit {fd.type}: {e}") from None
        return pa.RecordBatch.from_arrays(cols, schema=schema)

    with open(path, "rb") as f:
        buf = []
        try:
            for rec in _reader(path, f):
                buf.append(rec)
                if len(buf) == rows:
                    yield batch(buf)
                    total += len(buf)
                    buf = []
        except (EOFError, ValueError, StopIteration) as e:
            raise _error(f"file {path}: not a readable Avro file after record {total + len(buf)}: {e}") from None
        if buf:
            yield batch(buf)
            total += len(buf)
    if total == 0:
        raise _error(f"file {path} holds no records; expected at least one")


class AvroSource(Source):
    """``source="avro"``: Avro files, ``path`` a file, a directory (its ``*.avro``) or a glob
    (local or ``s3://``/``gs://``). The snapshot fingerprints the files' content; files can
    be replaced, so it is not reproducible: ``tfpipe reproduce`` checks that they are still
    as they were."""

    kind = "avro"

    def __init__(self, path: str = "", **config: Any):
        super().__init__(path=path, **config)
        if config:
            raise SourceError(f"source 'avro': unknown option(s) {sorted(config)}; expected path")
        if not path:
            raise SourceError("source 'avro': no files given; expected path= (a file, a directory or a glob)")
        self.path = path

    def describe(self) -> str:
        return f"Avro files {self.path}"

    def _files(self) -> list[str]:
        from tfpipe import fileio
        if fileio.isdir(self.path):
            files = fileio.glob(fileio.join(self.path, "*.avro"))
        else:
            files = fileio.glob(self.path)
        if not files:
            raise _error(f"source 'avro': {self.path} matches no files; expected .avro files")
        return sorted(files)

    def snapshot(self) -> dict:
        from tfpipe import fileio
        from tfpipe.fingerprint import fingerprint_files
        files = self._files()
        fp = fingerprint_files([fileio.local_file(f) for f in files])
        return {"fingerprint": fp, "data_version": {"files": len(files)}, "reproducible": False, "files": files}

    def read(self, snapshot: dict) -> Iterator[Any]:
        from tfpipe import fileio
        from tfpipe.tabular import scan_files
        files = snapshot.get("files") or self._files()
        _, batches = scan_files([fileio.local_file(f) for f in files], format="avro")
        yield from batches
