"""The ``tfpipe`` command. Start-up imports nothing heavy: TensorFlow, TFDV and Beam load
only inside the executors that need them."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Orchestrators are plugins: the core names them, never imports them statically.
RUNNERS = {"local": "tfpipe.orchestrators.local:LocalRunner", "beam": "tfpipe.orchestrators.beam:BeamDagRunner"}
COMPILERS: dict[str, str] = {"airflow": "tfpipe.orchestrators.airflow:compile_airflow",
                             "kubeflow": "tfpipe.orchestrators.kubeflow:compile_kubeflow"}
SUBMIT = "tfpipe.orchestrators.kubeflow.submit"  # tfpipe submit --target vertex|kubeflow


class UsageError(Exception):
    pass


def _plugin(ref: str):
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)


def load_pipeline(path: str):
    """Import a pipeline file and call its ``create_pipeline()``."""
    from tfpipe.launcher import load_module_from_file
    if not os.path.isfile(path):
        raise UsageError(f"pipeline file {path} does not exist")
    mod = load_module_from_file(path)
    if not hasattr(mod, "create_pipeline"):
        raise UsageError(f"pipeline file {path} defines no create_pipeline() function")
    p = mod.create_pipeline()
    p.source = os.path.abspath(path)
    return p


def _compile(path: str) -> dict:
    from tfpipe.compiler import compile_pipeline
    p = load_pipeline(path)
    ir = compile_pipeline(p)
    ir["pipeline"]["source"] = p.source
    return ir


def _metadata(args) -> str:
    from tfpipe.graph import default_home
    return args.metadata or os.path.join(default_home(), "metadata.sqlite")


def _store(args):
    from tfpipe.metadata import MetadataStore
    path = _metadata(args)
    if not os.path.exists(path):
        raise UsageError(f"no metadata store at {path}; run a pipeline first or pass --metadata")
    return MetadataStore(path)


def cmd_run(args) -> int:
    ir = _compile(args.pipeline)
    runner = _plugin(RUNNERS[args.target])(verbose=not args.quiet)
    res = runner.run(ir, run_id=args.run_id, from_node=args.from_node, to_node=args.to_node,
                     enable_cache=False if args.no_cache else None)
    from .tracking import post_run_hooks  # optional MLflow export (lazy, mlflow only if configured)
    try:
        post_run_hooks(ir, res.run_id, mlflow=args.mlflow_uri)
    except Exception as e:
        print(f"error: MLflow export of run {res.run_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    if not res.ok:
        print(f"error: {res.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_compile(args) -> int:
    from tfpipe.compiler import dump_ir
    ir = _compile(args.pipeline)
    if args.target == "ir":
        text = dump_ir(ir, args.output)
        if not args.output:
            sys.stdout.write(text)
        else:
            print(f"wrote {args.output}", file=sys.stderr)
        return EXIT_OK
    if args.target not in COMPILERS:
        raise UsageError(f"--target {args.target}: not available; expected one of {['ir', *COMPILERS]}")
    out = _plugin(COMPILERS[args.target])(ir, args.output)
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
    mod = importlib.import_module(SUBMIT)
    args.params = _param_values(args.param)
    ir = _compile(args.pipeline)
    try:
        return mod.main_submit(ir, args)
    except mod.SubmitError as e:
        raise UsageError(str(e)) from None


def cmd_runs_list(args) -> int:
    from tfpipe.tracking import runs as tracking
    rows = tracking.list_runs(_store(args), args.pipeline, limit=args.last)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(tracking.format_runs(rows))
    return EXIT_OK


def cmd_runs_show(args) -> int:
    from tfpipe.tracking import inspect as insp
    info = insp.show_run(_store(args), args.run)
    print(json.dumps(info, indent=2, default=str) if args.json else insp.format_run(info))
    return EXIT_OK


def cmd_artifacts_list(args) -> int:
    from tfpipe.tracking import inspect as insp
    rows = insp.list_artifacts(_store(args), args.type)
    print(json.dumps(rows, indent=2, default=str) if args.json else insp.format_artifacts(rows))
    return EXIT_OK


def cmd_lineage(args) -> int:
    from tfpipe.tracking import inspect as insp
    tree = insp.lineage(_store(args), args.artifact_id)
    print(json.dumps(tree, indent=2, default=str) if args.json else insp.format_lineage(tree))
    return EXIT_OK


def cmd_ci_plan(args) -> int:
    from tfpipe.tracking.ci_plan import CiPlanError, cli_plan
    try:
        return cli_plan(args)
    except CiPlanError as e:
        raise UsageError(str(e)) from None


def cmd_ci_module_params(args) -> int:
    from tfpipe.tracking.ci_plan import module_overrides
    overrides, unused = module_overrides(_compile(args.pipeline), args.files, args.module_root)
    for f in unused:
        print(f"tfpipe: warning: module file {f} is not a parameter of any node of {args.pipeline} "
              f"(uploaded, but only a module that imports it will see it)", file=sys.stderr)
    for name, value in sorted(overrides.items()):
        print(f"{name}={value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfpipe", description="TFX-style ML pipelines: run, compile, inspect.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a pipeline file (it defines create_pipeline())")
    r.add_argument("pipeline")
    r.add_argument("--target", default="local", choices=sorted(RUNNERS))
    r.add_argument("--run-id")
    r.add_argument("--from", dest="from_node", metavar="NODE", help="run this node and everything downstream")
    r.add_argument("--to", dest="to_node", metavar="NODE", help="run up to and including this node")
    r.add_argument("--no-cache", action="store_true", help="re-execute every node")
    r.add_argument("-q", "--quiet", action="store_true")
    r.add_argument("--mlflow-uri", help="export the run to this MLflow tracking URI "
                                        "(default: $TFPIPE_MLFLOW_TRACKING_URI, else none)")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("compile", help="compile a pipeline file to its IR (or an orchestrator's format)")
    c.add_argument("pipeline")
    c.add_argument("-o", "--output")
    c.add_argument("--target", default="ir")
    c.set_defaults(fn=cmd_compile)

    s = sub.add_parser("submit", help="submit a pipeline to Vertex AI Pipelines or a Kubeflow Pipelines cluster")
    s.add_argument("pipeline")
    s.add_argument("--target", required=True, choices=["vertex", "kubeflow"])
    s.add_argument("--project", help="GCP project (vertex)")
    s.add_argument("--region", help="GCP region, e.g. us-central1 (vertex)")
    s.add_argument("--pipeline-root", help="gs:// URI for the job's KFP outputs (vertex)")
    s.add_argument("--service-account", help="service account the job runs as (vertex)")
    s.add_argument("--host", help="KFP API URL (kubeflow)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="pipeline parameter (repeatable)")
    s.add_argument("--run-id", help="tfpipe run id (default: the KFP job name)")
    s.add_argument("--display-name")
    s.add_argument("-o", "--output", help="also keep the compiled KFP spec here")
    s.add_argument("--dry-run", action="store_true", help="validate and print the job as JSON; no network")
    s.set_defaults(fn=cmd_submit)

    def add_md(sp):
        sp.add_argument("--metadata", help="SQLite ML Metadata file (default: $TFPIPE_HOME/metadata.sqlite)")
        sp.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list and show pipeline runs").add_subparsers(dest="sub", required=True)
    rl = runs.add_parser("list")
    rl.add_argument("--pipeline")
    rl.add_argument("--last", type=int, metavar="N", help="only the N newest runs")
    add_md(rl)
    rl.set_defaults(fn=cmd_runs_list)
    rs = runs.add_parser("show")
    rs.add_argument("run")
    add_md(rs)
    rs.set_defaults(fn=cmd_runs_show)
    from .tracking import add_commands  # runs compare, models, reproduce, monitor, report, mlflow
    add_commands(sub, add_md, runs)

    arts = sub.add_parser("artifacts", help="list artifacts").add_subparsers(dest="sub", required=True)
    al = arts.add_parser("list")
    al.add_argument("--type")
    add_md(al)
    al.set_defaults(fn=cmd_artifacts_list)

    li = sub.add_parser("lineage", help="upstream executions and artifacts of an artifact")
    li.add_argument("artifact_id", type=int)
    add_md(li)
    li.set_defaults(fn=cmd_lineage)

    ci = sub.add_parser("ci", help="continuous training helpers").add_subparsers(dest="sub", required=True)
    cp = ci.add_parser("plan", help="what a change between two commits asks for: full_rebuild, "
                                    "modules_only, data_only or nothing (rules in tfpipe-ci.toml)")
    cp.add_argument("--base", required=True, help="base commit; empty or 000..0 = every file of head is new")
    cp.add_argument("--head", required=True, help="head commit")
    cp.add_argument("--config", help="rules file (default: tfpipe-ci.toml at the repository root)")
    cp.add_argument("--repo", default=".", help="git repository (default: current directory)")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(fn=cmd_ci_plan)
    cm = ci.add_parser("module-params", help="NAME=VALUE pipeline parameters that point a pipeline's "
                                             "module_file parameters at uploaded copies (modules-only retrain)")
    cm.add_argument("pipeline")
    cm.add_argument("--module-root", required=True, help="where the files were uploaded, e.g. /gcs/BUCKET/modules/SHA")
    cm.add_argument("--files", nargs="*", default=[], metavar="FILE", help="repository-relative module file paths")
    cm.set_defaults(fn=cmd_ci_module_params)
    return p


def quiet_libraries() -> None:
    """Keep TensorFlow's C++ start-up chatter and vendor deprecation notices out of the
    user's progress output (set TFPIPE_DEBUG=1 to see everything)."""
    if os.environ.get("TFPIPE_DEBUG"):
        return
    import warnings
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return args.fn(args)
    except UsageError as e:
        print(f"tfpipe: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a definition error in the user's pipeline, a bad store, ...
        from tfpipe.tracking.inspect import NotFound
        if isinstance(e, NotFound):
            print(f"tfpipe: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(f"tfpipe: error: {type(e).__name__}: {e}", file=sys.stderr)
        if os.environ.get("TFPIPE_DEBUG"):
            raise
        return EXIT_FAILED


def console_main() -> None:
    """The ``tfpipe`` console script. After a run that loaded TensorFlow, it leaves without
    the interpreter's final garbage collection, where TensorFlow's traced functions print
    ignored TypeErrors; everything the run wrote is already closed and flushed."""
    rc = main()
    if "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)

