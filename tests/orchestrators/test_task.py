"""The task entry every remote orchestrator uses: pipeline parameters and run bookkeeping."""
import pytest

from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.task import main
from tfpipe.parameters import ParameterError, apply_parameters, pipeline_parameters

from .conftest import CONTRACT, compile_file, summary


@pytest.fixture
def ir(tmp_path):
    return compile_file(CONTRACT, str(tmp_path / "home"))


def test_parameters_override_node_parameters_in_a_copy(ir):
    assert pipeline_parameters(ir)["ContractSource__rows"] == ("ContractSource", "rows", 5, "int")
    out = apply_parameters(ir, {"ContractSource__rows": 3})
    assert [n["parameters"] for n in out["nodes"] if n["id"] == "ContractSource"] == [{"rows": 3}]
    assert [n["parameters"] for n in ir["nodes"] if n["id"] == "ContractSource"] == [{"rows": 5}]


@pytest.mark.parametrize("values, message", [
    ({"ContractSource__cols": 3}, "pipeline parameter 'ContractSource__cols' of pipeline contract: no such parameter"),
    ({"ContractSource__rows": "three"}, "(node ContractSource, parameter rows): expected int, found str 'three'"),
    ({"ContractSource__rows": 2.5}, "(node ContractSource, parameter rows): expected int, found float 2.5"),
])
def test_bad_parameters_are_named(ir, values, message):
    with pytest.raises(ParameterError) as e:
        apply_parameters(ir, values)
    assert message in str(e.value)


def test_task_cli_runs_nodes_and_keeps_the_run_status(ir, tmp_path, capsys):
    import json
    path = tmp_path / "ir.json"
    path.write_text(json.dumps(ir))
    common = ["--ir", str(path), "--run", "ignored", "--orchestrator", "test",
              "--params", json.dumps({"tfpipe_run_id": "t-1", "ContractSource__rows": 3})]
    assert main(["--node", "ContractSource", *common]) == 0
    store = MetadataStore(ir["pipeline"]["metadata"])
    assert summary(store, "t-1")["status"] == "RUNNING"
    for node in ("ContractSide", "ContractBoom"):
        assert main(["--node", node, *common]) == 0
    assert summary(store, "t-1")["status"] == "RUNNING"
    assert main(["--node", "ContractSink", *common]) == 0
    run = summary(store, "t-1")
    assert run["status"] == "COMPLETE"  # the task that completed the last node closed the run
    assert run["nodes"]["ContractSource"]["parameters"]["rows"] == 3
    assert main(["--node", "ContractSource", *common[:-1], '{"ContractSource__rows": 1.5}']) == 1
    assert "expected int, found float 1.5" in capsys.readouterr().err


def test_tfpipe_metadata_env_points_tasks_at_another_store(ir, tmp_path, monkeypatch):
    """In a cluster, TFPIPE_METADATA (a path or a JSON connection dict) replaces the IR's store."""
    import json
    path = tmp_path / "ir.json"
    path.write_text(json.dumps(ir))
    shared = tmp_path / "shared" / "mlmd.sqlite"
    monkeypatch.setenv("TFPIPE_METADATA", json.dumps({"sqlite": str(shared)}))
    assert main(["--ir", str(path), "--node", "ContractSource", "--run", "m-1", "--orchestrator", "test"]) == 0
    assert summary(MetadataStore(str(shared)), "m-1")["nodes"]["ContractSource"]["state"] == "COMPLETE"
    from tfpipe.tracking import runs
    assert runs.list_runs(MetadataStore(ir["pipeline"]["metadata"]), "contract") == []
