"""Resolver strategies over ExampleGen spans (no TensorFlow): span_range and
latest_artifact across earlier runs, and the definition errors."""

import pytest

from tfpipe import (
    Examples,
    Input,
    JsonValue,
    Output,
    Pipeline,
    compile_pipeline,
    component,
)
from tfpipe.components import ExampleGen, Resolver
from tfpipe.components.resolver import ResolverDefinitionError
from tfpipe.orchestrators.local import LocalRunner


@component(name="RecordSpans")
def RecordSpans(out: Output[JsonValue], examples: Input[Examples] | None = None) -> None:
    arts = [] if examples is None else (examples if isinstance(examples, list) else [examples])
    out.write([[a.span, a.version, a.row_counts] for a in arts])


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spans")
    data = tmp / "data"
    for span in (1, 2, 3):
        d = data / f"span-{span}"
        d.mkdir(parents=True)
        rows = "\n".join(f"{i},{span * 10 + i}" for i in range(span * 3))
        (d / "part.csv").write_text("x,y\n" + rows + "\n")
    kw = dict(root=str(tmp / "root"), metadata=str(tmp / "md.sqlite"))
    runner = LocalRunner(verbose=False)
    for span in (1, 2, 3):
        gen = ExampleGen(input_base=str(data), input_pattern="span-{SPAN}/*.csv", span=span,
                         split_ratios={"train": 1})
        assert runner.run(compile_pipeline(Pipeline("spans", [gen], **kw)), run_id=f"ingest-{span}").ok
    return kw, runner


def _resolve(spans, resolver, run_id):
    kw, runner = spans
    rec = RecordSpans(examples=getattr(resolver.outputs, next(iter(resolver.outputs))), id="record")
    res = runner.run(compile_pipeline(Pipeline("spans", [resolver, rec], **kw)), run_id=run_id)
    assert res.ok, res.error
    return [r for r in res.nodes if r.node_id == "record"][0].outputs["out"][0].read()


def test_span_range_picks_the_spans_in_range_oldest_first(spans):
    got = _resolve(spans, Resolver(strategy="span_range", span_range=[2, 3], producer="ExampleGen"), "sr")
    assert [(s, n["train"]) for s, _, n in got] == [(2, 6), (3, 9)]


def test_span_range_with_nothing_in_range_gives_none(spans):
    assert _resolve(spans, Resolver(strategy="span_range", span_range=[7, 9]), "sr-empty") == []


def test_latest_artifact_gives_the_n_newest(spans):
    got = _resolve(spans, Resolver(strategy="latest_artifact", artifact_type=Examples, n=2,
                                   producer="ExampleGen"), "la")
    assert [s for s, _, _ in got] == [3, 2]


@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="newest"), "unknown strategy 'newest'; expected one of"),
    (dict(strategy="latest_artifact"), "needs artifact_type="),
    (dict(strategy="span_range", span_range=[3, 1]), r"needs span_range=\[lowest, highest\]"),
    (dict(strategy="latest_artifact", artifact_type=Examples, n=0), "n must be at least 1"),
])
def test_resolver_definition_errors(kwargs, match):
    with pytest.raises(ResolverDefinitionError, match=match):
        Resolver(**kwargs)
