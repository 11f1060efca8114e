"""Crashes leave the record truthful. A run killed (SIGKILL) during a Beam node and during
the Trainer is recognised as dead by the next command that opens the store (`runs list`,
`runs show`, `run`): the run and its running execution FAILED (killed), outputs ABANDONED,
staging removed, one line saying so. SIGTERM and SIGINT end the node and the run FAILED
("interrupted"), with one line on stderr, exit 143 / 130 and no traceback. The next run
completes from the cache. A run id in use is refused, even by runs started at once; an
unwritable artifact root is a recorded failure, not a RUNNING run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, tfpipe
from tfpipe.metadata import MetadataStore

PIPELINE = '''
import os
from tfpipe import Pipeline
from tfpipe.components import ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform

PENGUIN = {penguin!r}


def create_pipeline():
    gen = ExampleGen(input_base=os.path.join(PENGUIN, "data"), label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    tf = Transform(examples=gen.outputs.examples, schema=schema.outputs.schema,
                   module_file=os.path.join(PENGUIN, "penguin_transform.py"))
    trainer = Trainer(examples=tf.outputs.transformed_examples, transform_graph=tf.outputs.transform_graph,
                      schema=schema.outputs.schema, module_file=os.path.join(PENGUIN, "penguin_utils.py"),
                      train_steps=3000, eval_steps=5)
    return Pipeline("crash", [trainer], root={root!r}, metadata={md!r})
'''


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    path = d / "pipeline.py"
    path.write_text(PIPELINE.format(penguin=os.path.join(REPO, "examples", "penguin"), root=str(d / "root"),
                                    md=str(d / "m.sqlite")))
    return d, str(path)


def _start(pipeline: str, run_id: str, parallel: int = 1):
    """``tfpipe run``; parallel=1 runs the nodes in that process, so a SIGKILL kills them too."""
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", pipeline, "--run-id", run_id,
                             "--parallel", str(parallel)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _signal_during(p: subprocess.Popen, node: str, sig: int, after_s: float, recorded_in=None) -> str:
    """Wait until ``node`` is running (and, given ``recorded_in`` = (store, run id), until its
    execution is recorded: a forked node records itself a moment after the line), let it
    work ``after_s`` seconds, send ``sig``; the process's whole stderr."""
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if f"] {node} ({node}) running" in line:
            while recorded_in is not None and node not in _execs(*recorded_in) and p.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(after_s)
            assert p.poll() is None, "".join(lines)[-3000:]
            os.kill(p.pid, sig)
            break
    else:
        p.kill()
        raise AssertionError("node never started:\n" + "".join(lines)[-3000:])
    rest = p.stderr.read()
    p.wait(timeout=120)
    return "".join(lines) + rest


def _execs(store, run_id):
    from tfpipe.tracking import records
    return {e["node_id"]: e for e in records.show_run(store, run_id)["executions"]}


def _leftovers(root) -> list[str]:
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(root)
                  for n in dirs + files if n.startswith((".staging-", ".tmp-")))


@pytest.fixture(scope="module")
def killed_in_beam(crash):
    d, path = crash
    p = _start(path, "k-beam")
    err = _signal_during(p, "StatisticsGen", signal.SIGKILL, 1.0)
    assert p.returncode == -signal.SIGKILL, err[-2000:]
    return d


def test_sigkill_in_a_beam_node_is_recovered_by_runs_list(killed_in_beam):
    d = killed_in_beam
    store = MetadataStore(str(d / "m.sqlite"))
    assert _execs(store, "k-beam")["StatisticsGen"]["state"] == "RUNNING"  # what the kill left
    assert _leftovers(d / "root")  # and its staging
    p = tfpipe("runs", "list", "--json", "--metadata", str(d / "m.sqlite"), check=0)
    assert "recovered after a killed process: run k-beam marked FAILED (killed)" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    [row] = [r for r in json.loads(p.stdout) if r["run_id"] == "k-beam"]
    assert row["status"] == "FAILED"
    ex = _execs(store, "k-beam")
    assert ex["ExampleGen"]["state"] == "COMPLETE" and ex["StatisticsGen"]["state"] == "FAILED"
    assert ex["StatisticsGen"]["error"].startswith("killed: its process (pid ")
    assert [a["state"] for a in ex["StatisticsGen"]["outputs"]["statistics"]] == ["ABANDONED"]
    assert _leftovers(d / "root") == []
    # a second listing has nothing more to recover
    assert "recovered" not in tfpipe("runs", "list", "--metadata", str(d / "m.sqlite"), check=0).stderr


def test_sigterm_during_the_trainer_ends_it_failed_in_one_line(killed_in_beam, crash):
    d, path = crash
    p = _start(path, "k-term")
    err = _signal_during(p, "Trainer", signal.SIGTERM, 3.0)
    assert p.returncode == 143, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last == "tfpipe: interrupted by SIGTERM; run k-term marked FAILED, its staging removed"
    assert "Traceback" not in err
    store = MetadataStore(str(d / "m.sqlite"))
    ex = _execs(store, "k-term")
    assert ex["ExampleGen"]["state"] == "CACHED"  # the killed run's LIVE output is reused, not its FAILED one
    assert ex["Trainer"]["state"] == "FAILED" and ex["Trainer"]["error"] == "interrupted by SIGTERM"
    assert all(a["state"] == "ABANDONED" for outs in ex["Trainer"]["outputs"].values() for a in outs)
    from tfpipe.tracking import records
    info = records.show_run(store, "k-term")
    assert info["status"] == "FAILED" and info["error"] == "interrupted by SIGTERM"
    assert _leftovers(d / "root") == []


def test_sigint_ends_the_run_failed_with_exit_130(killed_in_beam, crash):
    d, path = crash
    p = _start(path, "k-int")
    err = _signal_during(p, "Trainer", signal.SIGINT, 2.0)
    assert p.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "tfpipe: interrupted by SIGINT; run k-int marked FAILED, its staging removed"
    assert "Traceback" not in err
    from tfpipe.tracking import records
    assert records.show_run(MetadataStore(str(d / "m.sqlite")), "k-int")["status"] == "FAILED"


def test_parallel_runs_killed_or_terminated_end_their_nodes_failed(killed_in_beam, crash):
    """With nodes in processes forked from the warm task host: a SIGKILL of `tfpipe run`
    makes the host end the node (it records FAILED, interrupted) and the next command
    recovers the run; a SIGTERM ends the node and the run FAILED in one line, exit 143."""
    d, path = crash
    store = MetadataStore(str(d / "m.sqlite"))
    p = _start(path, "kp-kill", parallel=2)
    _signal_during(p, "Trainer", signal.SIGKILL, 3.0, recorded_in=(store, "kp-kill"))
    assert p.returncode == -signal.SIGKILL
    from tfpipe.tracking import records
    deadline = time.monotonic() + 120  # the host ends the node's process once its caller is gone
    while time.monotonic() < deadline and _execs(store, "kp-kill")["Trainer"]["state"] == "RUNNING":
        time.sleep(0.5)
    trainer = _execs(store, "kp-kill")["Trainer"]
    assert trainer["state"] == "FAILED" and trainer["error"] == "interrupted by SIGTERM"
    r = tfpipe("runs", "show", "kp-kill", "--json", "--metadata", str(d / "m.sqlite"), check=0)
    assert "run kp-kill marked FAILED (killed)" in r.stderr
    assert _leftovers(d / "root") == []
    p = _start(path, "kp-term", parallel=2)
    err = _signal_during(p, "Trainer", signal.SIGTERM, 3.0, recorded_in=(store, "kp-term"))
    assert p.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == ("tfpipe: interrupted by SIGTERM; run kp-term marked FAILED, "
                                            "its staging removed")
    assert "Traceback" not in err
    info = records.show_run(store, "kp-term")
    assert info["status"] == "FAILED" and {e["node_id"]: e["state"] for e in info["executions"]}["Trainer"] == "FAILED"
    assert _leftovers(d / "root") == []


def test_sigkill_in_the_trainer_then_the_next_run_completes_from_cache(killed_in_beam, crash):
    d, path = crash
    p = _start(path, "k-train")
    _signal_during(p, "Trainer", signal.SIGKILL, 3.0)
    assert p.returncode == -signal.SIGKILL
    p = tfpipe("runs", "show", "k-train", "--json", "--metadata", str(d / "m.sqlite"), check=0)
    assert "run k-train marked FAILED (killed)" in p.stderr
    assert json.loads(p.stdout)["status"] == "FAILED"
    p = tfpipe("run", path, "--run-id", "k-done", "--parallel", "1", check=0)
    store = MetadataStore(str(d / "m.sqlite"))
    ex = _execs(store, "k-done")
    assert {n: e["state"] for n, e in ex.items()} == {"ExampleGen": "CACHED", "StatisticsGen": "CACHED",
                                                     "SchemaGen": "CACHED", "Transform": "CACHED",
                                                     "Trainer": "COMPLETE"}
    assert _leftovers(d / "root") == []


def test_a_run_id_in_use_is_refused(killed_in_beam, crash):
    d, path = crash
    p = tfpipe("run", path, "--run-id", "k-beam")
    assert p.returncode == 2
    assert "run id 'k-beam' is already used by a run of pipeline crash (status FAILED" in p.stderr


TRIVIAL = '''
from tfpipe import Pipeline
from tests.fixtures.trivial import make_numbers, slow

def create_pipeline():
    nums = make_numbers(n=3)
    return Pipeline("same", [slow(numbers=nums.outputs.numbers, seconds=1)], root={root!r}, metadata={md!r})
'''


def test_three_runs_started_at_once_with_one_run_id_give_one_run(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(TRIVIAL.format(root=str(tmp_path / "root"), md=str(tmp_path / "m.sqlite")))
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", str(path), "--run-id", "same-1", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    outs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in outs) == [0, 2, 2], outs
    assert all("already used" in err for rc, err in outs if rc == 2)
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    execs = [e for e in store.store.get_executions() if store.props(e).get("run_id") == "same-1"]
    assert sorted(store.props(e)["node_id"] for e in execs) == ["make_numbers", "slow"]


def test_an_unwritable_artifact_root_is_a_recorded_failure(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / "p.py"
    path.write_text(TRIVIAL.format(root=str(blocker / "root"), md=str(tmp_path / "m.sqlite")))
    p = tfpipe("run", str(path), "--run-id", "ro-1")
    assert p.returncode == 1
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    from tfpipe.tracking import records
    info = records.show_run(store, "ro-1")
    assert info["status"] == "FAILED"
    [e] = info["executions"]
    assert e["state"] == "FAILED" and str(blocker) in e["error"]


SWALLOWED = '''
import os, signal, time
from tfpipe import Output, Pipeline, String, component, current


@component(name="Swallows")
def swallows(text: Output[String], report: bool = False, marker: str = "") -> None:
    try:  # TensorFlow's op dispatcher calls issubclass from C++ and clears what it raised
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except BaseException:
        pass
    text.write("went on after the signal")
    if report:
        current().progress(1, 2, "steps")
        open(marker, "w").close()


def create_pipeline():
    return Pipeline("swallowed", [swallows(report={report!r}, marker={marker!r})], root={root!r},
                    metadata={md!r})
'''


@pytest.mark.parametrize("report", [True, False], ids=["at-its-next-progress-report", "before-it-is-recorded"])
def test_a_sigterm_a_library_swallowed_still_ends_the_node_failed(tmp_path, report):
    """A signal whose exception a library cleared (TensorFlow's C++ does, for an exception
    raised in an ``issubclass`` it calls) is raised again at the node's next progress report,
    or else before the node could be recorded COMPLETE: never a COMPLETE run after a SIGTERM."""
    path, marker = tmp_path / "p.py", tmp_path / "went-past-progress"
    path.write_text(SWALLOWED.format(report=report, marker=str(marker), root=str(tmp_path / "root"),
                                     md=str(tmp_path / "m.sqlite")))
    p = tfpipe("run", str(path), "--run-id", "sw-1", "--parallel", "1", timeout=120)
    assert p.returncode == 143, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1] == \
        "tfpipe: interrupted by SIGTERM; run sw-1 marked FAILED, its staging removed"
    assert "Traceback" not in p.stderr
    assert not marker.exists()
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    ex = _execs(store, "sw-1")["Swallows"]
    assert ex["state"] == "FAILED" and ex["error"] == "interrupted by SIGTERM"
    assert [a["state"] for a in ex["outputs"]["text"]] == ["ABANDONED"]
    assert _leftovers(tmp_path / "root") == []
