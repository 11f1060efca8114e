"""Runs of a compiled pipeline: which nodes, the ``Runner`` template every orchestrator
derives from, and the run's own record in ML Metadata.

``Runner.run`` is a template method: apply the pipeline parameters -> select the nodes
(``--from`` / ``--to``) -> record the run's start -> ``_run`` (the orchestrator's one hook:
run the nodes, each through the launcher, wherever it runs) -> record the run's end. The
local runner's hook is a short loop; Beam, Airflow and Kubeflow hand the nodes to their
engine and read the outcome back from ML Metadata, where every node recorded it.

``RunRecord`` is the ``pipeline_run`` context: its status (RUNNING, then COMPLETE or
FAILED), start and end, the orchestrator and the selected nodes. Remote tasks (an Airflow
task, a KFP task) keep it too, since no single process sees the whole run there: the first
task marks the run RUNNING, a failing one FAILED, the one that finds every node done
COMPLETE.
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
import time
import uuid
from dataclasses import dataclass, field

from .launcher import NodeFailed, NodeResult
from .metadata import MetadataError, MetadataStore
from .parameters import apply_parameters, recorded_parameters
from .provenance import environment_record, git_info, owner
from .recovery import recover
from .state import SUCCEEDED, State

__all__ = ["Runner", "RunResult", "RunRecord", "SelectionError", "RunIdInUse", "select_nodes", "new_run_id"]


class SelectionError(ValueError):
    """``--from`` / ``--to`` name no node, or the orchestrator cannot run a part of a pipeline."""


class RunIdInUse(ValueError):
    """A run id that another run (of any state) already has."""


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def select_nodes(ir: dict, from_node: str | None = None, to_node: str | None = None) -> list[dict]:
    """Nodes downstream of ``from_node`` (inclusive) and upstream of ``to_node`` (inclusive)."""
    nodes = ir["nodes"]
    ids = [n["id"] for n in nodes]
    for name, v in (("--from", from_node), ("--to", to_node)):
        if v is not None and v not in ids:
            raise SelectionError(f"{name} {v!r}: no such node; nodes are {ids}")
    keep = set(ids)
    if from_node:
        down = {from_node}
        for n in nodes:
            if any(u in down for u in n["upstream"]):
                down.add(n["id"])
        keep &= down
    if to_node:
        up = {to_node}
        for n in reversed(nodes):
            if n["id"] in up:
                up.update(n["upstream"])
        keep &= up
    return [n for n in nodes if n["id"] in keep]


@dataclass
class RunResult:
    run_id: str
    status: str  # State.COMPLETE or State.FAILED
    nodes: list[NodeResult] = field(default_factory=list)
    error: NodeFailed | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == State.COMPLETE


class RunRecord:
    """The ``pipeline_run`` context of one run."""

    def __init__(self, store: MetadataStore, ir: dict, run_id: str):
        self.store, self.ir, self.run_id = store, ir, run_id
        self.pipeline = ir["pipeline"]["name"]

    def context(self, create: bool = True):
        return self.store.context("pipeline_run", f"{self.pipeline}.{self.run_id}",
                                  {"pipeline": self.pipeline, "run_id": self.run_id}, create=create)

    def _start_props(self, orchestrator: str, nodes: list[str] | None) -> dict:
        ids = nodes or [n["id"] for n in self.ir["nodes"]]
        pl = self.ir["pipeline"]
        extra = {"params": json.dumps(recorded_parameters(self.ir))}  # in the order given
        if pl.get("sweep"):  # one run of a sweep: {"id", "index", "of", "role"}
            extra["sweep"] = pl["sweep"]["id"]
            extra["sweep_info"] = json.dumps(pl["sweep"], sort_keys=True)
        return {"pipeline": self.pipeline, "run_id": self.run_id, "status": State.RUNNING.value,
                "started_at": time.time(), "orchestrator": orchestrator, "nodes": ",".join(ids),
                **git_info(pl.get("source") or "."), **extra, **environment_record(self.store, pl["root"])}

    def claim(self, orchestrator: str, nodes: list[str] | None = None) -> None:
        """Start a new run under this id, owned by this process (a later command recognises a
        killed owner); RunIdInUse when the id is taken, even by a run started at this very
        moment by another process (the store's unique name decides)."""
        self.store.context("pipeline", self.pipeline)
        name = f"{self.pipeline}.{self.run_id}"
        if not self.store.create_context("pipeline_run", name,
                                         {**self._start_props(orchestrator, nodes), "owner": owner()}):
            props = self.store.props(self.context(create=False))
            raise RunIdInUse(f"run id {self.run_id!r} is already used by a run of pipeline {self.pipeline} "
                             f"(status {props.get('status', '?')}, orchestrator {props.get('orchestrator', '?')}); "
                             f"choose another --run-id, or leave it out for a new one")

    def begin(self, orchestrator: str, nodes: list[str] | None = None) -> None:
        """Mark the run RUNNING unless its runner or a task of it already did (a remote
        orchestrator's tasks: no process of theirs owns the whole run)."""
        self.store.context("pipeline", self.pipeline)
        ctx = self.context()
        if "status" in self.store.props(ctx):
            return
        self.store.update_context(ctx, self._start_props(orchestrator, nodes))

    def _end(self, status: State, error: str | None = None) -> None:
        ctx = self.context()
        props = self.store.props(ctx)
        now = time.time()
        self.store.update_context(ctx, {"status": status.value, "finished_at": now,
                                        "duration_s": now - float(props.get("started_at") or now),
                                        **({"error": error} if error else {})})

    def node_failed(self, err: NodeFailed) -> None:
        self._end(State.FAILED, str(err))

    def finish_if_done(self) -> None:
        """COMPLETE once every selected node of the run has a successful execution."""
        ctx = self.context()
        props = self.store.props(ctx)
        wanted = set((props.get("nodes") or "").split(",")) - {""} or {n["id"] for n in self.ir["nodes"]}
        done = {self.store.props(e).get("node_id") for e in self.store.executions_by_context(ctx)
                if self.store.state_name(e) in SUCCEEDED}
        if wanted <= done:
            self._end(State.COMPLETE)

    def abort(self, e: BaseException) -> None:
        """The runner itself failed or was interrupted: the run is FAILED, with why."""
        if isinstance(e, KeyboardInterrupt):
            why = str(e) if str(e) else "interrupted (KeyboardInterrupt)"
        else:
            why = f"{type(e).__name__}: {e}"
        self._end(State.FAILED, why)

    def finish(self, result: RunResult) -> None:
        """The run's end as the runner saw it (the last word, after any task's)."""
        self._end(State(result.status), str(result.error) if result.error else None)

    def collect(self, nodes: list[dict]) -> RunResult:
        """The outcome of a run whose nodes ran elsewhere, read back from ML Metadata (where
        they recorded it): a ``RunResult`` as the local runner returns."""
        ctx = self.context(create=False)
        latest: dict = {}
        for e in self.store.executions_by_context(ctx) if ctx is not None else []:
            nid = self.store.props(e).get("node_id")
            if nid not in latest or e.id > latest[nid].id:
                latest[nid] = e
        result = RunResult(self.run_id, State.COMPLETE)
        for n in nodes:
            e = latest.get(n["id"])
            if e is None:
                continue
            props, state = self.store.props(e), self.store.state_name(e)
            if state in SUCCEEDED:
                _, outs = self.store.io_of(e.id)
                result.nodes.append(NodeResult(n["id"], e.id, state, float(props.get("duration_s") or 0.0),
                                               outs, props.get("cached_from")))
            elif result.error is None:
                result.status = State.FAILED
                result.error = NodeFailed(n["id"], props.get("error") or f"execution {e.id} is {state}", e.id)
        if result.status == State.COMPLETE and len(result.nodes) != len(nodes):
            missing = [n["id"] for n in nodes if n["id"] not in {r.node_id for r in result.nodes}]
            result.status = State.FAILED
            result.error = NodeFailed(missing[0], "the orchestrator finished without running it")
        return result


class Runner:
    """Base of every orchestrator's runner: ``run`` is the template, ``_run`` the hook."""

    #: the name recorded on the run (``tfpipe runs list`` shows it)
    orchestrator = "local"
    #: whether this orchestrator can run a part of the pipeline, or without the cache
    runs_parts = True

    def __init__(self, out=None, verbose: bool = True):
        self.out = out or sys.stderr
        self.verbose = verbose

    def say(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=self.out, flush=True)

    def run(self, ir: dict, run_id: str | None = None, from_node: str | None = None,
            to_node: str | None = None, enable_cache: bool | None = None,
            parameters: dict | None = None) -> RunResult:
        ir = apply_parameters(ir, parameters)
        nodes = self.select(ir, from_node, to_node, enable_cache)
        run_id = run_id or new_run_id()
        store = MetadataStore(ir["pipeline"]["metadata"])
        recovered = recover(store)
        if recovered:
            print(f"tfpipe: {recovered.line()}", file=sys.stderr, flush=True)
        record = RunRecord(store, ir, run_id)
        record.claim(self.orchestrator, [n["id"] for n in nodes])
        t0 = time.monotonic()
        try:
            result = self._run(ir, run_id, nodes, record, enable_cache)
        except BaseException as e:
            if not isinstance(e, MetadataError):  # a lost store records nothing more (recovered later)
                record.abort(e)
            if isinstance(e, KeyboardInterrupt):
                e.run_id = run_id
            raise
        result.duration_s = time.monotonic() - t0
        record.finish(result)
        self.say(f"run {run_id} {result.status} in {result.duration_s:.1f}s{self.summary_suffix(result)}")
        return result

    def select(self, ir: dict, from_node: str | None, to_node: str | None,
               enable_cache: bool | None) -> list[dict]:
        if not self.runs_parts and (from_node or to_node or enable_cache is not None):
            raise SelectionError(f"a {self.orchestrator} run runs the whole pipeline with the launcher's cache; "
                                 f"--from/--to/--no-cache are not available with this target")
        return select_nodes(ir, from_node, to_node)

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        raise NotImplementedError

    def summary_suffix(self, result: RunResult) -> str:
        return ""
