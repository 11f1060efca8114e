"""The Beam DAG runner: the whole pipeline as one Apache Beam pipeline.

Each node is one Beam step (a ``ParDo`` over a single element) that enters the launcher
through ``tfpipe.orchestrators.task.run_task``; a node's upstream nodes reach it as side inputs,
so Beam orders the steps by the IR's dependencies and leaves independent branches free to
run in parallel on a runner that does so. A failed node emits a failure marker instead of
raising (a raising step would be retried by Beam and abort the others); every step
downstream of it sees the marker and does not run its node.

The runner of this DAG pipeline comes from ``Pipeline(settings={"beam_dag_args": [...]})``
or the ``TFPIPE_BEAM_DAG_ARGS`` environment variable (default: the DirectRunner). The
pipeline's ``beam_pipeline_args`` are a separate thing: they go to every Beam-based
component (``ExecutionContext.beam_pipeline()``), moving the data processing to Flink,
Spark or Dataflow without touching the pipeline.
"""
from __future__ import annotations

import os
import shlex
import sys

from tfpipe.launcher import NodeFailed
from tfpipe.runner import Runner, RunRecord, RunResult

from ..task import run_task

__all__ = ["BeamDagRunner", "DAG_ARGS_ENV"]

DAG_ARGS_ENV = "TFPIPE_BEAM_DAG_ARGS"


def _run_step(ir, node_id, run_id, enable_cache, verbose, selected, upstream):
    """One Beam step: run the node unless an upstream node failed or was skipped."""
    blocked = [u["node"] for u in upstream if u["status"] != "ok"]
    if blocked:
        return {"node": node_id, "status": "skipped", "because": blocked}
    if verbose:
        print(f"[beam] {node_id} running", file=sys.stderr, flush=True)
    try:
        r = run_task(ir, node_id, run_id, "beam", enable_cache=enable_cache, verbose=verbose, nodes=selected)
    except NodeFailed as e:
        if verbose:
            print(f"[beam] {node_id} FAILED: {e.message}", file=sys.stderr, flush=True)
        return {"node": node_id, "status": "failed", "error": e.message, "execution_id": e.execution_id}
    if verbose:
        print(f"[beam] {node_id} {r.state.lower()} in {r.duration_s:.2f}s", file=sys.stderr, flush=True)
    return {"node": node_id, "status": "ok", "execution_id": r.execution_id}


def _node_step(ir, node_id, run_id, enable_cache, verbose, selected):
    """The DoFn of one node (built lazily so importing this module needs no Beam)."""
    import apache_beam as beam

    class NodeStep(beam.DoFn):
        def process(self, element, *upstream):
            yield _run_step(ir, node_id, run_id, enable_cache, verbose, selected, upstream)

    return NodeStep()


class BeamDagRunner(Runner):
    """Run a compiled pipeline as one Beam pipeline."""

    orchestrator = "beam"

    def __init__(self, out=None, verbose: bool = True, beam_options: list[str] | None = None):
        super().__init__(out, verbose)
        self.beam_options = beam_options

    def dag_args(self, ir: dict) -> list[str]:
        if self.beam_options is not None:
            return list(self.beam_options)
        if os.environ.get(DAG_ARGS_ENV):
            return shlex.split(os.environ[DAG_ARGS_ENV])
        return list(ir["pipeline"].get("settings", {}).get("beam_dag_args") or ["--runner=DirectRunner"])

    def build(self, p, ir: dict, run_id: str, nodes: list[dict], enable_cache=None):
        """Add the node steps to Beam pipeline ``p``; returns {node_id: PCollection}."""
        import apache_beam as beam
        selected = [n["id"] for n in nodes]
        start = p | "Start" >> beam.Create([run_id])
        steps: dict = {}
        for n in nodes:
            sides = [beam.pvalue.AsSingleton(steps[u]) for u in n["upstream"] if u in steps]
            steps[n["id"]] = start | f"Node[{n['id']}]" >> beam.ParDo(
                _node_step(ir, n["id"], run_id, enable_cache, self.verbose, selected), *sides)
        return steps

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
        args = self.dag_args(ir)
        self.say(f"run {run_id} of pipeline {ir['pipeline']['name']}: {len(nodes)} node(s) "
                 f"as one Beam pipeline ({' '.join(args)})")
        p = beam.Pipeline(options=PipelineOptions(args))
        self.build(p, ir, run_id, nodes, enable_cache)
        p.run().wait_until_finish()
        return record.collect(nodes)
