import pytest

from tests.fixtures.trivial import describe, make_numbers, total
from tfpipe import (
    Examples,
    Input,
    Model,
    Output,
    Pipeline,
    PipelineDefinitionError,
    Schema,
    WiringError,
    component,
)
from tfpipe.component import ComponentDefinitionError


def test_interface_is_derived_from_the_signature():
    assert set(total.inputs) == {"numbers"}
    assert total.inputs["numbers"].type is Examples
    assert set(total.outputs) == {"result"}
    assert total.parameters["offset"].type is int and total.parameters["offset"].default == 0
    assert total.executor_ref == "tests.fixtures.trivial:total"


def test_optional_input_and_module_file_parameter():
    @component
    def c(model: Input[Model] | None = None, out: Output[Schema] = None, module_file: str = "") -> None: ...
    assert c.inputs["model"].optional
    n = c()
    assert n.inputs == {}


def test_missing_annotation_is_a_definition_error():
    with pytest.raises(ComponentDefinitionError, match="'x' has no type annotation"):
        @component
        def bad(x) -> None: ...


def test_unsupported_parameter_type_named():
    with pytest.raises(ComponentDefinitionError, match=r"parameter 'when'.*expected one of"):
        @component
        def bad(when: set) -> None: ...


def test_unknown_parameter_names_component_and_argument():
    with pytest.raises(WiringError, match=r"make_numbers\(id='make_numbers'\): unknown argument 'count'"):
        make_numbers(count=3)


def test_ill_typed_parameter():
    with pytest.raises(WiringError, match=r"parameter 'n' expects int, found str '3'"):
        make_numbers(n="3")
    with pytest.raises(WiringError, match="parameter 'n' expects int, found bool"):
        make_numbers(n=True)


def test_a_converter_turns_a_value_into_the_declared_type_when_the_node_is_defined():
    class Message:  # what a protobuf message looks like to the converter: not a dict
        def __init__(self, **fields):
            self.fields = fields

    def to_dict(v):
        if isinstance(v, Message):
            return dict(v.fields)
        if isinstance(v, str):
            raise ValueError(f"expected a Message or a dict, found the string {v!r}")
        return v

    @component(converters={"config": to_dict})
    def c(config: dict, n: int = 1) -> None: ...
    assert c(config=Message(a=1)).parameters["config"] == {"a": 1}
    assert c(config={"b": 2}).parameters["config"] == {"b": 2}
    with pytest.raises(WiringError, match=r"c\(id='c'\): parameter 'config': expected a Message or a dict, "
                                          r"found the string 'x'"):
        c(config="x")
    with pytest.raises(WiringError, match="parameter 'config' expects dict, found list"):
        c(config=[1])  # what the converter leaves alone is still type-checked
    with pytest.raises(ComponentDefinitionError, match=r"converters for \['nope'\], which are not parameters"):
        @component(converters={"nope": to_dict})
        def d(config: dict) -> None: ...


def test_type_mismatch_between_channels():
    nums = make_numbers()
    t = total(numbers=nums.outputs.numbers)
    with pytest.raises(WiringError, match=r"input 'numbers' expects Examples, found Integer from total.result"):
        total(numbers=t.outputs.result, id="t2")


def test_missing_required_input():
    with pytest.raises(WiringError, match=r"total\(id='total'\): missing required input 'numbers' \(Examples\)"):
        total()


def test_value_where_channel_expected_and_positional_args():
    with pytest.raises(WiringError, match="input 'numbers' expects a channel of Examples"):
        total(numbers="/some/dir")
    with pytest.raises(WiringError, match="keyword arguments only"):
        total(make_numbers().outputs.numbers)


def test_outputs_are_not_arguments():
    with pytest.raises(WiringError, match="'numbers' is an output"):
        make_numbers(numbers=None)


def test_pipeline_adds_upstream_nodes_in_topological_order(tmp_path):
    nums = make_numbers()
    t = total(numbers=nums.outputs.numbers)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result)
    p = Pipeline("p", [d], root=str(tmp_path), metadata=str(tmp_path / "m.sqlite"))
    assert [n.id for n in p.nodes] == ["make_numbers", "total", "describe"]


def test_cycle_is_detected_and_named(tmp_path):
    nums = make_numbers()
    a = total(numbers=nums.outputs.numbers, id="a")
    b = describe(numbers=nums.outputs.numbers, result=a.outputs.result, id="b")
    c = total(numbers=nums.outputs.numbers, id="c")
    # wire a cycle by hand: a <- c <- a
    a.inputs["extra"] = c.outputs.result
    c.inputs["extra"] = a.outputs.result
    with pytest.raises(PipelineDefinitionError,
                       match=r"cycle through nodes \['a', 'b', 'c'\]|cycle through nodes \['a', 'c'"):
        Pipeline("p", [b, c], root=str(tmp_path))


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(PipelineDefinitionError, match="two nodes share the id 'make_numbers'"):
        Pipeline("p", [make_numbers(), make_numbers()], root=str(tmp_path))


def test_bad_pipeline_name():
    with pytest.raises(PipelineDefinitionError, match="pipeline name"):
        Pipeline("my pipeline", [make_numbers()])


def _code_version_of_c(module_path, alias: str) -> str:
    """Load the module file afresh under ``alias`` and return its component ``c``'s code version."""
    from tfpipe.loader import load_module_from_file
    return load_module_from_file(str(module_path), alias).c.code_version()


def test_code_version_covers_the_local_modules_a_component_imports(tmp_path):
    (tmp_path / "comp_helper.py").write_text("K = 1\n")
    src = ("from tfpipe import Output, String, component\nimport comp_helper\n\n"
           "@component\ndef c(out: Output[String]) -> None:\n    out.write(str(comp_helper.K))\n")
    (tmp_path / "comp_mod.py").write_text(src)
    v1 = _code_version_of_c(tmp_path / "comp_mod.py", "comp_mod_a")
    (tmp_path / "comp_helper.py").write_text("K = 2\n")
    v2 = _code_version_of_c(tmp_path / "comp_mod.py", "comp_mod_b")
    assert v1 != v2 and len(v1) == 16


def test_code_version_covers_code_files_the_executor_runs_without_importing(tmp_path):
    """e.g. the Tuner's worker, started as `python -m tfpipe.components._tuner_worker`."""
    (tmp_path / "worker.py").write_text("print('worker v1')\n")
    src = ("from tfpipe import Output, String, component\n\n"
           "@component(code_files=('worker.py',))\ndef c(out: Output[String]) -> None:\n    out.write('x')\n")
    (tmp_path / "comp_cf.py").write_text(src)
    v1 = _code_version_of_c(tmp_path / "comp_cf.py", "comp_cf_a")
    v1_again = _code_version_of_c(tmp_path / "comp_cf.py", "comp_cf_b")
    (tmp_path / "worker.py").write_text("print('worker v2')\n")
    v2 = _code_version_of_c(tmp_path / "comp_cf.py", "comp_cf_c")
    assert v1 == v1_again and v1 != v2 and len(v2) == 16


@pytest.mark.parametrize("bad", ["../../../../escaped", "/abs/path", 'a"""b', "x{{ 7*7 }}", "a b", "", "a\nb",
                                 "$(touch x)", "é", "n" * 64, "1starts_with_digit", "a.b"])
def test_node_ids_component_and_pipeline_names_are_safe_names(bad):
    """Names that become task ids, KFP names, metadata names and folders under the artifact
    root are checked when the pipeline is defined, for every orchestrator."""
    from tests.fixtures.trivial import make_numbers
    from tfpipe import Pipeline
    from tfpipe.component import ComponentDefinitionError
    from tfpipe.graph import PipelineDefinitionError
    with pytest.raises(WiringError, match="node id .*expected a name of letters, digits"):
        make_numbers(id=bad)

    def fn(x: int = 1) -> None:
        pass
    with pytest.raises(ComponentDefinitionError, match="component name"):
        component(name=bad)(fn)
    with pytest.raises(PipelineDefinitionError, match="pipeline name"):
        Pipeline(bad, [make_numbers()])


def test_an_ir_file_with_an_unsafe_node_id_is_refused(tmp_path):
    import json

    from tests.fixtures.trivial import make_numbers
    from tfpipe import Pipeline, compile_pipeline
    from tfpipe.compiler import IRError, load_ir
    ir = compile_pipeline(Pipeline("p", [make_numbers()], root=str(tmp_path / "r"), metadata=str(tmp_path / "m")))
    ir["nodes"][0]["id"] = "../../escaped"
    (tmp_path / "ir.json").write_text(json.dumps(ir))
    with pytest.raises(IRError, match=r"node id '../../escaped': expected a name"):
        load_ir(str(tmp_path / "ir.json"))
