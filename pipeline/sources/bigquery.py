"""A BigQuery query or table as ExampleGen's input.

``BigQuerySource(query=None, table=None, project=None, location=None, gcs_location=None,
batch_rows=50_000)``: ``query`` is GoogleSQL (standard SQL) text, ``table`` a
``project.dataset.table`` (or ``dataset.table`` in ``project``). Credentials are Google
Cloud's own (Application Default Credentials where the task runs): nothing secret is in the
configuration.

- ``snapshot()`` asks BigQuery (google-cloud-bigquery): for a table, its last-modified time,
  row count and schema, and the snapshot time (now); for a query, a dry run gives the tables
  it reads, and their last-modified times are the data version. The fingerprint changes when
  the table (or a table the query reads) is modified.
- ``read(snapshot)`` reads a table *as of the snapshot time* (``FOR SYSTEM_TIME AS OF``:
  BigQuery's time travel, which keeps a table's past for up to 7 days, the dataset's
  ``max_time_travel_hours``); a query is run again and fails when a table it reads was
  modified since the snapshot. Neither can be read again as it was for ever, so
  ``reproducible`` is False; ``data_version`` says until when a table can be.
- ``beam_read(pipeline, snapshot)`` builds the same read as a Beam transform
  (``beam.io.ReadFromBigQuery``, its export to GCS, for reads too large for one process)
  yielding Arrow record batches of at most ``batch_rows`` rows.

Arrow types as for SQL sources: INT64 -> int64, NUMERIC/BIGNUMERIC/FLOAT64 -> float64,
BOOL -> bool, STRING/JSON -> string, DATE/TIME/DATETIME/TIMESTAMP -> ISO 8601 strings,
BYTES -> binary; other types (RECORD, GEOGRAPHY, arrays) are refused, naming the column.

This source is NOT tested against BigQuery itself: the tests have no Google Cloud project.
What is tested offline is that the Beam read translates into a Dataflow job (the
DataflowRunner's dry run) holding the query, and the SQL this module writes."""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from typing import Any, Iterator

from tfpipe.credentials import check_no_inline_secrets
from tfpipe.tabular import InputDataError

from . import Source

__all__ = ["BigQuerySource", "TIME_TRAVEL"]

TIME_TRAVEL = datetime.timedelta(days=7)  # BigQuery's default (and longest) time-travel window
_TABLE = re.compile(r"^(?:[A-Za-z0-9_.:-]+\.)?[A-Za-z0-9_-]+\.[A-Za-z0-9_$-]+$")
# BigQuery field types -> the Arrow types ExampleGen keeps
_ARROW = {"INTEGER": "int64", "INT64": "int64", "FLOAT": "float64", "FLOAT64": "float64", "NUMERIC": "float64",
          "BIGNUMERIC": "float64", "BOOLEAN": "bool", "BOOL": "bool", "STRING": "string", "JSON": "string",
          "DATE": "string", "TIME": "string", "DATETIME": "string", "TIMESTAMP": "string", "BYTES": "binary"}


def _columns(fields, where: str) -> dict:
    out = {}
    for f in fields:
        if f.mode == "REPEATED" or f.field_type not in _ARROW:
            raise InputDataError(f"bigquery source {where}: column {f.name!r} is {f.mode} {f.field_type}; expected a "
                                 f"scalar of {sorted(set(_ARROW))} (select or flatten it in a query)")
        out[f.name] = _ARROW[f.field_type]
    return out


def _iso(v):
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    return v


def rows_to_batch(rows: list[dict], columns: dict):
    """Rows as dicts (what Beam's BigQuery read yields) -> one Arrow RecordBatch of ``columns``."""
    import pyarrow as pa
    arrays = []
    for name, t in columns.items():
        values = [r.get(name) for r in rows]
        if t == "float64":
            values = [None if v is None else float(v) for v in values]
        elif t == "string":
            values = [v if v is None or isinstance(v, str) else
                      json.dumps(v) if isinstance(v, (dict, list)) else str(_iso(v)) for v in values]
        elif t == "binary":
            values = [None if v is None else bytes(v) if not isinstance(v, str) else v.encode() for v in values]
        arrays.append(pa.array(values, type=pa.type_for_alias(t)))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([(n, pa.type_for_alias(t)) for n, t in columns.items()]))


def _normalize(batch, columns: dict):
    """A batch from the BigQuery client (dates as date32, timestamps, decimals) in ``columns``' types."""
    import pyarrow as pa
    import pyarrow.compute as pc
    arrays = []
    for name, t in columns.items():
        col = batch.column(batch.schema.get_field_index(name))
        want = pa.type_for_alias(t)
        if col.type != want:
            if t == "string" and (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)
                                  or pa.types.is_time(col.type)):
                col = pa.array([None if v is None else _iso(v) for v in col.to_pylist()], type=want)
            else:
                col = pc.cast(col, want)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([(n, pa.type_for_alias(t)) for n, t in columns.items()]))


class BigQuerySource(Source):
    kind = "bigquery"

    def __init__(self, query: str | None = None, table: str | None = None, project: str | None = None,
                 location: str | None = None, gcs_location: str | None = None, batch_rows: int = 50_000,
                 **unknown: Any):
        config = {k: v for k, v in dict(query=query, table=table, project=project, location=location,
                                        gcs_location=gcs_location, batch_rows=batch_rows).items() if v is not None}
        check_no_inline_secrets({**config, **unknown}, "bigquery source")
        if unknown:
            raise InputDataError(f"bigquery source: unknown option(s) {sorted(unknown)}; expected query or table, "
                                 f"project, location, gcs_location, batch_rows")
        super().__init__(**config)
        if bool(query) == bool(table):
            raise InputDataError("bigquery source: expected exactly one of query= (GoogleSQL) or table= "
                                 f"(project.dataset.table); found {'both' if query else 'neither'}")
        if table and not _TABLE.match(table):
            raise InputDataError(f"bigquery source: table {table!r}: expected project.dataset.table or dataset.table")
        if not isinstance(batch_rows, int) or batch_rows < 1:
            raise InputDataError(f"bigquery source: batch_rows {batch_rows!r}: expected a positive integer")
        self.query = query.strip().rstrip(";").strip() if query else None
        self.table = table
        self.project, self.location, self.gcs_location, self.batch_rows = project, location, gcs_location, batch_rows

    def describe(self) -> str:
        return f"bigquery table {self.table}" if self.table else "bigquery query"

    def _full_table(self) -> str:
        t = self.table.replace(":", ".")
        return t if t.count(".") >= 2 or not self.project else f"{self.project}.{t}"

    def read_sql(self, snapshot: dict) -> str:
        """The GoogleSQL that reads ``snapshot``: a table as of its snapshot time, a query as it is."""
        if self.query:
            return self.query
        at = snapshot["data_version"]["snapshot_time"]
        return f"SELECT * FROM `{self._full_table()}` FOR SYSTEM_TIME AS OF TIMESTAMP('{at}')"

    # -- with google-cloud-bigquery (needs credentials) ----------------------------------
    def _client(self):
        try:
            from google.cloud import bigquery
        except ImportError as e:
            raise InputDataError(f"bigquery source: google-cloud-bigquery is not installed ({e})") from None
        return bigquery.Client(project=self.project, location=self.location)

    def _call(self, fn, what: str):
        try:
            return fn()
        except InputDataError:
            raise
        except Exception as e:  # google.api_core exceptions carry BigQuery's own message
            msg = getattr(e, "message", None) or str(e)
            raise InputDataError(f"bigquery source: {what} failed: {msg}") from None

    def snapshot(self) -> dict:
        from google.cloud import bigquery
        client = self._client()
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        dv: dict[str, Any] = {}
        if self.table:
            name = self._full_table()
            t = self._call(lambda: client.get_table(name), f"looking up table {name}")
            dv.update(table=name, modified=t.modified.isoformat(), rows=int(t.num_rows or 0),
                      columns=_columns(t.schema, name), snapshot_time=now.isoformat(),
                      readable_until=(now + TIME_TRAVEL).isoformat())
            if not dv["rows"]:
                raise InputDataError(f"bigquery source: table {name} has no rows; expected at least one row")
        else:
            cfg = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
            job = self._call(lambda: client.query(self.query, job_config=cfg), "the query (dry run)")
            tables = {}
            for ref in job.referenced_tables or []:
                name = f"{ref.project}.{ref.dataset_id}.{ref.table_id}"
                tables[name] = self._call(lambda n=name: client.get_table(n), f"looking up table {name}"
                                          ).modified.isoformat()
            dv.update(query=self.query, tables=tables, columns=_columns(job.schema, "query"),
                      snapshot_time=now.isoformat())
        ident = {k: v for k, v in dv.items() if k not in ("snapshot_time", "readable_until")}
        fp = "bigquery:" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
        return {"fingerprint": fp, "data_version": dv, "reproducible": False}

    def read(self, snapshot: dict) -> Iterator[Any]:
        dv = snapshot.get("data_version") or {}
        client = self._client()
        if self.query:
            for name, modified in (dv.get("tables") or {}).items():
                now = self._call(lambda n=name: client.get_table(n), f"looking up table {name}").modified.isoformat()
                if now != modified:
                    raise InputDataError(f"bigquery source: table {name}, read by the query, was modified at {now}, "
                                         f"after the snapshot ({modified}); a query result can be read only as it "
                                         f"is now")
        else:
            until = dv.get("readable_until")
            if until and datetime.datetime.now(datetime.timezone.utc) > datetime.datetime.fromisoformat(until):
                raise InputDataError(f"bigquery source: table {self.table} as of {dv.get('snapshot_time')} is past "
                                     f"BigQuery's time travel window (until {until}); it cannot be read as it was")
        sql = self.read_sql(snapshot)
        rows = self._call(lambda: client.query(sql).result(page_size=self.batch_rows), "the query")
        columns = dv.get("columns") or _columns(rows.schema, self.describe())
        n = 0
        for batch in rows.to_arrow_iterable():
            for start in range(0, batch.num_rows, self.batch_rows):
                part = batch.slice(start, self.batch_rows)
                n += part.num_rows
                yield _normalize(part, columns)
        if not n:
            raise InputDataError(f"bigquery source: {self.describe()} returned no rows; expected at least one row")

    # -- with Beam (large reads) ---------------------------------------------------------
    def beam_read(self, pipeline, snapshot: dict, label: str = "ReadFromBigQuery"):
        """A PCollection of Arrow RecordBatches (at most ``batch_rows`` rows each) of
        ``snapshot``, read by Beam's BigQuery IO (an export to ``gcs_location``, or the
        pipeline's temp_location)."""
        import apache_beam as beam
        columns = (snapshot.get("data_version") or {}).get("columns")
        if not columns:
            raise InputDataError("bigquery source: the snapshot has no columns; take it with snapshot()")
        kw = {"query": self.read_sql(snapshot), "use_standard_sql": True}
        if self.project:
            kw["project"] = self.project
        if self.gcs_location:
            kw["gcs_location"] = self.gcs_location
        batch_rows = self.batch_rows

        class ReadBatches(beam.PTransform):
            def expand(self, pbegin):
                return (pbegin
                        | "Read" >> beam.io.ReadFromBigQuery(**kw)
                        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_rows)
                        | "ToArrow" >> beam.Map(rows_to_batch, columns))

        return pipeline | label >> ReadBatches()
