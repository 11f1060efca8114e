"""The diabetes example end to end: a regression through the same components as the
penguin example (Transform, Trainer, Resolver, Evaluator with regression metrics,
InfraValidator, Pusher), proving nothing in them is penguin-specific."""
import json
import os

import pytest

from examples.diabetes.pipeline import create_pipeline
from tfpipe import compile_pipeline
from tfpipe.components.evaluator import load_metrics
from tfpipe.components.pusher import RECORD, versions
from tfpipe.orchestrators.local import LocalRunner


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diabetes")
    serving = str(tmp / "serving")
    p = create_pipeline(root=str(tmp / "root"), metadata=str(tmp / "md.sqlite"), serving_model_dir=serving,
                        train_steps=200)
    res = LocalRunner(verbose=False).run(compile_pipeline(p), run_id="d1")
    assert res.ok, res.error
    return {n.node_id: n for n in res.nodes}, serving


def test_regression_model_is_evaluated_blessed_and_pushed(diabetes):
    nodes, serving = diabetes
    m = load_metrics(nodes["Evaluator"].outputs["evaluation"][0])
    overall = m["slices"][0]
    assert overall["slice"] == "Overall"
    cand = overall["candidate"]
    assert cand["example_count"] == nodes["ExampleGen"].outputs["examples"][0].row_counts["eval"]
    # far better than predicting the mean (MSE ~5,900 on this data), inside the thresholds
    assert cand["mean_squared_error"] < 5000 and cand["mean_absolute_error"] < 60
    assert abs(cand["mean_squared_error"] ** 0.5 - cand["mean_absolute_error"]) < 40
    assert {s["slice"] for s in m["slices"]} == {"Overall", "sex=1.0", "sex=2.0"}
    assert nodes["Evaluator"].outputs["blessing"][0].blessed is True
    pushed = nodes["Pusher"].outputs["pushed_model"][0]
    assert pushed.pushed is True
    [v] = versions(serving)
    assert pushed.pushed_version == str(v)
    assert json.load(open(os.path.join(serving, str(v), RECORD)))["model_id"] == \
        nodes["Trainer"].outputs["model"][0].id


def test_infra_validator_checks_a_regression_response(diabetes):
    nodes, _ = diabetes
    infra = nodes["InfraValidator"].outputs["blessing"][0]
    assert infra.blessed is True
    report = json.load(open(os.path.join(infra.uri, "infra_validation.json")))
    assert report["output_shapes"]["outputs"] == [8, 1]
    assert report["load_time_s"] > 0


def test_pushed_model_serves_raw_examples_without_the_label(diabetes):
    import tensorflow as tf

    from tfpipe.components.examples_io import serialized_examples
    nodes, serving = diabetes
    [v] = versions(serving)
    loaded = tf.saved_model.load(os.path.join(serving, str(v)))
    ex = nodes["ExampleGen"].outputs["examples"][0]
    out = loaded.signatures["serving_default"](
        examples=tf.constant(serialized_examples(ex, "eval", limit=4, drop_columns=["target"])))["outputs"]
    assert out.shape == (4, 1)
    assert 25 < float(tf.reduce_mean(out)) < 350  # disease progression scores lie in 25..346
