"""Mode parity (issue 24, item 1): a node sees the same Keras in every mode. One pipeline
(``keras_parity/pipeline.py``: Transform shared, then Tuner -> Trainer -> Evaluator per
Keras idiom: Keras 3 ``import keras``, TensorFlow 2.16's ``tf.keras``, ``tf_keras``, TFX's
penguin module with ``from tensorflow import keras`` and keras_tuner) runs once per mode:
``tfpipe run --parallel 1`` (every node in the CLI's process: the reference),
``tfpipe run --parallel 2`` (nodes forked from the warm task host), the Beam DAG runner,
kfp.local and Airflow. Each branch must complete with the reference's serving signatures,
its metrics (within a tolerance) and its blessing. The CLI runs start from an environment
without ``TF_USE_LEGACY_KERAS``, as a user's shell has it; before the rule of
``tfpipe.runtime.pin_keras`` the forked mode failed in the TFX branch's Tuner (keras_tuner
was handed a tf_keras model)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.orchestrators.conftest import compile_file, summary

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE = os.path.join(HERE, "keras_parity", "pipeline.py")
IDIOMS = ("keras3", "tf_dot_keras", "tf_keras", "tfx")
MODES = ("forked", "beam", "kfp-local", "airflow")
TOLERANCE = 0.05


def _cli_run(home: str, mode: str, parallel: int) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_PARITY_HOME=home, KERAS_PARITY_MODE=mode, TFPIPE_HOME=os.path.join(home, "home"),
               PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "tfpipe.cli", "run", PIPELINE, "--parallel", str(parallel),
                        "--run-id", mode, "--no-ir-cache"], env=env, capture_output=True, text=True, timeout=900)
    return mode, p.stderr[-4000:] if p.returncode else ""


def _outcome(store, run_id: str) -> dict:
    """Per idiom: its nodes' states, its model's signatures, its metrics and blessing."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tfpipe.components.evaluator import load_metrics
    s = summary(store, run_id)
    out = {"status": s["status"]}
    for idiom in IDIOMS:
        nodes = {n: s["nodes"].get(f"{n}_{idiom}") for n in ("Tuner", "Trainer", "Evaluator")}
        row = {"states": {n: (e or {}).get("state") for n, e in nodes.items()}}
        if all(e and e["state"] in (("COMPLETE", "CACHED") if n == "Evaluator" else ("COMPLETE",))
               for n, e in nodes.items()):  # a cached Evaluator: see the mode test
            _, model = store.io_of(nodes["Trainer"]["execution_id"])
            sm = saved_model_pb2.SavedModel()
            with open(os.path.join(model["model"][0].serving_dir(), "saved_model.pb"), "rb") as f:
                sm.ParseFromString(f.read())
            row["signatures"] = {
                name: ({k: (v.dtype, [d.size for d in v.tensor_shape.dim]) for k, v in sig.inputs.items()},
                       {k: (v.dtype, [d.size for d in v.tensor_shape.dim]) for k, v in sig.outputs.items()})
                for name, sig in sm.meta_graphs[0].signature_def.items() if not name.startswith("__")}
            _, ev = store.io_of(nodes["Evaluator"]["execution_id"])
            row["metrics"] = load_metrics(ev["evaluation"][0])["slices"][0]["candidate"]
            row["blessed"] = ev["blessing"][0].blessed
        out[idiom] = row
    return out


@pytest.fixture(scope="module")
def parity(tmp_path_factory, request):
    """Every mode's run of the one pipeline, in one store (ExampleGen..Transform run in the
    reference and are cached after it; each mode's Tuner, Trainer and Evaluator run)."""
    from tfpipe.metadata import MetadataStore
    home = str(tmp_path_factory.mktemp("keras-parity"))
    errors = dict([_cli_run(home, "reference", 1)])
    errors.update([_cli_run(home, "forked", 2)])
    for mode in ("beam", "kfp-local", "airflow"):
        ir = compile_file(PIPELINE, os.path.join(home, "home"), {"KERAS_PARITY_HOME": home, "KERAS_PARITY_MODE": mode})
        if mode == "beam":
            from tfpipe.orchestrators.beam import BeamDagRunner
            runner = BeamDagRunner(verbose=False)
        elif mode == "kfp-local":
            from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner
            runner = KfpLocalRunner(verbose=False, workdir=os.path.join(home, "kfp"))
        else:
            runner = request.getfixturevalue("airflow_runner")
        r = runner.run(ir, run_id=mode)
        errors[mode] = "" if r.ok else str(r.error) + (getattr(runner, "last_log", "") or "")[-4000:]
    store = MetadataStore(os.path.join(home, "metadata.sqlite"))
    return {"errors": errors, "runs": {m: _outcome(store, m) for m in ("reference", *MODES)}}


def test_the_reference_run_trains_every_idiom(parity):
    assert parity["errors"]["reference"] == ""
    ref = parity["runs"]["reference"]
    assert ref["status"] == "COMPLETE"
    for idiom in IDIOMS:
        assert ref[idiom]["blessed"] is True, (idiom, ref[idiom])
        assert set(ref[idiom]["signatures"]) == {"serving_default", "transform_features"}
        assert list(ref[idiom]["signatures"]["serving_default"][0]) == ["examples"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_reference_models_metrics_and_blessings(parity, mode):
    assert parity["errors"][mode] == "", parity["errors"][mode]
    ref, run = parity["runs"]["reference"], parity["runs"][mode]
    assert run["status"] == "COMPLETE"
    for idiom in IDIOMS:
        states = run[idiom]["states"]
        assert states["Tuner"] == states["Trainer"] == "COMPLETE", (idiom, states)
        # the Evaluator is a cache hit when the Trainer wrote a model identical to an earlier mode's
        assert states["Evaluator"] in ("COMPLETE", "CACHED"), (idiom, states)
        assert run[idiom]["signatures"] == ref[idiom]["signatures"], idiom
        assert run[idiom]["blessed"] == ref[idiom]["blessed"], idiom
        assert set(run[idiom]["metrics"]) == set(ref[idiom]["metrics"]), idiom
        for name, value in ref[idiom]["metrics"].items():
            assert abs(run[idiom]["metrics"][name] - value) <= TOLERANCE * max(1.0, abs(value)), (idiom, name)
