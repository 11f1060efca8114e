"""Data sources ExampleGen reads besides files of CSV, Parquet and TFRecord: the interface,
the registry, and the built-in sources (which use the same interface as a user's own).

A source is a class that takes its configuration as keyword arguments (JSON-able values:
they are compiled into the pipeline, so a password is given by reference, as for ML
Metadata, never inline) and has two methods::

    class MySource(tfpipe.sources.Source):
        def snapshot(self) -> dict:
            # cheap, run by ExampleGen's driver before the cache decision: what would be read now
            return {"fingerprint": "...", "data_version": {"rows": 1000}, "reproducible": False}

        def read(self, snapshot: dict):
            # exactly that snapshot, as pyarrow RecordBatches of bounded size
            yield pyarrow.record_batch(...)

``snapshot()`` returns a JSON-able dict with:

- ``fingerprint`` (str): changes when the data read would change; it is ExampleGen's
  ``input_fingerprint``, so it is in the cache key, and ``--explain`` names the change;
- ``data_version`` (dict): what a person needs to read the same data again (a table
  version, a query and its checksum, a snapshot time), recorded on the Examples artifact
  and shown side by side by ``tfpipe runs compare``;
- ``reproducible`` (bool): whether ``read(snapshot)`` later returns the same rows (a Delta
  table at a version: yes; a SQL table without a version column: no); ``reproduce`` says
  plainly when it is not.

``read(snapshot)`` yields ``pyarrow.RecordBatch`` objects in one schema, a bounded number
of rows each (memory stays flat with the table's size). Bad input raises
``tfpipe.tabular.InputDataError`` with a message naming what was expected, what was found
and where (never a password).

A source is named to ExampleGen by ``source=`` with ``source_config=`` its keyword
arguments: a built-in name (``"avro"``, ``"delta"``, ``"sql"``, ``"bigquery"``), the name of
an entry point in the ``tfpipe.sources`` group of an installed distribution, or
``"package.module:Class"``.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Iterator

__all__ = ["Source", "BUILTIN", "ENTRY_POINT_GROUP", "SourceError", "load_source", "check_snapshot", "scan_source",
           "describe_version", "source_of", "is_delta_table"]

ENTRY_POINT_GROUP = "tfpipe.sources"

BUILTIN = {
    "avro": "tfpipe.sources.avro:AvroSource",
    "delta": "tfpipe.sources.delta:DeltaSource",
    "sql": "tfpipe.sources.sql:SqlSource",
    "bigquery": "tfpipe.sources.bigquery:BigQuerySource",
}


class SourceError(ValueError):
    """A source that cannot be found or that does not keep the interface."""


class Source:
    """Base class of data sources (see the module's docstring). Subclasses keep ``config``
    (the keyword arguments they were given) and implement ``snapshot`` and ``read``."""

    #: a short name used in logs and errors ("sql", "delta", ...)
    kind = "source"

    def __init__(self, **config: Any):
        self.config = config

    def snapshot(self) -> dict:
        raise NotImplementedError

    def read(self, snapshot: dict) -> Iterator[Any]:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for logs and errors, without secrets."""
        return self.kind


def _entry_point(name: str):
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def load_source(name: str, config: dict | None = None) -> Source:
    """The source ``name`` (built-in, entry point, or ``module:Class``) made with ``config``."""
    spec = BUILTIN.get(name)
    cls = None
    if spec is None and ":" not in name:
        cls = _entry_point(name)
        if cls is None:
            raise SourceError(f"source {name!r} is not known; expected one of {sorted(BUILTIN)}, an entry point "
                              f"in the {ENTRY_POINT_GROUP!r} group, or 'package.module:Class'")
    if cls is None:
        mod, _, attr = (spec or name).partition(":")
        try:
            cls = getattr(import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise SourceError(f"source {name!r}: cannot load {spec or name}: {e}") from None
    if not callable(getattr(cls, "snapshot", None)) or not callable(getattr(cls, "read", None)):
        raise SourceError(f"source {name!r}: {cls!r} has no snapshot() and read() methods")
    try:
        return cls(**(config or {}))
    except TypeError as e:  # a missing or unknown keyword argument
        raise SourceError(f"source {name!r}: cannot make it with source_config keys {sorted(config or {})}: "
                          f"{e}") from None


def check_snapshot(snap: Any, name: str) -> dict:
    """``snap`` if it keeps the snapshot contract, else a SourceError naming what is wrong."""
    if not isinstance(snap, dict):
        raise SourceError(f"source {name!r}: snapshot() returned {type(snap).__name__}; expected a dict")
    if not isinstance(snap.get("fingerprint"), str) or not snap["fingerprint"]:
        raise SourceError(f"source {name!r}: snapshot() has no 'fingerprint' string")
    if not isinstance(snap.get("data_version", {}), dict):
        raise SourceError(f"source {name!r}: snapshot()'s 'data_version' is not a dict")
    return snap


def is_delta_table(path: str) -> bool:
    """A directory (or object prefix) holding a Delta table's ``_delta_log``."""
    return bool(path) and _fileio().isdir(_fileio().join(path, "_delta_log"))


def source_of(params: dict) -> tuple[str, dict] | None:
    """``(source name, its config)`` when ExampleGen reads a source rather than files:
    ``source=`` given, or an ``input_base`` that is a Delta table (``source_config`` then
    holds the Delta options: ``version``, ``timestamp``)."""
    source = params.get("source") or ""
    cfg = dict(params.get("source_config") or {})
    base = params.get("input_base") or ""
    if source:
        if base:
            raise _input_error(f"ExampleGen was given both input_base={base!r} and source={source!r}; expected "
                           f"one: files or a Delta table under input_base, or a source")
        return source, cfg
    if not base:
        raise _input_error("ExampleGen has neither input_base= (files, or a Delta table) nor source=; "
                           "expected one of them")
    if is_delta_table(base):
        return "delta", {"path": base, **cfg}
    if cfg:
        raise _input_error(f"source_config {sorted(cfg)} is given, but input_base {base} is not a Delta table "
                           f"(no _delta_log) and no source= is named; expected source=... with it")
    return None


def _fileio():
    from tfpipe import fileio
    return fileio


def _input_error(msg: str):
    from tfpipe.tabular import InputDataError
    return InputDataError(msg)


def scan_source(src: Any, snapshot: dict, name: str):
    """``(schema, batches)`` of ``src.read(snapshot)`` as ExampleGen writes them: the schema of
    the first batch (a source that yields nothing is an ``InputDataError``), then every
    batch in it (a ``pyarrow.Table`` is taken batch by batch; a batch in another schema is
    cast when its types are compatible, else an error naming the column and both types)."""
    import pyarrow as pa

    from tfpipe.tabular import InputDataError, types_compatible
    where = _describe(src, name)

    def batches_of(items):
        for b in items:
            if isinstance(b, pa.Table):
                yield from b.to_batches()
            elif isinstance(b, pa.RecordBatch):
                yield b
            else:
                raise SourceError(f"source {where}: read() yielded a {type(b).__name__}; expected "
                                  f"pyarrow.RecordBatch (or pyarrow.Table)")

    it = iter(batches_of(src.read(snapshot)))
    first = None
    for b in it:
        first = b
        if b.num_rows:
            break
    if first is None or not first.num_rows:
        version = describe_version(snapshot.get("data_version") or {})
        cols = f" (columns {first.schema.names})" if first is not None else ""
        raise InputDataError(f"source {where} returned no rows{cols}" + (f" at {version}" if version else "")
                             + "; expected at least one row")
    schema = first.schema

    def batches():
        yield first
        for b in it:
            if b.schema == schema:
                yield b
                continue
            if b.schema.names != schema.names:
                raise InputDataError(f"source {where}: a batch has columns {b.schema.names}; expected the "
                                     f"columns of the first batch, {schema.names}")
            for f, g in zip(schema, b.schema):
                if f.type != g.type and not types_compatible(f.type, g.type):
                    raise InputDataError(f"source {where}, column {f.name!r}: a batch has type {g.type}; "
                                         f"expected {f.type} (as in the first batch)")
            yield pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(b.columns, schema)], schema=schema)
    return schema, batches()


def _describe(src: Any, name: str) -> str:
    try:
        d = src.describe()
    except Exception:  # a user's source without describe(): its name will do
        d = ""
    return f"{name!r} ({d})" if d and d not in (name, Source.kind) else repr(name)


def describe_version(data_version: dict) -> str:
    """A data version in a few words: ``delta version 3``, or its items ``k=v``."""
    if not data_version:
        return ""
    if "delta_version" in data_version:
        return f"delta version {data_version['delta_version']}"
    return ", ".join(f"{k}={v}" for k, v in sorted(data_version.items()) if not isinstance(v, (dict, list)))
