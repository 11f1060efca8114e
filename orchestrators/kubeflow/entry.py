"""What a KFP task runs (inside the pipeline image, or kfp.local's subprocess): the node of
the (encoded) IR, with the task's pipeline parameters, through ``tfpipe.orchestrators.task``."""
from __future__ import annotations

import json
import sys

from .values import decode, decode_ir

__all__ = ["run"]


def _as_compiled(value, compiled):
    """A parameter value as KFP hands it over, with the integers of the compiled value given
    back: KFP carries a dict or list parameter as a protobuf Struct, whose numbers are all
    floating point (``{"version": 1}`` arrives as ``{"version": 1.0}``)."""
    if isinstance(value, float) and isinstance(compiled, int) and not isinstance(compiled, bool) \
            and value == compiled:
        return compiled
    if isinstance(value, dict) and isinstance(compiled, dict):
        return {k: _as_compiled(v, compiled.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(compiled, (list, tuple)) and len(value) == len(compiled):
        return [_as_compiled(v, c) for v, c in zip(value, compiled)]
    return value


def run(ir: str, node_id: str, run_id: str, parameters: dict) -> None:
    """``parameters``: the task's own parameters by their names on the node."""
    from tfpipe.parameters import parameter_name
    decoded = decode_ir(ir)
    ir_json = json.dumps(decoded)
    compiled = next((n.get("parameters") or {} for n in decoded.get("nodes", []) if n.get("id") == node_id), {})
    parameters = {parameter_name(node_id, k): _as_compiled(v, compiled.get(k)) for k, v in decode(parameters).items()}
    from tfpipe.runtime import pin_keras

    from .. import taskhost
    pin_keras()  # before the task host is chosen: it is keyed by the Keras its imports resolved
    if taskhost.enabled():  # kfp.local on this machine: the warm task host forks the task
        rc = taskhost.run_via_host(["--ir-json", ir_json, "--node", node_id, "--run", run_id,
                                    "--orchestrator", "kubeflow", "--params", json.dumps(parameters)])
        if rc == 0:
            return
        if rc is not None:  # the task printed the component's error above
            raise RuntimeError(f"node {node_id} failed (task exit code {rc})")
    from tfpipe.compiler import check_ir
    from tfpipe.launcher import NodeFailed
    from tfpipe.runtime import quiet_libraries

    from ..task import run_task
    quiet_libraries()
    try:
        r = run_task(check_ir(json.loads(ir_json), "the task's IR"), node_id, run_id, "kubeflow", parameters)
    except NodeFailed as e:
        # the component's error, as the task's last log line; the task fails
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise
    print(f"{node_id}: {r.state} in {r.duration_s:.2f}s (execution {r.execution_id}, run {run_id})",
          file=sys.stderr, flush=True)
