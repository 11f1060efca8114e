"""A data source in every execution mode: the source's config is compiled into the IR, the
Airflow DAG and the KFP spec, and each orchestrator's ExampleGen reads the pinned Delta
version (1, while version 2 exists) and records it on the Examples."""
import json
import os

import pytest

from tests.components.test_delta_source import penguin_rows, write_versions

from .conftest import HERE, ORCHESTRATORS, Scenario, compile_file


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    t = penguin_rows()
    path = str(tmp_path_factory.mktemp("sources_table") / "penguins")
    write_versions(path, [t.slice(0, 120), t.slice(120)])
    return path


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_a_delta_source_in_every_orchestrator(tmp_path, table, airflow_runner, orch):
    from tfpipe.metadata import MetadataStore
    s = Scenario(orch, tmp_path, lambda: airflow_runner)
    ir = compile_file(os.path.join(HERE, "sources_pipeline.py"), s.home, {"SOURCES_TABLE": table})
    [gen] = [n for n in ir["nodes"] if n["id"] == "ExampleGen"]
    assert gen["parameters"]["source_config"] == {"version": 1}
    r = s.run(ir, "sources-1")
    assert r.ok, r.error
    nodes = s.summaries["sources-1"]["nodes"]
    assert {n: e["state"] for n, e in nodes.items()} == {"ExampleGen": "COMPLETE", "CountRows": "COMPLETE"}
    store = MetadataStore(ir["pipeline"]["metadata"])
    [examples] = store.get_artifacts([nodes["ExampleGen"]["outputs"]["examples"][0]["id"]])
    assert examples.data_version == {"delta_version": 1, "table": table} and examples.source == "delta"
    [count] = store.get_artifacts([nodes["CountRows"]["outputs"]["result"][0]["id"]])
    assert json.load(open(os.path.join(count.uri, "value"))) == 120
