"""InfraValidator: the response checks, and a model that cannot be loaded by the separate
server process is not infra-blessed (a real subprocess; no model server binary needed)."""
import os

from tests.conftest import REPO
from tfpipe import InfraBlessing, Model, Pipeline, compile_pipeline
from tfpipe.components import ExampleGen, InfraValidator
from tfpipe.components.infra_validator import check_response
from tfpipe.orchestrators.local import LocalRunner


def _report(values, key="outputs"):
    return {"outputs": {key: {"shape": [len(values), len(values[0])], "dtype": "float32", "values": values}}}


def test_well_formed_classifier_and_regressor_responses_pass():
    assert check_response(_report([[0.2, 0.8], [1.0, 0.0]]), 2) == []
    assert check_response(_report([[151.0], [75.5]]), 2, problem="regression") == []


def test_malformed_responses_are_named():
    assert check_response(_report([[0.2, 0.9]]), 1) == [
        "class probabilities do not sum to 1 (row 0 sums to 1.1000; 1 of 1 rows off by more than 0.001)"]
    assert "non-finite values in rows [1]" in check_response(_report([[1.0], [float("nan")]]), 2)[0]
    assert "shape [2, 1]; expected [3, k] for 3 requests" in check_response(_report([[1.0], [2.0]]), 3)[0]
    assert check_response(_report([[1.0]], key="scores"), 1) == [
        "the response has no 'outputs' output; it has ['scores']"]
    assert check_response({"error": "the model has no 'serving_default' signature; it has []"}, 1) == [
        "the model has no 'serving_default' signature; it has []"]


def test_a_model_that_does_not_load_is_not_infra_blessed(tmp_path):
    gen = ExampleGen(input_base=os.path.join(REPO, "examples", "penguin", "data"), label_key="species")
    res = LocalRunner(verbose=False).run(compile_pipeline(Pipeline(
        "infra", [gen], root=str(tmp_path / "root"), metadata=str(tmp_path / "md.sqlite"))))
    examples = res.nodes[0].outputs["examples"][0]
    broken = tmp_path / "model" / "Format-Serving"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    out = InfraBlessing(uri=str(tmp_path / "blessing"))
    InfraValidator.fn(model=Model(uri=str(tmp_path / "model"), id=7), examples=examples, blessing=out,
                      num_examples=3)
    assert out.blessed is False
    assert out.reasons[0].startswith("the model server process exited 1 while loading " + str(broken))
    assert os.path.exists(os.path.join(out.uri, "INFRA_NOT_BLESSED"))
