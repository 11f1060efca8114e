"""`tfpipe run --explain` / `tfpipe plan`: before a run, which nodes it will take from the
cache and exactly why the others will run; checked against what the following run then
does, for a data change, a parameter change, a module-file change and a helper-module
change."""
import json
import os
import shutil

import pytest

from tests.conftest import REPO, tfpipe

PIPELINE = '''
import os
from tfpipe import Pipeline
from tfpipe.components import ExampleGen, SchemaGen, StatisticsGen, Transform

HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline(infer_feature_shape: bool = False):
    gen = ExampleGen(input_base=os.path.join(HERE, "data"), label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics, infer_feature_shape=INFER)
    tf = Transform(examples=gen.outputs.examples, schema=schema.outputs.schema,
                   module_file=os.path.join(HERE, "transform_module.py"))
    return Pipeline("plan", [tf], root=os.path.join(HERE, "root"), metadata=os.path.join(HERE, "m.sqlite"))
'''

MODULE = '''import tensorflow as tf
import tensorflow_transform as tft

from plan_helpers import FEATURES


def preprocessing_fn(inputs):
    out = {}
    for key in FEATURES:
        x = inputs[key]
        if isinstance(x, tf.SparseTensor):
            x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
            x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=0.0)
        out[key] = tft.scale_to_z_score(tf.cast(x, tf.float32)){extra}
    return out
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    (d / "data").mkdir()
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), d / "data" / "p.csv")
    (d / "pipeline.py").write_text(PIPELINE.replace("INFER", "infer_feature_shape"))
    (d / "transform_module.py").write_text(MODULE.replace("{extra}", ""))
    (d / "plan_helpers.py").write_text('FEATURES = ["bill_length_mm", "body_mass_g"]\n')
    return d


def _plan(d) -> dict:
    p = tfpipe("plan", str(d / "pipeline.py"), "--json", check=0)
    return {x["node"]: x for x in json.loads(p.stdout)}


def _run_states(d, run_id) -> dict:
    tfpipe("run", str(d / "pipeline.py"), "--run-id", run_id, "-q", check=0)
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking import records
    info = records.show_run(MetadataStore(str(d / "m.sqlite")), run_id)
    return {e["node_id"]: e["state"] for e in info["executions"]}


def _matches(plan: dict, states: dict) -> None:
    """What the plan said is what the run did."""
    assert {n: ("CACHED" if p["action"] == "cached" else "COMPLETE") for n, p in plan.items()} == states


def test_before_the_first_run_everything_runs(project):
    plan = _plan(project)
    assert [p["action"] for p in plan.values()] == ["run"] * 4
    assert all("never ran before" in p["reasons"][0] for p in plan.values())
    _matches(plan, _run_states(project, "p-0"))


def test_an_unchanged_pipeline_is_all_cached(project):
    p = tfpipe("run", str(project / "pipeline.py"), "--explain", check=0)
    assert "4 cached, 0 to run" in p.stdout
    _matches(_plan(project), _run_states(project, "p-1"))


def test_a_data_change(project):
    with open(project / "data" / "p.csv", "a") as f:
        f.write("Adelie,Torgersen,40.1,18.2,190,3800,male,2009\n")
    plan = _plan(project)
    assert plan["ExampleGen"]["action"] == "run"
    assert plan["ExampleGen"]["reasons"][0].startswith("input data changed (input_fingerprint ")
    assert str(project / "data" / "p.csv") in plan["ExampleGen"]["reasons"][0]
    assert plan["StatisticsGen"]["reasons"] == ["upstream ExampleGen will run"]
    _matches(plan, _run_states(project, "p-2"))


def test_a_parameter_change(project):
    (project / "pipeline.py").write_text(PIPELINE.replace("INFER", "True"))
    plan = _plan(project)
    assert plan["ExampleGen"]["action"] == plan["StatisticsGen"]["action"] == "cached"
    assert plan["SchemaGen"]["reasons"] == ["parameter infer_feature_shape: false -> true"]
    assert plan["Transform"]["reasons"] == ["upstream SchemaGen will run"]
    _matches(plan, _run_states(project, "p-3"))


def test_a_module_file_change(project):
    (project / "transform_module.py").write_text(MODULE.replace("{extra}", "  # scaled"))
    plan = _plan(project)
    assert [n for n, p in plan.items() if p["action"] == "run"] == ["Transform"]
    [why] = plan["Transform"]["reasons"]
    assert why.startswith("module file transform_module.py changed (")
    _matches(plan, _run_states(project, "p-4"))


def test_a_helper_module_change(project):
    (project / "plan_helpers.py").write_text('FEATURES = ["bill_length_mm", "flipper_length_mm"]\n')
    plan = _plan(project)
    assert [n for n, p in plan.items() if p["action"] == "run"] == ["Transform"]
    [why] = plan["Transform"]["reasons"]
    assert why.startswith("helper module plan_helpers.py (imported by transform_module.py) changed (")
    _matches(plan, _run_states(project, "p-5"))
