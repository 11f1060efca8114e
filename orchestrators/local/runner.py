"""The local runner: the selected nodes of the IR, each through the launcher.

``parallel=1``: a short loop in topological order, in this process. ``parallel=N``: every
node whose upstream nodes have succeeded starts at once, up to N at a time, each in a
process forked from the warm task host (``orchestrators/taskhost.py``: one process per
machine that imported TensorFlow, TFDV, TFT, TFMA and Beam once; it outlives the command,
so the next run does not pay those imports again). A node the cache plan takes from the
cache is recorded by this process itself: the lookup costs less than a fork. A node that fails stops new nodes from
starting; the running ones finish and record their outcome. An interrupt ends the running
nodes FAILED ("interrupted") before the run is recorded FAILED.

With ``parallel=1`` every node runs in this one process, which holds TensorFlow, Beam,
TFDV, TFT and TFMA once they are imported (about 0.7 GB here) and whatever each node left:
reference cycles of graphs and traced functions that Python's oldest generation collects
rarely, and freed heap that glibc keeps. After each node that executed for a second or
more, ``_Reclaim`` collects, freezes what survives (so the next collection looks only at
what the following node made, a few milliseconds instead of a third of a second) and hands
free heap back to the system (``malloc_trim``), which lowers the run's peak RSS
(docs/transform_trainer.md, "Peak RSS"). The freeze is undone when the run ends.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tfpipe.gc_freeze import FreezeHold
from tfpipe.launcher import NodeFailed, NodeResult, run_node
from tfpipe.metadata import MetadataError
from tfpipe.runner import Runner, RunRecord, RunResult
from tfpipe.state import SUCCEEDED, State

from .. import taskhost

__all__ = ["LocalRunner", "default_parallel", "expected_seconds", "worth_forking"]


def default_parallel() -> int:
    """Nodes at once by default: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


#: a node that ran for less leaves little behind, and the first collection (over all that is
#: imported, a third of a second) would cost more than such a node did (a resolver)
_RECLAIM_AFTER_S = 1.0


class _Reclaim:
    """Memory a node left behind, given back between nodes of one process (see the module
    docstring). Freezes through ``tfpipe.gc_freeze`` (the freeze is one set for the whole
    interpreter), only when nothing else in the process has frozen, and gives its freeze back
    on exit so a long-lived caller (a notebook, a test session) collects as before."""

    def __enter__(self) -> "_Reclaim":
        self.hold = FreezeHold(exclusive=True).take()
        self.trim = _malloc_trim()
        return self

    def after_node(self) -> None:
        self.hold.collect_and_freeze()
        if self.trim is not None:
            self.trim(0)

    def __exit__(self, *exc) -> None:
        self.hold.release()


#: what running a node in a forked task costs beyond the node itself (the fork, the task's
#: connection and set-up, reading its record back): about a quarter to half a second here
_FORK_COST_S = 0.4
#: a node that never completed is expected to take this long
_UNKNOWN_NODE_S = 1.0
#: of the time two nodes could overlap, the part a run saves: nodes at once share the
#: machine's cores (and TensorFlow, Beam and Arrow each use several)
_OVERLAP_GAIN = 0.5


def expected_seconds(nodes: list[dict], plans: list) -> dict[str, float]:
    """Each node's expected seconds in this run: what its last completed execution took (the
    plan found it; else ``_UNKNOWN_NODE_S``) if the plan runs it; none if the plan takes it
    from the cache or it is a resolver (both are recorded by the parent)."""
    by_id = {p.node_id: p for p in plans}
    out = {}
    for n in nodes:
        p = by_id.get(n["id"])
        if p is not None and p.action == "run":
            out[n["id"]] = _UNKNOWN_NODE_S if p.last_duration_s is None else p.last_duration_s
        else:
            out[n["id"]] = 0.0
    return out


def worth_forking(nodes: list[dict], seconds: dict[str, float], slots: int) -> tuple[bool, str]:
    """Whether running ``nodes`` (topological order) in forked tasks, ``slots`` at once, is
    expected to finish sooner than one after the other in this process; if not, why not.

    The saving is the sum of the nodes' ``seconds`` less the makespan of a list schedule over
    ``slots``, times ``_OVERLAP_GAIN``; the cost is ``_FORK_COST_S`` per node with seconds."""
    ids = {n["id"] for n in nodes}
    finish: dict[str, float] = {}
    free = [0.0] * slots  # when each slot is next free
    for n in nodes:
        ready = max((finish[u] for u in n["upstream"] if u in ids), default=0.0)
        if seconds[n["id"]] <= 0.0:
            finish[n["id"]] = ready
            continue
        i = min(range(slots), key=lambda k: max(free[k], ready))
        finish[n["id"]] = free[i] = max(free[i], ready) + seconds[n["id"]]
    saving = (sum(seconds.values()) - max(finish.values(), default=0.0)) * _OVERLAP_GAIN
    forks = sum(1 for v in seconds.values() if v > 0)
    if saving > forks * _FORK_COST_S:
        return True, ""
    return False, (f"nodes at once would save about {saving:.1f} s, forking {forks} task(s) costs about "
                   f"{forks * _FORK_COST_S:.1f} s")


def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library, or none found)."""
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class LocalRunner(Runner):
    """Runs every selected node through the launcher; stops at the first failure
    (downstream nodes are not run)."""

    orchestrator = "local"

    def __init__(self, out=None, verbose: bool = True, parallel: int = 1, auto: bool = False):
        """``parallel``: nodes at once. ``auto`` (the CLI's default mode): ``parallel`` is a
        cap, and the run stays in this process when the graph offers no parallelism worth
        a fork (``worth_forking``)."""
        super().__init__(out, verbose)
        if parallel < 1:
            raise ValueError(f"parallel={parallel}: expected 1 or more nodes at once")
        self.parallel = parallel
        self.auto = auto

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        why = ""
        if self.parallel > 1 and len(nodes) > 1:
            plans = self._plan(ir, record, nodes, enable_cache)
            fork, why = True, ""
            if self.auto and plans is not None:
                fork, why = worth_forking(nodes, expected_seconds(nodes, plans), self.parallel)
            if fork:
                return self._run_parallel(ir, run_id, nodes, record, enable_cache, plans)
        self.say(f"run {run_id} of pipeline {ir['pipeline']['name']}: {len(nodes)} node(s)"
                 + (f", in this process ({why})" if why else ""))
        result = RunResult(run_id, State.COMPLETE)
        with _Reclaim() as reclaim:
            self._run_sequential(ir, run_id, nodes, record, enable_cache, result, reclaim)
        return result

    def _run_sequential(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
                        enable_cache: bool | None, result: RunResult, reclaim: "_Reclaim") -> None:
        for i, n in enumerate(nodes, 1):
            self.say(f"[{i}/{len(nodes)}] {n['id']} ({n['component']}) running")
            try:
                r = run_node(ir, n["id"], run_id, store=record.store, enable_cache=enable_cache,
                             verbose=self.verbose)
            except NodeFailed as e:
                self.say(f"[{i}/{len(nodes)}] {n['id']} FAILED: {e.message}")
                result.status, result.error = State.FAILED, e
                break
            result.nodes.append(r)
            tag = "cached" if r.state == State.CACHED else "done"
            self.say(f"[{i}/{len(nodes)}] {n['id']} {tag} in {r.duration_s:.2f}s")
            if r.state != State.CACHED and r.duration_s >= _RECLAIM_AFTER_S:
                reclaim.after_node()

    # -- parallel ---------------------------------------------------------------------------
    def _run_parallel(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
                      enable_cache: bool | None, plans: list | None) -> RunResult:
        self.say(f"run {run_id} of pipeline {ir['pipeline']['name']}: {len(nodes)} node(s), "
                 f"up to {self.parallel} at once")
        fd, ir_path = tempfile.mkstemp(prefix="tfpipe-ir-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(ir, f)
        base = ["--ir", ir_path, "--run", run_id, "--orchestrator", self.orchestrator,
                *(["--no-cache"] if enable_cache is False else []), *([] if self.verbose else ["--quiet"])]
        order = {n["id"]: i for i, n in enumerate(nodes, 1)}
        selected = set(order)
        waiting = {n["id"]: {u for u in n["upstream"] if u in selected} for n in nodes}
        component = {n["id"]: n["component"] for n in nodes}
        done: dict[str, NodeResult] = {}
        running: dict[str, list] = {}  # node id -> [socket or process] to end it on an interrupt
        finished: queue.Queue = queue.Queue()
        result = RunResult(run_id, State.COMPLETE)
        tag = f"/{len(nodes)}]"
        # the cache hits (and resolvers, which create nothing): the parent records them
        # itself, since forking a task for a lookup costs more than the lookup. Any doubt (no
        # plan) leaves every node to a task.
        in_parent = {p.node_id for p in plans or () if p.action in ("cached", "resolve")}
        try:
            while waiting or running:
                if result.error is None and running:  # what has finished meanwhile decides first
                    while True:
                        try:
                            self._collect(*finished.get_nowait(), record, running, done, result, order, tag)
                        except queue.Empty:
                            break
                progressed = False
                if result.error is None:
                    for nid in [n for n, ups in waiting.items() if ups <= set(done)]:
                        if nid in in_parent:  # a cache hit (or a resolver): no process to fork
                            del waiting[nid]
                            self._in_parent(ir, nid, run_id, record, enable_cache, done, result, order, tag)
                            progressed = True
                            continue
                        if len(running) >= self.parallel:
                            break
                        del waiting[nid]
                        running[nid] = []
                        self.say(f"[{order[nid]}{tag} {nid} ({component[nid]}) running")
                        threading.Thread(target=self._task, args=(nid, base, running[nid], finished),
                                         daemon=True).start()
                if progressed:
                    continue  # what the parent took from the cache may have made more nodes ready
                if not running:
                    break  # a failure left the rest waiting: they will not start
                self._collect(*finished.get(), record, running, done, result, order, tag)
        except BaseException as e:
            # a lost store: end the tasks, but there is nothing to wait on (recovered later)
            self._end_running(record, running, finished, wait_for_records=not isinstance(e, MetadataError))
            raise
        finally:
            os.unlink(ir_path)
        result.nodes.sort(key=lambda r: order[r.node_id])
        return result

    @staticmethod
    def _plan(ir: dict, record: RunRecord, nodes: list[dict], enable_cache: bool | None) -> list | None:
        """The cache plan of these nodes, or None when it cannot be made (the nodes meet, and
        record, the same problem when they run)."""
        try:
            from tfpipe.plan import plan_run
            return plan_run(ir, record.store, nodes, enable_cache)
        except Exception:  # noqa: BLE001
            return None

    def _in_parent(self, ir: dict, nid: str, run_id: str, record: RunRecord, enable_cache: bool | None,
                   done: dict, result: RunResult, order: dict, tag: str) -> None:
        """A node in this process (planned a cache hit; should the hit have gone meanwhile,
        it executes here, as with --parallel 1)."""
        try:
            r = run_node(ir, nid, run_id, store=record.store, enable_cache=enable_cache, verbose=self.verbose)
        except NodeFailed as e:
            r = e
        self._join(nid, r, done, result, order, tag)

    def _collect(self, nid: str, rc: int, record: RunRecord, running: dict, done: dict, result: RunResult,
                 order: dict, tag: str) -> None:
        """A node's task has ended: its outcome, as recorded, joins the result."""
        del running[nid]
        self._join(nid, self._outcome(record, nid, rc), done, result, order, tag)

    def _join(self, nid: str, r: NodeResult | NodeFailed, done: dict, result: RunResult, order: dict,
              tag: str) -> None:
        """A node's outcome joins the result (the first failure is the run's), with its line."""
        if isinstance(r, NodeFailed):
            self.say(f"[{order[nid]}{tag} {nid} FAILED: {r.message}")
            if result.error is None:
                result.status, result.error = State.FAILED, r
            return
        done[nid] = r
        result.nodes.append(r)
        self.say(f"[{order[nid]}{tag} {nid} {'cached' if r.state == State.CACHED else 'done'} in {r.duration_s:.2f}s")

    def _task(self, nid: str, base: list[str], handles: list, finished: queue.Queue) -> None:
        """One node in a child of the warm task host (or, without a host, a process of its own)."""
        argv = ["--node", nid, *base]
        try:
            rc = taskhost.run_via_host(argv, on_connect=handles.append, quiet_start=not self.verbose)
            if rc is None:
                p = subprocess.Popen([sys.executable, "-m", "tfpipe.orchestrators.task", *argv])
                handles.append(p)
                rc = p.wait()
        except Exception as e:  # the host connection broke: the node's record says what it did
            print(f"[{nid}] task host: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            rc = 1
        finished.put((nid, rc))

    def _outcome(self, record: RunRecord, nid: str, rc: int) -> NodeResult | NodeFailed:
        """The node's newest execution in this run, as the child recorded it."""
        store = record.store
        ctx = record.context(create=False)
        mine = [e for e in store.executions_by_context(ctx) if store.props(e).get("node_id") == nid]
        if not mine:
            return NodeFailed(nid, f"its task exited {rc} without recording an execution")
        e = max(mine, key=lambda e: e.id)
        props, state = store.props(e), store.state_name(e)
        if state in SUCCEEDED and rc == 0:
            _, outs = store.io_of(e.id)
            return NodeResult(nid, e.id, state, float(props.get("duration_s") or 0.0), outs, props.get("cached_from"))
        return NodeFailed(nid, props.get("error") or f"execution {e.id} is {state} (task exit {rc})", e.id)

    def _end_running(self, record: RunRecord, running: dict, finished: queue.Queue,
                     wait_for_records: bool = True) -> None:
        """An interrupt: end every running node's task (its process records FAILED,
        'interrupted') and wait until they have gone, so the record is complete."""
        for handles in running.values():
            for h in handles:
                try:
                    if isinstance(h, socket.socket):
                        h.shutdown(socket.SHUT_RDWR)
                    else:
                        h.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 20
        while running and time.monotonic() < deadline:
            try:
                nid, _ = finished.get(timeout=0.5)
                running.pop(nid, None)
            except queue.Empty:
                pass
        if not wait_for_records:
            return
        # the host ends a child with SIGTERM and waits for it: give the records a moment
        ctx = record.context(create=False)
        while time.monotonic() < deadline and any(
                record.store.state_name(e) == State.RUNNING for e in record.store.executions_by_context(ctx)):
            time.sleep(0.2)
