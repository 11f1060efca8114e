"""What a KFP task runs (inside the pipeline image, or kfp.local's subprocess)."""
from __future__ import annotations

import json
import sys

__all__ = ["run"]


def run(ir_json: str, node_id: str, run_id: str, parameters: dict) -> None:
    from .. import taskhost
    if taskhost.enabled():  # kfp.local on this machine: the warm task host forks the task
        rc = taskhost.run_via_host(["--ir-json", ir_json, "--node", node_id, "--run", run_id,
                                    "--orchestrator", "kubeflow", "--params", json.dumps(parameters)])
        if rc == 0:
            return
        if rc is not None:  # the task printed the component's error above
            raise RuntimeError(f"node {node_id} failed (task exit code {rc})")
    from tfpipe.launcher import NodeFailed
    from tfpipe.runtime import quiet_libraries

    from ..task import run_task
    quiet_libraries()
    try:
        r = run_task(json.loads(ir_json), node_id, run_id, "kubeflow", parameters)
    except NodeFailed as e:
        # the component's error, as the task's last log line; the task fails
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise
    print(f"{node_id}: {r.state} in {r.duration_s:.2f}s (execution {r.execution_id}, run {run_id})",
          file=sys.stderr, flush=True)
