"""A Delta Lake table as a data source: ``DeltaSource(path, version=None, timestamp=None)``.

The snapshot is one version of the table: ``version`` if given, else the newest version
committed at or before ``timestamp`` (ISO 8601, ``2026-01-31T12:00:00Z``), else the newest
version, recorded as the version read (``data_version = {"delta_version": N, "table": uri}``).
A version is immutable, so the snapshot is reproducible: ``read(snapshot)`` reads version
N again (time travel) after newer versions exist, as long as its files are not vacuumed.

The table is on local disk or on object storage: ``s3://``, reached with the standard
environment variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ...) as ``tfpipe.fileio`` is, or ``gs://`` with Google's
application default credentials; ``storage_options`` may add delta-rs options that are not
secrets. Rows stream in batches of ``BATCH_ROWS``.

Errors (``InputDataError``): a version that does not exist (naming the versions that do), a
timestamp before the table's first commit, a column whose type differs from the version
before (unless ``allow_type_changes``), a version with no rows.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from typing import Any, Iterator

from . import Source, SourceError

__all__ = ["DeltaSource", "delta_storage_options"]

_SECRET_OPTION = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|SESSION|PRIVATE", re.I)


def _input_error(msg: str):
    from tfpipe.tabular import InputDataError
    return InputDataError(msg)


def delta_storage_options(uri: str, extra: dict | None = None) -> dict:
    """delta-rs storage options for ``uri`` from the environment, as ``tfpipe.fileio`` reads
    it (an S3 endpoint of http:// is allowed; credentials are read by delta-rs from the
    environment, never written here)."""
    opts: dict[str, str] = {}
    if uri.startswith(("s3://", "s3a://")):
        ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if ep:
            opts["AWS_ENDPOINT_URL"] = ep
            if ep.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        opts["AWS_REGION"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        opts["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"  # tfpipe only reads; delta-rs asks it of writers
    # gs://: delta-rs's own Google client, with the application default credentials (it
    # cannot be pointed at the GCS emulator, so only S3 is tested here)
    opts.update({str(k): str(v) for k, v in (extra or {}).items()})
    return opts


class DeltaSource(Source):
    """A Delta Lake table at a version (see the module's docstring)."""

    kind = "delta"

    def __init__(self, path: str = "", uri: str = "", version: int | None = None, timestamp: str | None = None,
                 storage_options: dict | None = None, allow_type_changes: bool = False, **config: Any):
        super().__init__(path=path, uri=uri, version=version, timestamp=timestamp,
                         storage_options=storage_options, allow_type_changes=allow_type_changes, **config)
        if config:
            raise SourceError(f"source 'delta': unknown option(s) {sorted(config)}; expected path, version, "
                              f"timestamp, storage_options, allow_type_changes")
        from tfpipe import fileio
        where = path or uri
        if not where:
            raise SourceError("source 'delta': no table given; expected path='/path/to/table' or 's3://bucket/table'")
        self.uri = fileio.abspath(where)
        if version is not None and timestamp:
            raise SourceError(f"source 'delta' ({self.uri}): both version={version} and timestamp={timestamp!r} are "
                              f"given; expected at most one")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise SourceError(f"source 'delta' ({self.uri}): version={version!r}; expected a table version, an "
                              f"integer >= 0")
        secret = [k for k in (storage_options or {}) if _SECRET_OPTION.search(str(k))]
        if secret:
            raise SourceError(f"source 'delta' ({self.uri}): storage_options {secret} would put a credential into "
                              f"the compiled pipeline; set it in the environment of the tasks instead "
                              f"(AWS_SECRET_ACCESS_KEY, ...)")
        self.version, self.timestamp = version, timestamp
        self.allow_type_changes = bool(allow_type_changes)
        self.options = delta_storage_options(self.uri, storage_options)

    def describe(self) -> str:
        at = f" at version {self.version}" if self.version is not None else \
            (f" at {self.timestamp}" if self.timestamp else "")
        return f"Delta table {self.uri}{at}"

    # -- the table ----------------------------------------------------------------------
    def _open(self, version: int | None = None):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.options)
        except TableNotFoundError:
            raise _input_error(f"Delta table {self.uri}: no table there (no readable _delta_log); expected a Delta "
                               f"table's directory") from None
        except Exception as e:  # delta-rs says "missing version", "invalid version"...
            if version is not None:
                try:
                    versions = [h["version"] for h in self._history()]
                except Exception:
                    versions = None
                if versions is not None and version not in versions:
                    raise _input_error(f"Delta table {self.uri} has no version {version}; versions found: "
                                       f"{self._versions_text(versions)}") from None
            at = f" at version {version}" if version is not None else ""
            raise _input_error(f"Delta table {self.uri}: cannot read it{at}: {e}") from None

    def _history(self, table=None) -> list[dict]:
        t = table if table is not None else self._open()
        return sorted(t.history(), key=lambda h: h["version"])

    def _versions_text(self, versions: list[int]) -> str:
        vs = sorted(versions)
        if not vs:
            return "none"
        if vs == list(range(vs[0], vs[-1] + 1)) and len(vs) > 3:
            return f"{vs[0]} to {vs[-1]}"
        return ", ".join(map(str, vs))

    def _version_at(self, timestamp: str) -> int:
        try:
            when = _dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            raise SourceError(f"source 'delta' ({self.uri}): timestamp={timestamp!r}; expected ISO 8601, e.g. "
                              f"'2026-01-31T12:00:00Z'") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        ms = when.timestamp() * 1000
        history = self._history()
        at = [h["version"] for h in history if h.get("timestamp") is not None and h["timestamp"] <= ms]
        if not at:
            first = _dt.datetime.fromtimestamp(history[0]["timestamp"] / 1000, _dt.timezone.utc) if history else None
            raise _input_error(f"Delta table {self.uri} has no version at or before {timestamp}; its first version "
                               f"({history[0]['version'] if history else '-'}) was committed at "
                               f"{first.isoformat() if first else '-'}")
        return max(at)

    # -- the interface ------------------------------------------------------------------
    def snapshot(self) -> dict:
        version = self.version
        if version is None and self.timestamp:
            version = self._version_at(self.timestamp)
        table = self._open(version)
        version = table.version()
        schema = table.schema().to_pyarrow()
        if version > 0 and not self.allow_type_changes:
            self._check_types(schema, version)
        actions = table.get_add_actions(flatten=True).to_pydict()
        rows = actions.get("num_records") or []
        if not actions.get("path") or (rows and all(r is not None for r in rows) and sum(rows) == 0):
            raise _input_error(f"Delta table {self.uri} at version {version} holds no rows (columns "
                               f"{schema.names}); expected at least one row")
        files = sorted(actions["path"])
        material = {"table": self.uri, "version": version, "schema": [(f.name, str(f.type)) for f in schema],
                    "files": hashlib.sha256("\n".join(files).encode()).hexdigest()}
        fp = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return {"fingerprint": fp, "data_version": {"delta_version": version, "table": self.uri},
                "reproducible": True, "rows": sum(r for r in rows if r is not None) if rows else None}

    def _check_types(self, schema, version: int) -> None:
        from tfpipe.tabular import types_compatible
        try:
            before = self._open(version - 1).schema().to_pyarrow()
        except Exception:  # the version before is gone (log cleaned up): nothing to compare with
            return
        for f in schema:
            if f.name in before.names:
                old = before.field(f.name).type
                if old != f.type and not types_compatible(old, f.type):
                    raise _input_error(
                        f"Delta table {self.uri}: column {f.name!r} changed type between versions: {old} in "
                        f"version {version - 1}, {f.type} in version {version}; expected the type of version "
                        f"{version - 1} (read version {version - 1} with source_config={{'version': "
                        f"{version - 1}}}, or pass allow_type_changes=True to accept)")

    def read(self, snapshot: dict) -> Iterator[Any]:
        from tfpipe.tabular import BATCH_ROWS
        version = (snapshot.get("data_version") or {}).get("delta_version")
        if version is None:
            raise SourceError(f"source 'delta' ({self.uri}): the snapshot has no delta_version; expected one "
                              f"made by DeltaSource.snapshot()")
        table = self._open(version)
        try:
            dataset = table.to_pyarrow_dataset()
        except Exception as e:  # a protocol or feature this deltalake cannot read (deletion vectors, ...)
            import deltalake
            raise _input_error(f"Delta table {self.uri} at version {version} cannot be read by deltalake "
                               f"{deltalake.__version__}: {e}") from None
        try:
            yield from dataset.to_batches(batch_size=BATCH_ROWS)
        except OSError as e:  # a data file of the version is gone (vacuumed) or unreadable
            raise _input_error(f"Delta table {self.uri} at version {version}: cannot read its data files: {e} "
                               f"(vacuumed since?)") from None
