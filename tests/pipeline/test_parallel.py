"""fork_map: independent pieces of an executor's work in forked workers."""
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.parallel import WorkerError, can_fork, fork_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked workers need Linux")


def _writer(tmp_path):
    def fn(item):
        (tmp_path / f"{item}.txt").write_text(f"{item} by {os.getpid()}")
    return fn


def test_every_item_runs_once_in_parallel_processes(tmp_path):
    fork_map(_writer(tmp_path), ["a", "b", "c", "d"], workers=3)
    texts = {p.stem: p.read_text() for p in tmp_path.glob("*.txt")}
    assert set(texts) == {"a", "b", "c", "d"}
    pids = {t.split(" by ")[1] for t in texts.values()}
    assert str(os.getpid()) in pids and len(pids) >= 2, texts


def test_one_worker_runs_everything_in_this_process(tmp_path):
    fork_map(_writer(tmp_path), ["a", "b"], workers=1)
    assert {p.read_text().split(" by ")[1] for p in tmp_path.glob("*.txt")} == {str(os.getpid())}


def test_a_failing_child_names_its_item_and_error(tmp_path):
    def fn(item):
        if item == "eval":
            raise ValueError("column bill_length_mm: expected double, found string")
        (tmp_path / item).write_text("ok")
    with pytest.raises(WorkerError) as e:
        fork_map(fn, ["train", "eval"], workers=2)
    assert e.value.item == "eval"
    assert str(e.value) == "ValueError: column bill_length_mm: expected double, found string"
    assert "in fn" in e.value.__notes__[0] and "raise ValueError" in e.value.__notes__[0]  # where it failed
    assert (tmp_path / "train").read_text() == "ok"  # the other piece still ran


def test_a_child_killed_by_a_signal_is_reported(tmp_path):
    def fn(item):
        if item == "b":
            os.kill(os.getpid(), signal.SIGKILL)
    with pytest.raises(WorkerError, match="killed by signal 9"):
        fork_map(fn, ["a", "b"], workers=2)


def test_a_failure_in_the_parent_share_ends_the_children(tmp_path):
    marker = tmp_path / "child.pid"

    def fn(item):
        if item == "slow":
            (tmp_path / "tmp.pid").write_text(str(os.getpid()))
            os.rename(tmp_path / "tmp.pid", marker)  # appears whole
            time.sleep(60)
        else:
            while not marker.exists():
                time.sleep(0.05)
            raise RuntimeError("parent piece failed")
    with pytest.raises(RuntimeError, match="parent piece failed"):
        fork_map(fn, ["fast", "slow"], workers=2)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left running


def test_other_children_of_the_process_are_not_reaped(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    fork_map(_writer(tmp_path), ["a", "b"], workers=2)
    assert other.wait(timeout=30) == 0  # still ours to wait for
