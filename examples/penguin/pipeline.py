"""The penguin pipeline: the Palmer penguins table (344 rows, missing values included)
from raw CSV to statistics, schema and validated examples; Transform (TFT), an optional
Tuner (KerasTuner) and the Trainer (Keras); then the newest blessed model as baseline,
the Evaluator (TFMA), the InfraValidator and the Pusher.

    tfpipe run examples/penguin/pipeline.py
    tfpipe run examples/penguin/pipeline.py -P learning_rate=0.003,0.03 -P units=8,16   # a sweep

``learning_rate`` and ``units`` are the model's hyperparameters when the Tuner is off.
``source`` and ``source_config`` read the penguins from a data source instead of
``data_root``'s CSV (docs/data_sources.md), e.g. a SQL table::

    create_pipeline(source="sql", source_config={"url": "postgresql://app@127.0.0.1:5432/zoo",
                                                 "table": "penguins", "password_env": "ZOO_DB_PASSWORD"})
"""
import os

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

# TFMA's EvalConfig as a dict: accuracy overall and per island at least 0.6, and (when a
# blessed baseline exists) overall no more than 0.05 below the baseline's. The change is
# checked overall only, as in TFX's penguin example: the smallest island has about 17 eval
# rows, where one row is 0.059, so a per-island change threshold would turn noise into a verdict.
EVAL_CONFIG = {
    "model_specs": [{"label_key": "species", "prediction_key": "outputs",
                     "preprocessing_function_names": ["transform_features"]}],
    "slicing_specs": [{}, {"feature_keys": ["island"]}],
    "metrics_specs": [{"metrics": [
        {"class_name": "SparseCategoricalAccuracy",
         "threshold": {"value_threshold": {"lower_bound": 0.6}},
         "per_slice_thresholds": [{"slicing_specs": [{}], "threshold": {
             "change_threshold": {"direction": "HIGHER_IS_BETTER", "absolute": -0.05}}}]},
        {"class_name": "ExampleCount"}]}],
}

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
TRANSFORM_MODULE = os.path.join(HERE, "penguin_transform.py")  # preprocessing_fn
TRAINER_MODULE = os.path.join(HERE, "penguin_utils.py")  # run_fn, tuner_fn


def create_pipeline(data_root: str = DATA, name: str = "penguin", root: str | None = None,
                    metadata: str | None = None, enable_cache: bool = True,
                    beam_pipeline_args: list[str] | None = None, enable_tuning: bool = False,
                    train_steps: int = 500, learning_rate: float = 1e-2, units: int = 8,
                    tuning_parallel_trials: int = 1, tuning_trials: int = 4,
                    trainer_module: str = TRAINER_MODULE, transform_module: str = TRANSFORM_MODULE,
                    source: str = "", source_config: dict | None = None) -> Pipeline:
    example_gen = ExampleGen(source=source, source_config=source_config, label_key="species") if source \
        else ExampleGen(input_base=data_root, label_key="species")
    stats = StatisticsGen(examples=example_gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    validator = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema)
    # model: Transform -> [Tuner] -> Trainer
    transform = Transform(examples=example_gen.outputs.examples, schema=schema.outputs.schema,
                          module_file=transform_module)
    tuner = Tuner(examples=transform.outputs.transformed_examples, transform_graph=transform.outputs.transform_graph,
                  module_file=trainer_module, train_steps=20, eval_steps=5,
                  custom_config={"max_trials": tuning_trials, "tuner_epochs": 1},
                  parallel_trials=tuning_parallel_trials) if enable_tuning else None
    trainer = Trainer(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph,
                      schema=schema.outputs.schema,
                      hyperparameters=tuner.outputs.best_hyperparameters if tuner is not None else None,
                      module_file=trainer_module, train_steps=train_steps, eval_steps=12,
                      custom_config={"learning_rate": learning_rate, "units": units})
    model_half = [transform, *([tuner] if tuner is not None else []), trainer]
    # validation: Resolver(latest blessed) -> Evaluator -> InfraValidator -> Pusher
    baseline = Resolver(strategy="latest_blessed_model", model_type=Model, candidate=trainer.outputs.model,
                        id="latest_blessed_model_resolver")
    evaluator = Evaluator(examples=example_gen.outputs.examples, model=trainer.outputs.model,
                          baseline_model=baseline.outputs.model, eval_config=EVAL_CONFIG)
    infra = InfraValidator(model=trainer.outputs.model, examples=example_gen.outputs.examples,
                           drop_columns=["species"], check_probabilities=True)  # the model ends in a softmax
    pusher = Pusher(model=trainer.outputs.model, model_blessing=evaluator.outputs.blessing,
                    infra_blessing=infra.outputs.blessing,
                    push_destination=os.path.join(root, "serving_model") if root
                    else os.path.join(default_home(), "serving_model", name))
    model_validation = [baseline, evaluator, infra, pusher]
    return Pipeline(name=name, root=root, metadata=metadata, enable_cache=enable_cache,
                    components=[example_gen, stats, schema, validator, *model_half, *model_validation],
                    beam_pipeline_args=beam_pipeline_args or ["--direct_num_workers=1"])
