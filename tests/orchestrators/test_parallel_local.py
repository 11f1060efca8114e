"""Parallel local runs: ready nodes run at once in processes forked from the warm task host,
with the results a sequential run gives, a progress line per node, and a failure that stops
new nodes while the running ones finish and record their outcome."""
import os

import pytest

from tests.conftest import REPO, tfpipe

PIPELINE = '''
from tfpipe import Pipeline
from tests.fixtures.trivial import describe, explode, make_numbers, slow, total


def create_pipeline():
    nums = make_numbers(n=5)
    # seconds differ by a millisecond: identical parameters would give the two nodes one cache
    # key, and the one that looked it up after the other finished would be a cache hit
    nodes = [slow(id="slow_a", numbers=nums.outputs.numbers, seconds=SLOW),
             slow(id="slow_b", numbers=nums.outputs.numbers, seconds=SLOW + 0.001)]
    if BOOM:  # ready in the order explode, slow_b, slow_a: two start, the third waits
        nodes.append(explode(numbers=nums.outputs.numbers, message="boom in parallel"))
    else:
        t = total(numbers=nums.outputs.numbers, offset=1)
        nodes.append(describe(numbers=nums.outputs.numbers, result=t.outputs.result))
    return Pipeline(NAME, nodes, root=ROOT, metadata=MD)
'''


def _file(tmp_path, name, boom=False, slow=3):
    f = tmp_path / f"{name}.py"
    f.write_text(PIPELINE.replace("SLOW", str(slow)).replace("BOOM", str(boom)).replace("NAME", repr(name))
                 .replace("ROOT", repr(str(tmp_path / "root"))).replace("MD", repr(str(tmp_path / "m.sqlite"))))
    return str(f)


def _execs(tmp_path, run_id):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking import records
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    info = records.show_run(store, run_id)
    out = {}
    for e in info["executions"]:
        props = store.props(store.executions([e["execution_id"]])[0])
        out[e["node_id"]] = {**e, "started_at": props.get("started_at")}
    return info["status"], out


def test_independent_nodes_run_at_once_with_the_results_of_a_sequential_run(tmp_path):
    f = _file(tmp_path, "par")
    p = tfpipe("run", f, "--run-id", "par-2", "--parallel", "2", check=0)
    assert "up to 2 at once" in p.stderr
    for node in ("slow_a", "slow_b", "total", "describe"):
        assert f"] {node} (" in p.stderr and f"] {node} done in " in p.stderr
    status, ex = _execs(tmp_path, "par-2")
    assert status == "COMPLETE" and all(e["state"] == "COMPLETE" for e in ex.values())
    a, b = ex["slow_a"], ex["slow_b"]  # the record shows the two slow nodes overlapping
    assert a["started_at"] < b["started_at"] + b["duration_s"] and b["started_at"] < a["started_at"] + a["duration_s"]
    # the same pipeline in one process, cache off: the same outputs, byte for byte
    tfpipe("run", f, "--run-id", "seq-1", "--parallel", "1", "--no-cache", check=0)
    _, seq = _execs(tmp_path, "seq-1")
    from tfpipe.metadata import MetadataStore
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    fp = lambda e: {k: [store.get_artifacts([x["id"]])[0].fingerprint for x in v] for k, v in e["outputs"].items()}  # noqa: E731
    assert {n: fp(e) for n, e in ex.items() if n != "describe"} == {n: fp(e) for n, e in seq.items() if n != "describe"}
    text = lambda e: store.get_artifacts([e["outputs"]["text"][0]["id"]])[0].read()  # noqa: E731
    assert text(ex["describe"]).startswith("sum=11 of ") and text(seq["describe"]).startswith("sum=11 of ")


def test_a_failure_stops_new_nodes_and_lets_running_ones_finish(tmp_path):
    f = _file(tmp_path, "boom", boom=True, slow=4)
    p = tfpipe("run", f, "--run-id", "boom-1", "--parallel", "2")
    assert p.returncode == 1
    assert "explode FAILED: RuntimeError: boom in parallel" in p.stderr
    status, ex = _execs(tmp_path, "boom-1")
    assert status == "FAILED"
    assert ex["explode"]["state"] == "FAILED"
    # slow_b started beside explode, went on after the failure and finished, recorded;
    # slow_a, waiting for a free slot, never started
    assert ex["slow_b"]["state"] == "COMPLETE"
    assert ex["slow_b"]["started_at"] + ex["slow_b"]["duration_s"] > ex["explode"]["started_at"] + ex["explode"][
        "duration_s"]
    assert set(ex) == {"make_numbers", "explode", "slow_b"}
    assert p.stderr.strip().splitlines()[-1].startswith("error: node explode failed: RuntimeError: boom in parallel")


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_parallel_must_be_a_positive_number(tmp_path, bad):
    p = tfpipe("run", _file(tmp_path, "bad"), "--parallel", bad)
    assert p.returncode == 2 and "--parallel: expected a whole number of 1 or more" in p.stderr


def test_the_local_runner_api_defaults_to_one_process(tmp_path):
    from tfpipe.orchestrators.local import LocalRunner
    from tfpipe.orchestrators.local.runner import default_parallel
    assert LocalRunner().parallel == 1
    assert 1 <= default_parallel() <= min(4, os.cpu_count() or 1)
    assert os.path.isdir(REPO)


def test_cache_hits_are_recorded_by_the_run_itself_and_the_rest_by_forked_tasks(tmp_path):
    """A re-run after one parameter changed: the nodes the cache plan takes from the cache
    are recorded by the `tfpipe run` process (no task forked for a lookup), the nodes that
    must run by processes of their own; the results are those of a sequential run."""
    from tfpipe.metadata import MetadataStore
    f = _file(tmp_path, "hits", slow=0)
    tfpipe("run", f, "--run-id", "hits-1", "--parallel", "2")
    with open(f) as fh:
        src = fh.read()
    with open(f, "w") as fh:
        fh.write(src.replace("offset=1", "offset=2"))  # total and describe must run again
    tfpipe("run", f, "--run-id", "hits-2", "--parallel", "2")
    status, ex = _execs(tmp_path, "hits-2")
    assert status == "COMPLETE"
    assert {n: e["state"] for n, e in ex.items()} == {"make_numbers": "CACHED", "slow_a": "CACHED",
                                                     "slow_b": "CACHED", "total": "COMPLETE",
                                                     "describe": "COMPLETE"}
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    pid = {n: store.props(store.executions([e["execution_id"]])[0])["owner"].split(":")[2] for n, e in ex.items()}
    assert pid["make_numbers"] == pid["slow_a"] == pid["slow_b"]  # the run's own process
    assert len({pid["make_numbers"], pid["total"], pid["describe"]}) == 3  # a task each
