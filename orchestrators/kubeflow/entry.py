"""What a KFP task runs (inside the pipeline image, or kfp.local's subprocess)."""
from __future__ import annotations

import json
import sys

__all__ = ["run"]


def run(ir_json: str, node_id: str, run_id: str, parameters: dict) -> None:
    from pipeline.cli import quiet_libraries
    from pipeline.launcher import NodeFailed
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
