"""The local runner: a short loop over the selected nodes of the IR, in topological order,
in this process, each through the launcher."""
from __future__ import annotations

from tfpipe.launcher import NodeFailed, run_node
from tfpipe.runner import Runner, RunRecord, RunResult
from tfpipe.state import State

__all__ = ["LocalRunner"]


class LocalRunner(Runner):
    """Runs every selected node through the launcher, one after another; stops at the
    first failure (downstream nodes are not run)."""

    orchestrator = "local"

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        self.say(f"run {run_id} of pipeline {ir['pipeline']['name']}: {len(nodes)} node(s)")
        result = RunResult(run_id, State.COMPLETE)
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
        return result
