"""Optional export of a recorded pipeline run to MLflow.

Each pipeline run becomes one MLflow run in an experiment named after the pipeline:
parameters (``<node>.<parameter>``), metrics (evaluation metrics per slice, the Trainer's
per-epoch history with steps, Tuner trial scores, node durations), tags (pipeline, run
id, status, ``mlflow.source.git.commit`` and the dirty flag) and artifacts (schema,
anomalies, evaluation, the HTML run report). A pushed model is logged as the run's
``model`` artifact and registered as a new version of the registered model named after
the pipeline. The model is logged as an MLflow Model with the ``tensorflow`` flavor (an
``MLmodel`` file, the SavedModel under ``tf2model/`` with its signatures, and a
``__call__`` that is the serving signature), so ``mlflow.pyfunc.load_model("models:/NAME@production")``
loads it and ``predict`` takes serialized raw tf.Examples (``np.array([ex.SerializeToString(), ...])``)
and returns the ``outputs`` tensor. The registry's aliases are mirrored onto the registered
model (``set_registered_model_alias`` / ``delete_registered_model_alias``) after every alias
change and after every export.

MLflow is imported only here, only when an export is asked for (``tfpipe run
--mlflow-uri``, ``$TFPIPE_MLFLOW_TRACKING_URI``, the pipeline setting
``mlflow_tracking_uri`` or ``tfpipe mlflow export RUN``). ``sqlite:///path/mlflow.db``
works offline; its artifacts go beside the database unless an artifact location is given.
"""
from __future__ import annotations

import json
import os
import re
import tempfile

from tfpipe.metadata import MetadataStore
from tfpipe.state import ArtifactState

from .runs import run_details

__all__ = ["export_run", "export_after_run", "tracking_uri", "MlflowExportError", "mlflow_key", "mirror_aliases",
           "save_mlflow_model"]

_STATUS = {"COMPLETE": "FINISHED", "FAILED": "FAILED", "RUNNING": "RUNNING"}
_MAX_PARAM = 6000


class MlflowExportError(RuntimeError):
    pass


def tracking_uri(explicit: str | None = None, settings: dict | None = None) -> str | None:
    """The MLflow tracking URI: ``explicit`` (``--mlflow-uri``), else
    ``$TFPIPE_MLFLOW_TRACKING_URI``, else the pipeline setting ``mlflow_tracking_uri``;
    ``None`` (no export) by default."""
    return (explicit or os.environ.get("TFPIPE_MLFLOW_TRACKING_URI") or (settings or {}).get("mlflow_tracking_uri")
            or None)


def export_after_run(ir: dict, run_id: str, uri: str | None = None) -> dict | None:
    """What ``tfpipe run`` does after a run: export it when an MLflow URI is configured
    (``uri``, the environment or the pipeline's settings); the export's summary, or None."""
    uri = tracking_uri(uri, ir["pipeline"].get("settings"))
    if not uri:
        return None
    res = export_run(MetadataStore(ir["pipeline"]["metadata"]), run_id, uri)
    return {**res, "uri": uri}


def mlflow_key(*parts: str) -> str:
    """A metric/param name MLflow accepts (letters, digits, ``_-. /``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", ".".join(p for p in parts if p))[:250]


def _default_artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///"):]
        return os.path.join(os.path.dirname(os.path.abspath(db)), "mlartifacts")
    return None


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise MlflowExportError(f"MLflow export to {uri} needs the mlflow package ({e})") from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _params(info: dict) -> dict[str, str]:
    out = {}
    for e in info["executions"]:
        for k, v in sorted(e["parameters"].items()):
            if k in ("input_files", "previous_span_files"):
                continue
            s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            out[mlflow_key(e["node_id"], k)] = s[:_MAX_PARAM]
    for k, v in (info.get("params") or {}).items():  # given with -P: keywords under their own names
        if mlflow_key(k) not in out:
            out[mlflow_key(k)] = (v if isinstance(v, str) else json.dumps(v, sort_keys=True))[:_MAX_PARAM]
    return out


def _metrics(info: dict, ts: int):
    from mlflow.entities import Metric
    ms = []
    for s, metrics in info["evaluation"]["slices"].items():
        for k, v in metrics.items():
            ms.append(Metric(mlflow_key("eval", s, k), float(v), ts, 0))
    for k, values in info["history"].items():
        for step, v in enumerate(values):
            if v == v:  # not NaN
                ms.append(Metric(mlflow_key("train", k), float(v), ts, step))
    for t in info["trials"]:
        if t.get("score") is not None:
            step = t["trial"] if isinstance(t["trial"], int) else 0
            ms.append(Metric("tuner.score", float(t["score"]), ts, step))
    for e in info["executions"]:
        if e["duration_s"] is not None:
            ms.append(Metric(mlflow_key("duration_s", e["node_id"]), float(e["duration_s"]), ts, 0))
    if info.get("duration_s") is not None:
        ms.append(Metric("duration_s", float(info["duration_s"]), ts, 0))
    return ms


def _artifact_dirs(info: dict) -> list[tuple[str, str]]:
    """(local path, artifact path) of the schema, anomalies and evaluation outputs."""
    want = {"Schema": "schema", "ExampleAnomalies": "anomalies", "ModelEvaluation": "evaluation"}
    out = []
    for e in info["executions"]:
        for outs in e["outputs"].values():
            for o in outs:
                if o["type"] in want and o["state"] == ArtifactState.LIVE and os.path.isdir(o["uri"]):
                    out.append((o["uri"], want[o["type"]]))
    return out


def export_run(store: MetadataStore, run: str, tracking_uri: str, artifact_location: str | None = None,
               experiment: str | None = None, with_report: bool = True) -> dict:
    """Export one recorded run; returns ``{"mlflow_run_id", "experiment", "registered_model",
    "model_version"}``. Exporting a run again returns the MLflow run made the first time."""
    from mlflow.entities import Param

    info = run_details(store, run)
    client = _client(tracking_uri)
    name = experiment or info["pipeline"]
    exp_id = _experiment(client, name, artifact_location or _default_artifact_location(tracking_uri))
    found = client.search_runs([exp_id], filter_string=f"tags.`tfpipe.run_id` = '{info['run_id']}'")
    if found:
        r = found[0]
        return {"mlflow_run_id": r.info.run_id, "experiment": name, "experiment_id": exp_id,
                "registered_model": r.data.tags.get("tfpipe.registered_model"),
                "model_version": r.data.tags.get("tfpipe.model_version"), "already_exported": True}
    start = int(1000 * (info["started_at"] or 0)) or None
    tags = {"tfpipe.run_id": info["run_id"], "tfpipe.pipeline": info["pipeline"],
            "tfpipe.status": info["status"] or "?", "mlflow.runName": info["run_id"],
            "tfpipe.git_dirty": str(bool(info["git_dirty"])).lower()}
    if info["git_commit"]:
        tags["mlflow.source.git.commit"] = info["git_commit"]
    data_fps = sorted({e["parameters"]["input_fingerprint"] for e in info["executions"]
                       if e["parameters"].get("input_fingerprint")})
    if data_fps:
        tags["tfpipe.data_fingerprint"] = ",".join(data_fps)
    if info["blessing"] is not None:
        tags["tfpipe.blessed"] = str(bool(info["blessing"].get("blessed"))).lower()
    run_obj = client.create_run(exp_id, start_time=start, tags=tags, run_name=info["run_id"])
    rid = run_obj.info.run_id
    try:
        ts = start or 0
        params = [Param(k, v) for k, v in _params(info).items()]
        metrics = _metrics(info, ts)
        for i in range(0, max(len(params), len(metrics), 1), 100):  # MLflow batch limits
            client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
        for path, apath in _artifact_dirs(info):
            client.log_artifacts(rid, path, apath)
        if with_report:
            from .report import write_report
            with tempfile.TemporaryDirectory() as d:
                client.log_artifact(rid, write_report(store, info["run_id"], os.path.join(d, "report.html")))
        result = {"mlflow_run_id": rid, "experiment": name, "experiment_id": exp_id,
                  "registered_model": None, "model_version": None}
        pushed = info.get("pushed")
        if pushed and pushed.get("pushed") and pushed.get("destination") and pushed.get("pushed_version"):
            src = os.path.join(pushed["destination"], str(pushed["pushed_version"]))
            if os.path.isdir(src):
                with tempfile.TemporaryDirectory() as d:
                    client.log_artifacts(rid, save_mlflow_model(src, os.path.join(d, "model")), "model")
                result.update(_register(client, info, rid, pushed))
                from .aliases import held_aliases
                held = held_aliases(store, result["registered_model"])
                if held:
                    try:
                        result["aliases"] = mirror_aliases(client, result["registered_model"], held)["aliases"]
                    except MlflowExportError as e:  # other versions not exported yet: said, not fatal here
                        result["alias_warning"] = str(e)
        for k, v in (("tfpipe.registered_model", result["registered_model"]),
                     ("tfpipe.model_version", result["model_version"])):
            if v is not None:
                client.set_tag(rid, k, str(v))
        client.set_terminated(rid, status=_STATUS.get(info["status"], "FINISHED"),
                              end_time=int(1000 * ((info["started_at"] or 0) + (info["duration_s"] or 0))) or None)
    except BaseException:
        client.set_terminated(rid, status="FAILED")
        raise
    return result


def _register(client, info: dict, rid: str, pushed: dict) -> dict:
    """A new model version, unless this pushed version is registered already (a cached
    Pusher, or a Pusher that found the same model at the destination)."""
    name = info["pipeline"]
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, tags={"tfpipe.pipeline": name},
                                       description=f"models pushed by the tfpipe pipeline {name}")
    for mv in client.search_model_versions(f"name = '{name}'"):
        if (mv.tags.get("tfpipe.pushed_version") == str(pushed["pushed_version"])
                and mv.tags.get("tfpipe.destination") == pushed["destination"]):
            return {"registered_model": name, "model_version": mv.version}
    run = client.get_run(rid)
    v = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=rid,
                                    tags={"tfpipe.pushed_version": str(pushed["pushed_version"]),
                                          "tfpipe.destination": pushed["destination"],
                                          "tfpipe.run_id": info["run_id"]},
                                    description=f"tfpipe run {info['run_id']}, pushed version "
                                                f"{pushed['pushed_version']}")
    return {"registered_model": name, "model_version": v.version}



def save_mlflow_model(saved_model_dir: str, path: str) -> str:
    """An MLflow Model (tensorflow flavor) at ``path`` wrapping the pushed SavedModel: its
    signatures kept, and ``__call__`` = ``serving_default`` (what MLflow's pyfunc calls)."""
    import mlflow.tensorflow
    import tensorflow as tf

    inner = tf.saved_model.load(saved_model_dir)
    serve = inner.signatures["serving_default"]
    input_name = next(iter(serve.structured_input_signature[1]))
    output_names = sorted(serve.structured_outputs)

    class PyfuncModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])
        def __call__(self, examples):
            out = self.inner.signatures["serving_default"](**{input_name: examples})
            return out[output_names[0]] if len(output_names) == 1 else out

    module = PyfuncModule()
    signatures = {k: inner.signatures[k] for k in inner.signatures}
    mlflow.tensorflow.save_model(module, path, saved_model_kwargs={"signatures": signatures},
                                 pip_requirements=[f"tensorflow=={tf.__version__}"])
    return path


def mirror_aliases(client_or_uri, name: str, held: dict) -> dict:
    """Make the MLflow registered model ``name``'s aliases what the registry says
    (``held``: alias -> version row with ``version`` and ``destination``). MLflow versions
    are matched by the tags the export set (``tfpipe.pushed_version``, ``tfpipe.destination``).
    Raises MlflowExportError naming any aliased version that was never exported."""
    client = _client(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    try:
        client.get_registered_model(name)
    except Exception:
        raise MlflowExportError(f"MLflow has no registered model {name!r}: export a run that pushed a model "
                                f"first ('tfpipe mlflow export RUN')") from None
    by_push = {(mv.tags.get("tfpipe.pushed_version"), mv.tags.get("tfpipe.destination")): mv.version
               for mv in client.search_model_versions(f"name = '{name}'")}
    want, missing = {}, []
    for alias, v in held.items():
        mv = by_push.get((str(v["version"]), v["destination"]))
        if mv is None:
            missing.append(f"{alias} -> version {v['version']}")
        else:
            want[alias] = str(mv)
    have = dict(client.get_registered_model(name).aliases or {})
    for alias in sorted(set(have) - set(want)):
        if not any(alias == m.split(" ")[0] for m in missing):
            client.delete_registered_model_alias(name, alias)
    for alias, mv in sorted(want.items()):
        if have.get(alias) != mv:
            client.set_registered_model_alias(name, alias, mv)
    if missing:
        raise MlflowExportError(f"MLflow registered model {name}: alias(es) {', '.join(missing)} not mirrored: "
                                f"those versions were never exported to MLflow ('tfpipe mlflow export RUN' of the "
                                f"runs that pushed them); the others are mirrored")
    return {"registered_model": name, "aliases": want}
