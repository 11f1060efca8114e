"""``tfpipe monitor``: TFDV statistics of new (serving or fresh) data against the training
statistics and schema of a model version, found through its lineage in ML Metadata.

Per feature, TFDV comparators measure the distance between the training data and the new
data: L-infinity for categorical features, Jensen-Shannon divergence for numeric ones.
Drift uses the drift comparator (the training statistics as the previous span), skew the
skew comparator (training vs serving). The exit status is 1 when any measurement exceeds
its threshold, so a scheduled job can trigger a retrain; 0 otherwise; 2 on bad input.
"""
from __future__ import annotations

import json
import os
import sys

from tfpipe.artifacts import ExampleStatistics
from tfpipe.state import SUCCEEDED

from . import inspect as insp
from .registry import Registry, RegistryError

__all__ = ["run_monitor", "monitor", "MonitorError", "training_inputs"]



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


def _data_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
        if files:
            return files
    raise MonitorError(f"--data {path}: expected a CSV/Parquet/TFRecord file or a directory of them; found "
                       + ("an empty directory" if os.path.isdir(path) else "nothing at that path"))


def _new_statistics(path: str):
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl

    from tfpipe.tabular import read_table, to_list_batch
    table = read_table(_data_files(path))
    if table.num_rows == 0:
        raise MonitorError(f"--data {path}: no rows")
    batch = pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], names=table.column_names)
    return stats_impl.generate_statistics_in_memory(to_list_batch(batch), tfdv.StatsOptions())


def _split_stats(stats_uri: str, split: str):
    import tensorflow_data_validation as tfdv
    p = ExampleStatistics(uri=stats_uri).stats_path(split)
    if not os.path.isfile(p):
        raise MonitorError(f"training statistics {p} do not exist (artifact removed?)")
    return tfdv.load_stats_binary(p)


def monitor(store, data: str, version: str = "production", model: str | None = None,
            drift_threshold: float = 0.3, skew_threshold: float | None = None,
            thresholds: dict[str, float] | None = None) -> dict:
    """Drift and skew per feature of ``data`` against the model version's training data."""
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    v = Registry(store)._resolve(version, model)
    found = training_inputs(store, v["id"])
    with open(os.path.join(found["schema"]["uri"], "schema.pbtxt")) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    thresholds = dict(thresholds or {})
    names = {f.name for f in schema.feature}
    unknown = sorted(set(thresholds) - names)
    if unknown:
        raise MonitorError(f"--threshold names features {unknown} that the schema does not have; "
                           f"features: {sorted(names)}")
    skew_threshold = drift_threshold if skew_threshold is None else skew_threshold
    kinds = {}
    for f in schema.feature:
        categorical = f.type == schema_pb2.BYTES or f.HasField("domain") or f.HasField("string_domain")
        kinds[f.name] = "categorical" if categorical else "numeric"
        for comp, default in ((f.drift_comparator, drift_threshold), (f.skew_comparator, skew_threshold)):
            thr = float(thresholds.get(f.name, default))
            if categorical:
                comp.infinity_norm.threshold = thr
            else:
                comp.jensen_shannon_divergence.threshold = thr
    splits = found["statistics"]["properties"].get("split_names") or ["train"]
    split = "train" if "train" in splits else splits[0]
    train = _split_stats(found["statistics"]["uri"], split)
    new = _new_statistics(data)
    drift = tfdv.validate_statistics(new, schema, previous_statistics=train)
    skew = tfdv.validate_statistics(train, schema, serving_statistics=new)
    rows: dict[str, dict] = {n: {"feature": n, "kind": kinds[n]} for n in sorted(names)}
    for an, which in ((drift, "drift"), (skew, "skew")):
        for d in an.drift_skew_info:
            name = ".".join(d.path.step)
            ms = d.drift_measurements if which == "drift" else d.skew_measurements
            for m in ms:
                r = rows.setdefault(name, {"feature": name, "kind": kinds.get(name, "?")})
                r[which] = {"comparator": type(m).Type.Name(m.type), "value": m.value, "threshold": m.threshold,
                            "exceeded": m.value > m.threshold}
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    anomalies = {}
    for an in (drift, skew):  # schema anomalies; the comparators' own findings are in the table
        for n, info in an.anomaly_info.items():
            other = [r for r in info.reason if not anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith("COMPARATOR_")]
            if other and n not in anomalies:
                anomalies[n] = "; ".join(r.description for r in other)
    exceeded = sorted(n for n, r in rows.items() if any(r.get(k, {}).get("exceeded") for k in ("drift", "skew")))
    return {"model": v["model"], "version": v["version"], "artifact_id": v["id"], "data": os.path.abspath(data),
            "training_statistics": found["statistics"]["uri"], "training_split": split,
            "schema": found["schema"]["uri"], "num_examples": new.datasets[0].num_examples if new.datasets else 0,
            "features": list(rows.values()), "exceeded": exceeded, "anomalies": anomalies,
            "drifted": bool(exceeded)}


def format_monitor(res: dict) -> str:
    lines = [f"monitor: {res['num_examples']:,} examples of {res['data']} vs model {res['model']} version "
             f"{res['version']} (training statistics split {res['training_split']})"]
    w = max([len(r["feature"]) for r in res["features"]] + [7])
    lines.append(f"  {'FEATURE':<{w}}  {'KIND':<11}  {'DRIFT':>8} {'THRESH':>6}  {'SKEW':>8} {'THRESH':>6}  STATUS")
    for r in res["features"]:
        d, s = r.get("drift"), r.get("skew")
        status = "EXCEEDED" if r["feature"] in res["exceeded"] else ("ok" if d or s else "not measured")
        fmt = (lambda m: f"{m['value']:8.4f} {m['threshold']:6.3g}" if m else f"{'-':>8} {'-':>6}")
        lines.append(f"  {r['feature']:<{w}}  {r['kind']:<11}  {fmt(d)}  {fmt(s)}  {status}")
    if res["anomalies"]:
        lines.append("schema anomalies in the new data (not part of the exit status):")
        lines += [f"  {k}: {v}" for k, v in res["anomalies"].items()]
    lines.append(f"DRIFT: {len(res['exceeded'])} feature(s) above threshold: {', '.join(res['exceeded'])}"
                 if res["drifted"] else "no drift or skew above the thresholds")
    return "\n".join(lines)


def _parse_thresholds(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items or []:
        name, sep, val = it.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise MonitorError(f"--threshold {it!r}: expected FEATURE=NUMBER, e.g. island=0.2") from None
        if not sep or not name.strip():
            raise MonitorError(f"--threshold {it!r}: expected FEATURE=NUMBER, e.g. island=0.2")
    return out


def run_monitor(store, data: str, version: str, model: str | None = None, drift_threshold: float = 0.3,
                skew_threshold: float | None = None, thresholds: list[str] = (), as_json: bool = False,
                output: str | None = None) -> int:
    """The CLI entry point: 0 no drift, 1 drift/skew above a threshold, 2 bad input."""
    try:
        res = monitor(store, data, version, model, drift_threshold, skew_threshold, _parse_thresholds(thresholds))
    except (MonitorError, RegistryError, insp.NotFound) as e:
        print(f"tfpipe monitor: error: {e}", file=sys.stderr)
        return 2
    if output:
        with open(output, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2) if as_json else format_monitor(res))
    return 1 if res["drifted"] else 0
