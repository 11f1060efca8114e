"""TFX's penguin Keras module idiom (tfx/examples/penguin/penguin_utils_keras.py), ported
by its import lines: ``from tensorflow import keras``, ``import keras_tuner``, a
RandomSearch over a model built with that keras, ``model.save(dir, save_format='tf',
signatures=...)`` with the TFT layer in the serving signature."""
import absl
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from parity_common import FEATURES, data, dataset, signatures, xf
from tensorflow import keras

from tfpipe import v1 as tfx


def _get_hyperparameters():
    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [1e-2], default=1e-2)
    hp.Int("num_layers", 1, 2, default=1)
    return hp


def _make_keras_model(hparams):
    inputs = [keras.layers.Input(shape=(1,), name=xf(f)) for f in FEATURES]
    d = keras.layers.concatenate(inputs)
    for _ in range(int(hparams.get("num_layers"))):
        d = keras.layers.Dense(8, activation="relu")(d)
    model = keras.Model(inputs=inputs, outputs=keras.layers.Dense(3, activation="softmax")(d))
    model.compile(optimizer=keras.optimizers.Adam(hparams.get("learning_rate")),
                  loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy()])
    model.summary(print_fn=absl.logging.info)
    return model


def tuner_fn(fn_args):
    keras.utils.set_random_seed(0)
    tuner = keras_tuner.RandomSearch(_make_keras_model, max_trials=1, seed=1, hyperparameters=_get_hyperparameters(),
                                     allow_new_entries=False,
                                     objective=keras_tuner.Objective("val_sparse_categorical_accuracy", "max"),
                                     directory=fn_args.working_dir, project_name="penguin_tuning")
    transform_graph = tft.TFTransformOutput(fn_args.transform_graph_path)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs=data(fn_args, transform_graph))


def run_fn(fn_args):
    keras.utils.set_random_seed(0)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    hparams = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    mirrored_strategy = tf.distribute.MirroredStrategy()
    with mirrored_strategy.scope():
        model = _make_keras_model(hparams)
    tensorboard_callback = tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="batch")
    model.fit(dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output),
              steps_per_epoch=fn_args.train_steps,
              validation_data=dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output),
              validation_steps=fn_args.eval_steps, callbacks=[tensorboard_callback])
    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=signatures(model, tf_transform_output))
