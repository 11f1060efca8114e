"""``tfpipe run``, ``compile`` and ``submit``: a pipeline file to a run, an orchestrator's
format, or a job on Vertex AI / Kubeflow Pipelines; ``beam-cluster``: a local Beam cluster
for the pipeline's ``beam_pipeline_args``. Orchestrators are imported only when
their target is asked for."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .common import EXIT_FAILED, EXIT_OK, UsageError, compile_file, pipeline_function

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


def _airflow_runner():
    """The compiled DAG under a real Airflow 3 (``airflow dags test``; its own virtualenv,
    found through ``$TFPIPE_AIRFLOW``, else ``.venv-airflow`` here or ``airflow`` on the
    PATH), in an AIRFLOW_HOME under the tfpipe home; the api-server it starts is stopped
    when the run ends."""
    import shutil

    from tfpipe.graph import default_home
    from tfpipe.orchestrators.airflow.local import AIRFLOW_BIN_ENV, AirflowLocalRunner

    def make(verbose: bool = True):
        candidates = (os.environ.get(AIRFLOW_BIN_ENV), os.path.join(os.getcwd(), ".venv-airflow", "bin", "airflow"),
                      shutil.which("airflow"))
        found = [p for p in candidates if p and os.path.exists(p)]
        if not found:
            raise UsageError(f"--target airflow: no Airflow 3 found; expected ${AIRFLOW_BIN_ENV} naming the `airflow` "
                             f"command of Airflow's own virtualenv (it cannot share tfpipe's: docs/orchestrators.md), "
                             f"or `airflow` on the PATH")
        return AirflowLocalRunner(os.path.join(default_home(), "airflow"), airflow_bin=found[0], verbose=verbose)
    return make


def _kfp_local_runner():
    from tfpipe.graph import default_home
    from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner

    def make(verbose: bool = True):
        return KfpLocalRunner(verbose=verbose, workdir=os.path.join(default_home(), "kfp-local"))
    return make


RUN_TARGETS = {"local": _local_runner, "beam": _beam_runner, "airflow": _airflow_runner,
               "kfp-local": _kfp_local_runner}
COMPILE_TARGETS = {"airflow": _airflow_compiler, "kubeflow": _kubeflow_compiler}


def _with_parameters(path: str, pairs: list[str] | None, cache: bool = False,
                     log=None) -> tuple[list[dict], list[dict]]:
    """The IRs of a pipeline file for ``-P NAME=VALUE`` pairs: one IR, or one per combination
    when a value is a comma list (a sweep), each with its node parameters applied and every
    given value recorded (``pipeline.parameters``); and the swept values of each."""
    from tfpipe.parameters import (
        ParameterError,
        apply_parameters,
        declared_parameters,
        keyword_types,
        parse_assignments,
    )
    from tfpipe.tracking.sweep import grid
    if not pairs:
        return [compile_file(path, cache=cache, log=log)], [{}]
    fn = pipeline_function(path)
    keywords = keyword_types(fn)
    kw_given = [p for p in pairs if p.partition("=")[0].strip() in keywords]
    try:
        kw_axes = parse_assignments(kw_given, keywords, {}, where=path)
        first = compile_file(path, {k: v[0] for k, v in kw_axes.items()}, cache=cache, log=log)
        axes = parse_assignments(pairs, keywords, declared_parameters(first), where=path)
    except ParameterError as e:
        raise UsageError(str(e)) from None
    combos = grid(axes)
    irs, compiled = [], {json.dumps({k: v[0] for k, v in kw_axes.items()}, sort_keys=True): first}
    for combo in combos:
        kws = {k: v for k, v in combo.items() if k in kw_axes}
        key = json.dumps(kws, sort_keys=True)
        if key not in compiled:
            compiled[key] = compile_file(path, kws)
        ir = compiled[key]
        try:
            ir = apply_parameters(ir, {k: v for k, v in combo.items() if k not in kws}, record=True)
        except ParameterError as e:
            raise UsageError(str(e)) from None
        ir["pipeline"]["parameters"] = dict(combo)  # as given, in the order given
        irs.append(ir)
    swept = [{k: v for k, v in c.items() if len(axes[k]) > 1} for c in combos]
    return irs, swept


def _plan(ir: dict, args) -> list:
    import os

    from tfpipe.metadata import MetadataStore, describe_location, parse_location
    from tfpipe.plan import NodePlan, plan_run
    from tfpipe.runner import select_nodes
    nodes = select_nodes(ir, args.from_node, args.to_node)
    loc = parse_location(ir["pipeline"]["metadata"])
    if "sqlite" in loc and not os.path.exists(loc["sqlite"]):  # nothing recorded yet: create nothing
        from tfpipe.loader import load_component
        never = f"it never ran before (no metadata store yet at {describe_location(loc)})"
        plans = []
        for n in nodes:
            if load_component(n["executor"], ir["pipeline"].get("source")).resolver is not None:
                plans.append(NodePlan(n["id"], n["component"], "resolve",
                                      ["a resolver picks artifacts anew every run (nothing recorded yet)"]))
            else:
                plans.append(NodePlan(n["id"], n["component"], "run", [never]))
        return plans
    return plan_run(ir, MetadataStore(ir["pipeline"]["metadata"]), nodes, False if args.no_cache else None)


def cmd_plan(args) -> int:
    """Which nodes a run would take from the cache, and why the others would run; runs nothing."""
    from tfpipe.metadata import describe_location
    from tfpipe.plan import format_plan
    irs, _ = _with_parameters(args.pipeline, args.param)
    if len(irs) > 1:
        raise UsageError("the cache plan takes one value per -P parameter (a comma list is a sweep)")
    ir = irs[0]
    plans = _plan(ir, args)
    if args.json:
        print(json.dumps([p.to_dict() for p in plans], indent=2))
    else:
        print(format_plan(plans, ir["pipeline"]["name"], describe_location(ir["pipeline"]["metadata"])))
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, found {text!r}")
    return n


def cmd_run(args) -> int:
    if args.explain:
        return cmd_plan(args)
    irs, swept = _with_parameters(args.pipeline, args.param, cache=not args.no_ir_cache,
                                  log=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)))
    if len(irs) > 1:
        return _run_sweep(args, irs, swept)
    if args.sort_by:
        raise UsageError("--sort-by is for sweeps (a -P value with several comma-separated values)")
    auto = args.parallel is None  # the default: nodes at once only where that is expected to pay
    if auto:
        from tfpipe.orchestrators.local.runner import default_parallel
        args.parallel = default_parallel()
    ir = irs[0]
    if args.target == "local":
        runner = RUN_TARGETS[args.target]()(verbose=not args.quiet, parallel=args.parallel, auto=auto)
    else:
        runner = RUN_TARGETS[args.target]()(verbose=not args.quiet)
    try:
        res = runner.run(ir, run_id=args.run_id, from_node=args.from_node, to_node=args.to_node,
                         enable_cache=False if args.no_cache else None)
    finally:
        close = getattr(runner, "close", None)  # an orchestrator's own servers (Airflow's api-server)
        if close is not None:
            close()
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


def _run_sweep(args, irs: list[dict], swept: list[dict]) -> int:
    from tfpipe.tracking.sweep import SweepError, format_sweep, run_sweep
    if args.target != "local" or args.from_node or args.to_node or args.run_id or args.mlflow_uri:
        raise UsageError("a sweep (a -P value with several comma-separated values) runs on --target local, the whole "
                         "pipeline, with run ids of its own; --from/--to/--run-id/--mlflow-uri are not available")
    try:
        res = run_sweep(irs, swept, parallel=args.parallel, enable_cache=False if args.no_cache else None,
                        verbose=not args.quiet, sort_by=args.sort_by)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(format_sweep(res))
    print(f"compare: tfpipe runs compare --sweep {res['sweep']} [-o {res['sweep']}.html]", file=sys.stderr)
    return EXIT_OK if not res["failed"] else EXIT_FAILED


def cmd_compile(args) -> int:
    from tfpipe.compiler import dump_ir
    if args.target != "ir" and args.target not in COMPILE_TARGETS:
        raise UsageError(f"--target {args.target}: not available; expected one of {['ir', *COMPILE_TARGETS]}")
    irs, _ = _with_parameters(args.pipeline, args.param)
    if len(irs) > 1:
        raise UsageError("compile takes one value per -P parameter (a comma list is a sweep, for tfpipe run)")
    ir = irs[0]
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
    from tfpipe.parameters import canonical_name
    out = {}
    for pair in pairs or ():
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param: expected NAME=VALUE (e.g. ExampleGen.label_key=species), found {pair!r}")
        try:
            out[canonical_name(name)] = json.loads(raw)
        except json.JSONDecodeError:
            out[canonical_name(name)] = raw
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


def cmd_beam_cluster(args) -> int:
    """Serve a local Beam cluster (a job server and an external pool of SDK worker
    processes, on loopback) until interrupted; print the beam_pipeline_args that use it."""
    import tempfile

    from tfpipe.orchestrators.beam.cluster import serve
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tfpipe-beam-cluster-")

    def announce(info: dict) -> None:
        print(f"beam_pipeline_args = {json.dumps(info['pipeline_args'])}", flush=True)
        print(f"tfpipe beam-cluster: job server on 127.0.0.1:{info['job_port']}, worker pool on "
              f"127.0.0.1:{info['worker_port']} ({args.workers} SDK worker processes per job; logs in {log_dir}); "
              f"Ctrl-C stops it", file=sys.stderr, flush=True)

    serve(workers=args.workers, log_dir=log_dir, job_port=args.job_port, worker_port=args.worker_port,
          announce=announce)
    return EXIT_OK


def _add_param_arg(p: argparse.ArgumentParser, sweep: bool) -> None:
    p.add_argument("-P", "--param", action="append", metavar="NAME=VALUE",
                   help="a create_pipeline() keyword (train_steps=1000) or a node parameter "
                        "(Trainer.train_steps=1000), converted to its declared type; repeatable"
                        + ("; a comma list (lr=0.001,0.01) makes a sweep: one run per combination "
                           "(a str value holding a comma goes in double quotes, as in CSV: 'a,\"b,c\"'; "
                           "list/dict values are JSON, never split)"
                           if sweep else ""))


def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run a pipeline file (it defines create_pipeline())")
    r.add_argument("pipeline")
    r.add_argument("--target", default="local", choices=sorted(RUN_TARGETS),
                   help="local (default), beam (one Beam pipeline), airflow (the compiled DAG under a real Airflow 3, "
                        "$TFPIPE_AIRFLOW), kfp-local (the compiled KFP spec under kfp.local); each exits 0 only "
                        "when every node succeeded")
    r.add_argument("--run-id")
    r.add_argument("--from", dest="from_node", metavar="NODE", help="run this node and everything downstream")
    r.add_argument("--to", dest="to_node", metavar="NODE", help="run up to and including this node")
    r.add_argument("--no-cache", action="store_true", help="re-execute every node")
    r.add_argument("--no-ir-cache", action="store_true",
                   help="load the pipeline file anew instead of using the IR stored by an earlier run when "
                        "nothing it read has changed (see docs/architecture.md, 'The IR cache')")
    r.add_argument("-q", "--quiet", action="store_true")
    r.add_argument("--parallel", type=_positive, default=None, metavar="N",
                   help="run up to N ready nodes at once, in processes forked from the warm task host "
                        "(default: the machine's cores, at most 4; 1 runs every node in this process); "
                        "a sweep runs up to N combinations at once (default: the number of cores)")
    r.add_argument("--mlflow-uri", help="export the run to this MLflow tracking URI "
                                        "(default: $TFPIPE_MLFLOW_TRACKING_URI, else none)")
    r.add_argument("--explain", action="store_true",
                   help="print which nodes would be taken from the cache and why the others would run; run nothing")
    r.add_argument("--json", action="store_true", help="with --explain: the plan as JSON")
    _add_param_arg(r, sweep=True)
    r.add_argument("--sort-by", metavar="METRIC",
                   help="a sweep's summary is sorted by this metric of the overall slice (best first)")
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plan", help="the cache plan of a run (tfpipe run --explain): for each node, cached or "
                                     "why it would run; runs nothing")
    pl.add_argument("pipeline")
    pl.add_argument("--from", dest="from_node", metavar="NODE")
    pl.add_argument("--to", dest="to_node", metavar="NODE")
    pl.add_argument("--no-cache", action="store_true")
    pl.add_argument("--json", action="store_true")
    _add_param_arg(pl, sweep=False)
    pl.set_defaults(fn=cmd_plan)

    c = sub.add_parser("compile", help="compile a pipeline file to its IR (or an orchestrator's format)")
    c.add_argument("pipeline")
    c.add_argument("-o", "--output")
    c.add_argument("--target", default="ir", help=f"one of {['ir', *COMPILE_TARGETS]} (default: ir)")
    _add_param_arg(c, sweep=False)
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
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="pipeline parameter NODE.PARAM=VALUE (or NODE__PARAM; repeatable)")
    s.add_argument("--run-id", help="tfpipe run id (default: the KFP job name)")
    s.add_argument("--display-name")
    s.add_argument("-o", "--output", help="also keep the compiled KFP spec here")
    s.add_argument("--dry-run", action="store_true", help="validate and print the job as JSON; no network")
    s.set_defaults(fn=cmd_submit)

    b = sub.add_parser("beam-cluster", help="serve a local Beam cluster (job server and an external pool of SDK "
                                            "worker processes, on loopback) for the pipeline's beam_pipeline_args")
    b.add_argument("--workers", type=_positive, default=2, metavar="N", help="SDK worker processes per job (default 2)")
    b.add_argument("--job-port", type=int, default=0, metavar="PORT", help="default: a free port")
    b.add_argument("--worker-port", type=int, default=0, metavar="PORT", help="default: a free port")
    b.add_argument("--log-dir", help="the workers' logs and bundles.log (default: a new temporary directory)")
    b.set_defaults(fn=cmd_beam_cluster)
