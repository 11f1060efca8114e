"""Beam DAG runner specifics (the contract is in test_contract.py): `tfpipe run --target
beam`, and the pipeline's beam_pipeline_args reaching the Beam-based components while the
DAG itself runs on a runner of its own."""
from pipeline.metadata import MetadataStore

from tests.conftest import tfpipe

from .conftest import CONTRACT, summary


def test_cli_run_target_beam(tmp_path):
    home = tmp_path / "home"
    p = tfpipe("run", CONTRACT, "--target", "beam", "--run-id", "b-1", env={"TFPIPE_HOME": str(home)}, check=0)
    assert "as one Beam pipeline" in p.stderr
    run = summary(MetadataStore(str(home / "metadata.sqlite")), "b-1")
    assert run["status"] == "COMPLETE"
    assert {k: e["state"] for k, e in run["nodes"].items()} == {
        k: "COMPLETE" for k in ("ContractSource", "ContractSide", "ContractBoom", "ContractSink")}


def test_dag_and_components_on_the_portable_runner_offline(tmp_path):
    """settings["beam_dag_args"] choose the runner of the DAG; the pipeline's
    beam_pipeline_args reach the Beam-based component (ExecutionContext.beam_pipeline())."""
    import json
    import os

    from orchestrators.beam import BeamDagRunner

    from .conftest import HERE, compile_file
    ir = compile_file(os.path.join(HERE, "beam_portable_pipeline.py"), str(tmp_path / "home"))
    runner = BeamDagRunner(verbose=False)
    assert runner.dag_args(ir)[0] == "--runner=PortableRunner"
    r = runner.run(ir, run_id="portable-1")
    assert r.ok, r.error
    [out] = [n for n in r.nodes if n.node_id == "BeamSum"][0].outputs["result"]
    with open(os.path.join(out.uri, "value")) as f:
        value = json.load(f)
    assert value["sum"] == sum(range(100))
    assert value["runner"] == "PortableRunner"
    assert value["args"] == ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
    run = summary(MetadataStore(ir["pipeline"]["metadata"]), "portable-1")
    assert run["status"] == "COMPLETE"


def test_whole_penguin_pipeline_blesses_and_pushes_the_model(scenarios):
    """The model half (Transform -> Trainer -> Resolver -> Evaluator, InfraValidator ->
    Pusher) as one Beam pipeline: every node COMPLETE, the model blessed and pushed."""
    import os
    s = scenarios("beam")
    r, run = s.results["full-1"], s.summaries["full-1"]
    assert r.ok, r.error
    assert run["status"] == "COMPLETE"
    states = {k: e["state"] for k, e in run["nodes"].items()}
    assert sorted(states) == sorted(n["id"] for n in s.full_ir["nodes"])
    # the data half may come from the cache (same components, parameters and data as the
    # data-half runs of this store); the model half runs here
    model_half = {"Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator", "InfraValidator", "Pusher"}
    assert {k: v for k, v in states.items() if k in model_half} == {k: "COMPLETE" for k in model_half}
    assert set(states.values()) <= {"COMPLETE", "CACHED"}
    store = MetadataStore(s.full_ir["pipeline"]["metadata"])
    _, outs = store.io_of(run["nodes"]["Evaluator"]["execution_id"])
    assert outs["blessing"][0].blessed is True
    _, outs = store.io_of(run["nodes"]["Pusher"]["execution_id"])
    pushed = outs["pushed_model"][0]
    assert pushed.type_name == "PushedModel" and pushed.pushed is True
    assert os.path.isdir(pushed.destination) and os.listdir(pushed.destination)
