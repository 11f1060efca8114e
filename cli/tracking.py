"""The tracking commands of ``tfpipe``: runs (list, show, compare), artifacts, lineage,
models (registry and aliases), serve, reproduce, monitor, report and mlflow. Each command's work lives in
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
    from tfpipe.tracking import records
    info = records.show_run(open_store(args.metadata), args.run)
    print(json.dumps(info, indent=2, default=str) if args.json else records.format_run(info))
    return EXIT_OK


def cmd_artifacts_list(args) -> int:
    from tfpipe.tracking import records
    rows = records.list_artifacts(open_store(args.metadata), args.type)
    print(json.dumps(rows, indent=2, default=str) if args.json else records.format_artifacts(rows))
    return EXIT_OK


def cmd_lineage(args) -> int:
    from tfpipe.tracking import records
    tree = records.lineage(open_store(args.metadata), args.artifact_id)
    print(json.dumps(tree, indent=2, default=str) if args.json else records.format_lineage(tree))
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


def _mlflow_uri(args) -> str | None:
    from tfpipe.tracking.mlflow_export import tracking_uri
    return tracking_uri(getattr(args, "mlflow_uri", None))


def _published(args, t: dict) -> int:
    """Print a registry change and where it was published; exit 1 when the MLflow mirror failed."""
    for path in t.get("models_config") or []:
        print(f"  wrote {path}", file=sys.stderr)
    if t.get("mlflow"):
        print(f"  MLflow {t['mlflow']['registered_model']}: aliases {t['mlflow']['aliases']}", file=sys.stderr)
    return EXIT_OK


def _registry_change(args, fn) -> int:
    from tfpipe.tracking.mlflow_export import MlflowExportError
    try:
        t = fn()
    except MlflowExportError as e:
        print(f"tfpipe: error: the change is recorded and published to the model servers, but {e}", file=sys.stderr)
        return EXIT_FAILED
    if t.get("changed") is False:  # the alias already names that version: nothing recorded, not an error
        print(json.dumps(t, indent=2, default=str) if args.json else t["message"])
        return EXIT_OK
    print(json.dumps(t, indent=2, default=str) if args.json else args.describe(t))
    return _published(args, t)


def cmd_models_promote(args) -> int:
    from tfpipe.tracking.registry import Registry
    args.describe = lambda t: (f"{t['model']} version {t['version']}: {t['from_stage']} -> {t['to_stage']} by "
                               f"{t['user']}" + (f" (serving -> {t['serving']})" if t.get("serving") else ""))
    reg = Registry(open_store(args.metadata))
    return _registry_change(args, lambda: reg.promote(args.version, args.stage, reason=args.reason, model=args.model,
                                                      mlflow_uri=_mlflow_uri(args)))


def cmd_models_rollback(args) -> int:
    from tfpipe.tracking.registry import Registry
    args.describe = lambda t: (f"{t['model']}: production rolled back from version {t['previous_production']} to "
                               f"{t['version']} by {t['user']}"
                               + (f" (serving -> {t['serving']})" if t.get("serving") else ""))
    reg = Registry(open_store(args.metadata))
    return _registry_change(args, lambda: reg.rollback(reason=args.reason, model=args.model,
                                                       mlflow_uri=_mlflow_uri(args)))


def cmd_models_alias_set(args) -> int:
    from tfpipe.tracking.registry import Registry, parse_model_alias
    name, alias = parse_model_alias(args.model_alias)
    args.describe = lambda t: (f"{name}@{alias} -> version {t['version']}"
                               + (f" (was {t['previous_version']})" if t.get("previous_version") else "")
                               + f" by {t['user']}")
    reg = Registry(open_store(args.metadata))
    return _registry_change(args, lambda: reg.set_alias(name, alias, args.version, reason=args.reason,
                                                        mlflow_uri=_mlflow_uri(args)))


def cmd_models_alias_delete(args) -> int:
    from tfpipe.tracking.registry import Registry, parse_model_alias
    name, alias = parse_model_alias(args.model_alias)
    args.describe = lambda t: f"{name}@{alias} deleted (was version {t['version']}) by {t['user']}"
    reg = Registry(open_store(args.metadata))
    return _registry_change(args, lambda: reg.delete_alias(name, alias, reason=args.reason,
                                                           mlflow_uri=_mlflow_uri(args)))


def cmd_models_sync(args) -> int:
    from tfpipe.tracking.registry import Registry
    reg = Registry(open_store(args.metadata))
    names = reg.model_names(args.model)
    def describe(t):
        rows = []
        for n in names:
            held = ", ".join(f"{a}={v}" for a, v in t[n]["aliases"].items()) or "none"
            rows.append(f"{n}: aliases {held}")
        return "\n".join(rows)
    args.describe = describe

    def sync():
        out = {}
        for n in names:
            out[n] = reg.publish(n, mlflow_uri=_mlflow_uri(args))
        out["models_config"] = sorted({p for r in out.values() for p in r["models_config"]})
        return out
    return _registry_change(args, sync)


def cmd_serve(args) -> int:
    from tfpipe.serving.options import server_kwargs
    from tfpipe.serving.request_log import LogError
    from tfpipe.serving.server import ServeError
    from tfpipe.tracking.serve import run_serve
    try:
        return run_serve(open_store(args.metadata), models=args.model or None, log_requests=args.log_requests,
                         sample_rate=args.sample_rate, **server_kwargs(args))
    except (ServeError, LogError) as e:
        raise UsageError(str(e)) from None


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
    return run_monitor(open_store(args.metadata), data=args.data, previous=args.previous, requests=args.requests,
                       since=args.since, model=args.model, version=args.version, alias=args.alias,
                       drift_threshold=args.drift_threshold, skew_threshold=args.skew_threshold,
                       thresholds=args.threshold, min_examples=args.min_examples,
                       false_alarm_rate=args.false_alarm_rate, as_json=args.json, output=args.output)


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


def add_mlflow(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--mlflow-uri", help="mirror aliases to this MLflow tracking URI (default: "
                                         "$TFPIPE_MLFLOW_TRACKING_URI; none: no mirror)")


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

    models = sub.add_parser("models", help="model registry: versions, aliases (stages), promotion, rollback")
    msub = models.add_subparsers(dest="sub", required=True)
    ml = msub.add_parser("list", help="pushed model versions and their stages")
    ml.add_argument("--model", help="registered model name (default: all)")
    add_md(ml)
    ml.set_defaults(fn=cmd_models_list)
    mp = msub.add_parser("promote", help="move a version to staging or production (sets that alias)")
    mp.add_argument("version")
    mp.add_argument("--stage", required=True, choices=["staging", "production", "archived"])
    mp.add_argument("--reason", default="")
    mp.add_argument("--model")
    add_md(mp)
    add_mlflow(mp)
    mp.set_defaults(fn=cmd_models_promote)
    mr = msub.add_parser("rollback", help="production returns to the previous production version")
    mr.add_argument("--reason", default="")
    mr.add_argument("--model")
    add_md(mr)
    add_mlflow(mr)
    mr.set_defaults(fn=cmd_models_rollback)
    ma = msub.add_parser("alias", help="set or delete an alias (NAME@ALIAS) of a registered model")
    masub = ma.add_subparsers(dest="alias_cmd", required=True)
    mas = masub.add_parser("set", help="point NAME@ALIAS at a version")
    mas.add_argument("model_alias", metavar="NAME@ALIAS")
    mas.add_argument("version", help="pushed version, #ARTIFACT_ID, or another alias")
    mas.add_argument("--reason", default="")
    add_md(mas)
    add_mlflow(mas)
    mas.set_defaults(fn=cmd_models_alias_set)
    mad = masub.add_parser("delete", help="remove NAME@ALIAS (production cannot be deleted: roll back instead)")
    mad.add_argument("model_alias", metavar="NAME@ALIAS")
    mad.add_argument("--reason", default="")
    add_md(mad)
    add_mlflow(mad)
    mad.set_defaults(fn=cmd_models_alias_delete)
    my = msub.add_parser("sync", help="write models.config, the serving link and MLflow's aliases again from "
                                      "the records")
    my.add_argument("--model")
    add_md(my)
    add_mlflow(my)
    my.set_defaults(fn=cmd_models_sync)

    sv = sub.add_parser("serve", help="serve the registry's models over TensorFlow Serving's REST API")
    sv.add_argument("--model", action="append", default=[], metavar="NAME",
                    help="a registered model to serve (repeatable; default: every registered model)")
    from tfpipe.serving.options import add_server_args
    add_server_args(sv)
    sv.add_argument("--metadata", help="SQLite ML Metadata file (default: $TFPIPE_HOME/metadata.sqlite)")
    sv.set_defaults(fn=cmd_serve)
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

    mo = sub.add_parser("monitor", help="skew (vs training) and drift (vs the data before) of serving data; "
                                        "exit 1 when a threshold is exceeded")
    src = mo.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="CSV/Parquet/TFRecord file or directory of serving data")
    src.add_argument("--requests", metavar="SINK", help="the request log of 'tfpipe serve --log-requests SINK'")
    mo.add_argument("--previous", metavar="DATA", help="with --data: the previous batch or span (drift baseline)")
    mo.add_argument("--since", default="24h", help="with --requests: the window, e.g. 30m, 24h, 7d (default 24h); "
                                                  "drift compares it with the window before")
    mo.add_argument("--model", metavar="NAME", help="registered model (as in 'tfpipe models'); needed when "
                                                    "there are several")
    which = mo.add_mutually_exclusive_group()
    which.add_argument("--version", help="model version whose training data is the skew baseline")
    which.add_argument("--alias", help="alias of that version (default: production)")
    mo.add_argument("--drift-threshold", type=float, default=0.05,
                    help="the smallest distance of every feature that counts as a shift (L-infinity for "
                         "categorical, Jensen-Shannon for numeric); default 0.05")
    mo.add_argument("--skew-threshold", type=float, default=None,
                    help="default skew threshold (default: the drift threshold)")
    mo.add_argument("--threshold", action="append", default=[], metavar="[skew:|drift:]FEATURE=VALUE",
                    help="a per-feature threshold (repeatable)")
    mo.add_argument("--min-examples", type=int, default=100, metavar="N",
                    help="no verdict on a feature with fewer examples (requests) than this; default 100")
    mo.add_argument("--false-alarm-rate", type=float, default=0.01, metavar="RATE",
                    help="the fraction of runs on unshifted data that may exit 1; default 0.01")
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
