"""tfpipe.sources.bigquery offline. BigQuery itself cannot be reached from the tests (no
Google Cloud project, no credentials), so snapshot() and read() through the BigQuery client
are NOT tested against BigQuery (docs/data_sources.md says so). What is: the Beam read
translates into a Dataflow job (the DataflowRunner's dry run, which builds the job without
contacting Google Cloud) whose BigQuery source holds the query: a table read as of the
snapshot time, or the user's query; the rows Beam yields become Arrow batches of the
snapshot's columns; configuration errors; and, with a stand-in for the BigQuery client (not
BigQuery: it answers as this module expects BigQuery to), what snapshot() and read() ask
and do with the answers."""
import datetime
import decimal

import pytest

from tests.components.test_dataflow_translation import assert_dataflow_job, dataflow_job
from tfpipe.sources import load_source
from tfpipe.sources.bigquery import BigQuerySource, rows_to_batch
from tfpipe.tabular import InputDataError

COLUMNS = {"species": "string", "body_mass_g": "int64", "bill_length_mm": "float64", "seen": "string"}


def snapshot_of(**dv):
    return {"fingerprint": "bigquery:test", "reproducible": False,
            "data_version": {"columns": COLUMNS, "snapshot_time": "2026-01-02T03:04:05+00:00", **dv}}


def bigquery_sources(job) -> list:
    """The BigQuery sources (Beam's _CustomBigQuerySource) in a translated job's Read transforms."""
    from apache_beam.internal import pickler
    from apache_beam.portability.api import beam_runner_api_pb2
    out = []
    for t in job.proto_pipeline.components.transforms.values():
        if t.spec.urn == "beam:transform:read:v1":
            payload = beam_runner_api_pb2.ReadPayload.FromString(t.spec.payload)
            out.append(pickler.loads(payload.source.payload))
    return out


def _text(v):
    return v.get() if hasattr(v, "get") else v


def test_table_read_translates_for_dataflow_as_of_the_snapshot_time():
    src = load_source("bigquery", {"table": "test-project.penguins.raw", "batch_rows": 1000})
    job, names = dataflow_job(lambda p: src.beam_read(p, snapshot_of(table="test-project.penguins.raw")))
    assert_dataflow_job(job)
    assert {"ReadFromBigQuery/Read", "ReadFromBigQuery/Batch", "ReadFromBigQuery/ToArrow"} <= names
    (bq,) = bigquery_sources(job)
    assert _text(bq.query) == ("SELECT * FROM `test-project.penguins.raw` "
                               "FOR SYSTEM_TIME AS OF TIMESTAMP('2026-01-02T03:04:05+00:00')")
    assert bq.use_legacy_sql is False


def test_query_read_translates_for_dataflow_with_the_query():
    query = "SELECT species, body_mass_g FROM `test-project.penguins.raw` WHERE island = 'Biscoe'"
    src = BigQuerySource(query=query + ";", project="test-project", gcs_location="gs://test-bucket/export")
    job, names = dataflow_job(lambda p: src.beam_read(p, snapshot_of(query=query)))
    assert_dataflow_job(job)
    (bq,) = bigquery_sources(job)
    assert _text(bq.query) == query and bq.use_legacy_sql is False
    assert _text(bq.gcs_location) == "gs://test-bucket/export"


def test_rows_become_arrow_batches_of_the_snapshot_columns():
    rows = [{"species": "Adelie", "body_mass_g": 3700, "bill_length_mm": decimal.Decimal("39.1"),
             "seen": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)},
            {"species": None, "body_mass_g": None, "bill_length_mm": None, "seen": None}]
    b = rows_to_batch(rows, COLUMNS)
    assert {f.name: str(f.type) for f in b.schema} == {"species": "string", "body_mass_g": "int64",
                                                       "bill_length_mm": "double", "seen": "string"}
    assert b.to_pylist() == [{"species": "Adelie", "body_mass_g": 3700, "bill_length_mm": 39.1,
                              "seen": "2024-05-01T12:30:00+00:00"},
                             {"species": None, "body_mass_g": None, "bill_length_mm": None, "seen": None}]


def test_configuration_errors():
    with pytest.raises(InputDataError, match="exactly one of query= .* or table="):
        BigQuerySource(query="SELECT 1", table="p.d.t")
    with pytest.raises(InputDataError, match="expected project.dataset.table"):
        BigQuerySource(table="no dots here")
    with pytest.raises(InputDataError, match=r"unknown option\(s\) \['tabel'\]"):
        BigQuerySource(tabel="p.d.t")
    with pytest.raises(InputDataError, match="no columns"):
        BigQuerySource(table="p.d.t").beam_read(None, {"data_version": {}})


class _Job:
    def __init__(self, schema=None, referenced=(), rows=None):
        self.schema, self.referenced_tables, self._rows = schema, list(referenced), rows

    def result(self, page_size=None):
        return self._rows


class _Rows:
    def __init__(self, schema, batches):
        self.schema, self._batches = schema, batches

    def to_arrow_iterable(self):
        return iter(self._batches)


class FakeBigQuery:
    """A stand-in for google.cloud.bigquery.Client (this is not BigQuery: it checks what this
    module asks and does with the answers): one table and what a query returns."""

    def __init__(self, schema, batches):
        from google.cloud import bigquery
        self.bigquery = bigquery
        self.schema, self.batches = schema, batches
        self.modified = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        self.queries = []

    def client(self, project=None, location=None):
        return self

    def get_table(self, name):
        class T:
            pass
        t = T()
        t.modified, t.num_rows, t.schema = self.modified, sum(b.num_rows for b in self.batches), self.schema
        return t

    def query(self, sql, job_config=None):
        if job_config is not None and job_config.dry_run:
            return _Job(schema=self.schema, referenced=[self.bigquery.TableReference.from_string("p.zoo.penguins")])
        self.queries.append(sql)
        return _Job(rows=_Rows(self.schema, self.batches))


@pytest.fixture
def fake_bigquery(monkeypatch):
    import pyarrow as pa
    from google.cloud import bigquery
    schema = [bigquery.SchemaField("species", "STRING"), bigquery.SchemaField("mass", "INT64"),
              bigquery.SchemaField("bill", "NUMERIC"), bigquery.SchemaField("seen", "TIMESTAMP")]
    batch = pa.record_batch([pa.array(["Adelie", None, "Gentoo"]), pa.array([3700, 3800, None]),
                             pa.array([decimal.Decimal("39.10"), None, decimal.Decimal("46.5")], pa.decimal128(5, 2)),
                             pa.array([datetime.datetime(2024, 5, 1, 12, 30), None, None], pa.timestamp("us", "UTC"))],
                            names=["species", "mass", "bill", "seen"])
    fake = FakeBigQuery(schema, [batch])
    monkeypatch.setattr(bigquery, "Client", fake.client)
    return fake


def test_table_snapshot_and_read_with_a_stand_in_client(fake_bigquery):
    src = BigQuerySource(table="p.zoo.penguins", batch_rows=2)
    snap = src.snapshot()
    dv = snap["data_version"]
    assert snap["reproducible"] is False and dv["rows"] == 3 and dv["modified"] == "2026-01-01T00:00:00+00:00"
    assert dv["columns"] == {"species": "string", "mass": "int64", "bill": "float64", "seen": "string"}
    assert src.snapshot()["fingerprint"] == snap["fingerprint"]  # the snapshot time is not in it
    batches = list(src.read(snap))
    assert [b.num_rows for b in batches] == [2, 1]
    assert fake_bigquery.queries == [f"SELECT * FROM `p.zoo.penguins` FOR SYSTEM_TIME AS OF "
                                     f"TIMESTAMP('{dv['snapshot_time']}')"]
    assert [r for b in batches for r in b.to_pylist()] == [
        {"species": "Adelie", "mass": 3700, "bill": 39.1, "seen": "2024-05-01T12:30:00+00:00"},
        {"species": None, "mass": 3800, "bill": None, "seen": None},
        {"species": "Gentoo", "mass": None, "bill": 46.5, "seen": None}]
    fake_bigquery.modified += datetime.timedelta(hours=1)
    assert src.snapshot()["fingerprint"] != snap["fingerprint"]  # the table was modified
    old = dict(snap, data_version=dict(dv, readable_until="2026-01-02T00:00:00+00:00"))
    with pytest.raises(InputDataError, match="past BigQuery's time travel window"):
        list(src.read(old))


def test_query_read_refuses_a_table_modified_since_the_snapshot(fake_bigquery):
    src = BigQuerySource(query="SELECT * FROM `p.zoo.penguins`")
    snap = src.snapshot()
    assert snap["data_version"]["tables"] == {"p.zoo.penguins": "2026-01-01T00:00:00+00:00"}
    assert sum(b.num_rows for b in src.read(snap)) == 3
    fake_bigquery.modified += datetime.timedelta(minutes=5)
    with pytest.raises(InputDataError, match="p.zoo.penguins, read by the query, was modified at .* after the"):
        list(src.read(snap))
