"""The diabetes regression model: run_fn for the Trainer (a TFX-style module file).

A small Keras network over the z-scored measurements; its output is rescaled by the
label's mean and spread on the train split, so a few hundred steps suffice.
"""
import keras
import keras_tuner
import numpy as np
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from tfpipe.components.trainer import FnArgs, export_serving_model

from diabetes_transform import FEATURE_KEYS, LABEL_KEY

BATCH_SIZE = 32


def _input_fn(file_pattern, data_accessor, tf_transform_output, batch_size=BATCH_SIZE):
    return data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY, shuffle_seed=3),
        tf_transform_output.transformed_metadata.schema)


def _label_scale(dataset, batches: int = 20) -> tuple[float, float]:
    labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in dataset.take(batches)])
    return float(labels.mean()), float(labels.std() or 1.0)


def _build_model(mean: float, std: float, units: int) -> keras.Model:
    inputs = {k: keras.layers.Input(shape=(1,), name=k, dtype="float32") for k in FEATURE_KEYS}
    x = keras.layers.concatenate(list(inputs.values()))
    x = keras.layers.Dense(units, activation="relu")(x)
    z = keras.layers.Dense(1)(x)
    out = keras.layers.Rescaling(scale=std, offset=mean)(z)
    model = keras.Model(inputs=inputs, outputs=out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", metrics=[keras.metrics.MeanAbsoluteError()])
    return model


def run_fn(fn_args: FnArgs) -> None:
    keras.utils.set_random_seed(int(fn_args.custom_config.get("seed", 0)))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output)
    evals = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output)
    mean, std = _label_scale(train)
    # as in TFX: the Tuner's best HyperParameters config, or None when no Tuner is wired
    hp = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters).values if fn_args.hyperparameters else {}
    model = _build_model(mean, std, int(hp.get("units", 16)))
    epochs = int(fn_args.custom_config.get("epochs", 4))
    model.fit(train, steps_per_epoch=max(1, (fn_args.train_steps or 400) // epochs), epochs=epochs,
              validation_data=evals, validation_steps=fn_args.eval_steps or 5, verbose=0)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, label_key=LABEL_KEY)
