"""The penguin pipeline end to end on the real components, small enough for tests:
ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Tuner -> Trainer ->
Evaluator -> Pusher. Parameters come from the environment so a test can run it twice
with a changed Trainer setting (TRACKING_EPOCHS)."""
import os

from tfpipe import Pipeline
from tfpipe.components.evaluator import Evaluator
from tfpipe.components.example_gen import ExampleGen
from tfpipe.components.example_validator import ExampleValidator
from tfpipe.components.pusher import Pusher
from tfpipe.components.schema_gen import SchemaGen
from tfpipe.components.statistics_gen import StatisticsGen
from tfpipe.components.trainer import Trainer
from tfpipe.components.transform import Transform
from tfpipe.components.tuner import Tuner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, "examples", "penguin")

EVAL_CONFIG = {
    "model_specs": [{"label_key": "species", "prediction_key": "outputs",
                     "preprocessing_function_names": ["transform_features"]}],
    "slicing_specs": [{}, {"feature_keys": ["island"]}],
    "metrics_specs": [{"metrics": [
        {"class_name": "SparseCategoricalAccuracy", "threshold": {"value_threshold": {"lower_bound": 0.2}}},
        {"class_name": "ExampleCount"}]}]}


def create_pipeline():
    env = os.environ
    eg = ExampleGen(input_base=env.get("TRACKING_DATA", os.path.join(PENGUIN, "data")), label_key="species")
    stats = StatisticsGen(examples=eg.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    validator = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema,
                                 fail_on_anomalies=False)
    transform = Transform(examples=eg.outputs.examples, schema=schema.outputs.schema,
                          module_file=os.path.join(PENGUIN, "penguin_transform.py"))
    tuner = Tuner(examples=transform.outputs.transformed_examples, transform_graph=transform.outputs.transform_graph,
                  module_file=os.path.join(PENGUIN, "penguin_utils.py"), train_steps=5, eval_steps=2,
                  custom_config={"max_trials": 2, "tuner_epochs": 1})
    trainer = Trainer(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph, schema=schema.outputs.schema,
                      hyperparameters=tuner.outputs.best_hyperparameters,
                      module_file=os.path.join(PENGUIN, "penguin_utils.py"), train_steps=30, eval_steps=4,
                      custom_config={"epochs": int(env.get("TRACKING_EPOCHS", "3"))})
    evaluator = Evaluator(examples=eg.outputs.examples, model=trainer.outputs.model, eval_config=EVAL_CONFIG)
    pusher = Pusher(model=trainer.outputs.model, model_blessing=evaluator.outputs.blessing,
                    push_destination=env["TRACKING_PUSH"])
    return Pipeline("penguin_tracking", [validator, pusher], root=env["TRACKING_ROOT"],
                    metadata=env["TRACKING_METADATA"], beam_pipeline_args=["--direct_num_workers=1"])
