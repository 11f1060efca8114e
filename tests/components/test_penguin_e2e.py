"""The penguin pipeline end to end through the real CLI, on a copy of the shared penguin
run (tests/components/conftest.py: data half, Transform and Trainer already done):

  run 1  -> Resolver finds no baseline; Evaluator blesses; InfraValidator; Pusher pushes v1
  run 2  unchanged -> every executor node served from cache; nothing new pushed
  run 3  the trainer module copied and edited (a model that ignores its inputs) -> only
         Trainer and what follows re-execute; the Evaluator's baseline is run 1's model;
         the model misses its thresholds, is not pushed, and the run output says why
"""
import os
import shutil

import pytest

from tests.conftest import REPO, copy_penguin_store, penguin_kw, tfpipe
from tfpipe.components.evaluator import load_metrics
from tfpipe.components.pusher import versions
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.records import show_run

UPSTREAM = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform"]
DOWNSTREAM = ["Trainer", "Evaluator", "InfraValidator", "Pusher"]


def _pipeline_file(tmp_path, kw, name, trainer_module=None):
    f = tmp_path / f"{name}.py"
    args = {**kw, **({"trainer_module": trainer_module} if trainer_module else {})}
    f.write_text("from examples.penguin.pipeline import create_pipeline as _c\n\n\n"
                 f"def create_pipeline():\n    return _c(**{args!r})\n")
    return str(f)


def _execs(kw, run_id):
    info = show_run(MetadataStore(kw["metadata"]), run_id)
    return {e["node_id"]: e for e in info["executions"]}


@pytest.fixture(scope="module")
def e2e(penguin_store, tmp_path_factory):
    """On a copy of the trained store of its own: the shared one (penguin_model) gains runs of
    this pipeline from other modules on the same xdist worker, which would make these cached."""
    tmp = tmp_path_factory.mktemp("penguin_e2e")
    copy_penguin_store(penguin_store.trained, tmp / "store")
    kw = penguin_kw(tmp / "store")
    out = {"kw": kw, "serving": os.path.join(kw["root"], "serving_model")}
    plain = _pipeline_file(tmp, kw, "plain")
    out["r1"] = tfpipe("run", plain, "--run-id", "e2e-1", check=0)
    out["r2"] = tfpipe("run", plain, "--run-id", "e2e-2", check=0)
    copy = tmp / "penguin_copy"
    shutil.copytree(os.path.join(REPO, "examples", "penguin"), copy)
    utils = copy / "penguin_utils.py"
    src = utils.read_text()
    old = 'outputs = keras.layers.Dense(n_classes, activation="softmax")(d)'
    assert old in src
    utils.write_text(src.replace(old, 'outputs = keras.layers.Dense(n_classes, activation="softmax")'
                                      '(keras.layers.Rescaling(0.0)(d))  # ignores every feature'))
    out["r3"] = tfpipe("run", _pipeline_file(tmp, kw, "edited", str(utils)), "--run-id", "e2e-3", check=0)
    return out


def test_first_run_blesses_and_pushes(e2e):
    ex = _execs(e2e["kw"], "e2e-1")
    # from the shared run (which stopped at the Trainer, so the ExampleValidator runs now)
    assert all(ex[n]["state"] == "CACHED" for n in UPSTREAM + ["Trainer"] if n != "ExampleValidator"), \
        {n: e["state"] for n, e in ex.items()}
    assert ex["latest_blessed_model_resolver"]["state"] == "COMPLETE"
    assert ex["latest_blessed_model_resolver"]["outputs"] == {}  # no earlier blessed model
    assert all(ex[n]["state"] == "COMPLETE" for n in ["Evaluator", "InfraValidator", "Pusher"]), \
        ({n: e["state"] for n, e in ex.items()}, e2e["r1"].stderr[-3000:])
    [v] = versions(e2e["serving"])
    assert os.path.exists(os.path.join(e2e["serving"], str(v), "saved_model.pb"))
    err = e2e["r1"].stderr
    assert "[Evaluator] BLESSED" in err and "INFRA BLESSED" in err
    assert f"to {e2e['serving']}/{v}" in err
    store = MetadataStore(e2e["kw"]["metadata"])
    [evaluation] = store.get_artifacts([ex["Evaluator"]["outputs"]["evaluation"][0]["id"]])
    overall = load_metrics(evaluation)["slices"][0]
    assert overall["slice"] == "Overall" and overall["candidate"]["sparse_categorical_accuracy"] >= 0.6


def test_unchanged_second_run_is_all_cached_and_pushes_nothing(e2e):
    ex = _execs(e2e["kw"], "e2e-2")
    assert ex.pop("latest_blessed_model_resolver")["state"] == "COMPLETE"
    assert {n: e["state"] for n, e in ex.items() if e["state"] != "CACHED"} == {}
    assert len(ex) == len(UPSTREAM) + len(DOWNSTREAM)
    assert len(versions(e2e["serving"])) == 1
    assert "pushed Model" not in e2e["r2"].stderr


def test_trainer_change_reruns_trainer_and_downstream_against_the_first_model(e2e):
    first, third = _execs(e2e["kw"], "e2e-1"), _execs(e2e["kw"], "e2e-3")
    states = {n: e["state"] for n, e in third.items()}
    assert all(states[n] == "CACHED" for n in UPSTREAM), states
    assert all(states[n] == "COMPLETE" for n in DOWNSTREAM), states
    model1 = first["Evaluator"]["inputs"]["model"]
    resolved = third["latest_blessed_model_resolver"]["outputs"]["model"]
    assert [a["id"] for a in resolved] == model1  # the baseline is run 1's blessed model
    assert third["Evaluator"]["inputs"]["baseline_model"] == model1
    assert third["Evaluator"]["inputs"]["model"] != model1


def test_model_missing_a_threshold_is_not_pushed_and_the_run_says_why(e2e):
    err = e2e["r3"].stderr
    assert "[Pusher] NOT PUSHED" in err
    line = next(ln for ln in err.splitlines() if "NOT PUSHED" in ln)
    assert "not blessed by the Evaluator" in line
    assert "sparse_categorical_accuracy on slice Overall = 0." in line
    assert "fails the value threshold lower bound 0.6" in line
    assert "change in sparse_categorical_accuracy vs the baseline on slice Overall" in line
    assert len(versions(e2e["serving"])) == 1
    ex = _execs(e2e["kw"], "e2e-3")
    store = MetadataStore(e2e["kw"]["metadata"])
    [pushed] = store.get_artifacts([ex["Pusher"]["outputs"]["pushed_model"][0]["id"]])
    assert pushed.pushed is False and "sparse_categorical_accuracy" in pushed.reason
