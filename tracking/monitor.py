"""``tfpipe monitor``: TFDV statistics of serving data compared with what the model was
trained on (skew) and with the data before it (drift), per feature, with the label left
out.

Serving data is either a file or directory (``--data``) or the request log of
``tfpipe serve --log-requests`` (``--requests SINK --since 24h``: the logged raw features of
the last 24 hours). Then, per feature, with TFDV's comparators (L-infinity distance for
categorical features, Jensen-Shannon divergence for numeric ones) and per-feature
thresholds:

- **skew**: the serving data against the training statistics of the model version (found
  through its lineage in ML Metadata: the ExampleStatistics over its training Examples,
  the Schema upstream of its Trainer);
- **drift**: the serving data against the data before it: ``--previous`` (the previous
  batch or span) with ``--data``; the previous window of the same length with
  ``--requests`` (the 24 hours before the last 24). Not measured when there is nothing
  before.

The model is named as ``tfpipe models`` names it: ``--model NAME`` (the registered model;
needed when there are several), ``--version V`` or ``--alias A`` (default: the
``production`` alias). Exit status 1 when any measurement exceeds its threshold (a
scheduled job retrains on it), 0 otherwise, 2 on bad input.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys

from tfpipe.artifacts import ExampleStatistics
from tfpipe.state import SUCCEEDED

from . import inspect as insp
from .registry import Registry, RegistryError

__all__ = ["run_monitor", "monitor", "MonitorError", "training_inputs", "label_key", "parse_since",
           "parse_thresholds", "format_monitor"]



class MonitorError(ValueError):
    pass


def _walk(tree: dict):
    yield tree
    for subs in tree.get("inputs", {}).values():
        for s in subs:
            yield from _walk(s)


def training_inputs(store, artifact_id: int) -> dict:
    """The training Examples, ExampleStatistics and Schema upstream of a model artifact.
    The statistics are those a StatisticsGen computed over the model's raw Examples (found
    downstream of the Examples when they are not upstream of the model)."""
    tree = insp.lineage(store, artifact_id)
    arts = [n["artifact"] for n in _walk(tree)]
    schemas = [a for a in arts if a["type"] == "Schema"]
    stats = [a for a in arts if a["type"] == "ExampleStatistics"]
    examples = [a for a in arts if a["type"] == "Examples" and a["properties"].get("input_fingerprint")]
    if not stats and examples:
        ids = [a["id"] for a in examples]
        evs = [e for e in store.events_of_artifacts(ids) if e.type == store.pb.Event.INPUT]
        for ex in sorted(store.executions({e.execution_id for e in evs}), key=lambda x: -x.id):
            if store.state_name(ex) not in SUCCEEDED:
                continue
            _, outs = store.io_of(ex.id)
            for v in outs.values():
                for a in v:
                    if a.type_name == "ExampleStatistics" and a.state == "LIVE":
                        stats.append({"id": a.id, "type": a.type_name, "uri": a.uri, "properties": a.properties})
            if stats:
                break
    if not schemas:
        raise MonitorError(f"no Schema in the lineage of artifact #{artifact_id}; the model's pipeline must have "
                           f"a SchemaGen or ImportSchemaGen upstream of its Trainer")
    if not stats:
        raise MonitorError(f"no training statistics found for artifact #{artifact_id}: no ExampleStatistics in its "
                           f"lineage or computed over its training Examples {[a['id'] for a in examples]}")
    return {"schema": schemas[0], "statistics": stats[0], "examples": examples[:1]}


def _data_files(path: str, flag: str = "--data") -> list[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
        if files:
            return files
    raise MonitorError(f"{flag} {path}: expected a CSV/Parquet/TFRecord file or a directory of them; found "
                       + ("an empty directory" if os.path.isdir(path) else "nothing at that path"))


def _stats_of_table(table, where: str):
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl

    from tfpipe.tabular import to_list_batch
    if table is None or table.num_rows == 0:
        raise MonitorError(f"{where}: no rows")
    cols = []
    for c in table.columns:
        c = c.combine_chunks()
        if pa.types.is_list(c.type) and (pa.types.is_string(c.type.value_type)
                                         or pa.types.is_large_string(c.type.value_type)):
            c = c.cast(pa.list_(pa.binary()))
        cols.append(c)
    batch = pa.RecordBatch.from_arrays(cols, names=table.column_names)
    return stats_impl.generate_statistics_in_memory(to_list_batch(batch), tfdv.StatsOptions())


def _file_statistics(path: str, flag: str):
    from tfpipe.tabular import read_table
    return _stats_of_table(read_table(_data_files(path, flag)), f"{flag} {path}")


def _log_features(table):
    """The logged ``features`` struct as a flat table of list columns."""
    import pyarrow as pa
    feats = table.column("features").combine_chunks()
    return pa.Table.from_arrays(feats.flatten(), names=[f.name for f in feats.type])


def parse_since(text: str) -> dt.timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise MonitorError(f"--since {text!r}: expected a positive duration such as 30m, 24h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return dt.timedelta(**{unit: float(m.group(1))})


def _split_stats(stats_uri: str, split: str):
    import tensorflow_data_validation as tfdv
    p = ExampleStatistics(uri=stats_uri).stats_path(split)
    if not os.path.isfile(p):
        raise MonitorError(f"training statistics {p} do not exist (artifact removed?)")
    return tfdv.load_stats_binary(p)


def label_key(store, artifact_id: int) -> str | None:
    """The label column: ExampleGen's ``label_key`` in the model's lineage."""
    for node in _walk(insp.lineage(store, artifact_id)):
        pb = node.get("produced_by") or {}
        key = (pb.get("parameters") or {}).get("label_key")
        if key:
            return key
    return None


def _target(store, model: str | None, version: str | None, alias: str | None) -> dict:
    reg = Registry(store)
    if model:
        names = sorted({v["model"] for v in reg._pushed()})
        if model not in names:
            hint = (f"; {model!r} looks like a version: pass --version {model}" if model.isdigit() else "")
            raise MonitorError(f"--model {model}: no registered model of that name; models: {names}{hint}")
    if version and alias:
        raise MonitorError("--version and --alias name the same thing; give one")
    if version:
        return reg._resolve(version, model)
    return reg._resolve("@" + (alias or "production"), model)


def parse_thresholds(items: list[str]) -> dict[tuple[str, str], float]:
    """``FEATURE=V`` (skew and drift), ``skew:FEATURE=V``, ``drift:FEATURE=V``."""
    out = {}
    for it in items or []:
        key, sep, val = it.partition("=")
        which, _, name = key.strip().rpartition(":")
        try:
            value = float(val)
        except ValueError:
            value = None
        if not sep or not name or value is None or which not in ("", "skew", "drift"):
            raise MonitorError(f"--threshold {it!r}: expected FEATURE=NUMBER, skew:FEATURE=NUMBER or "
                               f"drift:FEATURE=NUMBER, e.g. island=0.2")
        for w in ((which,) if which else ("skew", "drift")):
            out[(w, name.strip())] = value
    return out


def monitor(store, *, data: str | None = None, previous: str | None = None, requests: str | None = None,
            since: str = "24h", model: str | None = None, version: str | None = None, alias: str | None = None,
            drift_threshold: float = 0.3, skew_threshold: float | None = None,
            thresholds: dict | None = None, now: dt.datetime | None = None) -> dict:
    """Skew (vs training) and drift (vs the data before) per feature of the serving data."""
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

    if (data is None) == (requests is None):
        raise MonitorError("expected one of --data (a file or directory) or --requests (a request log)")
    if previous and requests:
        raise MonitorError("--previous goes with --data; with --requests the previous window is the drift baseline")
    v = _target(store, model, version, alias)
    found = training_inputs(store, v["id"])
    with open(os.path.join(found["schema"]["uri"], "schema.pbtxt")) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    label = label_key(store, v["id"])
    kept = [f for f in schema.feature if f.name != label]
    del schema.feature[:]
    schema.feature.extend(kept)
    names = {f.name for f in schema.feature}
    thresholds = dict(thresholds or {})
    unknown = sorted({n for _, n in thresholds} - names)
    if unknown:
        raise MonitorError(f"--threshold names {unknown}, not monitored features of the schema; features: "
                           f"{sorted(names)}" + (f" (the label {label!r} is never monitored)" if label else ""))
    skew_threshold = drift_threshold if skew_threshold is None else skew_threshold
    kinds = {}
    for f in schema.feature:
        categorical = f.type == schema_pb2.BYTES or f.HasField("domain") or f.HasField("string_domain")
        kinds[f.name] = "categorical" if categorical else "numeric"
        for which, comp, default in (("drift", f.drift_comparator, drift_threshold),
                                     ("skew", f.skew_comparator, skew_threshold)):
            thr = float(thresholds.get((which, f.name), default))
            if categorical:
                comp.infinity_norm.threshold = thr
            else:
                comp.jensen_shannon_divergence.threshold = thr
    splits = found["statistics"]["properties"].get("split_names") or ["train"]
    split = "train" if "train" in splits else splits[0]
    train = _split_stats(found["statistics"]["uri"], split)
    res: dict = {"model": v["model"], "version": v["version"], "artifact_id": v["id"],
                 "alias": None if version else (alias or "production"), "label": label,
                 "training_statistics": found["statistics"]["uri"], "training_split": split,
                 "schema": found["schema"]["uri"]}
    if data is not None:
        new = _file_statistics(data, "--data")
        prev = _file_statistics(previous, "--previous") if previous else None
        res.update({"source": "data", "data": os.path.abspath(data),
                    "previous": os.path.abspath(previous) if previous else None})
    else:
        from tfpipe.serving.request_log import LogError, read_log
        span = parse_since(since)
        now = now or dt.datetime.now(dt.timezone.utc)
        try:
            cur_t = read_log(requests, v["model"], now - span, now)
            prev_t = read_log(requests, v["model"], now - 2 * span, now - span)
        except LogError as e:
            raise MonitorError(str(e)) from None
        if cur_t is None:
            raise MonitorError(f"--requests {requests}: no logged requests for model {v['model']} between "
                               f"{(now - span).isoformat(timespec='seconds')} and {now.isoformat(timespec='seconds')}")
        new = _stats_of_table(_log_features(cur_t), f"--requests {requests}")
        prev = _stats_of_table(_log_features(prev_t), f"--requests {requests}") if prev_t is not None else None
        res.update({"source": "requests", "data": os.path.abspath(requests), "since": since,
                    "window": [(now - span).isoformat(), now.isoformat()],
                    "previous_window": [(now - 2 * span).isoformat(), (now - span).isoformat()],
                    "versions_served": sorted({int(x) for x in cur_t.column("version").to_pylist()}),
                    "previous_examples": prev_t.num_rows if prev_t is not None else 0})
    skew = tfdv.validate_statistics(train, schema, serving_statistics=new)
    analyses = [("skew", skew)]
    if prev is not None:
        analyses.append(("drift", tfdv.validate_statistics(new, schema, previous_statistics=prev)))
    rows: dict[str, dict] = {n: {"feature": n, "kind": kinds[n]} for n in sorted(names)}
    for which, an in analyses:
        for d in an.drift_skew_info:
            name = ".".join(d.path.step)
            if name not in rows:
                continue
            for m in (d.drift_measurements if which == "drift" else d.skew_measurements):
                rows[name][which] = {"comparator": type(m).Type.Name(m.type), "value": m.value,
                                     "threshold": m.threshold, "exceeded": m.value > m.threshold}
    anomalies = {}
    for _, an in analyses:  # schema anomalies; the comparators' own findings are in the table
        for n, info in an.anomaly_info.items():
            other = [r for r in info.reason if not anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith("COMPARATOR_")]
            if other and n not in anomalies:
                anomalies[n] = "; ".join(r.description for r in other)
    exceeded = sorted(n for n, r in rows.items() if any(r.get(k, {}).get("exceeded") for k in ("drift", "skew")))
    res.update({"num_examples": new.datasets[0].num_examples if new.datasets else 0,
                "drift_measured": prev is not None, "features": list(rows.values()), "exceeded": exceeded,
                "anomalies": anomalies, "drifted": bool(exceeded)})
    return res


def format_monitor(res: dict) -> str:
    what = (f"{res['num_examples']:,} logged example(s) of model {res['model']} in {res['window'][0][:19]} .. "
            f"{res['window'][1][:19]} from {res['data']}" if res["source"] == "requests" else
            f"{res['num_examples']:,} examples of {res['data']}")
    lines = [f"monitor: {what}",
             f"  skew: vs the training statistics of {res['model']} version {res['version']}"
             + (f" (@{res['alias']})" if res.get("alias") else "") + f", split {res['training_split']}",
             "  drift: " + (("vs the previous window, " + f"{res['previous_examples']:,} example(s)"
                             if res["source"] == "requests" else f"vs {res['previous']}")
                            if res["drift_measured"] else
                            ("not measured: nothing logged in the previous window" if res["source"] == "requests"
                             else "not measured (give --previous DATA: the previous batch or span)")),
             f"  label: {res['label'] + ' (not monitored)' if res.get('label') else 'unknown (no label_key upstream)'}"]
    w = max([len(r["feature"]) for r in res["features"]] + [7])
    lines.append(f"  {'FEATURE':<{w}}  {'KIND':<11}  {'SKEW':>8} {'THRESH':>6}  {'DRIFT':>8} {'THRESH':>6}  STATUS")
    for r in res["features"]:
        d, s = r.get("drift"), r.get("skew")
        status = "EXCEEDED" if r["feature"] in res["exceeded"] else ("ok" if d or s else "not measured")
        fmt = (lambda m: f"{m['value']:8.4f} {m['threshold']:6.3g}" if m else f"{'-':>8} {'-':>6}")
        lines.append(f"  {r['feature']:<{w}}  {r['kind']:<11}  {fmt(s)}  {fmt(d)}  {status}")
    if res["anomalies"]:
        lines.append("schema anomalies in the serving data (not part of the exit status):")
        lines += [f"  {k}: {v}" for k, v in res["anomalies"].items()]
    lines.append(f"EXCEEDED: {len(res['exceeded'])} feature(s) above a skew or drift threshold: "
                 f"{', '.join(res['exceeded'])}" if res["drifted"] else "no skew or drift above the thresholds")
    return "\n".join(lines)


def run_monitor(store, *, as_json: bool = False, output: str | None = None, thresholds: list[str] = (),
                **kwargs) -> int:
    """The CLI entry point: 0 nothing exceeded, 1 skew/drift above a threshold, 2 bad input."""
    try:
        res = monitor(store, thresholds=parse_thresholds(thresholds), **kwargs)
    except (MonitorError, RegistryError, insp.NotFound) as e:
        print(f"tfpipe monitor: error: {e}", file=sys.stderr)
        return 2
    if output:
        with open(output, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2) if as_json else format_monitor(res))
    return 1 if res["drifted"] else 0
