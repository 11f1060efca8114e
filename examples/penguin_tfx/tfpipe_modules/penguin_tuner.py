"""Tuner module: tuner_fn, a KerasTuner random search over the trainer's space."""
import functools

import keras  # Keras 3: the Keras keras_tuner checks models against
import keras_tuner
import tensorflow_transform as tft
from tfpipe import v1 as tfx

from penguin_common import EVAL_BATCH, TRAIN_BATCH
from penguin_trainer import build_model, default_hyperparameters, make_dataset


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  """The Tuner's entry point; fn_args.working_dir is the Tuner's scratch directory."""
  max_trials = int((fn_args.custom_config or {}).get('max_trials', 4))
  tuner = keras_tuner.RandomSearch(
      functools.partial(build_model, keras=keras),
      hyperparameters=default_hyperparameters(),
      allow_new_entries=False,
      objective=keras_tuner.Objective('val_sparse_categorical_accuracy', 'max'),
      max_trials=max_trials,
      directory=fn_args.working_dir,
      project_name='penguin_tuning')

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  train_ds = make_dataset(fn_args.train_files, fn_args.data_accessor,
                          tf_transform_output, TRAIN_BATCH)
  eval_ds = make_dataset(fn_args.eval_files, fn_args.data_accessor,
                         tf_transform_output, EVAL_BATCH)
  return tfx.components.TunerFnResult(
      tuner=tuner,
      fit_kwargs={'x': train_ds,
                  'validation_data': eval_ds,
                  'steps_per_epoch': fn_args.train_steps,
                  'validation_steps': fn_args.eval_steps,
                  'verbose': 0})
