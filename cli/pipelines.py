"""``tfpipe run``, ``compile`` and ``submit``: a pipeline file to a run, an orchestrator's
format, or a job on Vertex AI / Kubeflow Pipelines. Orchestrators are imported only when
their target is asked for."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_FAILED, EXIT_OK, UsageError, compile_file

__all__ = ["add_commands", "RUN_TARGETS", "COMPILE_TARGETS"]


def _local_runner():
    from tfpipe.orchestrators.local import LocalRunner
    return LocalRunner


def _beam_runner():
    from tfpipe.orchestrators.beam import BeamDagRunner
    return BeamDagRunner


def _airflow_compiler():
    from tfpipe.orchestrators.airflow import compile_airflow
    return compile_airflow


def _kubeflow_compiler():
    from tfpipe.orchestrators.kubeflow import compile_kubeflow
    return compile_kubeflow


RUN_TARGETS = {"local": _local_runner, "beam": _beam_runner}
COMPILE_TARGETS = {"airflow": _airflow_compiler, "kubeflow": _kubeflow_compiler}


def cmd_run(args) -> int:
    ir = compile_file(args.pipeline, cache=not args.no_ir_cache,
                      log=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)))
    runner = RUN_TARGETS[args.target]()(verbose=not args.quiet)
    res = runner.run(ir, run_id=args.run_id, from_node=args.from_node, to_node=args.to_node,
                     enable_cache=False if args.no_cache else None)
    from tfpipe.tracking.mlflow_export import (
        export_after_run,  # imports mlflow only if configured
    )
    try:
        exp = export_after_run(ir, res.run_id, args.mlflow_uri)
    except Exception as e:
        print(f"error: MLflow export of run {res.run_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    if exp:
        print(f"mlflow: run {res.run_id} exported as MLflow run {exp['mlflow_run_id']} "
              f"(experiment {exp['experiment']}) at {exp['uri']}"
              + (f"; registered model {exp['registered_model']} version {exp['model_version']}"
                 if exp.get("model_version") else ""), file=sys.stderr)
    if not res.ok:
        print(f"error: {res.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_compile(args) -> int:
    from tfpipe.compiler import dump_ir
    if args.target != "ir" and args.target not in COMPILE_TARGETS:
        raise UsageError(f"--target {args.target}: not available; expected one of {['ir', *COMPILE_TARGETS]}")
    ir = compile_file(args.pipeline)
    if args.target == "ir":
        text = dump_ir(ir, args.output)
        if not args.output:
            sys.stdout.write(text)
        else:
            print(f"wrote {args.output}", file=sys.stderr)
        return EXIT_OK
    out = COMPILE_TARGETS[args.target]()(ir, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _param_values(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or ():
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param: expected NAME=VALUE (e.g. ExampleGen__label_key=species), found {pair!r}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def cmd_submit(args) -> int:
    from tfpipe.orchestrators.kubeflow.submit import SubmitError, submit
    params = _param_values(args.param)
    ir = compile_file(args.pipeline)
    try:
        out = submit(ir, target=args.target, project=args.project, region=args.region,
                     pipeline_root=args.pipeline_root, service_account=args.service_account, network=args.network,
                     host=args.host,
                     params=params, run_id=args.run_id, display_name=args.display_name, output=args.output,
                     dry_run=args.dry_run)
    except SubmitError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(out, indent=2, sort_keys=True))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run a pipeline file (it defines create_pipeline())")
    r.add_argument("pipeline")
    r.add_argument("--target", default="local", choices=sorted(RUN_TARGETS))
    r.add_argument("--run-id")
    r.add_argument("--from", dest="from_node", metavar="NODE", help="run this node and everything downstream")
    r.add_argument("--to", dest="to_node", metavar="NODE", help="run up to and including this node")
    r.add_argument("--no-cache", action="store_true", help="re-execute every node")
    r.add_argument("--no-ir-cache", action="store_true",
                   help="load the pipeline file anew instead of using the IR stored by an earlier run when "
                        "nothing it read has changed (see docs/architecture.md, 'The IR cache')")
    r.add_argument("-q", "--quiet", action="store_true")
    r.add_argument("--mlflow-uri", help="export the run to this MLflow tracking URI "
                                        "(default: $TFPIPE_MLFLOW_TRACKING_URI, else none)")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("compile", help="compile a pipeline file to its IR (or an orchestrator's format)")
    c.add_argument("pipeline")
    c.add_argument("-o", "--output")
    c.add_argument("--target", default="ir", help=f"one of {['ir', *COMPILE_TARGETS]} (default: ir)")
    c.set_defaults(fn=cmd_compile)

    s = sub.add_parser("submit", help="submit a pipeline to Vertex AI Pipelines or a Kubeflow Pipelines cluster")
    s.add_argument("pipeline")
    s.add_argument("--target", required=True, choices=["vertex", "kubeflow"])
    s.add_argument("--project", help="GCP project (vertex)")
    s.add_argument("--region", help="GCP region, e.g. us-central1 (vertex)")
    s.add_argument("--pipeline-root", help="gs:// URI for the job's KFP outputs (vertex)")
    s.add_argument("--service-account", help="service account the job runs as (vertex)")
    s.add_argument("--network", help="VPC network the job's tasks join, projects/NUMBER/global/networks/NAME "
                                     "(vertex; what reaches a private-IP Cloud SQL metadata store)")
    s.add_argument("--host", help="KFP API URL (kubeflow)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="pipeline parameter (repeatable)")
    s.add_argument("--run-id", help="tfpipe run id (default: the KFP job name)")
    s.add_argument("--display-name")
    s.add_argument("-o", "--output", help="also keep the compiled KFP spec here")
    s.add_argument("--dry-run", action="store_true", help="validate and print the job as JSON; no network")
    s.set_defaults(fn=cmd_submit)
