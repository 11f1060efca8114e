"""The resolver hook in the core: a node that picks existing artifacts of earlier runs
from ML Metadata instead of running an executor (trivial components, no TensorFlow)."""
import json

import pytest

from tfpipe import (
    Input,
    Integer,
    JsonValue,
    Output,
    Pipeline,
    String,
    WiringError,
    component,
)
from tfpipe.compiler import compile_pipeline
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner


def pick_latest(query, pipeline_name, params, inputs):
    found = query.outputs(type_name=params["type_name"], node_id=params["producer"] or None)
    return {"latest": [a for a, _, _ in found[:params["n"]]]}


@component(name="PickLatest", resolver=pick_latest)
def PickLatest(type_name: str = "Integer", producer: str = "", n: int = 1) -> None:
    """Interface only: the resolver function does the work."""


def bad_key(query, pipeline_name, params, inputs):
    return {"nonsense": []}


@component(name="BadKeyResolver", resolver=bad_key)
def BadKeyResolver() -> None:
    pass


def wrong_type(query, pipeline_name, params, inputs):
    return {"latest": [a for a, _, _ in query.outputs(type_name="Integer")]}


@component(name="WrongTypeResolver", resolver=wrong_type)
def WrongTypeResolver() -> None:
    pass


@component(name="Make")
def Make(out: Output[Integer], value: int) -> None:
    out.write(value)


@component(name="Use")
def Use(result: Output[JsonValue], x: Input[Integer] | None = None, xs: Input[Integer] | None = None) -> None:
    result.write({"x": None if x is None else x.read(),
                  "xs": None if xs is None else [a.read() for a in (xs if isinstance(xs, list) else [xs])]})


def _pipeline(tmp_path, value, resolver=None, n=1):
    make = Make(value=value, id="make")
    resolver = resolver or PickLatest(producer="make", n=n, id="latest", output_types={"latest": Integer})
    use = Use(x=resolver.outputs.latest, id="use") if n == 1 else Use(xs=resolver.outputs.latest, id="use")
    return Pipeline("resolving", [make, resolver, use], root=str(tmp_path / "root"),
                    metadata=str(tmp_path / "md.sqlite"))


def _exec_of(store, run_result, node_id):
    [r] = [r for r in run_result.nodes if r.node_id == node_id]
    [e] = store.executions([r.execution_id])
    return r, e


def _result(run_result):
    [r] = [r for r in run_result.nodes if r.node_id == "use"]
    return r.outputs["result"][0].read()


def test_resolver_picks_artifacts_of_earlier_runs_without_new_artifacts(tmp_path):
    runner = LocalRunner(verbose=False)
    first = runner.run(compile_pipeline(_pipeline(tmp_path, 1)), run_id="r1")
    assert first.ok
    # nothing earlier: the resolver succeeds with no output and the optional input is None
    assert _result(first) == {"x": None, "xs": None}
    store = MetadataStore(str(tmp_path / "md.sqlite"))
    r, e = _exec_of(store, first, "latest")
    assert store.state_name(e) == "COMPLETE" and r.outputs == {}
    made_1 = [r for r in first.nodes if r.node_id == "make"][0].outputs["out"][0]

    second = runner.run(compile_pipeline(_pipeline(tmp_path, 2)), run_id="r2")
    assert second.ok
    assert _result(second)["x"] == 1  # run 1's value, not this run's
    r, e = _exec_of(store, second, "latest")
    assert store.state_name(e) == "COMPLETE"
    assert [a.id for a in r.outputs["latest"]] == [made_1.id]
    _, outs = store.io_of(e.id)
    assert [a.id for a in outs["latest"]] == [made_1.id]  # an OUTPUT event on the existing artifact
    assert len(store.list_artifacts("Integer")) == 2  # one per Make execution, none from the resolver

    # an unchanged third run: Make and Use come from cache, the resolver always re-resolves
    third = runner.run(compile_pipeline(_pipeline(tmp_path, 2)), run_id="r3")
    states = {r.node_id: r.state for r in third.nodes}
    assert states["make"] == "CACHED" and states["latest"] == "COMPLETE"
    assert _result(third)["x"] == 2
    assert json.loads(store.props(_exec_of(store, third, "latest")[1])["resolved"]) == {
        "latest": [[r for r in second.nodes if r.node_id == "make"][0].outputs["out"][0].id]}


def test_resolver_returns_n_newest_as_a_list(tmp_path):
    runner = LocalRunner(verbose=False)
    for i, v in enumerate([5, 6, 7]):
        res = runner.run(compile_pipeline(_pipeline(tmp_path, v, n=2)), run_id=f"r{i}")
        assert res.ok
    assert _result(res)["xs"] == [6, 5]


def test_resolver_output_type_goes_into_the_ir(tmp_path):
    ir = compile_pipeline(_pipeline(tmp_path, 1))
    [node] = [n for n in ir["nodes"] if n["id"] == "latest"]
    assert node["outputs"] == {"latest": {"type": "Integer"}}
    assert [n["id"] for n in ir["nodes"]].index("latest") < [n["id"] for n in ir["nodes"]].index("use")
    json.dumps(ir)


def test_output_types_only_for_resolvers_and_checked():
    with pytest.raises(WiringError, match="only for resolver components"):
        Make(value=1, output_types={"out": Integer})
    r = PickLatest(output_types={"latest": String})
    with pytest.raises(WiringError, match="expects Integer, found String"):
        Use(x=r.outputs.latest)


@pytest.mark.parametrize("factory,match", [
    (lambda: BadKeyResolver(id="latest", output_types={"latest": Integer}),
     r"returned output 'nonsense'; the node declares \['latest'\]"),
    (lambda: WrongTypeResolver(id="latest", output_types={"latest": String}),
     r"expected LIVE String artifacts"),
])
def test_a_resolver_returning_what_was_not_declared_fails_the_node(tmp_path, factory, match):
    runner = LocalRunner(verbose=False)
    assert runner.run(compile_pipeline(_pipeline(tmp_path, 1)), run_id="r1").ok
    p = Pipeline("resolving", [factory()], root=str(tmp_path / "root"), metadata=str(tmp_path / "md.sqlite"))
    res = runner.run(compile_pipeline(p), run_id="r2")
    assert not res.ok
    assert res.error.node_id == "latest"
    assert __import__("re").search(match, res.error.message)
    store = MetadataStore(str(tmp_path / "md.sqlite"))
    [e] = store.executions([res.error.execution_id])
    assert store.state_name(e) == "FAILED"
    assert "ResolverError" in store.props(e)["error"]
