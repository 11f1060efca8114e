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


def test_by_default_an_answer_to_every_request_is_enough_as_in_tfx():
    """Logits, a regression's values, anything: loaded and answered is infra-blessed."""
    assert check_response(_report([[2.3, -1.7, 0.4], [-0.2, 5.1, 3.0]]), 2) == []
    assert check_response(_report([[151.0], [75.5]]), 2) == []
    assert check_response(_report([[1.0], [2.0]]), 3) == [
        "the server answered 3 request(s) with {'outputs': 2}; expected one prediction per request"]
    assert check_response({"error": "the model has no 'serving_default' signature; it has []"}, 1) == [
        "the model has no 'serving_default' signature; it has []"]


def test_check_probabilities_for_softmax_sigmoid_and_logits():
    ok = dict(check_probabilities=True)
    assert check_response(_report([[0.2, 0.8], [1.0, 0.0]]), 2, **ok) == []  # softmax, 2 classes
    assert check_response(_report([[0.93], [0.02]]), 2, **ok) == []  # sigmoid: P(positive class)
    assert check_response(_report([[0.2, 0.9]]), 1, **ok) == [
        "class probabilities do not sum to 1 (row 0 sums to 1.1000; 1 of 1 rows off by more than 0.001)"]
    logits = check_response(_report([[2.3, -1.7, 0.4]]), 1, **ok)
    assert logits[0] == ("outputs holds values outside [0, 1], so not probabilities (row 0 has 2.3000; a model "
                         "that returns logits passes with check_probabilities=False)")
    assert check_response(_report([[1.7], [0.5]]), 2, **ok)[0].startswith("outputs holds values outside [0, 1]")
    assert "non-finite values in rows [1]" in check_response(_report([[1.0], [float("nan")]]), 2, **ok)[0]
    assert check_response(_report([[1.0]], key="scores"), 1, **ok) == [
        "the response has no 'outputs' output; it has ['scores']"]


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
