"""The diabetes pipeline: scikit-learn's bundled diabetes table (442 patients, ten
measurements, disease progression after one year as the label; shipped here as
data/diabetes.csv) through the same components as the penguin example, as a regression.

    tfpipe run examples/diabetes/pipeline.py
"""
import os

from tfpipe import Model, Pipeline
from tfpipe.components import Evaluator, ExampleGen, InfraValidator, Pusher, Resolver, SchemaGen, StatisticsGen
from tfpipe.components.trainer import Trainer
from tfpipe.components.transform import Transform
from tfpipe.graph import default_home

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
TRANSFORM_MODULE = os.path.join(HERE, "diabetes_transform.py")
TRAINER_MODULE = os.path.join(HERE, "diabetes_utils.py")

# TFMA's EvalConfig as a dict: regression metrics overall and by sex, an upper bound on the
# error, and (when a blessed baseline exists) no more than 5% worse than it.
EVAL_CONFIG = {
    "model_specs": [{"label_key": "target", "prediction_key": "outputs"}],
    "slicing_specs": [{}, {"feature_keys": ["sex"]}],
    "metrics_specs": [{"metrics": [
        {"class_name": "MeanSquaredError",
         "threshold": {"value_threshold": {"upper_bound": 5000.0},
                       "change_threshold": {"direction": "LOWER_IS_BETTER", "relative": 0.05}}},
        {"class_name": "MeanAbsoluteError", "threshold": {"value_threshold": {"upper_bound": 60.0}}},
        {"class_name": "ExampleCount"}]}],
}


def create_pipeline(data_root: str = DATA, name: str = "diabetes", root: str | None = None,
                    metadata: str | None = None, enable_cache: bool = True,
                    beam_pipeline_args: list[str] | None = None, train_steps: int = 400,
                    serving_model_dir: str | None = None, trainer_module: str = TRAINER_MODULE,
                    eval_config: dict | None = None) -> Pipeline:
    example_gen = ExampleGen(input_base=data_root, label_key="target")
    stats = StatisticsGen(examples=example_gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    transform = Transform(examples=example_gen.outputs.examples, schema=schema.outputs.schema,
                          module_file=TRANSFORM_MODULE)
    trainer = Trainer(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph, schema=schema.outputs.schema,
                      module_file=trainer_module, train_steps=train_steps, eval_steps=5)
    baseline = Resolver(strategy="latest_blessed_model", model_type=Model, candidate=trainer.outputs.model,
                        id="latest_blessed_model_resolver")
    evaluator = Evaluator(examples=example_gen.outputs.examples, model=trainer.outputs.model,
                          baseline_model=baseline.outputs.model, eval_config=eval_config or EVAL_CONFIG)
    infra = InfraValidator(model=trainer.outputs.model, examples=example_gen.outputs.examples,
                           drop_columns=["target"])
    pusher = Pusher(model=trainer.outputs.model, model_blessing=evaluator.outputs.blessing,
                    infra_blessing=infra.outputs.blessing,
                    push_destination=serving_model_dir or os.path.join(default_home(), "serving_model", name))
    return Pipeline(name=name, root=root, metadata=metadata, enable_cache=enable_cache,
                    components=[example_gen, stats, schema, transform, trainer, baseline, evaluator, infra,
                                pusher],
                    beam_pipeline_args=beam_pipeline_args or ["--direct_num_workers=1"])
