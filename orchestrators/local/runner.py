"""The local runner: a short loop over the IR, in topological order, in this process."""
from __future__ import annotations

import datetime as _dt
import sys
import time
import uuid
from dataclasses import dataclass, field

from tfpipe.launcher import NodeFailed, NodeResult, run_node
from tfpipe.metadata import MetadataStore
from tfpipe.provenance import git_info

__all__ = ["LocalRunner", "RunResult", "select_nodes", "new_run_id"]


class SelectionError(ValueError):
    pass


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
    status: str  # COMPLETE or FAILED
    nodes: list[NodeResult] = field(default_factory=list)
    error: NodeFailed | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETE"


class LocalRunner:
    """Runs every selected node through the launcher, one after another; stops at the
    first failure (downstream nodes are not run)."""

    def __init__(self, out=None, verbose: bool = True):
        self.out = out or sys.stderr
        self.verbose = verbose

    def say(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=self.out, flush=True)

    def run(self, ir: dict, run_id: str | None = None, from_node: str | None = None,
            to_node: str | None = None, enable_cache: bool | None = None) -> RunResult:
        run_id = run_id or new_run_id()
        nodes = select_nodes(ir, from_node, to_node)
        pl = ir["pipeline"]
        store = MetadataStore(pl["metadata"])
        t0 = time.monotonic()
        run_ctx = store.context("pipeline_run", f"{pl['name']}.{run_id}",
                                {"pipeline": pl["name"], "run_id": run_id})
        store.context("pipeline", pl["name"])
        store.update_context(run_ctx, {"status": "RUNNING", "started_at": time.time(),
                                       "orchestrator": "local", "nodes": ",".join(n["id"] for n in nodes),
                                       **git_info(pl.get("source") or ".")})
        self.say(f"run {run_id} of pipeline {pl['name']}: {len(nodes)} node(s)")
        result = RunResult(run_id, "COMPLETE")
        for i, n in enumerate(nodes, 1):
            self.say(f"[{i}/{len(nodes)}] {n['id']} ({n['component']}) running")
            try:
                r = run_node(ir, n["id"], run_id, store=store, enable_cache=enable_cache,
                             verbose=self.verbose)
            except NodeFailed as e:
                self.say(f"[{i}/{len(nodes)}] {n['id']} FAILED: {e.message}")
                result.status, result.error = "FAILED", e
                break
            result.nodes.append(r)
            tag = "cached" if r.state == "CACHED" else "done"
            self.say(f"[{i}/{len(nodes)}] {n['id']} {tag} in {r.duration_s:.2f}s")
        result.duration_s = time.monotonic() - t0
        store.update_context(run_ctx, {"status": result.status, "finished_at": time.time(),
                                       "duration_s": result.duration_s,
                                       **({"error": str(result.error)} if result.error else {})})
        self.say(f"run {run_id} {result.status} in {result.duration_s:.1f}s")
        return result
