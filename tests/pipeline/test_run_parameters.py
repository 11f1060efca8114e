"""tfpipe run/compile -P NAME=VALUE: create_pipeline() keywords and Node.param node
parameters, converted to their declared types, recorded on the run; bad names and values
are usage errors (exit 2) naming the parameter, the expected type and the value."""
import json

import pytest

from tests.conftest import tfpipe
from tfpipe.parameters import ParameterError, apply_parameters, canonical_name, parse_text

PIPELINE = """
import os
from tfpipe import Pipeline
from tests.fixtures.trivial import describe, make_numbers, total

def create_pipeline(n: int = 3, prefix="sum", scale: float = 1.0, loud: bool = False, tags: list | None = None):
    nums = make_numbers(n=n)
    t = total(numbers=nums.outputs.numbers)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result,
                 prefix=(prefix.upper() if loud else prefix) + ("x%g" % scale) + ",".join(tags or []))
    home = os.environ["TFPIPE_HOME"]
    return Pipeline("params", [d], root=os.path.join(home, "root"), metadata=os.path.join(home, "m.sqlite"))
"""


@pytest.fixture
def pipe(tmp_path):
    p = tmp_path / "pipe.py"
    p.write_text(PIPELINE)
    return str(p), {"TFPIPE_HOME": str(tmp_path / "home")}, str(tmp_path / "home" / "m.sqlite")


def _text(metadata, run):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.records import show_run
    info = show_run(MetadataStore(metadata), run)
    [d] = [e for e in info["executions"] if e["node_id"] == "describe"]
    [t] = [e for e in info["executions"] if e["node_id"] == "total"]
    return info, d, t


def test_keywords_and_node_parameters_are_typed_applied_and_recorded(pipe):
    path, env, md = pipe
    tfpipe("run", path, "-q", "--run-id", "p1", "-P", "n=5", "-P", "scale=2", "-P", "loud=true",
           "-P", 'tags=["a","b"]', "-P", "total.offset=10", env=env, check=0)
    info, d, t = _text(md, "p1")
    assert info["params"] == {"n": 5, "scale": 2.0, "loud": True, "tags": ["a", "b"], "total.offset": 10}
    assert d["parameters"]["prefix"] == "SUMx2a,b" and t["parameters"]["offset"] == 10
    # the node ran with them: 0+1+2+3+4 + 10
    from tfpipe.metadata import MetadataStore
    [res] = MetadataStore(md).get_artifacts([t["outputs"]["result"][0]["id"]])
    assert res.value == 20
    shown = tfpipe("runs", "show", "p1", "--metadata", md, check=0).stdout
    assert 'parameters: n=5 scale=2.0 loud=true tags=["a", "b"] total.offset=10' in shown
    listed = tfpipe("runs", "list", "--metadata", md, check=0).stdout
    assert "n=5 scale=2.0" in listed.splitlines()[2]  # under "pipeline NAME" and the header; all in runs show
    # the Node__param spelling too; compile -P bakes the values into the IR
    ir = json.loads(tfpipe("compile", path, "-P", "total__offset=3", "-P", "n=2", env=env, check=0).stdout)
    assert ir["pipeline"]["parameters"] == {"total.offset": 3, "n": 2}
    assert [n["parameters"]["offset"] for n in ir["nodes"] if n["id"] == "total"] == [3]
    assert [n["parameters"]["n"] for n in ir["nodes"] if n["id"] == "make_numbers"] == [2]


@pytest.mark.parametrize("arg, message", [
    ("n=three", "-P n=three: create_pipeline() keyword n of"),
    ("n=three", "expected int, found 'three'"),
    ("loud=maybe", "expected bool (true/false/1/0), found 'maybe'"),
    ("tags=a,b", "expected list as JSON, found 'a,b'"),
    ("total.offset=1.5", "-P total.offset=1.5: parameter offset of node total: expected int, found '1.5'"),
    ("nope=1", "-P nope: no such parameter; expected a create_pipeline() keyword (n, prefix, scale, loud, tags) "
               "or NODE.PARAM (describe.prefix, make_numbers.fail, make_numbers.n, total.offset)"),
    ("total.nope=1", "-P total.nope: node total has no parameter 'nope'; expected one of offset"),
    ("n", "expected NAME=VALUE"),
])
def test_bad_parameters_are_usage_errors_naming_what_was_expected(pipe, arg, message):
    path, env, md = pipe
    p = tfpipe("run", path, "-q", "-P", arg, env=env)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_text_values_and_names():
    assert parse_text("int", " 7 ") == 7 and parse_text("float", "1e-3") == 0.001
    assert parse_text("bool", "0") is False and parse_text("str", " a ") == " a "
    assert parse_text("dict", '{"a": 1}') == {"a": 1}
    assert canonical_name("Trainer.learning_rate") == "Trainer__learning_rate"
    assert canonical_name("Trainer__learning_rate") == "Trainer__learning_rate"
    with pytest.raises(ValueError, match="expected dict as JSON, found list"):
        parse_text("dict", "[1]")


def test_orchestrator_parameters_accept_the_dotted_spelling_and_are_recorded(tmp_path):
    """What Airflow's dag_run.conf and KFP parameters go through (task.py): Node.param or
    Node__param, recorded on the run when they change a value."""
    from tests.orchestrators.conftest import CONTRACT, compile_file
    from tfpipe.metadata import MetadataStore
    from tfpipe.orchestrators.task import main
    ir = compile_file(CONTRACT, str(tmp_path / "home"))
    out = apply_parameters(ir, {"ContractSource.rows": 3})
    assert [n["parameters"] for n in out["nodes"] if n["id"] == "ContractSource"] == [{"rows": 3}]
    assert out["pipeline"]["parameters"] == {"ContractSource.rows": 3}
    assert "parameters" not in apply_parameters(ir, {"ContractSource__rows": 5})["pipeline"]  # unchanged: not given
    with pytest.raises(ParameterError, match=r"expected one of \[.*'ContractSource.rows'"):
        apply_parameters(ir, {"ContractSource.cols": 1})
    path = tmp_path / "ir.json"
    path.write_text(json.dumps(ir))
    assert main(["--ir", str(path), "--node", "ContractSource", "--run", "t-1", "--orchestrator", "airflow",
                 "--params", json.dumps({"ContractSource.rows": 4})]) == 0
    from tfpipe.tracking.records import show_run
    assert show_run(MetadataStore(ir["pipeline"]["metadata"]), "t-1")["params"] == {"ContractSource.rows": 4}


def test_submit_takes_the_dotted_spelling(tmp_path):
    """tfpipe submit --param Node.param: the KFP pipeline parameter Node__param."""
    import os

    from tests.conftest import REPO
    penguin = os.path.join(REPO, "examples", "penguin", "pipeline.py")
    p = tfpipe("submit", penguin, "--target", "vertex", "--project", "my-project", "--region", "us-central1",
               "--pipeline-root", "gs://my-bucket/root", "--param", "ExampleGen.label_key=species",
               "--param", "Trainer.train_steps=7", "--dry-run", env={"TFPIPE_HOME": str(tmp_path / "home")}, check=0)
    job = json.loads(p.stdout)
    assert job["runtime_config"]["parameterValues"] == {"ExampleGen__label_key": "species", "Trainer__train_steps": 7}
