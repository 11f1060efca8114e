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

__all__ = ["Source", "BUILTIN", "ENTRY_POINT_GROUP", "SourceError", "load_source", "check_snapshot"]

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
    return cls(**(config or {}))


def check_snapshot(snap: Any, name: str) -> dict:
    """``snap`` if it keeps the snapshot contract, else a SourceError naming what is wrong."""
    if not isinstance(snap, dict):
        raise SourceError(f"source {name!r}: snapshot() returned {type(snap).__name__}; expected a dict")
    if not isinstance(snap.get("fingerprint"), str) or not snap["fingerprint"]:
        raise SourceError(f"source {name!r}: snapshot() has no 'fingerprint' string")
    if not isinstance(snap.get("data_version", {}), dict):
        raise SourceError(f"source {name!r}: snapshot()'s 'data_version' is not a dict")
    return snap
