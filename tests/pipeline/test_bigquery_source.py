"""tfpipe.sources.bigquery offline. BigQuery itself cannot be reached from the tests (no
Google Cloud project, no credentials), so snapshot() and read() through the BigQuery client
are NOT tested here (docs/data_sources_sql.md says so). What is: the Beam read translates
into a Dataflow job (the DataflowRunner's dry run, which builds the job without contacting
Google Cloud) whose BigQuery source holds the query: a table read as of the snapshot time,
or the user's query; the rows Beam yields become Arrow batches of the snapshot's columns;
configuration errors."""
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
