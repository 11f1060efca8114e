"""The Keras parity pipeline: one Transform, then one Tuner -> Trainer -> Evaluator branch
per Keras idiom a module file is written in (``tests/orchestrators/test_keras_parity.py``
runs it in every mode and compares the branches' models, metrics and blessings):

- ``keras3``: ``import keras`` (Keras 3);
- ``tf_dot_keras``: ``tf.keras`` (TensorFlow 2.16's, whatever it resolves to);
- ``tf_keras``: ``import tf_keras`` (Keras 2; tuned by a KerasTuner ``run_trial``, as
  keras_tuner 1.4.8 builds only Keras 3 models itself);
- ``tfx``: TFX's penguin module idiom (``from tensorflow import keras``, ``import
  keras_tuner``, a ``RandomSearch`` over that keras, ``model.save(save_format='tf',
  signatures=...)``).

``KERAS_PARITY_HOME`` (the metadata store and artifacts) and ``KERAS_PARITY_MODE`` (set on
the Tuner and Trainer, so each mode trains anew while ExampleGen..Transform come from the
cache) are read when the file is loaded by ``tfpipe run``.
"""
import os

from tfpipe import Pipeline
from tfpipe.components import (
    Evaluator,
    ExampleGen,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "examples", "penguin_tfx", "data")
IDIOMS = ("keras3", "tf_dot_keras", "tf_keras", "tfx")

EVAL_CONFIG = {
    "model_specs": [{"label_key": "species", "prediction_key": "outputs"}],
    "slicing_specs": [{}],
    "metrics_specs": [{"metrics": [
        {"class_name": "SparseCategoricalAccuracy", "threshold": {"value_threshold": {"lower_bound": 0.5}}},
        {"class_name": "ExampleCount"}]}],
}


def create_pipeline(home: str | None = None, mode: str | None = None) -> Pipeline:
    home = home or os.environ["KERAS_PARITY_HOME"]
    mode = mode or os.environ.get("KERAS_PARITY_MODE", "")
    example_gen = ExampleGen(input_base=DATA)
    statistics_gen = StatisticsGen(examples=example_gen.outputs.examples)
    schema_gen = SchemaGen(statistics=statistics_gen.outputs.statistics, infer_feature_shape=True)
    transform = Transform(examples=example_gen.outputs.examples, schema=schema_gen.outputs.schema,
                          module_file=os.path.join(HERE, "parity_transform.py"))
    nodes = [example_gen, statistics_gen, schema_gen, transform]
    for idiom in IDIOMS:
        module = os.path.join(HERE, f"idiom_{idiom}.py")
        tuner = Tuner(examples=transform.outputs.transformed_examples,
                      transform_graph=transform.outputs.transform_graph, module_file=module,
                      train_steps=10, eval_steps=3, custom_config={"mode": mode}, id=f"Tuner_{idiom}")
        trainer = Trainer(examples=transform.outputs.transformed_examples,
                          transform_graph=transform.outputs.transform_graph,
                          hyperparameters=tuner.outputs.best_hyperparameters, module_file=module,
                          train_steps=60, eval_steps=5, custom_config={"mode": mode}, id=f"Trainer_{idiom}")
        evaluator = Evaluator(examples=example_gen.outputs.examples, model=trainer.outputs.model,
                              eval_config=EVAL_CONFIG, id=f"Evaluator_{idiom}")
        nodes += [tuner, trainer, evaluator]
    return Pipeline(name="keras_parity", root=os.path.join(home, "artifacts"),
                    metadata=os.path.join(home, "metadata.sqlite"), components=nodes,
                    beam_pipeline_args=["--direct_num_workers=1"])
