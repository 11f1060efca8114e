"""Crash recovery: what a killed run left RUNNING is made truthful by the next command.

Every run a runner starts and every execution the launcher records carries its owner (host,
boot, pid and process start time, ``tfpipe.provenance.owner``). A SIGKILL, an out-of-memory
kill or a lost machine leaves them RUNNING with outputs PENDING and staging directories on
disk. ``recover`` finds those whose owner is gone (on this machine) and ends them: the
execution FAILED ("killed"), its PENDING outputs ABANDONED, its staging and scratch
directories removed, the run FAILED. The cache never used them (only COMPLETE executions
with LIVE outputs are reused); this makes the record say what happened."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

from . import fileio
from .launcher import scratch_dir, staging_dir
from .metadata import MetadataStore
from .provenance import owner_is_dead
from .state import ArtifactState, State

__all__ = ["recover", "Recovered"]


@dataclass
class Recovered:
    runs: list[str] = field(default_factory=list)
    executions: int = 0
    outputs: int = 0
    dirs: int = 0

    def __bool__(self) -> bool:
        return bool(self.runs or self.executions)

    def line(self) -> str:
        runs = (f"run {self.runs[0]}" if len(self.runs) == 1 else f"{len(self.runs)} runs ({', '.join(self.runs)})"
                ) if self.runs else "no run"
        return (f"recovered after a killed process: {runs} marked FAILED (killed), {self.executions} execution(s) "
                f"FAILED, {self.outputs} output(s) ABANDONED, {self.dirs} staging folder(s) removed")


def _killed(owner: str) -> str:
    host, _, pid, _ = owner.rsplit(":", 3)
    return f"killed: its process (pid {pid} on {host}) ended without recording an outcome"


def _remove(path: str) -> int:
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        return 1
    return 0


def _remove_output(uri: str) -> None:
    if not fileio.is_remote(uri):
        _remove(uri)
        return
    try:
        fileio.rmtree(uri)
    except OSError:  # the store is unreachable now: the artifact is ABANDONED all the same
        pass


def recover(store: MetadataStore) -> Recovered:
    out = Recovered()
    for e in store.find_executions("last_known_state = RUNNING"):
        props = store.props(e)
        if not owner_is_dead(props.get("owner")):
            continue
        _, outs = store.io_of(e.id)
        for arts in outs.values():
            for a in arts:
                if a.state == ArtifactState.PENDING:
                    out.dirs += _remove(staging_dir(a.uri, e.id))
                    out.dirs += _remove(scratch_dir(fileio.dirname(fileio.dirname(fileio.dirname(a.uri))),
                                                    fileio.basename(fileio.dirname(fileio.dirname(a.uri))), e.id))
                    _remove_output(a.uri)  # a move or an upload cut short by the kill: not a LIVE artifact
                    a.state = ArtifactState.ABANDONED
                    out.outputs += 1
        store.publish_execution(e, State.FAILED, {"error": _killed(props["owner"]), "finished_at": time.time()},
                                [], outs, new_events=False)
        out.executions += 1
    for ctx in store.find_contexts("custom_properties.status.string_value = 'RUNNING'"):
        props = store.props(ctx)
        if not owner_is_dead(props.get("owner")):
            continue
        now = time.time()
        store.update_context(ctx, {"status": State.FAILED.value, "finished_at": now, "error": _killed(props["owner"]),
                                   "duration_s": now - float(props.get("started_at") or now)})
        out.runs.append(props.get("run_id") or ctx.name)
    return out
