"""Trainer module: run_fn for a small Keras classifier of the penguin species.

Reads Transform's output through fn_args.data_accessor, builds a DNN whose depth, width
and learning rate come from KerasTuner hyperparameters (the Tuner's best when one is
wired, the defaults otherwise), trains for fn_args.train_steps and saves a SavedModel
whose serving signature takes serialized tf.Example protos, applies the transform graph
and returns logits for the three species.
"""
from typing import List

from absl import logging
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from penguin_common import (EVAL_BATCH, LABEL, NUM_CLASSES, NUMERIC_FEATURES,
                            TRAIN_BATCH, xf)


def default_hyperparameters() -> keras_tuner.HyperParameters:
  """The search space, and the values used when no Tuner result is wired."""
  hp = keras_tuner.HyperParameters()
  hp.Choice('learning_rate', [1e-2, 1e-3], default=1e-2)
  hp.Int('num_layers', 1, 3, default=2)
  hp.Choice('units', [8, 16], default=8)
  return hp


def make_dataset(file_pattern: List[str],
                 data_accessor: tfx.components.DataAccessor,
                 tf_transform_output: tft.TFTransformOutput,
                 batch_size: int) -> tf.data.Dataset:
  """(features, label) batches of transformed examples, repeated for ever."""
  options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size,
                                           label_key=xf(LABEL))
  return data_accessor.tf_dataset_factory(
      file_pattern, options,
      tf_transform_output.transformed_metadata.schema).repeat()


def build_model(hp: keras_tuner.HyperParameters, keras=None) -> tf.keras.Model:
  """A small DNN over the four z-scored measurements, three logits out.

  `keras` defaults to tf.keras (tf_keras, Keras 2, which the TFT layer in the serving
  signature needs). The Tuner passes Keras 3, the only Keras whose models keras_tuner
  accepts.
  """
  keras = keras or tf.keras
  inputs = [keras.layers.Input(shape=(1,), name=xf(name))
            for name in NUMERIC_FEATURES]
  x = keras.layers.concatenate(inputs)
  for _ in range(int(hp.get('num_layers'))):
    x = keras.layers.Dense(int(hp.get('units')), activation='relu')(x)
  logits = keras.layers.Dense(NUM_CLASSES)(x)
  model = keras.Model(inputs=inputs, outputs=logits)
  model.compile(
      optimizer=keras.optimizers.Adam(hp.get('learning_rate')),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[keras.metrics.SparseCategoricalAccuracy()])
  return model


def _signatures(model: tf.keras.Model,
                tf_transform_output: tft.TFTransformOutput):
  """serving_default: serialized tf.Example to logits; transform_features for TFMA."""
  # Tracked by the model, so that the layer's assets and variables are saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()

  @tf.function(input_signature=[
      tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
  def serve(serialized):
    spec = tf_transform_output.raw_feature_spec()
    spec.pop(LABEL)  # no label at serving time
    parsed = tf.io.parse_example(serialized, spec)
    return {'outputs': model(model.tft_layer(parsed))}

  @tf.function(input_signature=[
      tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
  def transform_features(serialized):
    parsed = tf.io.parse_example(serialized,
                                 tf_transform_output.raw_feature_spec())
    return model.tft_layer(parsed)

  return {'serving_default': serve, 'transform_features': transform_features}


def run_fn(fn_args: tfx.components.FnArgs):
  """The Trainer's entry point."""
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  train_ds = make_dataset(fn_args.train_files, fn_args.data_accessor,
                          tf_transform_output, TRAIN_BATCH)
  eval_ds = make_dataset(fn_args.eval_files, fn_args.data_accessor,
                         tf_transform_output, EVAL_BATCH)

  if fn_args.hyperparameters:
    # HyperParameters.get_config() of the Tuner's best trial.
    hp = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
  else:
    hp = default_hyperparameters()
  logging.info('Training with hyperparameters %s', hp.values)
  epochs = int((fn_args.custom_config or {}).get('epochs', 1))

  model = build_model(hp)
  model.fit(
      train_ds,
      epochs=epochs,
      steps_per_epoch=fn_args.train_steps,
      validation_data=eval_ds,
      validation_steps=fn_args.eval_steps,
      verbose=0,
      callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir,
                                                update_freq='epoch')])

  tf.saved_model.save(model, fn_args.serving_model_dir,
                      signatures=_signatures(model, tf_transform_output))
