"""Tuner: KerasTuner trials in parallel worker processes; the Trainer consumes the best
hyperparameters through fn_args."""
import json
import os

import pytest

from tests.components.conftest import bad_module

RECORDING_RUN_FN = '''
import json, os
import keras
from tfx_bsl.public import tfxio
import tensorflow_transform as tft
from tfpipe.components.trainer import export_serving_model


def run_fn(fn_args):
    rec = {k: getattr(fn_args, k) for k in ("hyperparameters", "train_files", "eval_files", "train_steps",
                                          "eval_steps", "schema_path", "transform_graph_path", "custom_config",
                                          "base_model", "serving_model_dir", "model_run_dir")}
    rec["transform_output"] = fn_args.transform_output
    tft_out = tft.TFTransformOutput(fn_args.transform_output)
    ds = fn_args.data_accessor.tf_dataset_factory(
        fn_args.train_files, tfxio.TensorFlowDatasetOptions(batch_size=8, label_key="species"),
        tft_out.transformed_metadata.schema)
    feats, label = next(iter(ds))
    rec["batch"] = {k: list(v.shape) for k, v in feats.items()}
    rec["label_shape"] = list(label.shape)
    import keras_tuner
    units = int(keras_tuner.HyperParameters.from_config(fn_args.hyperparameters).get("units"))
    inp = keras.layers.Input(shape=(1,), name="bill_length_mm")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(units)(inp))
    model = keras.Model({"bill_length_mm": inp}, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(ds.map(lambda f, l: ({"bill_length_mm": f["bill_length_mm"]}, l)), steps_per_epoch=3, epochs=2, verbose=0)
    with open(os.path.join(fn_args.model_run_dir, "fn_args.json"), "w") as f:
        json.dump(rec, f)
    export_serving_model(model, tft_out, fn_args.serving_model_dir, label_key="species")


def tuner_fn(fn_args):  # the pipeline's Tuner node names this module too; it is not run here
    raise RuntimeError('not used')
'''


@pytest.fixture(scope="module")
def tuned(penguin_model, run_penguin_node):
    r = run_penguin_node("Tuner", enable_tuning=True, tuning_parallel_trials=2, tuning_trials=3)
    assert r.ok, r.error
    return r.nodes[0].outputs["best_hyperparameters"][0]


def test_parallel_trials_run_in_two_worker_processes(tuned):
    with open(os.path.join(tuned.uri, "trials.json")) as f:
        rec = json.load(f)
    assert rec["parallel_trials"] == 2 and rec["workers"] == ["tuner0", "tuner1"]
    trials = rec["trials"]
    assert len(trials) == 3  # max_trials, counted over both workers
    assert all(t["status"] == "COMPLETED" and t["score"] is not None for t in trials)
    assert {t["worker"] for t in trials} <= {"tuner0", "tuner1"}
    # distinct points of the search space were tried
    assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in trials}) == 3
    with open(os.path.join(tuned.uri, "best_hyperparameters.txt")) as f:
        best = json.load(f)
    assert set(best) == {"learning_rate", "num_layers", "units"}
    top = max(trials, key=lambda t: t["score"])
    assert best == top["hyperparameters"]


def test_trainer_gets_best_hyperparameters_and_fn_args(penguin_model, tuned, run_penguin_node, tmp_path):
    mod = bad_module(tmp_path, "recording_trainer.py", RECORDING_RUN_FN)
    r = run_penguin_node("Trainer", enable_tuning=True, tuning_trials=3, trainer_module=mod)
    assert r.ok, r.error
    outs = r.nodes[0].outputs
    with open(os.path.join(outs["model_run"][0].uri, "fn_args.json")) as f:
        rec = json.load(f)
    # what TFX hands run_fn: the best trial's HyperParameters.get_config(), space and values
    with open(os.path.join(tuned.uri, "best_hyperparameters_config.json")) as f:
        assert rec["hyperparameters"] == json.load(f)
    with open(os.path.join(tuned.uri, "best_hyperparameters.txt")) as f:
        assert rec["hyperparameters"]["values"] == json.load(f)
    assert {h["config"]["name"] for h in rec["hyperparameters"]["space"]} == {"learning_rate", "num_layers", "units"}
    te = penguin_model["outputs"]["Transform"]["transformed_examples"]
    assert rec["train_files"] and all(p.startswith(te.split_uri("train")) for p in rec["train_files"])
    assert all(p.startswith(te.split_uri("eval")) for p in rec["eval_files"])
    assert rec["train_steps"] == penguin_model["kw"]["train_steps"] == 100
    assert rec["eval_steps"] == 12 and rec["base_model"] is None
    assert (rec["transform_output"] == rec["transform_graph_path"]
            == penguin_model["outputs"]["Transform"]["transform_graph"].uri)
    assert rec["schema_path"].endswith("schema.pbtxt") and os.path.isfile(rec["schema_path"])
    assert rec["batch"]["island"] == [8, 1] and rec["label_shape"] == [8, 1]
    assert "species" not in rec["batch"]
    with open(os.path.join(outs["model_run"][0].uri, "history.json")) as f:
        assert len(json.load(f)["loss"]) == 2


def test_tuner_fn_missing_is_refused_when_compiling(penguin_model, tmp_path):
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import PipelineDefinitionError, compile_pipeline
    mod = bad_module(tmp_path, "no_tuner.py", "def run_fn(fn_args):\n    pass\n")
    with pytest.raises(PipelineDefinitionError) as e:
        compile_pipeline(create_pipeline(**penguin_model["kw"], enable_tuning=True, trainer_module=mod))
    assert ("node Tuner (Tuner)" in str(e.value) and mod in str(e.value)
            and "defines no function tuner_fn" in str(e.value))


def test_serial_search_in_process(penguin_model, run_penguin_node):
    """parallel_trials=1: the search runs in the Tuner's own process (kept last in this file:
    it becomes the newest Tuner execution)."""
    r = run_penguin_node("Tuner", enable_tuning=True, tuning_parallel_trials=1, tuning_trials=2)
    assert r.ok, r.error
    hp = r.nodes[0].outputs["best_hyperparameters"][0]
    with open(os.path.join(hp.uri, "trials.json")) as f:
        rec = json.load(f)
    assert rec["workers"] == ["local"] and len(rec["trials"]) == 2
    assert all(t["worker"] == "local" and t["status"] == "COMPLETED" for t in rec["trials"])
