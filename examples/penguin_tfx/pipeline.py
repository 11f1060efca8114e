"""TFX's penguin pipeline, its module files ported to tfpipe by their import lines alone.

The module files in ``tfpipe_modules/`` are those in ``tfx_modules/`` (TFX's idiom:
``from tfx import v1 as tfx``, ``tf.keras`` models returning logits with their own
serving signatures, ``keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)``)
with ``from tfx import v1 as tfx`` changed to ``from tfpipe import v1 as tfx`` and nothing
else (``tests/examples/test_penguin_tfx.py`` diffs them). The Evaluator takes the same
``tfma.EvalConfig`` message TFX's does. ``tfx_pipeline.py`` is the same pipeline under
TFX 1.16 (``make bench`` runs both, side by side):

    ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> [Tuner]
    -> Trainer -> Resolver (latest blessed model) -> Evaluator -> [InfraValidator] -> Pusher

    tfpipe run examples/penguin_tfx/pipeline.py
"""
import os

# TFX's pipeline sets TF_USE_LEGACY_KERAS=1 here (tfx_pipeline.py); under tfpipe the Keras a
# module file gets is fixed before this file loads (docs/transform_trainer.md, "Which Keras a
# module file gets"): tf.keras is Keras 3 unless the environment tfpipe starts from sets it.
import tensorflow_model_analysis as tfma

from tfpipe import Model, Pipeline
from tfpipe.components import (
    Evaluator,
    ExampleGen,
    ExampleValidator,
    InfraValidator,
    Pusher,
    Resolver,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)
from tfpipe.graph import default_home

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
MODULES = os.path.join(HERE, "tfpipe_modules")


def eval_config(threshold: float = 0.6) -> tfma.EvalConfig:
    """Accuracy on the transformed integer label, at least ``threshold``; with a blessed
    baseline, no worse than it (TFX's penguin example, as a message)."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key="species_xf",
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": threshold}),
                change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                             absolute={"value": -1e-10})))])])


def create_pipeline(data_root: str = DATA, name: str = "penguin_tfx", root: str | None = None,
                    metadata: str | None = None, serving_dir: str | None = None, module_dir: str = MODULES,
                    train_steps: int = 100, eval_steps: int = 5, threshold: float = 0.6,
                    with_tuner: bool = False, tuner_trials: int = 2, with_infra_validator: bool = False,
                    enable_cache: bool = True, beam_pipeline_args: list = ("--direct_num_workers=1",)) -> Pipeline:
    example_gen = ExampleGen(input_base=data_root)
    statistics_gen = StatisticsGen(examples=example_gen.outputs.examples)
    schema_gen = SchemaGen(statistics=statistics_gen.outputs.statistics, infer_feature_shape=True)
    example_validator = ExampleValidator(statistics=statistics_gen.outputs.statistics,
                                         schema=schema_gen.outputs.schema)
    transform = Transform(examples=example_gen.outputs.examples, schema=schema_gen.outputs.schema,
                          module_file=os.path.join(module_dir, "penguin_transform.py"))
    nodes = [example_gen, statistics_gen, schema_gen, example_validator, transform]
    hyperparameters = None
    if with_tuner:
        tuner = Tuner(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph,
                      module_file=os.path.join(module_dir, "penguin_tuner.py"), train_steps=20, eval_steps=5,
                      custom_config={"max_trials": tuner_trials})
        nodes.append(tuner)
        hyperparameters = tuner.outputs.best_hyperparameters
    trainer = Trainer(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph, schema=schema_gen.outputs.schema,
                      hyperparameters=hyperparameters, module_file=os.path.join(module_dir, "penguin_trainer.py"),
                      train_steps=train_steps, eval_steps=eval_steps, custom_config={"epochs": 1})
    resolver = Resolver(strategy="latest_blessed_model", model_type=Model, candidate=trainer.outputs.model,
                        id="latest_blessed_model_resolver")
    evaluator = Evaluator(examples=example_gen.outputs.examples, model=trainer.outputs.model,
                          baseline_model=resolver.outputs.model, eval_config=eval_config(threshold))
    nodes += [trainer, resolver, evaluator]
    infra_blessing = None
    if with_infra_validator:  # TFX's check: the model loads and answers; logits are fine
        infra = InfraValidator(model=trainer.outputs.model, examples=example_gen.outputs.examples,
                               drop_columns=["species"], num_examples=5)
        nodes.append(infra)
        infra_blessing = infra.outputs.blessing
    pusher = Pusher(model=trainer.outputs.model, model_blessing=evaluator.outputs.blessing,
                    infra_blessing=infra_blessing,
                    push_destination=serving_dir or (os.path.join(root, "serving_model") if root
                                                     else os.path.join(default_home(), "serving_model", name)))
    nodes.append(pusher)
    return Pipeline(name=name, root=root, metadata=metadata, enable_cache=enable_cache, components=nodes,
                    beam_pipeline_args=list(beam_pipeline_args))
