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
        k: "COMPLETE" for k in ("ContractSource", "ContractDouble", "ContractSide", "ContractBoom", "ContractSink")}
