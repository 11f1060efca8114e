"""Trainer: the penguin run_fn through the real Trainer, the Model contract, and bad module files."""
import json
import os
import sys

import numpy as np
import pytest

from tests.components.conftest import bad_module, tfpipe_cli
from tfpipe.metadata import MetadataStore

PENGUIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "examples", "penguin")


@pytest.fixture(scope="module")
def served(penguin_model):
    import tensorflow as tf

    from tfpipe.components.examples_io import serialized_examples
    outs = penguin_model["outputs"]
    model = outs["Trainer"]["model"]
    loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    ex = outs["ExampleGen"]["examples"]
    return loaded, serialized_examples(ex, "eval"), serialized_examples(ex, "eval", drop_columns=["species"])


def test_model_follows_the_contract_and_is_accurate(penguin_model, served):
    import tensorflow as tf
    loaded, raw, _ = served
    assert set(loaded.signatures) == {"serving_default", "transform_features"}
    sig = loaded.signatures["serving_default"]
    assert list(sig.structured_input_signature[1]) == ["examples"]
    out = sig(examples=tf.constant(raw))
    assert list(out) == ["outputs"]
    probs = out["outputs"].numpy()
    assert probs.dtype == np.float32 and probs.shape == (len(raw), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    labels = loaded.signatures["transform_features"](examples=tf.constant(raw))["species"].numpy().ravel()
    acc = float((probs.argmax(axis=1) == labels).mean())
    assert acc >= 0.6, acc
    assert penguin_model["outputs"]["Trainer"]["model"].framework == "tensorflow"


def test_serving_applies_the_transform_no_skew(penguin_model, served):
    """raw serialized examples -> probabilities equals the Keras model applied to the
    features Transform wrote for training; and the label may be absent when serving."""
    import glob

    import tensorflow as tf
    import tensorflow_transform as tft
    loaded, raw, unlabeled = served
    outs = penguin_model["outputs"]
    tft_out = tft.TFTransformOutput(outs["Transform"]["transform_graph"].uri)
    # the transform signature reproduces the transformed examples training read (as a multiset of rows)
    te = outs["Transform"]["transformed_examples"]
    recs = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(os.path.join(te.split_uri("eval"), "*"))))]
    trained_on = {k: v.numpy() for k, v in tf.io.parse_example(recs, tft_out.transformed_feature_spec()).items()}
    served_feats = {k: v.numpy() for k, v in loaded.signatures["transform_features"](examples=tf.constant(raw)).items()}
    keys = sorted(trained_on)

    def rows(d):
        return sorted(tuple(np.round(np.asarray(d[k], dtype=np.float64).ravel()[i], 5) for k in keys)
                      for i in range(len(d[keys[0]])))
    assert rows(trained_on) == rows(served_feats)
    # the Keras model (weights exported beside the SavedModel) on the training-time features
    if PENGUIN not in sys.path:
        sys.path.append(PENGUIN)
    import penguin_utils

    from tfpipe.components.trainer import load_base_weights
    keras_model = penguin_utils._build_keras_model({}, tft_out)
    assert load_base_weights(keras_model, os.path.join(outs["Trainer"]["model"].uri, "Format-Serving"))
    feats = {k: v for k, v in served_feats.items() if k != "species"}
    direct = keras_model(feats).numpy()
    probs = loaded.signatures["serving_default"](examples=tf.constant(raw))["outputs"].numpy()
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    # without the label column the served probabilities are the same
    probs2 = loaded.signatures["serving_default"](examples=tf.constant(unlabeled))["outputs"].numpy()
    np.testing.assert_allclose(probs, probs2, atol=1e-6)


def test_history_and_tensorboard_logs_recorded(penguin_model):
    run = penguin_model["outputs"]["Trainer"]["model_run"]
    with open(os.path.join(run.uri, "history.json")) as f:
        hist = json.load(f)
    assert len(hist["loss"]) == 5 and len(hist["val_sparse_categorical_accuracy"]) == 5
    assert hist["loss"][-1] < hist["loss"][0]
    events = [os.path.join(d, n) for d, _, ns in os.walk(run.uri) for n in ns if "tfevents" in n]
    assert events, f"no TensorBoard event files under {run.uri}"


def _failed(penguin_model, r, *needles):
    assert not r.ok
    msg = r.error.message
    for n in needles:
        assert n in msg, f"{n!r} not in error: {msg}"
    store = MetadataStore(penguin_model["kw"]["metadata"])
    e = store.executions([r.error.execution_id])[0]
    assert store.state_name(e) == "FAILED" and store.props(e)["error"]
    _, outs = store.io_of(e.id)
    assert all(a.state != "LIVE" for arts in outs.values() for a in arts)
    root = penguin_model["kw"]["root"]
    assert not os.path.exists(os.path.join(root, "Trainer", "model", str(e.id)))
    return msg


BAD_STATIC = {  # found when the pipeline is compiled, before any node runs
    "syntax": ("import keras\n\ndef run_fn(fn_args)\n    pass\n", ["line 3", "syntax error"]),
    "no_run_fn": ("def train(fn_args):\n    pass\n", ["defines no function run_fn", "train"]),
    "no_args": ("def run_fn():\n    pass\n", ["run_fn", "line 1", "expected exactly 1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_STATIC))
def test_bad_run_fn_module_is_refused_when_compiling(penguin_model, tmp_path, case):
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import PipelineDefinitionError, compile_pipeline
    text, needles = BAD_STATIC[case]
    mod = bad_module(tmp_path, f"bad_{case}.py", text)
    with pytest.raises(PipelineDefinitionError) as e:
        compile_pipeline(create_pipeline(**penguin_model["kw"], trainer_module=mod))
    for n in ["node Trainer (Trainer)", mod, *needles]:
        assert n in str(e.value)


BAD = {
    "raising": ("def run_fn(fn_args):\n    raise ValueError('learning rate must be positive, got -3')\n",
                ["run_fn", "ValueError", "learning rate must be positive, got -3"]),
    "no_signature": ("import os\n\ndef run_fn(fn_args):\n    os.makedirs(fn_args.serving_model_dir)\n"
                     "    open(os.path.join(fn_args.serving_model_dir, 'weights.txt'), 'w').write('1')\n",
                     ["run_fn", "saved no model", "serving_model_dir"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_run_fn_module(penguin_model, run_penguin_node, tmp_path, case):
    text, needles = BAD[case]
    mod = bad_module(tmp_path, f"bad_{case}.py", text)
    r = run_penguin_node("Trainer", trainer_module=mod)
    _failed(penguin_model, r, mod, *needles)


def test_model_without_serving_signature(penguin_model, run_penguin_node, tmp_path):
    mod = bad_module(tmp_path, "nosig.py", (
        "import tensorflow as tf\n\nclass M(tf.Module):\n"
        "    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])\n"
        "    def f(self, x):\n        return x\n\ndef run_fn(fn_args):\n"
        "    tf.saved_model.save(M(), fn_args.serving_model_dir, "
        "signatures={'predict': M().f.get_concrete_function()})\n"))
    r = run_penguin_node("Trainer", trainer_module=mod)
    _failed(penguin_model, r, mod, "run_fn", "without a 'serving_default' signature", "predict")


def test_missing_module_file_via_cli_exits_1(penguin_model, tmp_path):
    missing = str(tmp_path / "nowhere" / "trainer_module.py")
    kw = penguin_model["kw"]
    pfile = tmp_path / "p.py"
    pfile.write_text("from examples.penguin.pipeline import create_pipeline as _c\n\n"
                     f"def create_pipeline():\n    return _c(root={kw['root']!r}, metadata={kw['metadata']!r}, "
                     f"train_steps={kw['train_steps']}, trainer_module={missing!r})\n")
    store = MetadataStore(kw["metadata"])
    before = len(store.store.get_executions())
    p = tfpipe_cli("run", str(pfile))
    assert p.returncode == 1, p.stderr[-3000:]
    assert missing in p.stderr and "does not exist" in p.stderr and "run_fn" in p.stderr
    assert "node Trainer (Trainer)" in p.stderr
    assert len(store.store.get_executions()) == before  # found when compiling: no node ran


def test_data_accessor_reads_raw_parquet_with_the_raw_schema(penguin_model):
    """Without Transform: ExampleGen's Parquet + the raw schema -> sparse features (missing
    values are absent entries), batched, label split off; tfx_bsl's options class works."""
    from tfx_bsl.public import tfxio

    from tfpipe.components.trainer import build_fn_args
    outs = penguin_model["outputs"]
    fa = build_fn_args(outs["ExampleGen"]["examples"], outs["SchemaGen"]["schema"])
    assert fa.examples_format == "parquet" and all(f.endswith(".parquet") for f in fa.train_files)
    ds = fa.data_accessor.tf_dataset_factory(
        fa.train_files, tfxio.TensorFlowDatasetOptions(batch_size=500, num_epochs=1, shuffle=False,
                                                       label_key="species"), fa.schema_path)
    batches = list(ds)
    assert len(batches) == 1
    feats, label = batches[0]
    n = outs["ExampleGen"]["examples"].row_counts["train"]
    assert label.dense_shape.numpy()[0] == n
    sex = feats["sex"]
    import pyarrow.parquet as pq
    nulls = pq.read_table(fa.train_files[0]).column("sex").null_count
    assert sex.dense_shape.numpy()[0] == n and len(sex.values.numpy()) == n - nulls


def test_warm_start_from_a_base_model(penguin_model):
    """fn_args.base_model points at the base model's Format-Serving; load_base_weights
    restores the weights the Trainer exported beside it."""
    import tensorflow_transform as tft

    from tfpipe.components.trainer import build_fn_args, load_base_weights
    outs = penguin_model["outputs"]
    base = outs["Trainer"]["model"]
    fa = build_fn_args(outs["Transform"]["transformed_examples"], base_model=base)
    assert fa.base_model == os.path.join(base.uri, "Format-Serving")
    if PENGUIN not in sys.path:
        sys.path.append(PENGUIN)
    import penguin_utils
    tft_out = tft.TFTransformOutput(outs["Transform"]["transform_graph"].uri)
    fresh, warm = (penguin_utils._build_keras_model({}, tft_out) for _ in range(2))
    assert load_base_weights(warm, fa.base_model) and not load_base_weights(fresh, None)
    w_warm = [w.numpy() for w in warm.weights]
    w_fresh = [w.numpy() for w in fresh.weights]
    assert any(not np.allclose(a, b) for a, b in zip(w_warm, w_fresh))
    with open(os.path.join(base.uri, "Format-Keras", "model.weights.h5"), "rb") as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"


def test_fit_of_keras_2_and_keras_3_models_is_recorded(tmp_path):
    """A module trains tf_keras (Keras 2) models (``import tf_keras``, or ``tf.keras`` with
    TF_USE_LEGACY_KERAS=1) or Keras 3 ones: the Trainer records the History (and adds TensorBoard) for both."""
    import keras
    import tf_keras

    from tfpipe.components.trainer import _recording_fit
    x, y = np.random.default_rng(0).normal(size=(32, 2)).astype("float32"), np.arange(32) % 2
    lines, histories = [], {}
    originals = (keras.Model.fit, tf_keras.Model.fit)
    for name, k in (("keras3", keras), ("tf_keras", tf_keras)):
        model = k.Sequential([k.Input((2,)), k.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        history: dict = {}
        with _recording_fit(history, str(tmp_path / name), lines.append):
            model.fit(x, y, epochs=2, verbose=0)
        histories[name] = history
        assert os.listdir(tmp_path / name), f"no TensorBoard logs for {name}"
    assert (keras.Model.fit, tf_keras.Model.fit) == originals  # the patches are undone
    assert [len(h["loss"]) for h in histories.values()] == [2, 2]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"] * 2


def test_tfx_model_save_with_save_format_tf_writes_a_savedmodel_with_keras_3(tmp_path):
    """TFX's Keras modules end with ``model.save(dir, save_format='tf', signatures=...)``, which
    Keras 3 (tf.keras under tfpipe's rule) refuses: in the Trainer it writes the SavedModel
    with those signatures; a .keras file is still Keras 3's own; the patch is undone."""
    import keras
    import tensorflow as tf

    from tfpipe.components.trainer import _savedmodel_save
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    serve = tf.function(lambda x: {"outputs": model(x)}, input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    original = keras.Model.save
    with pytest.raises(ValueError, match="save_format"):
        model.save(str(tmp_path / "refused"), save_format="tf", signatures={"serving_default": serve})
    with _savedmodel_save():
        model.save(str(tmp_path / "sm"), save_format="tf", signatures={"serving_default": serve})
        model.save(str(tmp_path / "m.keras"))
    assert keras.Model.save is original
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    out = loaded.signatures["serving_default"](x=tf.ones([1, 2]))
    assert out["outputs"].shape == (1, 3)
    assert keras.saving.load_model(str(tmp_path / "m.keras")).count_params() == model.count_params()


def test_library_code_is_left_to_graph_mode_while_user_code_is_traced():
    """TensorFlow's AutoGraph converts tf_keras's call path and TFT's analyzers statement by
    statement unless told not to (it is told for ``keras``, not for ``tf_keras`` or
    ``tensorflow_transform``, in TF 2.16); Trainer and Transform tell it while the user's
    function runs, and only then. The user's own code is still converted."""
    import tensorflow_transform as tft
    import tf_keras
    from tensorflow.python.autograph.impl import conversion

    from tfpipe.components._autograph import libraries_not_autographed

    def users(x):
        return x
    call = tf_keras.layers.Dense(2).call
    assert not conversion.is_allowlisted(call) and not conversion.is_allowlisted(tft.scale_to_z_score)
    with libraries_not_autographed():
        assert conversion.is_allowlisted(call) and conversion.is_allowlisted(tft.scale_to_z_score)
        assert not conversion.is_allowlisted(users)
    assert not conversion.is_allowlisted(call) and not conversion.is_allowlisted(tft.scale_to_z_score)
