"""The launcher's lifecycle, caching and record, on trivial components (no TensorFlow)."""
import json
import os
import subprocess

import pytest

from tests.fixtures.trivial import describe, explode, make_numbers, total, with_module
from tfpipe import Pipeline, compile_pipeline
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner
from tfpipe.tracking.records import show_run


def _ir(tmp_path, n=3, offset=0, fail=False, cache=True, extra=()):
    nums = make_numbers(n=n, fail=fail)
    t = total(numbers=nums.outputs.numbers, offset=offset)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result)
    p = Pipeline("trivial", [d, *[e(nums) for e in extra]], root=str(tmp_path / "root"),
                 metadata=str(tmp_path / "m.sqlite"), enable_cache=cache)
    return compile_pipeline(p)


def _run(ir, **kw):
    return LocalRunner(verbose=False).run(ir, **kw)


def _execs(ir, run_id):
    return show_run(MetadataStore(ir["pipeline"]["metadata"]), run_id)["executions"]


def test_run_records_executions_artifacts_events_and_contexts(tmp_path):
    ir = _ir(tmp_path)
    r = _run(ir)
    assert r.ok and [n.state for n in r.nodes] == ["COMPLETE"] * 3
    store = MetadataStore(ir["pipeline"]["metadata"])
    ex = _execs(ir, r.run_id)
    assert [e["node_id"] for e in ex] == ["make_numbers", "total", "describe"]
    assert all(e["state"] == "COMPLETE" for e in ex)
    # outputs are LIVE under <root>/<node>/<key>/<execution id>, with a content fingerprint
    [integer] = store.list_artifacts("Integer")
    assert integer.state == "LIVE" and integer.properties["value"] == 3
    assert integer.uri == os.path.join(str(tmp_path / "root"), "total", "result", str(ex[1]["execution_id"]))
    assert len(integer.fingerprint) == 64
    # INPUT/OUTPUT events keyed by argument name
    ins, outs = store.io_of(ex[2]["execution_id"])
    assert set(ins) == {"numbers", "result"} and set(outs) == {"text"}
    assert outs["text"][0].properties["value"].startswith("sum=3 of ")
    # contexts: pipeline, run, node
    ctx_names = {c.name for c in store.contexts_of_execution(ex[0]["execution_id"])}
    assert ctx_names == {"trivial", f"trivial.{r.run_id}", "trivial.make_numbers"}
    # reproducibility record
    e0 = store.executions([ex[0]["execution_id"]])[0]
    props = store.props(e0)
    assert json.loads(props["parameters"]) == {"n": 3, "fail": False}
    assert props["python"].count(".") == 2 and "ml-metadata" in json.loads(props["packages"])
    assert len(props["code_version"]) == 16 and len(props["cache_key"]) == 64


def test_second_run_is_cached_and_parameter_change_misses(tmp_path):
    ir = _ir(tmp_path)
    first = _run(ir)
    second = _run(ir)
    assert [n.state for n in second.nodes] == ["CACHED"] * 3
    assert [n.cached_from for n in second.nodes] == [n.execution_id for n in first.nodes]
    # same artifacts re-used, not copied
    assert second.nodes[1].outputs["result"][0].id == first.nodes[1].outputs["result"][0].id
    third = _run(_ir(tmp_path, offset=5))
    assert [n.state for n in third.nodes] == ["CACHED", "COMPLETE", "COMPLETE"]


def test_no_cache_and_per_component_opt_out(tmp_path):
    ir = _ir(tmp_path)
    _run(ir)
    assert [n.state for n in _run(ir, enable_cache=False).nodes] == ["COMPLETE"] * 3
    ir["nodes"][1]["enable_cache"] = False
    states = [n.state for n in _run(ir).nodes]
    # total re-executes; its output is identical, so describe's inputs have the same fingerprints
    assert states == ["CACHED", "COMPLETE", "CACHED"]


def test_cache_hit_requires_outputs_to_exist(tmp_path):
    import shutil
    ir = _ir(tmp_path)
    first = _run(ir)
    shutil.rmtree(first.nodes[0].outputs["numbers"][0].uri)
    again = _run(ir)
    assert again.nodes[0].state == "COMPLETE"


def test_failure_records_failed_execution_and_leaves_nothing_live(tmp_path):
    ir = _ir(tmp_path, extra=[lambda nums: explode(numbers=nums.outputs.numbers, message="kaput at row 7")])
    r = _run(ir)
    assert not r.ok and r.error.node_id == "explode"
    assert "RuntimeError: kaput at row 7" in str(r.error)
    store = MetadataStore(ir["pipeline"]["metadata"])
    ex = {e["node_id"]: e for e in _execs(ir, r.run_id)}
    assert ex["explode"]["state"] == "FAILED"
    assert ex["explode"]["error"] == "RuntimeError: kaput at row 7"
    [out] = ex["explode"]["outputs"]["out"]
    assert out["state"] == "ABANDONED" and not os.path.exists(out["uri"])
    node_dir = os.path.join(ir["pipeline"]["root"], "explode", "out")
    assert os.listdir(node_dir) == []  # no staging left behind
    assert [a.state for a in store.list_artifacts("String")] == ["ABANDONED"]
    runs = {c.name: store.props(c) for c in store.contexts_of_type("pipeline_run")}
    assert runs[f"trivial.{r.run_id}"]["status"] == "FAILED"


def test_failure_stops_downstream_and_rerun_resumes_from_cache(tmp_path):
    ir = _ir(tmp_path, fail=True)
    r = _run(ir)
    assert not r.ok and r.nodes == [] and r.error.node_id == "make_numbers"
    assert [e["node_id"] for e in _execs(ir, r.run_id)] == ["make_numbers"]
    ok = _ir(tmp_path, fail=False)
    r2 = _run(ok)
    assert r2.ok
    r3 = _run(ok)
    assert [n.state for n in r3.nodes] == ["CACHED"] * 3


def test_partial_runs_from_and_to(tmp_path):
    ir = _ir(tmp_path)
    r = _run(ir, to_node="total")
    assert [n.node_id for n in r.nodes] == ["make_numbers", "total"]
    r2 = _run(ir, from_node="describe", enable_cache=False)
    # describe's inputs come from the newest successful executions of earlier runs
    assert [n.node_id for n in r2.nodes] == ["describe"] and r2.ok
    from tfpipe.runner import SelectionError
    with pytest.raises(SelectionError, match=r"--from 'nope': no such node; nodes are \['make_numbers'"):
        _run(ir, from_node="nope")


def test_from_node_without_upstream_results_fails_clearly(tmp_path):
    ir = _ir(tmp_path)
    r = _run(ir, from_node="describe")
    assert not r.ok
    assert "input 'numbers' of node describe: node make_numbers has no successful execution" in str(r.error)


def test_module_file_and_its_local_imports_are_in_the_cache_key(tmp_path):
    mod_dir = tmp_path / "user"
    mod_dir.mkdir()
    (mod_dir / "helper.py").write_text("K = 1\n")
    (mod_dir / "my_module.py").write_text("from helper import K\n\ndef value():\n    return K\n")
    mod = str(mod_dir / "my_module.py")

    def ir_():
        return _ir(tmp_path, extra=[lambda nums: with_module(numbers=nums.outputs.numbers, module_file=mod)])
    def node(r):
        return next(n for n in r.nodes if n.node_id == "with_module")
    r1 = _run(ir_())
    assert node(r1).outputs["out"][0].properties["value"] == "1"
    assert node(_run(ir_())).state == "CACHED"
    (mod_dir / "helper.py").write_text("K = 2\n")  # only the imported helper changes
    r3 = _run(ir_())
    assert node(r3).state == "COMPLETE" and node(r3).outputs["out"][0].properties["value"] == "2"


def test_git_commit_and_dirty_flag_are_recorded(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    g = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run(g + ["add", "f.txt"], check=True)
    subprocess.run(g + ["commit", "-qm", "x"], check=True)
    sha = subprocess.run(g + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    ir = _ir(tmp_path)
    ir["pipeline"]["source"] = str(repo / "pipeline.py")
    r = _run(ir)
    e = _execs(ir, r.run_id)[0]
    assert e["git_commit"] == sha and e["git_dirty"] is False
    (repo / "f.txt").write_text("b")
    from tfpipe.provenance import git_info
    git_info.cache_clear()
    r2 = _run(ir, enable_cache=False)
    assert _execs(ir, r2.run_id)[0]["git_dirty"] is True
