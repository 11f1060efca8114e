"""The penguin model: run_fn (Trainer) and tuner_fn (Tuner), a TFX-style module file.

Written in TFX's style: FnArgs / TunerFnResult / export_serving_model come from
tfpipe.components.trainer; tfx_bsl's TensorFlowDatasetOptions is used unchanged;
fn_args.hyperparameters is the KerasTuner config TFX hands run_fn. The model is Keras 3 and
is exported behind the Model contract (export_serving_model). examples/penguin_tfx holds
module files in TFX's own idiom (tf.keras, their own signatures) that port by their import
lines alone. The preprocessing_fn lives in penguin_transform.py.
"""
import keras
import keras_tuner
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from tfpipe.components.trainer import FnArgs, TunerFnResult, export_serving_model, load_base_weights

from penguin_transform import CATEGORICAL_FEATURES, LABEL_KEY, NUMERIC_FEATURES

TRAIN_BATCH_SIZE = 20
EVAL_BATCH_SIZE = 10


def _input_fn(file_pattern, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY, shuffle_seed=7),
        tf_transform_output.transformed_metadata.schema)


def _build_keras_model(hp, tf_transform_output) -> keras.Model:
    """A few dense layers over the z-scored numbers and one-hot categories."""
    inputs, parts = {}, []
    for key in NUMERIC_FEATURES:
        inputs[key] = keras.layers.Input(shape=(1,), name=key, dtype="float32")
        parts.append(inputs[key])
    for key in CATEGORICAL_FEATURES:
        inputs[key] = keras.layers.Input(shape=(1,), name=key, dtype="int64")
        n = tf_transform_output.vocabulary_size_by_name(key) + 1  # + 1 OOV bucket
        parts.append(keras.layers.CategoryEncoding(num_tokens=n, output_mode="one_hot")(inputs[key]))
    d = keras.layers.concatenate(parts)
    for _ in range(int(hp.get("num_layers", 2))):
        d = keras.layers.Dense(int(hp.get("units", 8)), activation="relu")(d)
    n_classes = tf_transform_output.vocabulary_size_by_name(LABEL_KEY)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(d)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(float(hp.get("learning_rate", 1e-2))),
                  loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    return model


def _search_space(hp: keras_tuner.HyperParameters) -> None:
    hp.Choice("learning_rate", [1e-2, 3e-3])
    hp.Int("num_layers", 1, 2)
    hp.Choice("units", [8, 16])


class _HyperModel(keras_tuner.HyperModel):
    def __init__(self, tf_transform_output):
        super().__init__()
        self.tf_transform_output = tf_transform_output

    def build(self, hp):
        _search_space(hp)
        return _build_keras_model(dict(hp.values), self.tf_transform_output)


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tuner = keras_tuner.RandomSearch(
        _HyperModel(tf_transform_output), max_trials=int(fn_args.custom_config.get("max_trials", 4)),
        objective=keras_tuner.Objective("val_sparse_categorical_accuracy", "max"),
        directory=fn_args.working_dir, project_name="penguin_tuning", seed=1)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, TRAIN_BATCH_SIZE)
    evals = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, EVAL_BATCH_SIZE)
    return TunerFnResult(tuner=tuner, fit_kwargs={
        "x": train, "validation_data": evals, "epochs": int(fn_args.custom_config.get("tuner_epochs", 2)),
        "steps_per_epoch": fn_args.train_steps or 50, "validation_steps": fn_args.eval_steps or 10, "verbose": 0})


def run_fn(fn_args: FnArgs) -> None:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, TRAIN_BATCH_SIZE)
    evals = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, EVAL_BATCH_SIZE)
    # as in TFX: the Tuner's best HyperParameters config, or None when no Tuner is wired; then the
    # pipeline's (custom_config, e.g. from -P learning_rate=...), then the defaults
    hp = {k: fn_args.custom_config[k] for k in ("learning_rate", "units", "num_layers") if k in fn_args.custom_config}
    if fn_args.hyperparameters:
        hp.update(keras_tuner.HyperParameters.from_config(fn_args.hyperparameters).values)
    model = _build_keras_model(hp, tf_transform_output)
    if load_base_weights(model, fn_args.base_model):
        print(f"warm start from {fn_args.base_model}")
    epochs = int(fn_args.custom_config.get("epochs", 5))
    steps = max(1, (fn_args.train_steps or 500) // epochs)
    model.fit(train, steps_per_epoch=steps, epochs=epochs, validation_data=evals,
              validation_steps=fn_args.eval_steps or 12, verbose=0)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, label_key=LABEL_KEY)
