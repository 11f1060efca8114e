"""The plan counts a Resolver as a resolve, also when an upstream node of it will run (the
header's counts agree with the lines below it)."""
import re

from tests.conftest import REPO, tfpipe


def _header_counts(text: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) cached, (\d+) to run, (\d+) to resolve", text)
    assert m, text
    return tuple(int(x) for x in m.groups())


def test_resolver_after_a_changed_trainer_is_a_resolve(penguin_model):
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.metadata import MetadataStore
    from tfpipe.plan import format_plan, plan_run
    from tfpipe.runner import select_nodes
    kw = {**penguin_model["kw"], "train_steps": penguin_model["kw"]["train_steps"] + 1}
    ir = compile_pipeline(create_pipeline(**kw))
    plans = {p.node_id: p for p in plan_run(ir, MetadataStore(kw["metadata"]), select_nodes(ir, None, None))}
    assert plans["Trainer"].action == "run"
    assert any("train_steps" in r for r in plans["Trainer"].reasons)
    res = plans["latest_blessed_model_resolver"]
    assert res.action == "resolve" and "after upstream Trainer runs" in res.reasons[0]
    ev = plans["Evaluator"]
    assert ev.action == "run" and "resolver latest_blessed_model_resolver resolves anew" in ev.reasons[0]
    text = format_plan(list(plans.values()), "penguin", "here")
    counts = _header_counts(text)
    assert counts == (sum(p.action == "cached" for p in plans.values()),
                      sum(p.action == "run" for p in plans.values()), 1)
    assert sum(line.split()[1] == "RUN" for line in text.splitlines()[1:]) == counts[1]


def test_plan_without_a_store_counts_the_resolver(tmp_path):
    p = tfpipe("plan", f"{REPO}/examples/penguin/pipeline.py", "-P", f"root={tmp_path / 'r'}",
               "-P", f"metadata={tmp_path / 'm.sqlite'}", check=0)
    assert _header_counts(p.stdout + p.stderr) == (0, 9, 1)
    line = next(x for x in p.stdout.splitlines() if x.strip().startswith("latest_blessed_model_resolver"))
    assert line.split()[1] == "resolve"
    assert not (tmp_path / "m.sqlite").exists()


def test_a_node_to_run_after_a_resolver_that_resolves_now(penguin_store, tmp_path):
    """Everything up to the Trainer is cached, so the Resolver picks its artifacts now, while
    planning; the Evaluator after it runs. The plan still gives each node to run its reasons
    and the duration of its last execution (none here: it never ran). On a copy of the
    trained store of its own (the shared one gains Evaluator runs from other tests)."""
    from examples.penguin.pipeline import create_pipeline
    from tests.conftest import copy_penguin_store, penguin_kw
    from tfpipe import compile_pipeline
    from tfpipe.metadata import MetadataStore
    from tfpipe.plan import format_plan, plan_run
    from tfpipe.runner import select_nodes
    copy_penguin_store(penguin_store.trained, tmp_path)
    kw = penguin_kw(tmp_path)
    ir = compile_pipeline(create_pipeline(**kw))
    plans = {p.node_id: p for p in plan_run(ir, MetadataStore(kw["metadata"]), select_nodes(ir, None, None))}
    assert plans["Trainer"].action == "cached"
    res = plans["latest_blessed_model_resolver"]
    assert res.action == "resolve" and res.reasons == ["a resolver picks artifacts anew every run (now: nothing)"]
    ev = plans["Evaluator"]
    assert ev.action == "run" and ev.reasons == ["it never ran before"] and ev.last_duration_s is None
    assert plans["Trainer"].last_duration_s is None  # cached: no forecast
    assert {n for n, p in plans.items() if p.action == "run"} >= {"Evaluator", "Pusher"}
    assert _header_counts(format_plan(list(plans.values()), "penguin", "here")) == (
        5, sum(p.action == "run" for p in plans.values()), 1)
