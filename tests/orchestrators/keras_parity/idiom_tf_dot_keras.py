"""tf.keras idiom (TensorFlow 2.16): every layer through ``tf.keras``; a RandomSearch over it."""
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from parity_common import FEATURES, data, signatures, space, xf

from tfpipe import v1 as tfx


def build(hp):
    inputs = [tf.keras.layers.Input(shape=(1,), name=xf(f)) for f in FEATURES]
    x = tf.keras.layers.concatenate(inputs)
    for _ in range(int(hp.get("num_layers"))):
        x = tf.keras.layers.Dense(8, activation="relu")(x)
    model = tf.keras.Model(inputs=inputs, outputs=tf.keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer=tf.keras.optimizers.Adam(hp.get("learning_rate")),
                  loss="sparse_categorical_crossentropy", metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def tuner_fn(fn_args):
    tf.keras.utils.set_random_seed(0)
    tuner = keras_tuner.RandomSearch(build, hyperparameters=space(), max_trials=1, seed=1,
                                     objective=keras_tuner.Objective("val_sparse_categorical_accuracy", "max"),
                                     directory=fn_args.working_dir, project_name="tf_dot_keras")
    tfo = tft.TFTransformOutput(fn_args.transform_graph_path)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs=data(fn_args, tfo))


def run_fn(fn_args):
    tf.keras.utils.set_random_seed(0)
    tfo = tft.TFTransformOutput(fn_args.transform_graph_path)
    model = build(keras_tuner.HyperParameters.from_config(fn_args.hyperparameters))
    model.fit(**data(fn_args, tfo))
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures(model, tfo))
