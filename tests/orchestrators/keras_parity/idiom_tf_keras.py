"""tf_keras idiom: ``import tf_keras`` (Keras 2) for the model. keras_tuner 1.4.8 checks the
models it builds against Keras 3, so this tuner runs each trial itself (KerasTuner's
"tune any workflow" pattern: ``run_trial`` returns the objective)."""
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from parity_common import FEATURES, data, signatures, space, xf

from tfpipe import v1 as tfx


def build(hp):
    inputs = [tf_keras.layers.Input(shape=(1,), name=xf(f)) for f in FEATURES]
    x = tf_keras.layers.concatenate(inputs)
    for _ in range(int(hp.get("num_layers"))):
        x = tf_keras.layers.Dense(8, activation="relu")(x)
    model = tf_keras.Model(inputs=inputs, outputs=tf_keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(hp.get("learning_rate")),
                  loss="sparse_categorical_crossentropy", metrics=[tf_keras.metrics.SparseCategoricalAccuracy()])
    return model


class Search(keras_tuner.RandomSearch):
    def run_trial(self, trial, x, validation_data, steps_per_epoch, validation_steps):
        history = build(trial.hyperparameters).fit(x, validation_data=validation_data, steps_per_epoch=steps_per_epoch,
                                                   validation_steps=validation_steps, verbose=0)
        return {"val_sparse_categorical_accuracy": history.history["val_sparse_categorical_accuracy"][-1]}


def tuner_fn(fn_args):
    tf_keras.utils.set_random_seed(0)
    tuner = Search(hyperparameters=space(), max_trials=1, seed=1,
                   objective=keras_tuner.Objective("val_sparse_categorical_accuracy", "max"),
                   directory=fn_args.working_dir, project_name="tf_keras")
    tfo = tft.TFTransformOutput(fn_args.transform_graph_path)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs=data(fn_args, tfo))


def run_fn(fn_args):
    tf_keras.utils.set_random_seed(0)
    tfo = tft.TFTransformOutput(fn_args.transform_graph_path)
    model = build(keras_tuner.HyperParameters.from_config(fn_args.hyperparameters))
    model.fit(**data(fn_args, tfo))
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures(model, tfo))
