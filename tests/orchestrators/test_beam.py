"""Beam DAG runner specifics (the contract is in test_contract.py): `tfpipe run --target
beam`, and the pipeline's beam_pipeline_args reaching the Beam-based components while the
DAG itself runs on a runner of its own."""
from tests.conftest import tfpipe
from tfpipe.metadata import MetadataStore

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

    from tfpipe.orchestrators.beam import BeamDagRunner

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
