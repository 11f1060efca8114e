"""MLflow as the team's dashboard. A real ``mlflow server`` (SQLite backend store, the
artifacts it serves itself) on loopback; the penguin pipeline run twice by ``tfpipe run``
with ``TFPIPE_MLFLOW_TRACKING_URI`` pointing at it; then MLflow's own UI, rendered in
headless Chromium, shows the runs with their parameters, the training curve over steps,
the report among the artifacts and the registered model, whose ``production`` alias moves
with tfpipe's promotions and rollback (checked through the REST API as well).

``TFPIPE_UPDATE_SCREENSHOTS=1`` also writes the screenshots docs/tracking.md shows
(docs/images/mlflow-*.png); a run without it leaves the docs alone.

The two runs are on the session's penguin runs (a copy of their metadata and pushed
versions, ``own_registry``): every node up to the Evaluator is a cache hit, the Pusher
pushes to this module's own destination, and the export after each run sends the whole
run (the Trainer's per-epoch history, the report, the model) to the server."""
import json
import os
import re
import urllib.parse
import urllib.request

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.chromium import page_text, render, role_texts, screenshot_url
from tests.tracking.conftest import own_registry
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.registry import Registry

PIPELINE = os.path.join(REPO, "tests", "tracking", "penguin_full.py")
MODEL = "penguin_tracking"
SCREENSHOTS = os.path.join(REPO, "docs", "images")
SHOT_SIZE = (1600, 900)  # MLflow's assistant panel takes the right 400 px
EXPORTED = re.compile(r"mlflow: run (\S+) exported as MLflow run (\w+) \(experiment (\S+)\) at (\S+); "
                      r"registered model (\S+) version (\d+)")


@pytest.fixture(scope="module")
def dashboard(penguin, mlflow_server, tmp_path_factory):
    """Two runs (2 and 3 epochs) exported to the server by ``tfpipe run``: per run its
    tfpipe run id, MLflow run id, MLflow model version and tfpipe pushed version."""
    d = tmp_path_factory.mktemp("mlflow-ui")
    reg = own_registry(penguin, d)
    env = {"TRACKING_ROOT": str(d / "root"), "TRACKING_METADATA": reg.metadata, "TRACKING_PUSH": reg.push,
           "TFPIPE_MLFLOW_TRACKING_URI": mlflow_server.uri}
    runs = []
    for epochs in (2, 3):
        p = tfpipe("run", PIPELINE, "-q", env={**env, "TRACKING_EPOCHS": str(epochs)}, check=0)
        m = EXPORTED.search(p.stderr)
        assert m, f"no export line from tfpipe run:\n{p.stderr[-3000:]}"
        assert m.group(3) == MODEL and m.group(4) == mlflow_server.uri and m.group(5) == MODEL
        runs.append({"run": m.group(1), "mlflow_run": m.group(2), "mlflow_version": m.group(6), "epochs": epochs})
    pushed = {v["run_id"]: v["version"] for v in Registry(MetadataStore(reg.metadata)).list_versions()}
    for r in runs:
        r["version"] = pushed[r["run"]]
    exp = mlflow_server.api("experiments/get-by-name", experiment_name=MODEL)["experiment"]["experiment_id"]
    return {"server": mlflow_server, "runs": runs, "metadata": reg.metadata, "env": env, "experiment": exp}


def _ui(server, route: str) -> str:
    return f"{server.uri}/#/{route}"


def _metric_route(run_id: str, exp: str, key: str) -> str:
    """MLflow's metric page (its getMetricPageRoute), plotted against the step."""
    q = {"runs": json.dumps([run_id]), "metric": json.dumps(key), "experiments": json.dumps([exp]),
         "plot_metric_keys": json.dumps([key]), "plot_layout": "{}", "x_axis": "step", "y_axis_scale": "linear",
         "line_smoothness": "1", "show_point": "true", "deselected_curves": "[]", "last_linear_y_axis_range": "[]"}
    return "metric?" + urllib.parse.urlencode(q)


def test_runs_with_parameters_training_curves_and_report_in_mlflow_ui(dashboard, tmp_path):
    server, exp = dashboard["server"], dashboard["experiment"]
    first, second = dashboard["runs"]

    # the experiment's page lists both runs by name
    text = page_text(render(_ui(server, f"experiments/{exp}/runs"), tmp_path, expect=[first["run"], second["run"]]))
    assert first["run"] in text and second["run"] in text and "2 matching runs" in text

    # the run's page: name, status, parameters, metrics, tags and the registered model version
    rid = second["mlflow_run"]
    got = server.api("runs/get", run_id=rid)["run"]
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["Trainer.custom_config"] == '{"epochs": 3}' and params["Trainer.train_steps"] == "30"
    text = page_text(render(_ui(server, f"experiments/{exp}/runs/{rid}"), tmp_path,
                            expect=["Trainer.custom_config", "eval.Overall.sparse_categorical_accuracy"]))
    assert second["run"] in text and "Finished" in text
    assert f"Parameters ({len(params)})" in text
    for key in ("Trainer.custom_config", "Trainer.train_steps", "Tuner.custom_config", "ExampleGen.label_key"):
        assert f"{key} {params[key]}" in text, key  # the parameter's row: name and value
    metrics = {m["key"]: m["value"] for m in got["data"]["metrics"]}
    assert f"Metrics ({len(metrics)})" in text
    for key in ("eval.Overall.sparse_categorical_accuracy", "eval.Overall.example_count", "train.loss"):
        assert key in text, key
    assert f"tfpipe.run_id : {second['run']}" in text and "tfpipe.blessed : true" in text
    assert f"Registered models {MODEL} v{second['mlflow_version']}" in text

    # the training curve: one point per epoch, through the REST API and on the metric's chart
    hist = server.api("metrics/get-history", run_id=rid, metric_key="train.loss")["metrics"]
    assert sorted(m["step"] for m in hist) == [0, 1, 2] and len(hist) == second["epochs"] > 1
    dom = render(_ui(server, _metric_route(rid, exp, "train.loss")), tmp_path, expect=["(step=0)", "(step=2)"],
                 ready=lambda dom: len(_points(dom)) == len(hist))
    text = page_text(dom)
    assert "X-axis: Step" in text and "(step=0)" in text and "(step=2)" in text, text[:2000]
    assert "js-plotly-plot" in dom and len(_points(dom)) == len(hist), _points(dom)
    xs = [x for x, _ in _points(dom)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # one point per step, left to right
    first_hist = server.api("metrics/get-history", run_id=first["mlflow_run"], metric_key="train.loss")["metrics"]
    assert len(first_hist) == first["epochs"]  # each run its own curve

    # the artifacts: the listing, and the report shown (fetched through the server)
    listed = {f["path"] for f in server.api("artifacts/list", run_id=rid)["files"]}
    assert {"report.html", "schema", "anomalies", "evaluation", "model"} <= listed
    dom = render(_ui(server, f"experiments/{exp}/runs/{rid}/artifacts/report.html"), tmp_path,
                 expect=["report.html", "mlflow-artifacts:"])
    text = page_text(dom)
    for name in ("anomalies", "evaluation", "model", "schema", "report.html"):
        assert name in text, name
    assert f"Path: mlflow-artifacts:/{exp}/{rid}/artifacts/report.html" in text
    assert 'class="mlflow-html-iframe"' in dom  # the report's preview
    url = f"{server.uri}/get-artifact?" + urllib.parse.urlencode({"path": "report.html", "run_uuid": rid})
    with urllib.request.urlopen(url, timeout=30) as r:  # what the preview shows
        assert "Blessing verdict" in r.read().decode()

    if os.environ.get("TFPIPE_UPDATE_SCREENSHOTS") == "1":
        screenshot_url(_ui(server, f"experiments/{exp}/runs/{rid}"), os.path.join(SCREENSHOTS, "mlflow-run.png"),
                       tmp_path, SHOT_SIZE)
        screenshot_url(_ui(server, _metric_route(rid, exp, "train.loss")),
                       os.path.join(SCREENSHOTS, "mlflow-training-curve.png"), tmp_path, SHOT_SIZE)


def _points(dom: str) -> list[tuple[float, float]]:
    """The (x, y) of the markers plotly drew on a line chart."""
    return [(float(x), float(y)) for x, y in
            re.findall(r'<path class="point" transform="translate\(([-\d.]+),([-\d.]+)\)"', dom)]


def _alias(server) -> str:
    return server.api("registered-models/alias", name=MODEL, alias="production")["model_version"]["version"]


def _model_page_aliases(server, tmp_path, expect_version: str) -> dict[str, str]:
    """Version -> its row's text on the registered model's page (``@ production`` on the
    row of the version that holds it)."""
    want = f"Version {expect_version}"
    dom = render(_ui(server, f"models/{MODEL}"), tmp_path, expect=["@ production", want])
    rows = {}
    for row in role_texts(dom, "row"):
        m = re.match(r"Version (\d+) ", row)
        if m:
            rows[m.group(1)] = row
    return rows


def test_registered_model_and_production_alias_follow_tfpipe(dashboard, tmp_path):
    server, env = dashboard["server"], dashboard["env"]
    first, second = dashboard["runs"]
    md = dashboard["metadata"]

    def check_production(holder: dict, other: dict) -> None:
        assert _alias(server) == holder["mlflow_version"]
        rows = _model_page_aliases(server, tmp_path, holder["mlflow_version"])
        assert set(rows) == {first["mlflow_version"], second["mlflow_version"]}, rows
        assert "@ production" in rows[holder["mlflow_version"]], rows
        assert "production" not in rows[other["mlflow_version"]], rows
        for r in (holder, other):  # each version names its tfpipe run and pushed version
            assert f"tfpipe.run_id : {r['run']}" in rows[r["mlflow_version"]]
            assert f"tfpipe.pushed_version : {r['version']}" in rows[r["mlflow_version"]]
        v = holder["mlflow_version"]
        text = page_text(render(_ui(server, f"models/{MODEL}/versions/{v}"), tmp_path, expect=["@ production"]))
        assert f"Version {v}" in text and "Aliases : @ production" in text, text[:1500]
        assert f"Source Run : {holder['run']}" in text

    # the team's commands, with the tracking URI in the environment
    tfpipe("models", "promote", first["version"], "--stage", "production", "--reason", "first model",
           "--metadata", md, env=env, check=0)
    check_production(first, second)
    tfpipe("models", "promote", second["version"], "--stage", "production", "--reason", "more epochs",
           "--metadata", md, env=env, check=0)
    check_production(second, first)
    if os.environ.get("TFPIPE_UPDATE_SCREENSHOTS") == "1":
        screenshot_url(_ui(server, f"models/{MODEL}"), os.path.join(SCREENSHOTS, "mlflow-model.png"), tmp_path,
                       SHOT_SIZE)
    out = tfpipe("models", "rollback", "--reason", "accuracy dropped", "--metadata", md, env=env, check=0)
    assert f"rolled back from version {second['version']} to {first['version']}" in out.stdout
    check_production(first, second)
