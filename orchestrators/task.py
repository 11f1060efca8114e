"""One node as a task of a remote orchestrator (Beam step, Airflow task, KFP task).

Every orchestrator adapter ends up here, and this enters the same launcher as the local
runner (``tfpipe.launcher.run_node``), so lineage, caching and failure handling are the
same wherever a node runs. Around the launcher it does only the run bookkeeping a
distributed run needs and a single process cannot do at its end:

- the ``pipeline_run`` context is marked RUNNING (with the orchestrator's name) by the
  first task that starts, FAILED by a task whose node fails, and COMPLETE by the task that
  finds every node of the run successful (so a retried node that then succeeds, followed
  by the rest, turns a FAILED run COMPLETE);
- pipeline parameters (``<node>__<param>`` = value) override node parameters of the IR;
- ``TFPIPE_METADATA`` (a path, or a JSON connection dict such as
  ``{"grpc": {"host": "metadata-grpc-service", "port": 8080}}``) points tasks in a cluster at
  the ML Metadata store they share, whatever the IR was compiled with.

Command line (what an Airflow task or a container runs)::

    python -m tfpipe.orchestrators.task --ir IR.json --node N --run RUN --orchestrator airflow \
        [--params '{"ExampleGen__label_key": "species"}']

(``tfpipe_run_id`` in ``--params`` replaces the orchestrator's run id, e.g. from Airflow's
``dag_run.conf``.) With ``TFPIPE_TASK_HOST=1`` the command hands the task to the warm task
host (``orchestrators/taskhost.py``), which saves each task the import of TensorFlow.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

from tfpipe.launcher import NodeFailed, NodeResult, run_node
from tfpipe.metadata import MetadataStore

__all__ = ["run_task", "apply_parameters", "pipeline_parameters", "parameter_name",
           "begin_run", "collect_run", "ParameterError", "METADATA_ENV", "main"]

METADATA_ENV = "TFPIPE_METADATA"
SEP = "__"
_OK = ("COMPLETE", "CACHED")


class ParameterError(ValueError):
    """A pipeline parameter names no node parameter of the IR, or has the wrong type."""


def parameter_name(node_id: str, param: str) -> str:
    """The pipeline-level name of a node parameter: ``ExampleGen__label_key``."""
    return f"{node_id}{SEP}{param}"


def pipeline_parameters(ir: dict) -> dict[str, tuple[str, str, object]]:
    """Every parameter set on a node in the IR, as ``name -> (node, param, compiled value)``;
    these are the pipeline parameters an orchestrator exposes (Airflow conf, KFP inputs)."""
    out = {}
    for n in ir["nodes"]:
        for k, v in n["parameters"].items():
            out[parameter_name(n["id"], k)] = (n["id"], k, v)
    return out


def _same_kind(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return isinstance(default, float) or isinstance(value, int)
    if default is None:
        return True
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def apply_parameters(ir: dict, values: dict | None) -> dict:
    """A copy of ``ir`` with pipeline parameters applied to its nodes."""
    if not values:
        return ir
    known = pipeline_parameters(ir)
    ir = copy.deepcopy(ir)
    nodes = {n["id"]: n for n in ir["nodes"]}
    for name, value in values.items():
        if name not in known:
            raise ParameterError(
                f"pipeline parameter {name!r} of pipeline {ir['pipeline']['name']}: no such parameter; "
                f"expected one of {sorted(known)} (names are <node>{SEP}<parameter>)")
        node, param, default = known[name]
        if not _same_kind(default, value):
            raise ParameterError(
                f"pipeline parameter {name!r} (node {node}, parameter {param}): expected a "
                f"{type(default).__name__} like {default!r}, found {type(value).__name__} {value!r}")
        nodes[node]["parameters"][param] = value
    return ir


def _metadata_from_env(ir: dict) -> dict:
    raw = os.environ.get(METADATA_ENV)
    if not raw:
        return ir
    raw = raw.strip()
    md = json.loads(raw) if raw.startswith("{") else raw
    ir = dict(ir)
    ir["pipeline"] = {**ir["pipeline"], "metadata": md}
    return ir


def _run_context(store: MetadataStore, ir: dict, run_id: str):
    name = ir["pipeline"]["name"]
    return store.context("pipeline_run", f"{name}.{run_id}", {"pipeline": name, "run_id": run_id})


def begin_run(store: MetadataStore, ir: dict, run_id: str, orchestrator: str,
              nodes: list[str] | None = None) -> None:
    """Mark the run RUNNING unless a task of it already did."""
    name = ir["pipeline"]["name"]
    store.context("pipeline", name)
    ctx = _run_context(store, ir, run_id)
    if "status" in store.props(ctx):
        return
    from tfpipe.provenance import git_info
    ids = nodes or [n["id"] for n in ir["nodes"]]
    store.update_context(ctx, {"status": "RUNNING", "started_at": time.time(), "orchestrator": orchestrator,
                               "nodes": ",".join(ids), **git_info(ir["pipeline"].get("source") or ".")})


def _finish_if_done(store: MetadataStore, ir: dict, run_id: str) -> None:
    ctx = _run_context(store, ir, run_id)
    props = store.props(ctx)
    wanted = set((props.get("nodes") or "").split(",")) - {""} or {n["id"] for n in ir["nodes"]}
    done = {store.props(e).get("node_id") for e in store.executions_by_context(ctx)
            if store.state_name(e) in _OK}
    if wanted <= done:
        now = time.time()
        store.update_context(ctx, {"status": "COMPLETE", "finished_at": now,
                                   "duration_s": now - float(props.get("started_at") or now)})


def _mark_failed(store: MetadataStore, ir: dict, run_id: str, err: NodeFailed) -> None:
    ctx = _run_context(store, ir, run_id)
    props = store.props(ctx)
    now = time.time()
    store.update_context(ctx, {"status": "FAILED", "finished_at": now, "error": str(err),
                               "duration_s": now - float(props.get("started_at") or now)})


def run_task(ir: dict, node_id: str, run_id: str, orchestrator: str, parameters: dict | None = None,
             store: MetadataStore | None = None, enable_cache: bool | None = None,
             verbose: bool = True, nodes: list[str] | None = None) -> NodeResult:
    """Run one node through the launcher with run bookkeeping; raises NodeFailed."""
    ir = _metadata_from_env(apply_parameters(ir, parameters))
    store = store or MetadataStore(ir["pipeline"]["metadata"])
    begin_run(store, ir, run_id, orchestrator, nodes)
    try:
        r = run_node(ir, node_id, run_id, store=store, enable_cache=enable_cache, verbose=verbose)
    except NodeFailed as e:
        _mark_failed(store, ir, run_id, e)
        raise
    _finish_if_done(store, ir, run_id)
    return r


def collect_run(store: MetadataStore, ir: dict, run_id: str, nodes: list[dict]):
    """The outcome of a run whose tasks ran elsewhere, read back from ML Metadata (where
    they recorded it): a ``RunResult`` as the local runner returns."""
    from .local.runner import RunResult
    ctx = store.context("pipeline_run", f"{ir['pipeline']['name']}.{run_id}", create=False)
    latest: dict = {}
    for e in store.executions_by_context(ctx) if ctx is not None else []:
        nid = store.props(e).get("node_id")
        if nid not in latest or e.id > latest[nid].id:
            latest[nid] = e
    result = RunResult(run_id, "COMPLETE")
    for n in nodes:
        e = latest.get(n["id"])
        if e is None:
            continue
        props, state = store.props(e), store.state_name(e)
        if state in _OK:
            _, outs = store.io_of(e.id)
            result.nodes.append(NodeResult(n["id"], e.id, state, float(props.get("duration_s") or 0.0),
                                           outs, props.get("cached_from")))
        elif result.error is None:
            result.status = "FAILED"
            result.error = NodeFailed(n["id"], props.get("error") or f"execution {e.id} is {state}", e.id)
    if result.status == "COMPLETE" and len(result.nodes) != len(nodes):
        missing = [n["id"] for n in nodes if n["id"] not in {r.node_id for r in result.nodes}]
        result.status = "FAILED"
        result.error = NodeFailed(missing[0], "the orchestrator finished without running it")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tfpipe.orchestrators.task",
                                 description="run one pipeline node as an orchestrator task")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ir", help="path of the compiled IR (JSON)")
    src.add_argument("--ir-json", help="the compiled IR itself, as JSON text")
    ap.add_argument("--node", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--orchestrator", default="task")
    ap.add_argument("--params", default="", help="pipeline parameters as a JSON object")
    ap.add_argument("--no-cache", action="store_true")
    a = ap.parse_args(argv)
    from . import taskhost
    if taskhost.enabled():  # run in a forked child of the warm task host (see taskhost.py)
        rc = taskhost.run_via_host(sys.argv[1:] if argv is None else list(argv))
        if rc is not None:
            return rc
    from tfpipe.compiler import load_ir
    ir = load_ir(a.ir) if a.ir else json.loads(a.ir_json)
    params = json.loads(a.params) if a.params.strip() else {}
    if not isinstance(params, dict):
        print(f"error: --params: expected a JSON object, found {a.params!r}", file=sys.stderr)
        return 2
    run_id = params.pop("tfpipe_run_id", None) or a.run  # a run id chosen by whoever started the run
    try:
        r = run_task(ir, a.node, run_id, a.orchestrator, params, enable_cache=False if a.no_cache else None)
    except (NodeFailed, ParameterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.node}: {r.state} in {r.duration_s:.2f}s (execution {r.execution_id})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
