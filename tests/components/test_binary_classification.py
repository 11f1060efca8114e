"""Integer labels and binary (sigmoid) classification through the Evaluator and the
InfraValidator, on the penguin measurements: a 0/1 label ``gentoo`` with a one-column
sigmoid model, and the 0..2 label ``species`` with a model that returns logits. TFMA reads
integer labels as they are; the InfraValidator blesses a model that loads and answers
(logits included), and with ``check_probabilities`` also checks probabilities: a sigmoid
column in [0, 1] passes, logits do not."""
import csv
import os

import pytest

from tests.fixtures.tiny_model import TinyIntLabelTrainer
from tfpipe import Pipeline, compile_pipeline
from tfpipe.components import Evaluator, ExampleGen, InfraValidator
from tfpipe.components.evaluator import load_metrics
from tfpipe.orchestrators.local import LocalRunner


def _metric(name, lower):
    return {"class_name": name, "threshold": {"value_threshold": {"lower_bound": lower}}}


BINARY = {"model_specs": [{"label_key": "gentoo", "prediction_key": "outputs"}],
          "slicing_specs": [{}],
          "metrics_specs": [{"metrics": [_metric("BinaryAccuracy", 0.9), _metric("AUC", 0.9),
                                         {"class_name": "Precision"}, {"class_name": "Recall"},
                                         {"class_name": "ExampleCount"}]}]}
MULTI = {"model_specs": [{"label_key": "species", "prediction_key": "outputs"}],
         "slicing_specs": [{}],
         "metrics_specs": [{"metrics": [_metric("SparseCategoricalAccuracy", 0.8)]}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from examples.penguin_tfx import data
    tmp = tmp_path_factory.mktemp("binary")
    (tmp / "data").mkdir()
    with open(tmp / "data" / "penguins.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["species", *data.COLUMNS, "gentoo"])
        w.writerows([*r, int(r[0] == 2)] for r in data.rows())
    eg = ExampleGen(input_base=str(tmp / "data"))
    ex = eg.outputs.examples
    binary = TinyIntLabelTrainer(examples=ex, label="gentoo", output="sigmoid", exclude=["species"],
                                 id="BinaryTrainer")
    logits = TinyIntLabelTrainer(examples=ex, label="species", output="logits", exclude=["gentoo"],
                                 id="LogitsTrainer")
    nodes = [eg, binary, logits,
             Evaluator(examples=ex, model=binary.outputs.model, eval_config=BINARY, id="BinaryEvaluator"),
             Evaluator(examples=ex, model=logits.outputs.model, eval_config=MULTI, id="LogitsEvaluator"),
             InfraValidator(model=binary.outputs.model, examples=ex, drop_columns=["gentoo", "species"],
                            check_probabilities=True, num_examples=6, id="BinaryInfraValidator"),
             InfraValidator(model=logits.outputs.model, examples=ex, drop_columns=["gentoo", "species"],
                            num_examples=6, id="LogitsInfraValidator"),
             InfraValidator(model=logits.outputs.model, examples=ex, drop_columns=["gentoo", "species"],
                            check_probabilities=True, num_examples=6, id="LogitsProbabilitiesInfraValidator")]
    res = LocalRunner(verbose=False).run(compile_pipeline(Pipeline(
        "binary", nodes, root=str(tmp / "root"), metadata=str(tmp / "md.sqlite"),
        beam_pipeline_args=["--direct_num_workers=1"])))
    assert res.ok, res.error
    return {n.node_id: n for n in res.nodes}


def test_binary_sigmoid_model_on_a_0_1_label(run):
    m = load_metrics(run["BinaryEvaluator"].outputs["evaluation"][0])["slices"][0]["candidate"]
    assert m["binary_accuracy"] >= 0.9 and m["auc"] >= 0.9
    assert 0.8 <= m["precision"] <= 1.0 and 0.8 <= m["recall"] <= 1.0
    assert m["example_count"] == run["ExampleGen"].outputs["examples"][0].row_counts["eval"]
    assert run["BinaryEvaluator"].outputs["blessing"][0].blessed is True
    # BinaryAccuracy, AUC, Precision, Recall are TFMA's own metrics: its default evaluator computes them
    assert run["BinaryEvaluator"].outputs["evaluation"][0].custom["metrics_computed"] == \
        "by TFMA's default evaluator (metric BinaryAccuracy is computed by TFMA's own code)"
    infra = run["BinaryInfraValidator"].outputs["blessing"][0]
    assert infra.blessed is True and "6 request(s) answered with class probabilities" in infra.reasons[0]
    with open(os.path.join(infra.uri, "infra_validation.json")) as f:
        assert '"outputs": [\n      6,\n      1\n    ]' in f.read()  # one sigmoid column


def test_integer_multiclass_label_with_a_logits_model(run):
    m = load_metrics(run["LogitsEvaluator"].outputs["evaluation"][0])["slices"][0]["candidate"]
    assert m["sparse_categorical_accuracy"] >= 0.8  # the arg max of logits, against 0..2
    assert run["LogitsEvaluator"].outputs["blessing"][0].blessed is True
    assert run["LogitsInfraValidator"].outputs["blessing"][0].blessed is True  # TFX's check
    strict = run["LogitsProbabilitiesInfraValidator"].outputs["blessing"][0]
    assert strict.blessed is False
    assert strict.reasons[0].startswith("outputs holds values outside [0, 1], so not probabilities")
