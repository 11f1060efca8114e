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
``dag_run.conf``.)

``--cache-check`` instead of ``--node`` is the first task of a DAG run (Airflow's
``tfpipe.cache_check``): it plans the whole run (``tfpipe.plan.plan_run``, with the same
parameters the tasks get) and, when every node would be taken from the cache (or is a
resolver), records each node's CACHED execution through the launcher, exactly as the
node's own task would, closes the run COMPLETE and exits ``SKIP_EXIT_CODE`` (99), which the
DAG maps to "skipped", so every node task is skipped and the DAG run ends at once. When any
node would run, or the plan itself fails, it records nothing and exits 0: the node tasks run
as they would without it. With ``TFPIPE_TASK_HOST=1`` the command hands the task to the warm task
host (``orchestrators/taskhost.py``), which saves each task the import of TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tfpipe.launcher import NodeFailed, NodeResult, run_node
from tfpipe.metadata import MetadataError, MetadataStore
from tfpipe.parameters import ParameterError, apply_parameters
from tfpipe.runner import RunRecord

__all__ = ["run_task", "check_cache", "METADATA_ENV", "SKIP_EXIT_CODE", "main"]

METADATA_ENV = "TFPIPE_METADATA"
#: the exit code of ``--cache-check`` when it took every node from the cache (Airflow's
#: BashOperator default for "skipped"; the DAG sets it explicitly on the check task only)
SKIP_EXIT_CODE = 99


def _metadata_from_env(ir: dict) -> dict:
    """``$TFPIPE_METADATA`` (a path, a URL such as ``mysql://user@host:3306/db`` or a JSON
    connection dict; see ``tfpipe.metadata.parse_location``) replaces the IR's store."""
    raw = os.environ.get(METADATA_ENV, "").strip()
    if not raw:
        return ir
    ir = dict(ir)
    ir["pipeline"] = {**ir["pipeline"], "metadata": raw}
    return ir


def run_task(ir: dict, node_id: str, run_id: str, orchestrator: str, parameters: dict | None = None,
             store: MetadataStore | None = None, enable_cache: bool | None = None,
             verbose: bool = True, nodes: list[str] | None = None) -> NodeResult:
    """Run one node through the launcher with run bookkeeping; raises NodeFailed."""
    ir = _metadata_from_env(apply_parameters(ir, parameters))
    store = store or MetadataStore(ir["pipeline"]["metadata"])
    record = RunRecord(store, ir, run_id)
    record.begin(orchestrator, nodes)
    try:
        r = run_node(ir, node_id, run_id, store=store, enable_cache=enable_cache, verbose=verbose)
    except NodeFailed as e:
        record.node_failed(e)
        raise
    record.finish_if_done()
    return r


def check_cache(ir: dict, run_id: str, orchestrator: str, parameters: dict | None = None,
                store: MetadataStore | None = None, verbose: bool = True) -> list[NodeResult] | None:
    """Take the whole run from the cache if every node is a hit: the NodeResults recorded
    (the run then COMPLETE), or None when some node would run or the plan could not be made
    (nothing recorded). Raises NodeFailed if a node stopped being a hit between the plan and
    its record (the run is then FAILED, as when a node task fails)."""
    from tfpipe.plan import format_plan, plan_run
    try:
        ir = _metadata_from_env(apply_parameters(ir, parameters))
        store = store or MetadataStore(ir["pipeline"]["metadata"])
        plans = plan_run(ir, store, ir["nodes"])
    except Exception as e:  # the node tasks will meet (and record) the same problem, if it is one
        print(f"cache check: no plan ({type(e).__name__}: {e}); the node tasks run", file=sys.stderr, flush=True)
        return None
    if verbose:
        print(format_plan(plans, ir["pipeline"]["name"], "its ML Metadata"), file=sys.stderr, flush=True)
    if any(p.action == "run" for p in plans):
        if verbose:
            print("cache check: some nodes will run; the node tasks run", file=sys.stderr, flush=True)
        return None
    record = RunRecord(store, ir, run_id)
    record.begin(orchestrator, [n["id"] for n in ir["nodes"]])
    results = []
    for n in ir["nodes"]:
        try:
            results.append(run_node(ir, n["id"], run_id, store=store, verbose=verbose, cache_only=True))
        except NodeFailed as e:
            record.node_failed(e)
            raise
        except KeyboardInterrupt as e:  # killed (SIGTERM) while recording: the run is FAILED, with why
            record.abort(e)
            raise
    record.finish_if_done()
    if verbose:
        print(f"cache check: all {len(results)} nodes taken from the cache; the node tasks are skipped",
              file=sys.stderr, flush=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tfpipe.orchestrators.task",
                                 description="run one pipeline node as an orchestrator task")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ir", help="path of the compiled IR (JSON)")
    src.add_argument("--ir-json", help="the compiled IR itself, as JSON text")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--node", help="the node to run")
    what.add_argument("--cache-check", action="store_true",
                      help=f"take the whole run from the cache if every node is a hit (exit {SKIP_EXIT_CODE})")
    ap.add_argument("--run", required=True)
    ap.add_argument("--orchestrator", default="task")
    ap.add_argument("--params", default="", help="pipeline parameters as a JSON object")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines (errors still)")
    a = ap.parse_args(argv)
    from tfpipe.runtime import pin_keras
    pin_keras()  # before the task host is chosen: it is keyed by the Keras its imports resolved
    from . import taskhost
    if taskhost.enabled():  # run in a forked child of the warm task host (see taskhost.py)
        rc = taskhost.run_via_host(sys.argv[1:] if argv is None else list(argv))
        if rc is not None:
            return rc
    from tfpipe.compiler import check_ir, load_ir
    from tfpipe.runtime import interrupt_on_signals, quiet_libraries
    quiet_libraries()
    interrupt_on_signals()  # an orchestrator's timeout or kill (SIGTERM) ends the node FAILED, recorded
    ir = load_ir(a.ir) if a.ir else check_ir(json.loads(a.ir_json), "--ir-json")
    params = json.loads(a.params) if a.params.strip() else {}
    if not isinstance(params, dict):
        print(f"error: --params: expected a JSON object, found {a.params!r}", file=sys.stderr)
        return 2
    run_id = params.pop("tfpipe_run_id", None) or a.run  # a run id chosen by whoever started the run
    if a.cache_check:
        try:
            done = check_cache(ir, run_id, a.orchestrator, params, verbose=not a.quiet)
        except NodeFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            print(f"cache check: {str(e) or 'interrupted'}", file=sys.stderr, flush=True)
            return getattr(e, "exit_code", 130)
        return SKIP_EXIT_CODE if done is not None else 0
    try:
        r = run_task(ir, a.node, run_id, a.orchestrator, params, enable_cache=False if a.no_cache else None,
                     verbose=not a.quiet)
    except (NodeFailed, ParameterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except MetadataError as e:  # the store is gone: one line; what was left RUNNING is recovered later
        print(f"{a.node}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # SIGTERM/SIGINT: the node is recorded FAILED ("interrupted")
        print(f"{a.node}: {str(e) or 'interrupted'}", file=sys.stderr, flush=True)
        return getattr(e, "exit_code", 130)
    if not a.quiet and a.orchestrator != "local":  # the local runner prints its own progress line
        print(f"{a.node}: {r.state} in {r.duration_s:.2f}s (execution {r.execution_id})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
