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

The request path only draws the sample and appends to a bounded queue (bounded in rows);
rows beyond its room are dropped and counted, never waited for. A writer thread turns the
queue into files. Counters (offered, written, dropped, set_aside, errors) are on the
server's ``/healthz`` and printed at shutdown.

Sinks:

- a local directory: an append-only Parquet dataset partitioned by day,
  ``SINK/day=YYYY-MM-DD/part-<time>-<id>.parquet``; each file is written beside its final
  name and renamed into place, so a reader never sees half a file; files are never
  rewritten;
- ``bq://PROJECT.DATASET.TABLE``: the same rows streamed to BigQuery with
  google-cloud-bigquery (``insert_rows_json``; the table must exist with the columns
  above, ``features`` as a RECORD). Needs network and credentials: not tested here.
"""  # noqa: E501 (the rows of the Markdown table above cannot be wrapped)
from __future__ import annotations

import collections
import datetime as dt
import json
import os
import random
import threading
import time
import uuid

from tfpipe import fileio
from tfpipe.files import replacing

__all__ = ["RequestLog", "ParquetSink", "BigQuerySink", "LogError", "open_sink", "read_log", "DAY_PREFIX"]

DAY_PREFIX = "day="


class LogError(ValueError):
    """A request-log sink that cannot be used or read."""


def _arrow_type(dtype: str):
    import pyarrow as pa
    return {"float": pa.float64(), "int64": pa.int64(), "string": pa.string()}.get(dtype, pa.string())


def _schema(spec: dict):
    import pyarrow as pa
    features = pa.struct([pa.field(n, pa.list_(_arrow_type(fs.dtype))) for n, fs in spec.items()])
    return pa.schema([("time", pa.timestamp("us", tz="UTC")), ("request_id", pa.string()), ("model", pa.string()),
                      ("version", pa.int64()), ("label", pa.string()), ("signature", pa.string()),
                      ("features", features), ("response", pa.string())])


def _as_text(values):
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values]


def _feature_column(values: list, dtype: str):
    """One feature's list column from each row's checked values (a list, or None)."""
    import pyarrow as pa
    t = pa.list_(_arrow_type(dtype))
    try:
        return pa.array(values, type=t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        # a {"b64"} value of a string feature that is not UTF-8: kept, with U+FFFD for bad bytes
        return pa.array([None if v is None else _as_text(v) for v in values], type=t)


def _read_back(record: bytes, spec: dict) -> dict:
    from .features import from_examples
    return from_examples([record], spec)[0]


def to_table(entries: list, spec: dict, set_aside: list | None = None):
    """One Arrow table (the log's schema) from queued requests of one model and feature spec.
    Runs on the writer thread: the request path only queued references (see ``offer``).
    Python touches each request once and each row's features once per feature; repeating a
    request's values over its rows is Arrow's ``take``.

    A ``{"b64"}`` example is read back here with Python's protobuf, which is stricter than
    TensorFlow's parser (a feature name that is not UTF-8 fails here, not in the model): such
    a row is left out alone, with the reason appended to ``set_aside``, and the other rows,
    of its request too, are written."""
    import pyarrow as pa

    schema = _schema(spec)
    times, models, versions, labels, sigs = [], [], [], [], []
    which, all_rows, responses = [], [], []
    dumps = json.dumps
    for k, (when, model, version, label, sig, _, rows, records, outputs) in enumerate(entries):
        n = len(outputs)
        kept = range(n)
        if any(r is None for r in rows[:n]):  # {"b64"} requests: read their features back
            rows, kept = list(rows[:n]), []
            for i in range(n):
                if rows[i] is None:
                    try:
                        rows[i] = _read_back(records[i], spec)
                    except Exception as e:  # noqa: BLE001 - this row only; counted by the caller
                        if set_aside is not None:
                            set_aside.append(f"a {{\"b64\"}} example of model {model} version {version} that "
                                             f"Python's protobuf cannot read ({type(e).__name__}: "
                                             f"{str(e)[:200]})")
                        continue
                kept.append(i)
        times.append(int(when * 1_000_000))
        models.append(model)
        versions.append(version)
        labels.append(label)
        sigs.append(sig)
        which.extend([k] * len(kept))
        all_rows.extend(rows[i] for i in kept)
        responses.extend(dumps(outputs[i]) for i in kept)
    blob = os.urandom(16 * len(entries)).hex()  # a random 128-bit id per request, one system call
    ids = [blob[32 * k:32 * k + 32] for k in range(len(entries))]
    rows_of = pa.array(which, pa.int32())
    features = pa.StructArray.from_arrays(
        [_feature_column([r.get(n) for r in all_rows], fs.dtype) for n, fs in spec.items()],
        fields=list(schema.field("features").type))
    per_request = [pa.array(times, pa.int64()).cast(schema.field("time").type), pa.array(ids, pa.string()),
                   pa.array(models, pa.string()), pa.array(versions, pa.int64()), pa.array(labels, pa.string()),
                   pa.array(sigs, pa.string())]
    arrays = [a.take(rows_of) for a in per_request] + [features, pa.array(responses, pa.string())]
    return pa.Table.from_arrays(arrays, schema=schema)


def _day(table) -> str:
    import pyarrow.compute as pc
    return pc.min(table["time"]).as_py().strftime("%Y-%m-%d")


class ParquetSink:
    """A directory, or an object-store prefix (``s3://``, ``gs://``: each file one upload)."""

    def __init__(self, root: str):
        self.root = fileio.abspath(root)
        if fileio.isfile(self.root):
            raise LogError(f"--log-requests {root}: exists and is not a directory; expected a directory for "
                           f"a Parquet dataset partitioned by day")
        fileio.makedirs(self.root)

    def __str__(self):
        return self.root

    @property
    def public_name(self) -> str:
        """What /healthz shows: the directory's name, not its path."""
        return f"parquet directory {os.path.basename(self.root)}"

    def write(self, table) -> int:
        """``table`` (rows of one day) as a new file of its day's partition; the rows written.
        pyarrow encodes and compresses without holding the GIL."""
        import pyarrow.parquet as pq
        d = fileio.join(self.root, f"{DAY_PREFIX}{_day(table)}")  # made by replacing()
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        if fileio.is_remote(d):
            import pyarrow as pa
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            fileio.write_bytes(fileio.join(d, name), buf.getvalue().to_pybytes())
            return table.num_rows
        with replacing(os.path.join(d, name)) as tmp:
            pq.write_table(table, tmp)
        return table.num_rows


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

    def write(self, table) -> int:
        if self._client is None:
            from google.cloud import bigquery
            self._client = bigquery.Client(project=self.table.split(".")[0])
        errors = self._client.insert_rows_json(self.table, [self.to_json_row(r) for r in table.to_pylist()])
        if errors:
            raise LogError(f"BigQuery {self.table} refused {len(errors)} row(s): {str(errors[0])[:300]}")
        return table.num_rows


def open_sink(uri: str):
    return BigQuerySink(uri) if uri.startswith("bq://") else ParquetSink(uri)


class RequestLog:
    """The bounded queue between the request path and a sink's writer thread.

    ``offer`` (on the event loop) appends one tuple of references to a deque: no lock, no
    copy or conversion. The bound is in rows: at most ``max_queue`` rows wait; a request
    with more rows than there is room for keeps the rows that fit and the rest are dropped
    and counted, never waited for.

    When rows are written (see docs/serving.md, "Crash durability"): a row entering an
    empty queue wakes the writer thread (the only wake-up the request path causes, at most
    once per write); the writer takes everything queued at once unless it took something
    less than ``flush_s`` seconds ago, in which case it waits until ``flush_s`` after that
    take (or until ``flush_rows`` rows wait). So at a low rate a request's rows go to the
    sink as soon as it is answered, and under load the writer makes at most one file per
    ``flush_s`` per (day, model, feature spec). Every row is taken at most ``flush_s``
    after it was queued, then written (one Arrow table per group, one sink call each)."""

    def __init__(self, sink, sample_rate: float = 1.0, max_queue: int = 10000, flush_rows: int = 2000,
                 flush_s: float = 1.0, seed: int | None = None):
        if not 0.0 <= float(sample_rate) <= 1.0:
            raise LogError(f"--sample-rate {sample_rate}: expected a number from 0 to 1")
        self.sink, self.sample_rate = sink, float(sample_rate)
        self.max_queue, self.flush_rows, self.flush_s = int(max_queue), int(flush_rows), float(flush_s)
        self._q: collections.deque = collections.deque()  # append/popleft are atomic: no lock needed
        self._rng = random.Random(seed)
        # offered/dropped/_accepted are written only by the request path; taken/written/errors/
        # failed/set_aside only by the writer: each counter has one writer thread
        self.offered = self.dropped = self._accepted = 0
        self._taken = self.written = self.errors = self.failed = self.set_aside = 0
        self.last_error: str | None = None
        self.last_set_aside: str | None = None
        self._last_take = -float("inf")  # time.monotonic() of the writer's last take
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfpipe-request-log", daemon=True)
        self._thread.start()

    def sample(self) -> bool:
        return self.sample_rate >= 1.0 or self._rng.random() < self.sample_rate

    def offer(self, *, model: str, version: int, label: str | None, signature: str, spec: dict,
              rows: list, records: list[bytes], outputs: list, when: float | None = None) -> bool:
        """Queue one request's rows without waiting; False when none was queued. Rows beyond
        the queue's room are dropped and counted. ``rows``, ``records`` and ``outputs`` are
        kept by reference: the caller must not change them afterwards."""
        n = len(outputs)
        self.offered += n
        queued = self._accepted - self._taken
        room = self.max_queue - queued
        if room <= 0:
            self.dropped += n
            return False
        if n > room:  # the bound is per row: what fits is kept, the rest counted as dropped
            self.dropped += n - room
            rows, records, outputs, n = rows[:room], records[:room], outputs[:room], room
        self._q.append((when or time.time(), model, int(version), label, signature, spec, rows, records, outputs))
        self._accepted += n
        if (queued == 0 or queued + n >= self.flush_rows) and not self._kick.is_set():
            self._kick.set()
        return True

    def _take(self) -> list:
        out = []
        self._last_take = time.monotonic()
        while True:
            try:
                e = self._q.popleft()
            except IndexError:
                return out
            out.append(e)
            self._taken += len(e[8])

    def _convert(self, group: list, spec: dict):
        """The group's table; when it cannot be built, each request's alone, and the rows of
        a request that still fails are set aside (counted) instead of losing the group."""
        import pyarrow as pa
        reasons: list = []
        try:
            table = to_table(group, spec, reasons)
        except Exception:  # noqa: BLE001 - narrowed down below, request by request
            tables, reasons = [], []
            for e in group:
                try:
                    tables.append(to_table([e], spec, reasons))
                except Exception as err:  # noqa: BLE001 - this request's rows only
                    reasons.extend([f"a request of model {e[1]} version {e[2]}: {type(err).__name__}: "
                                    f"{str(err)[:200]}"] * len(e[8]))
            table = pa.concat_tables(tables) if tables else None
        if reasons:
            self.set_aside += len(reasons)
            self.last_set_aside = f"{len(reasons)} row(s) set aside, the last: {reasons[-1]}"
        return table

    def _write(self, entries: list) -> None:
        groups: dict = {}
        for e in entries:
            day = dt.datetime.fromtimestamp(e[0], tz=dt.timezone.utc).date()
            spec = e[5]
            groups.setdefault((day, e[1], tuple((n, fs.dtype) for n, fs in spec.items())), []).append(e)
        for group in groups.values():
            table = self._convert(group, group[0][5])
            if table is None or not table.num_rows:
                continue
            try:
                self.written += self.sink.write(table)
            except Exception as e:  # noqa: BLE001 - counted and reported; the server keeps serving
                self.errors += 1
                self.failed += table.num_rows
                self.last_error = f"{type(e).__name__}: {e}"

    def _run(self):
        while True:
            self._kick.wait(self.flush_s if self.flush_s > 0 else 0.05)  # the timeout: a wake-up missed in a race
            self._kick.clear()
            # at most one take per flush_s, unless flush_rows wait or the log is closing
            while not self._stop.is_set() and self._accepted - self._taken < self.flush_rows:
                wait = self._last_take + self.flush_s - time.monotonic()
                if wait <= 0:
                    break
                self._kick.wait(wait)
                self._kick.clear()
            stopping = self._stop.is_set()
            entries = self._take()
            if entries:
                self._write(entries)
            if stopping and not self._q:
                return

    def stats(self) -> dict:
        return {"sink": getattr(self.sink, "public_name", str(self.sink)), "sample_rate": self.sample_rate,
                "offered": self.offered,
                "written": self.written, "dropped": self.dropped + self.failed + self.set_aside,
                "set_aside": self.set_aside, "queued": self._accepted - self._taken, "errors": self.errors,
                "last_error": self.last_error, "last_set_aside": self.last_set_aside}

    def close(self, timeout_s: float = 60.0) -> dict:
        """Write what is queued, stop the writer; the final counters."""
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout_s)
        return self.stats()


def _parse_day(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(name[len(DAY_PREFIX):]) if name.startswith(DAY_PREFIX) else None
    except ValueError:
        return None


def read_log(root: str, model: str, start: dt.datetime, end: dt.datetime):
    """The logged rows of ``model`` with ``start <= time < end`` (a pyarrow Table, possibly
    empty) from a Parquet request log in a directory or under an object-store prefix."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    if not fileio.isdir(root):
        raise LogError(f"--requests {root}: no request log there (expected the directory given to "
                       f"'tfpipe serve --log-requests')")
    tables = []
    for d in fileio.listdir(root):
        day = _parse_day(d)
        if day is None or day < start.date() or day > end.date():
            continue
        for f in fileio.listdir(fileio.join(root, d)):
            if not f.endswith(".parquet") or f.startswith("."):
                continue
            path = fileio.join(root, d, f)
            try:
                t = pq.read_table(pa.BufferReader(fileio.read_bytes(path)) if fileio.is_remote(path) else path)
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
