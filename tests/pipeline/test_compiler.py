import json
import os

import pytest

from tfpipe import IR_VERSION, compile_pipeline
from tfpipe.compiler import IRError, dump_ir, load_ir

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")


def _penguin_ir():
    """The data half of a TFX-style pipeline, as a user would write it."""
    from tfpipe import Pipeline
    from tfpipe.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
    gen = ExampleGen(input_base="data/penguin", input_pattern="span-{SPAN}/*.csv", label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    val = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema,
                           drift_thresholds={"island": 0.2})
    return compile_pipeline(Pipeline("penguin", [gen, stats, schema, val], root="artifacts",
                                     metadata="metadata.sqlite", beam_pipeline_args=["--direct_num_workers=1"]))


def _trivial_ir():
    from tests.fixtures.trivial import describe, make_numbers, total
    from tfpipe import Pipeline
    nums = make_numbers(n=4)
    t = total(numbers=nums.outputs.numbers, offset=10)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result)
    return compile_pipeline(Pipeline("trivial", [d], root="artifacts", metadata="metadata.sqlite",
                                     settings={"retries": 1}))


@pytest.mark.parametrize("name,make", [("penguin_data_ir.json", _penguin_ir), ("trivial_ir.json", _trivial_ir)])
def test_ir_matches_golden_file(name, make):
    ir = make()
    text = dump_ir(ir)
    path = os.path.join(GOLDEN, name)
    if os.environ.get("UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        golden = f.read()
    assert json.loads(text) == json.loads(golden), (
        f"IR changed; if intended, re-run with UPDATE_GOLDEN=1 and review {path}")


def test_ir_is_plain_json_with_version_and_topological_nodes():
    ir = _trivial_ir()
    assert ir["ir_version"] == IR_VERSION
    assert json.loads(json.dumps(ir)) == ir
    seen = set()
    for n in ir["nodes"]:
        assert set(n["upstream"]) <= seen
        for src in n["inputs"].values():
            assert src["producer"] in seen
        seen.add(n["id"])
    d = ir["nodes"][2]
    assert d["inputs"]["result"] == {"producer": "total", "output": "result", "type": "Integer"}
    assert d["executor"] == {"ref": "tests.fixtures.trivial:describe"}


def test_load_ir_rejects_other_versions(tmp_path):
    p = tmp_path / "ir.json"
    p.write_text(json.dumps({"ir_version": "0", "nodes": []}))
    with pytest.raises(IRError, match=r"expected ir_version one of \['1', '2'\], found '0'"):
        load_ir(str(p))
    p.write_text("{not json")
    with pytest.raises(IRError, match="line 1, column 2"):
        load_ir(str(p))
