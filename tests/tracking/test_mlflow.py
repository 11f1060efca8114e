"""MLflow export against a real local MLflow store (SQLite + local artifact root), read
back through MLflow's own client."""
import json
import os

import pytest

from tests.conftest import tfpipe


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{d / 'mlflow.db'}"


def test_export_round_trip(penguin, mlflow_uri):
    from mlflow.tracking import MlflowClient

    run = penguin.runs[1]
    p = tfpipe("mlflow", "export", run, "--mlflow-uri", mlflow_uri, "--json", "--metadata", penguin.metadata,
               check=0)
    res = json.loads(p.stdout)
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    exp = client.get_experiment_by_name("penguin_tracking")
    assert exp is not None and exp.experiment_id == res["experiment_id"]
    r = client.get_run(res["mlflow_run_id"])
    assert r.info.status == "FINISHED" and r.info.run_name == run
    tags = r.data.tags
    assert tags["tfpipe.run_id"] == run and tags["tfpipe.pipeline"] == "penguin_tracking"
    assert tags["tfpipe.blessed"] == "true" and len(tags["tfpipe.data_fingerprint"]) == 64
    assert tags["tfpipe.git_dirty"] in ("true", "false") and len(tags["mlflow.source.git.commit"]) == 40
    params = r.data.params
    assert params["Trainer.custom_config"] == '{"epochs": 3}' and params["Trainer.train_steps"] == "30"
    assert "Evaluator.eval_config" in params
    # per-epoch history with steps, evaluation metrics per slice
    hist = client.get_metric_history(r.info.run_id, "train.loss")
    assert [m.step for m in hist] == [0, 1, 2]
    trials = client.get_metric_history(r.info.run_id, "tuner.score")
    assert sorted(m.step for m in trials) == [0, 1]
    assert 0.0 <= r.data.metrics["eval.Overall.sparse_categorical_accuracy"] <= 1.0
    assert any(k.startswith("eval.island") for k in r.data.metrics)
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"schema", "anomalies", "evaluation", "report.html", "model"} <= arts
    assert any(a.path.endswith("schema.pbtxt") for a in client.list_artifacts(r.info.run_id, "schema"))
    local = client.download_artifacts(r.info.run_id, "report.html", str(penguin.dir))
    assert "Blessing verdict" in open(local).read()
    # the pushed model became a version of the registered model
    assert res["registered_model"] == "penguin_tracking"
    mv = client.get_model_version("penguin_tracking", res["model_version"])
    assert mv.run_id == r.info.run_id and mv.tags["tfpipe.run_id"] == run
    pushed = os.listdir(penguin.push)
    assert mv.tags["tfpipe.pushed_version"] in pushed
    # exporting again finds the same MLflow run instead of making a second one
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.mlflow_export import export_run
    again = export_run(MetadataStore(penguin.metadata), run, mlflow_uri)
    assert again["mlflow_run_id"] == res["mlflow_run_id"] and again["already_exported"]
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_run_hook_exports_when_configured(tmp_path, mlflow_uri):
    """`tfpipe run` exports after the run when TFPIPE_MLFLOW_TRACKING_URI is set, and not otherwise."""
    from mlflow.tracking import MlflowClient

    pl = tmp_path / "pl.py"
    pl.write_text(
        "from tfpipe import Pipeline\nfrom tests.fixtures.trivial import make_numbers, total\n"
        "def create_pipeline():\n"
        "    n = make_numbers(n=5)\n"
        f"    return Pipeline('hooked', [total(numbers=n.outputs.numbers)], root={str(tmp_path / 'root')!r},\n"
        f"                    metadata={str(tmp_path / 'm.sqlite')!r})\n")
    tfpipe("run", str(pl), "-q", check=0)
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert client.get_experiment_by_name("hooked") is None
    p = tfpipe("run", str(pl), "-q", env={"TFPIPE_MLFLOW_TRACKING_URI": mlflow_uri}, check=0)
    assert "exported as MLflow run" in p.stderr
    exp = client.get_experiment_by_name("hooked")
    [r] = client.search_runs([exp.experiment_id])
    assert r.data.params["total.offset"] == "0" and r.data.tags["tfpipe.status"] == "COMPLETE"
    assert "duration_s.total" in r.data.metrics
