"""One contract for every orchestrator that runs here: the same pipeline gives the same
executions, artifacts and lineage in ML Metadata, the same cache behaviour, and the same
failure handling, whether it runs locally, as one Beam pipeline, under Airflow or kfp.local."""
import os
import re

import pytest

from .conftest import ORCHESTRATORS

# Artifacts whose bytes are a deterministic function of the inputs (TFDV statistics embed
# nothing run-specific either, measured here); compared by fingerprint across orchestrators.
DETERMINISTIC = {"ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator"}


def _outputs(execution: dict) -> dict:
    return {k: [(a["type"], a["state"]) for a in v] for k, v in execution["outputs"].items()}


def _fingerprints(store_path, execution):
    from tfpipe.metadata import MetadataStore
    store = MetadataStore(store_path)
    return {k: [a.fingerprint for a in v] for k, v in store.io_of(execution["execution_id"])[1].items()}


@pytest.fixture(scope="module")
def reference(scenarios):
    return scenarios("local")


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_penguin_same_nodes_artifacts_and_fingerprints(scenarios, reference, orch):
    s = scenarios(orch)
    run, ref = s.summaries["penguin-1"], reference.summaries["penguin-1"]
    assert s.results["penguin-1"].ok, s.results["penguin-1"].error
    assert run["status"] == "COMPLETE"
    assert sorted(run["nodes"]) == sorted(n["id"] for n in s.penguin_ir["nodes"]) == sorted(ref["nodes"])
    assert len(run["executions"]) == len(ref["executions"])  # one execution per node, nothing retried
    for node, e in run["nodes"].items():
        r = ref["nodes"][node]
        assert e["state"] == r["state"] == "COMPLETE", (node, e["error"])
        assert e["component"] == r["component"]
        assert _outputs(e) == _outputs(r), node  # same artifact types, counts, all LIVE
        assert {k: len(v) for k, v in e["inputs"].items()} == {k: len(v) for k, v in r["inputs"].items()}
        if node in DETERMINISTIC:
            assert (_fingerprints(s.penguin_ir["pipeline"]["metadata"], e)
                    == _fingerprints(reference.penguin_ir["pipeline"]["metadata"], r)), node
            if node != "ExampleGen":  # its input_base (a parameter) names each orchestrator's own prefix
                assert e["cache_key"] == r["cache_key"], node


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_penguin_on_object_storage_as_on_local_disk(scenarios, reference, orch):
    """Each orchestrator's penguin run kept every artifact on the S3 server (URIs under its
    prefix, every object there, nothing on local disk under the home), and its
    deterministic outputs are byte-for-byte those of the same pipeline on local disk."""
    from tfpipe import fileio
    from tfpipe.metadata import MetadataStore
    s = scenarios(orch)
    run = s.summaries["penguin-1"]
    disk = reference.summaries["penguin-disk"]
    assert disk["status"] == "COMPLETE"
    store = MetadataStore(s.penguin_ir["pipeline"]["metadata"])
    for node, e in run["nodes"].items():
        for arts in store.io_of(e["execution_id"])[1].values():
            for a in arts:
                assert a.uri.startswith(s.store + "/artifacts/"), (node, a.uri)
                assert fileio.isdir(a.uri) or a.fingerprint == fileio_empty(), (node, a.uri)
        if node in DETERMINISTIC:
            assert (_fingerprints(s.penguin_ir["pipeline"]["metadata"], e)
                    == _fingerprints(reference.disk_ir["pipeline"]["metadata"], disk["nodes"][node])), node
    assert not os.path.exists(os.path.join(s.home, "artifacts", "penguin"))


def fileio_empty() -> str:
    from tfpipe.fingerprint import fingerprint_files
    return fingerprint_files([])


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_penguin_model_blessed_and_pushed(scenarios, orch):
    """The model half (Transform -> Trainer -> resolver -> Evaluator, InfraValidator ->
    Pusher) ran under this orchestrator: the model blessed, validated and pushed."""
    from tfpipe.metadata import MetadataStore
    s = scenarios(orch)
    run = s.summaries["penguin-1"]
    store = MetadataStore(s.penguin_ir["pipeline"]["metadata"])
    _, outs = store.io_of(run["nodes"]["Evaluator"]["execution_id"])
    assert outs["blessing"][0].blessed is True
    _, outs = store.io_of(run["nodes"]["InfraValidator"]["execution_id"])
    assert outs["blessing"][0].blessed is True
    _, outs = store.io_of(run["nodes"]["Pusher"]["execution_id"])
    pushed = outs["pushed_model"][0]
    assert pushed.type_name == "PushedModel" and pushed.pushed is True
    from tfpipe import fileio
    assert pushed.destination.startswith(s.store + "/"), pushed.destination
    version = fileio.join(pushed.destination, pushed.pushed_version)
    files = fileio.list_files(version)
    assert "saved_model.pb" in files and "tfpipe_push.json" in files, sorted(files)


def test_long_nodes_show_progress_in_airflow_task_logs(scenarios):
    """Transform, the Trainer and the Evaluator say how far along they are (done of total, the
    rate, the time left) in Airflow's task logs, as in a local run's output."""
    log = scenarios("airflow").summaries["penguin-1"]["airflow_log"]
    for node, what in (("Transform", "rows of train+eval transformed"), ("Trainer", "steps trained"),
                       ("Evaluator", "rows evaluated")):
        assert re.search(rf"\[{node}\] [\d,]+/[\d,]+ {re.escape(what)} \(100%\)", log), \
            f"no final progress line of {node} in the task logs"


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_penguin_second_run_all_cached(scenarios, orch):
    s = scenarios(orch)
    first, second = s.summaries["penguin-1"], s.summaries["penguin-2"]
    assert second["status"] == "COMPLETE"
    for node, e in second["nodes"].items():
        if e["component"] == "Resolver":  # resolves afresh every run, as in TFX
            assert e["state"] == "COMPLETE", node
            continue
        assert e["state"] == "CACHED", node
        assert e["cached_from"] == first["nodes"][node]["execution_id"]
        assert [a["id"] for v in e["outputs"].values() for a in v] == \
               [a["id"] for v in first["nodes"][node]["outputs"].values() for a in v]
    assert sorted(second["nodes"]) == sorted(first["nodes"])


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_failure_in_the_middle(scenarios, orch):
    s = scenarios(orch)
    r, run = s.results["contract-1"], s.summaries["contract-1"]
    assert not r.ok and r.error.node_id == "ContractBoom"
    assert "boom asked to fail" in r.error.message
    assert run["status"] == "FAILED"
    nodes = run["nodes"]
    assert nodes["ContractSource"]["state"] == "COMPLETE"
    assert nodes["ContractBoom"]["state"] == "FAILED"
    assert "boom asked to fail" in nodes["ContractBoom"]["error"]
    assert "ContractSink" not in nodes  # downstream of the failure: never started
    outs = [a for v in nodes["ContractBoom"]["outputs"].values() for a in v]
    assert outs and all(a["state"] == "ABANDONED" for a in outs)
    assert not any(os.path.exists(a["uri"]) for a in outs)
    boom_dir = os.path.join(s.contract_ir["pipeline"]["root"], "ContractBoom")
    leftovers = [d for _, ds, fs in os.walk(boom_dir) for d in ds + fs if d.startswith(".staging")]
    assert leftovers == []
    if orch == "airflow":
        assert s.results["contract-1"].airflow_state == "failed"


@pytest.mark.parametrize("orch", ORCHESTRATORS)
def test_rerun_resumes_from_cache(scenarios, orch):
    s = scenarios(orch)
    first, again = (s.summaries[k] for k in ("contract-1", "contract-2"))
    assert again["status"] == "COMPLETE" and s.results["contract-2"].ok
    n = again["nodes"]
    assert n["ContractSource"]["state"] == "CACHED"
    assert n["ContractSource"]["cached_from"] == first["nodes"]["ContractSource"]["execution_id"]
    assert n["ContractBoom"]["state"] == n["ContractSink"]["state"] == "COMPLETE"
    # Side is independent of Boom: orchestrators that keep running other branches after a
    # failure (Airflow, Beam) ran it in the failed run, the others run it now
    assert n["ContractSide"]["state"] == ("CACHED" if "ContractSide" in first["nodes"] else "COMPLETE")
    # exactly one LIVE output of Boom across both runs: the successful one
    from tfpipe.metadata import MetadataStore
    store = MetadataStore(s.contract_ir["pipeline"]["metadata"])
    live = [a for a in store.list_artifacts("Examples") if a.state == "LIVE" and "/ContractBoom/" in a.uri]
    assert len(live) == 1
    with open(os.path.join(live[0].uri, "data.txt")) as f:
        assert f.read().split() == ["0", "2", "4", "6", "8"]
