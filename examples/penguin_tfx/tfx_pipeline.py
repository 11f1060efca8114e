"""The same penguin pipeline under TFX 1.16 itself (its LocalDagRunner), for the side-by-side
benchmark (``benchmarks/bench_tfx.py`` runs it in a TFX virtualenv; tfpipe is not imported):

    python examples/penguin_tfx/tfx_pipeline.py --root DIR [--tuner] [--no-cache]

CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform (analyzer
cache off) -> [Tuner] -> Trainer (100 steps, 5 eval steps) -> Resolver (latest blessed
model) -> Evaluator (a tfma.EvalConfig with an accuracy threshold) -> Pusher (filesystem),
on one Beam worker with a SQLite ML Metadata store in ``DIR``; module files from
``tfx_modules/``, data from ``data/``, the same files ``pipeline.py`` gives tfpipe.
"""
import argparse
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # TFT 1.16 needs Keras 2 (tf_keras)

HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline(name, root, data_root, module_dir, serving_dir, metadata_path,
                    train_steps, eval_steps, threshold, with_tuner, enable_cache):
  import tensorflow_model_analysis as tfma
  from tfx import v1 as tfx

  example_gen = tfx.components.CsvExampleGen(input_base=data_root)
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema'])
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      module_file=os.path.join(module_dir, 'penguin_transform.py'),
      force_tf_compat_v1=False,
      disable_analyzer_cache=True)
  nodes = [example_gen, statistics_gen, schema_gen, example_validator, transform]

  hyperparameters = None
  if with_tuner:
    tuner = tfx.components.Tuner(
        module_file=os.path.join(module_dir, 'penguin_tuner.py'),
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        train_args=tfx.proto.TrainArgs(num_steps=20),
        eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config={'max_trials': 2})
    nodes.append(tuner)
    hyperparameters = tuner.outputs['best_hyperparameters']

  trainer = tfx.components.Trainer(
      module_file=os.path.join(module_dir, 'penguin_trainer.py'),
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      hyperparameters=hyperparameters,
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
      custom_config={'epochs': 1})

  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')

  eval_config = tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name='serving_default',
          label_key='species_xf',
          preprocessing_function_names=['transform_features'])],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(
              class_name='SparseCategoricalAccuracy',
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(
                      lower_bound={'value': threshold}),
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                      absolute={'value': -1e-10})))])])
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      eval_config=eval_config)

  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=serving_dir)))

  nodes += [trainer, model_resolver, evaluator, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=name,
      pipeline_root=os.path.join(root, 'pipelines', name),
      components=nodes,
      enable_cache=enable_cache,
      metadata_connection_config=tfx.orchestration.metadata
      .sqlite_metadata_connection_config(metadata_path),
      beam_pipeline_args=['--direct_running_mode=in_memory',
                          '--direct_num_workers=1'])


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--root', required=True,
                  help='pipeline root, ML Metadata (metadata.sqlite) and pushed models')
  ap.add_argument('--name', default='penguin_tfx')
  ap.add_argument('--data', default=os.path.join(HERE, 'data'))
  ap.add_argument('--modules', default=os.path.join(HERE, 'tfx_modules'))
  ap.add_argument('--train-steps', type=int, default=100)
  ap.add_argument('--eval-steps', type=int, default=5)
  ap.add_argument('--threshold', type=float, default=0.6)
  ap.add_argument('--tuner', action='store_true')
  ap.add_argument('--no-cache', action='store_true')
  args = ap.parse_args(argv)

  from tfx import v1 as tfx
  os.makedirs(args.root, exist_ok=True)
  pipeline = create_pipeline(
      args.name, args.root, args.data, args.modules,
      os.path.join(args.root, 'serving_model', args.name),
      os.path.join(args.root, 'metadata.sqlite'),
      args.train_steps, args.eval_steps, args.threshold, args.tuner,
      not args.no_cache)
  tfx.orchestration.LocalDagRunner().run(pipeline)


if __name__ == '__main__':
  sys.exit(main())
