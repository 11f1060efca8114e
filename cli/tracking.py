"""The tracking commands of ``tfpipe``: runs (list, show, compare), artifacts, lineage,
models (registry), reproduce, monitor, report and mlflow. Each command's work lives in
``tfpipe.tracking``, imported when the command runs."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_FAILED, EXIT_OK, UsageError, add_metadata_args, open_store

__all__ = ["add_commands"]


def cmd_runs_list(args) -> int:
    from tfpipe.tracking.runs import format_runs, list_runs
    rows = list_runs(open_store(args.metadata), args.pipeline, limit=args.last)
    print(json.dumps(rows, indent=2, default=str) if args.json else format_runs(rows))
    return EXIT_OK


def cmd_runs_show(args) -> int:
    from tfpipe.tracking import inspect as insp
    info = insp.show_run(open_store(args.metadata), args.run)
    print(json.dumps(info, indent=2, default=str) if args.json else insp.format_run(info))
    return EXIT_OK


def cmd_artifacts_list(args) -> int:
    from tfpipe.tracking import inspect as insp
    rows = insp.list_artifacts(open_store(args.metadata), args.type)
    print(json.dumps(rows, indent=2, default=str) if args.json else insp.format_artifacts(rows))
    return EXIT_OK


def cmd_lineage(args) -> int:
    from tfpipe.tracking import inspect as insp
    tree = insp.lineage(open_store(args.metadata), args.artifact_id)
    print(json.dumps(tree, indent=2, default=str) if args.json else insp.format_lineage(tree))
    return EXIT_OK


# -- commands --------------------------------------------------------------------------------
def cmd_runs_compare(args) -> int:
    from tfpipe.tracking.runs import compare_runs, format_compare, select_runs
    store = open_store(args.metadata)
    if sum(map(bool, (args.runs, args.last, args.sweep))) != 1:
        raise UsageError("runs compare: give the runs (RUN RUN ...), or --last N, or --sweep ID (one of them)")
    if args.last is not None and args.last < 2:
        raise UsageError(f"--last: expected a number of runs >= 2, found {args.last}")
    runs = args.runs or select_runs(store, last=args.last, sweep=args.sweep, pipeline=args.pipeline)
    if args.output:
        from tfpipe.tracking.compare_page import write_compare
        if len(runs) < 2:
            raise UsageError(f"runs compare needs at least two runs, found {len(runs)}: {runs}")
        print(f"wrote {write_compare(store, runs, args.output)} ({len(runs)} runs)", file=sys.stderr)
        return EXIT_OK
    cmp = compare_runs(store, runs, diff=args.diff)
    if args.json:
        print(json.dumps(cmp, indent=2, default=str))
    else:
        print(format_compare(cmp, color=False if args.no_color else None, all_rows=args.all))
    return EXIT_OK


def cmd_models_list(args) -> int:
    from tfpipe.tracking.registry import Registry, format_models
    rows = Registry(open_store(args.metadata)).list_versions(args.model)
    print(json.dumps(rows, indent=2, default=str) if args.json else format_models(rows))
    return EXIT_OK


def cmd_models_promote(args) -> int:
    from tfpipe.tracking.registry import Registry
    t = Registry(open_store(args.metadata)).promote(args.version, args.stage, reason=args.reason, model=args.model)
    print(json.dumps(t, indent=2, default=str) if args.json else
          f"{t['model']} version {t['version']}: {t['from_stage']} -> {t['to_stage']} by {t['user']}"
          + (f" (serving -> {t['serving']})" if t.get("serving") else ""))
    return EXIT_OK


def cmd_models_rollback(args) -> int:
    from tfpipe.tracking.registry import Registry
    t = Registry(open_store(args.metadata)).rollback(reason=args.reason, model=args.model)
    print(json.dumps(t, indent=2, default=str) if args.json else
          f"{t['model']}: production rolled back from version {t['previous_production']} to {t['version']} "
          f"by {t['user']}" + (f" (serving -> {t['serving']})" if t.get("serving") else ""))
    return EXIT_OK


def cmd_models_show(args) -> int:
    from tfpipe.tracking.registry import Registry, format_version
    info = Registry(open_store(args.metadata)).show(args.version, model=args.model)
    print(json.dumps(info, indent=2, default=str) if args.json else format_version(info))
    return EXIT_OK


def cmd_reproduce(args) -> int:
    from tfpipe.tracking.reproduce import format_reproduction, reproduce
    res = reproduce(open_store(args.metadata), args.run, out_dir=args.output, allow_dirty=args.allow_dirty,
                    verbose=not args.quiet, env=args.env)
    print(json.dumps(res, indent=2, default=str) if args.json else format_reproduction(res))
    return EXIT_OK if res["status"] == "COMPLETE" else EXIT_FAILED


def cmd_monitor(args) -> int:
    from tfpipe.tracking.monitor import run_monitor
    return run_monitor(open_store(args.metadata), data=args.data, version=args.model, model=args.registered_model,
              drift_threshold=args.drift_threshold, skew_threshold=args.skew_threshold,
              thresholds=args.threshold, as_json=args.json, output=args.output)


def cmd_report(args) -> int:
    from tfpipe.tracking.report import write_report
    path = write_report(open_store(args.metadata), args.run, args.output)
    print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def cmd_mlflow_export(args) -> int:
    from tfpipe.tracking.mlflow_export import export_run, tracking_uri
    uri = tracking_uri(args.mlflow_uri)
    if not uri:
        raise UsageError("no MLflow tracking URI: pass --mlflow-uri (e.g. sqlite:///mlflow.db) or set "
                                "TFPIPE_MLFLOW_TRACKING_URI")
    res = export_run(open_store(args.metadata), args.run, uri, artifact_location=args.artifact_location)
    print(json.dumps(res, indent=2, default=str) if args.json else
          f"exported run {args.run} as MLflow run {res['mlflow_run_id']} in experiment {res['experiment']}"
          + (f"; registered model {res['registered_model']} version {res['model_version']}"
             if res.get("model_version") else ""))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_md = add_metadata_args
    runs = sub.add_parser("runs", help="list, show and compare pipeline runs").add_subparsers(dest="sub", required=True)
    rl = runs.add_parser("list")
    rl.add_argument("--pipeline")
    rl.add_argument("--last", type=int, metavar="N", help="only the N newest runs")
    add_md(rl)
    rl.set_defaults(fn=cmd_runs_list)
    rs = runs.add_parser("show")
    rs.add_argument("run")
    add_md(rs)
    rs.set_defaults(fn=cmd_runs_show)
    rc = runs.add_parser("compare", help="compare runs side by side: parameters, data, code, metrics, artifacts")
    rc.add_argument("runs", nargs="*", metavar="RUN")
    rc.add_argument("--last", type=int, metavar="N", help="the N newest runs (of --pipeline)")
    rc.add_argument("--sweep", metavar="ID", help="the runs of a sweep (tfpipe run -P a=1,2)")
    rc.add_argument("--pipeline", help="with --last: runs of this pipeline only")
    rc.add_argument("--diff", action="store_true", help="a short unified diff (from git) of each changed code file")
    rc.add_argument("-o", "--output", metavar="HTML",
                    help="write a self-contained HTML compare page (table, metrics against the varied parameters, "
                         "training curves overlaid) instead of the text")
    rc.add_argument("--all", action="store_true", help="show identical rows too")
    rc.add_argument("--no-color", action="store_true")
    add_md(rc)
    rc.set_defaults(fn=cmd_runs_compare)

    models = sub.add_parser("models", help="model registry: versions, stages, promotion, rollback")
    msub = models.add_subparsers(dest="sub", required=True)
    ml = msub.add_parser("list", help="pushed model versions and their stages")
    ml.add_argument("--model", help="registered model name (default: all)")
    add_md(ml)
    ml.set_defaults(fn=cmd_models_list)
    mp = msub.add_parser("promote", help="move a version to staging or production")
    mp.add_argument("version")
    mp.add_argument("--stage", required=True, choices=["staging", "production", "archived"])
    mp.add_argument("--reason", default="")
    mp.add_argument("--model")
    add_md(mp)
    mp.set_defaults(fn=cmd_models_promote)
    mr = msub.add_parser("rollback", help="production returns to the previous production version")
    mr.add_argument("--reason", default="")
    mr.add_argument("--model")
    add_md(mr)
    mr.set_defaults(fn=cmd_models_rollback)
    ms = msub.add_parser("show", help="a version's stage history and lineage (data, schema, transform, code, "
                                      "parameters, evaluation)")
    ms.add_argument("version")
    ms.add_argument("--model")
    add_md(ms)
    ms.set_defaults(fn=cmd_models_show)

    rp = sub.add_parser("reproduce", help="re-run a recorded run from its code version, parameters and data")
    rp.add_argument("run")
    rp.add_argument("-o", "--output", help="fresh directory for the re-run (default: a new temporary one)")
    rp.add_argument("--allow-dirty", action="store_true",
                    help="re-run even though the run recorded uncommitted changes (they are not reproduced)")
    rp.add_argument("--env", action="store_true",
                    help="re-run in a virtualenv built from the run's recorded environment lock (cached by its hash "
                         "under $TFPIPE_ENV_CACHE or $XDG_CACHE_HOME/tfpipe/envs); without it, the run's differences "
                         "from this environment are listed")
    rp.add_argument("-q", "--quiet", action="store_true")
    add_md(rp)
    rp.set_defaults(fn=cmd_reproduce)

    mo = sub.add_parser("monitor", help="drift and skew of new data against a model's training data; "
                                        "exit 1 when a threshold is exceeded")
    mo.add_argument("--data", required=True, help="CSV/Parquet file or directory of new (serving) data")
    mo.add_argument("--model", required=True, help="model version (see 'tfpipe models list') or 'production'")
    mo.add_argument("--registered-model", help="registered model name, when several exist")
    mo.add_argument("--drift-threshold", type=float, default=0.3,
                    help="default threshold of every feature (L-infinity for categorical, "
                         "Jensen-Shannon for numeric); default 0.3")
    mo.add_argument("--skew-threshold", type=float, default=None,
                    help="threshold for training/serving skew (default: the drift threshold)")
    mo.add_argument("--threshold", action="append", default=[], metavar="FEATURE=VALUE",
                    help="a per-feature threshold (repeatable)")
    mo.add_argument("-o", "--output", help="write the monitoring report (JSON) here")
    add_md(mo)
    mo.set_defaults(fn=cmd_monitor)

    rep = sub.add_parser("report", help="one self-contained HTML page about a run")
    rep.add_argument("run")
    rep.add_argument("-o", "--output", default="report.html")
    add_md(rep)
    rep.set_defaults(fn=cmd_report)

    mf = sub.add_parser("mlflow", help="export runs to MLflow").add_subparsers(dest="sub", required=True)
    me = mf.add_parser("export", help="export one run (params, metrics, artifacts, registered model)")
    me.add_argument("run")
    me.add_argument("--mlflow-uri", help="tracking URI (default: $TFPIPE_MLFLOW_TRACKING_URI)")
    me.add_argument("--artifact-location", help="artifact root of a new experiment (default: MLflow's)")
    add_md(me)
    me.set_defaults(fn=cmd_mlflow_export)

    arts = sub.add_parser("artifacts", help="list artifacts").add_subparsers(dest="sub", required=True)
    al = arts.add_parser("list")
    al.add_argument("--type")
    add_md(al)
    al.set_defaults(fn=cmd_artifacts_list)

    li = sub.add_parser("lineage", help="upstream executions and artifacts of an artifact")
    li.add_argument("artifact_id", type=int)
    add_md(li)
    li.set_defaults(fn=cmd_lineage)
