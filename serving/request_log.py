"""Request logging: a sample of online predictions, written off the request path.

``tfpipe serve --log-requests SINK --sample-rate R`` logs each request with probability
R, one row per example:

| column | type | |
|---|---|---|
| ``time`` | timestamp (UTC, microseconds) | when the request arrived |
| ``request_id`` | string | shared by the rows of one request |
| ``model``, ``version``, ``label`` | string, int64, string | what served it (label: the one the request named, or the default label it reached; null when addressed by version) |
| ``signature`` | string | |
| ``features`` | struct of list columns, one per raw feature | the request's raw features as the model parsed them (the label is never among them) |
| ``response`` | string (JSON) | this example's prediction |

The request path only draws the sample and appends to a bounded queue (``put_nowait``);
when the queue is full the rows are dropped and counted, never waited for. A writer thread
turns the queue into files. Counters (offered, written, dropped, errors) are on the
server's ``/healthz`` and printed at shutdown.

Sinks:

- a local directory: an append-only Parquet dataset partitioned by day,
  ``SINK/day=YYYY-MM-DD/part-<time>-<id>.parquet``; each file is written beside its final
  name and renamed into place, so a reader never sees half a file; files are never
  rewritten;
- ``bq://PROJECT.DATASET.TABLE``: the same rows streamed to BigQuery with
  google-cloud-bigquery (``insert_rows_json``; the table must exist with the columns
  above, ``features`` as a RECORD). Needs network and credentials: not tested here.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import queue
import random
import threading
import time
import uuid

__all__ = ["RequestLog", "ParquetSink", "BigQuerySink", "LogError", "open_sink", "read_log", "DAY_PREFIX"]

DAY_PREFIX = "day="


class LogError(ValueError):
    """A request-log sink that cannot be used or read."""


def _features_type(spec: dict):
    import pyarrow as pa
    t = {"float": pa.float64(), "int64": pa.int64(), "string": pa.string()}
    return pa.struct([pa.field(n, pa.list_(t.get(fs.dtype, pa.string()))) for n, fs in spec.items()])


class ParquetSink:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise LogError(f"--log-requests {root}: exists and is not a directory; expected a directory for "
                           f"a Parquet dataset partitioned by day")
        os.makedirs(self.root, exist_ok=True)

    def __str__(self):
        return self.root

    def write(self, rows: list[dict]) -> int:
        """One file per (day, model, feature spec) of ``rows``; the number of rows written."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        groups: dict = {}
        for r in rows:
            key = (r["time"].strftime("%Y-%m-%d"), r["model"], r["_spec_key"])
            groups.setdefault(key, []).append(r)
        n = 0
        for (day, _, _), rs in groups.items():
            spec = rs[0]["_spec"]
            schema = pa.schema([("time", pa.timestamp("us", tz="UTC")), ("request_id", pa.string()),
                                ("model", pa.string()), ("version", pa.int64()), ("label", pa.string()),
                                ("signature", pa.string()), ("features", _features_type(spec)),
                                ("response", pa.string())])
            cols = {k: [r[k] for r in rs] for k in ("time", "request_id", "model", "version", "label", "signature",
                                                   "features", "response")}
            table = pa.table(cols, schema=schema)
            d = os.path.join(self.root, f"{DAY_PREFIX}{day}")
            os.makedirs(d, exist_ok=True)
            name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = os.path.join(d, f".{name}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, os.path.join(d, name))
            n += len(rs)
        return n


class BigQuerySink:
    """Rows streamed into an existing BigQuery table (``bq://PROJECT.DATASET.TABLE``)."""

    def __init__(self, uri: str):
        ref = uri[len("bq://"):]
        if ref.count(".") != 2 or not all(ref.split(".")):
            raise LogError(f"--log-requests {uri}: expected bq://PROJECT.DATASET.TABLE")
        self.table = ref
        self._client = None

    def __str__(self):
        return f"bq://{self.table}"

    @staticmethod
    def to_json_row(r: dict) -> dict:
        return {"time": r["time"].isoformat(), "request_id": r["request_id"], "model": r["model"],
                "version": r["version"], "label": r["label"], "signature": r["signature"],
                "features": {k: v for k, v in r["features"].items() if v is not None}, "response": r["response"]}

    def write(self, rows: list[dict]) -> int:
        if self._client is None:
            from google.cloud import bigquery
            self._client = bigquery.Client(project=self.table.split(".")[0])
        errors = self._client.insert_rows_json(self.table, [self.to_json_row(r) for r in rows])
        if errors:
            raise LogError(f"BigQuery {self.table} refused {len(errors)} row(s): {str(errors[0])[:300]}")
        return len(rows)


def open_sink(uri: str):
    return BigQuerySink(uri) if uri.startswith("bq://") else ParquetSink(uri)


class RequestLog:
    """The bounded queue between the request path and a sink's writer thread."""

    def __init__(self, sink, sample_rate: float = 1.0, max_queue: int = 10000, flush_rows: int = 2000,
                 flush_s: float = 1.0, seed: int | None = None):
        if not 0.0 <= float(sample_rate) <= 1.0:
            raise LogError(f"--sample-rate {sample_rate}: expected a number from 0 to 1")
        self.sink, self.sample_rate = sink, float(sample_rate)
        self.flush_rows, self.flush_s = int(flush_rows), float(flush_s)
        self._q: queue.Queue = queue.Queue(maxsize=int(max_queue))
        self._rng = random.Random(seed)
        self.offered = self.written = self.dropped = self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfpipe-request-log", daemon=True)
        self._thread.start()

    def sample(self) -> bool:
        return self.sample_rate >= 1.0 or self._rng.random() < self.sample_rate

    def offer(self, *, model: str, version: int, label: str | None, signature: str, spec: dict,
              rows: list, records: list[bytes], outputs: list, when: float | None = None) -> bool:
        """Queue one request's rows without waiting; False (and counted) when dropped."""
        entry = (when or time.time(), uuid.uuid4().hex, model, int(version), label, signature, spec, rows, records,
                 outputs)
        self.offered += len(outputs)
        try:
            self._q.put_nowait(entry)
            return True
        except queue.Full:
            self.dropped += len(outputs)
            return False

    def _rows(self, entry) -> list[dict]:
        from .features import from_examples
        when, rid, model, version, label, sig, spec, rows, records, outputs = entry
        t = dt.datetime.fromtimestamp(when, tz=dt.timezone.utc)
        if any(r is None for r in rows):  # {"b64"} requests: read their features back
            decoded = from_examples([rec for rec, r in zip(records, rows) if r is None], spec)
            it = iter(decoded)
            rows = [r if r is not None else next(it) for r in rows]
        key = tuple((n, fs.dtype) for n, fs in spec.items())
        return [{"time": t, "request_id": rid, "model": model, "version": version, "label": label,
                 "signature": sig, "features": {n: (list(v) if v is not None else None) for n, v in row.items()},
                 "response": json.dumps(out), "_spec": spec, "_spec_key": key}
                for row, out in zip(rows, outputs)]

    def _run(self):
        buf: list[dict] = []
        first = None
        while True:
            try:
                entry = self._q.get(timeout=0.1)
                buf.extend(self._rows(entry))
                first = first or time.monotonic()
            except queue.Empty:
                pass
            except Exception as e:  # noqa: BLE001 - a row that cannot be converted is counted, not fatal
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
            stopping = self._stop.is_set() and self._q.empty()
            if buf and (len(buf) >= self.flush_rows or stopping or time.monotonic() - first >= self.flush_s):
                try:
                    self.written += self.sink.write(buf)
                except Exception as e:  # noqa: BLE001 - counted and reported; the server keeps serving
                    self.errors += 1
                    self.dropped += len(buf)
                    self.last_error = f"{type(e).__name__}: {e}"
                buf, first = [], None
            if stopping:
                return

    def stats(self) -> dict:
        return {"sink": str(self.sink), "sample_rate": self.sample_rate, "offered": self.offered,
                "written": self.written, "dropped": self.dropped, "queued": self._q.qsize(), "errors": self.errors,
                "last_error": self.last_error}

    def close(self, timeout_s: float = 60.0) -> dict:
        """Write what is queued, stop the writer; the final counters."""
        self._stop.set()
        self._thread.join(timeout_s)
        return self.stats()


def _parse_day(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(name[len(DAY_PREFIX):]) if name.startswith(DAY_PREFIX) else None
    except ValueError:
        return None


def read_log(root: str, model: str, start: dt.datetime, end: dt.datetime):
    """The logged rows of ``model`` with ``start <= time < end`` (a pyarrow Table, possibly
    empty) from a local Parquet request log."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    if not os.path.isdir(root):
        raise LogError(f"--requests {root}: no request log there (expected the directory given to "
                       f"'tfpipe serve --log-requests')")
    tables = []
    for d in sorted(os.listdir(root)):
        day = _parse_day(d)
        if day is None or day < start.date() or day > end.date():
            continue
        for f in sorted(os.listdir(os.path.join(root, d))):
            if not f.endswith(".parquet") or f.startswith("."):
                continue
            path = os.path.join(root, d, f)
            try:
                t = pq.read_table(path)
            except Exception as e:  # noqa: BLE001 - named with its file
                raise LogError(f"request log file {path} cannot be read: {e}") from None
            t = t.filter(pc.equal(t["model"], model))
            if t.num_rows:
                ts = pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
                te = pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
                t = t.filter(pc.and_(pc.greater_equal(t["time"], ts), pc.less(t["time"], te)))
            if t.num_rows:
                tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables, promote=True) if len(tables) > 1 else tables[0]
