"""``tfpipe monitor``: TFDV statistics of serving data compared with what the model was
trained on (skew) and with the data before it (drift), per feature, with the label left
out.

Serving data is either a file or directory (``--data``) or the request log of
``tfpipe serve --log-requests`` (``--requests SINK --since 24h``: the logged raw features of
the last 24 hours). The label and the request log's own columns (time, model, version,
the serving label, ...) are never compared. Then, per feature (distances and tests in
``drift``: L-infinity distance for categorical features, Jensen-Shannon divergence for
numeric ones, on the training statistics' buckets; a chi-squared test at a stated
false-alarm rate per run; no verdict below a minimum number of examples):

- **skew**: the serving data against the training statistics of the model version (found
  through its lineage in ML Metadata: the ExampleStatistics over its training Examples,
  the Schema upstream of its Trainer);
- **drift**: the serving data against the data before it: ``--previous`` (the previous
  batch or span) with ``--data``; the previous window of the same length with
  ``--requests`` (the 24 hours before the last 24). Not measured when there is nothing
  before.

The model is named as ``tfpipe models`` names it: ``--model NAME`` (the registered model;
needed when there are several), ``--version V`` or ``--alias A`` (default: the
``production`` alias). Exit status 1 when any feature's distance exceeds its threshold and
its test rejects "same distribution" (a scheduled job retrains on it), 0 otherwise (also
when features have too few examples for a verdict: said), 2 on bad input.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sys

from tfpipe import fileio
from tfpipe.artifacts import ExampleStatistics
from tfpipe.state import SUCCEEDED, ArtifactState, EventKind

from . import records
from .registry import Registry, RegistryError

__all__ = ["run_monitor", "monitor", "compare", "MonitorError", "training_inputs", "label_key", "parse_since",
           "parse_thresholds", "format_monitor", "DEFAULT_THRESHOLD", "MIN_EXAMPLES", "FALSE_ALARM_RATE"]

DEFAULT_THRESHOLD = 0.05  # the smallest distance that counts as a shift (L-infinity or Jensen-Shannon)
MIN_EXAMPLES = 100  # below this many examples with a feature, no verdict on it
FALSE_ALARM_RATE = 0.01  # of runs on data from the training distribution that exit 1



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
    tree = records.lineage(store, artifact_id)
    arts = [n["artifact"] for n in _walk(tree)]
    schemas = [a for a in arts if a["type"] == "Schema"]
    stats = [a for a in arts if a["type"] == "ExampleStatistics"]
    examples = [a for a in arts if a["type"] == "Examples" and a["properties"].get("input_fingerprint")]
    if not stats and examples:
        ids = [a["id"] for a in examples]
        evs = store.events_of_artifacts(ids, EventKind.INPUT)
        for ex in sorted(store.executions({e.execution_id for e in evs}), key=lambda x: -x.id):
            if store.state_name(ex) not in SUCCEEDED:
                continue
            _, outs = store.io_of(ex.id)
            for v in outs.values():
                for a in v:
                    if a.type_name == "ExampleStatistics" and a.state == ArtifactState.LIVE:
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
    """The files to read, at local paths (a file on an object store is copied to the local
    cache first, once per size and modification time)."""
    if fileio.isfile(path):
        return [fileio.local_file(path)]
    if fileio.isdir(path):
        files = [f for f in fileio.glob(fileio.join(path, "*")) if not fileio.basename(f).startswith(".")]
        if files:
            return [fileio.local_file(f) for f in files]
    raise MonitorError(f"{flag} {path}: expected a CSV/Parquet/TFRecord file or a directory of them; found "
                       + ("an empty directory" if fileio.isdir(path) else "nothing at that path"))



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


def _log_features(table, where: str):
    """The logged ``features`` struct as a flat table of list columns. The log's own
    columns (time, request_id, model, version, label: the serving label the request
    reached, signature, response) sit beside the struct, never in it, so a feature named
    like one of them is still that feature."""
    import pyarrow as pa
    if "features" not in table.column_names:
        raise MonitorError(f"{where}: expected request-log rows with a 'features' struct column (written by "
                           f"'tfpipe serve --log-requests'); found columns {table.column_names}")
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
    if not fileio.isfile(p):
        raise MonitorError(f"training statistics {p} do not exist (artifact removed?)")
    return tfdv.load_stats_binary(fileio.local_file(p))


def label_key(store, artifact_id: int) -> str | None:
    """The label column: ExampleGen's ``label_key`` in the model's lineage."""
    for node in _walk(records.lineage(store, artifact_id)):
        pb = node.get("produced_by") or {}
        key = (pb.get("parameters") or {}).get("label_key")
        if key:
            return key
    return None


def _target(store, model: str | None, version: str | None, alias: str | None) -> dict:
    reg = Registry(store)
    if model:
        names = sorted({v["model"] for v in reg.pushed_versions()})
        if model not in names:
            hint = (f"; {model!r} looks like a version: pass --version {model}" if model.isdigit() else "")
            raise MonitorError(f"--model {model}: no registered model of that name; models: {names}{hint}")
    if version and alias:
        raise MonitorError("--version and --alias name the same thing; give one")
    if version:
        return reg.resolve(version, model)
    return reg.resolve("@" + (alias or "production"), model)


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


def _serving_schema(schema, label: str | None):
    """The schema as serving data should meet it: the label is not in the ``SERVING``
    environment (serving data has no label; the training statistics, which have it, are
    never validated here)."""
    out = type(schema)()
    out.CopyFrom(schema)
    if "SERVING" not in out.default_environment:
        out.default_environment.append("TRAINING")
        out.default_environment.append("SERVING")
    for f in out.feature:
        if f.name == label and "SERVING" not in f.not_in_environment:
            f.not_in_environment.append("SERVING")
    return out


def _without(table, names):
    drop = [n for n in table.column_names if n in set(names)]
    return table.drop(drop) if drop else table


def monitor(store, *, data: str | None = None, previous: str | None = None, requests: str | None = None,
            since: str = "24h", model: str | None = None, version: str | None = None, alias: str | None = None,
            drift_threshold: float = DEFAULT_THRESHOLD, skew_threshold: float | None = None,
            thresholds: dict | None = None, min_examples: int = MIN_EXAMPLES,
            false_alarm_rate: float = FALSE_ALARM_RATE, now: dt.datetime | None = None) -> dict:
    """Skew (vs training) and drift (vs the data before) per feature of the serving data."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if (data is None) == (requests is None):
        raise MonitorError("expected one of --data (a file or directory) or --requests (a request log)")
    if previous and requests:
        raise MonitorError("--previous goes with --data; with --requests the previous window is the drift baseline")
    v = _target(store, model, version, alias)
    found = training_inputs(store, v["id"])
    schema = text_format.Parse(fileio.read_text(fileio.join(found["schema"]["uri"], "schema.pbtxt")),
                               schema_pb2.Schema())
    label = label_key(store, v["id"])
    splits = found["statistics"]["properties"].get("split_names") or ["train"]
    split = "train" if "train" in splits else splits[0]
    train = _split_stats(found["statistics"]["uri"], split)
    res: dict = {"model": v["model"], "version": v["version"], "artifact_id": v["id"],
                 "alias": None if version else (alias or "production"), "label": label,
                 "training_statistics": found["statistics"]["uri"], "training_split": split,
                 "schema": found["schema"]["uri"]}
    if data is not None:
        from tfpipe.tabular import read_table
        new_t = read_table(_data_files(data, "--data"))
        prev_t = read_table(_data_files(previous, "--previous")) if previous else None
        res.update({"source": "data", "data": fileio.abspath(data),
                    "previous": fileio.abspath(previous) if previous else None})
        where, prev_where = f"--data {data}", f"--previous {previous}"
    else:
        from tfpipe.serving.request_log import LogError, read_log
        span = parse_since(since)
        now = now or dt.datetime.now(dt.timezone.utc)
        try:
            cur_log = read_log(requests, v["model"], now - span, now)
            prev_log = read_log(requests, v["model"], now - 2 * span, now - span)
        except LogError as e:
            raise MonitorError(str(e)) from None
        if cur_log is None:
            raise MonitorError(f"--requests {requests}: no logged requests for model {v['model']} between "
                               f"{(now - span).isoformat(timespec='seconds')} and {now.isoformat(timespec='seconds')}")
        new_t = _log_features(cur_log, f"--requests {requests}")
        prev_t = _log_features(prev_log, f"--requests {requests}") if prev_log is not None else None
        res.update({"source": "requests", "data": fileio.abspath(requests), "since": since,
                    "window": [(now - span).isoformat(), now.isoformat()],
                    "previous_window": [(now - 2 * span).isoformat(), (now - span).isoformat()],
                    "versions_served": sorted({int(x) for x in cur_log.column("version").to_pylist()}),
                    "previous_examples": prev_log.num_rows if prev_log is not None else 0})
        where = prev_where = f"--requests {requests}"
    res.update(compare(train, schema, label, new_t, prev_t, where=where, previous_where=prev_where,
                       drift_threshold=drift_threshold, skew_threshold=skew_threshold, thresholds=thresholds,
                       min_examples=min_examples, false_alarm_rate=false_alarm_rate,
                       unit="requests" if requests else "examples"))
    return res


def compare(train, schema, label: str | None, new_table, previous_table=None, *, where: str = "serving data",
            previous_where: str = "previous data", drift_threshold: float = DEFAULT_THRESHOLD,
            skew_threshold: float | None = None, thresholds: dict | None = None, min_examples: int = MIN_EXAMPLES,
            false_alarm_rate: float = FALSE_ALARM_RATE, unit: str = "examples") -> dict:
    """Skew of ``new_table`` against the training statistics ``train`` and drift against
    ``previous_table``, per feature of ``schema`` but the label (see ``drift``); schema
    anomalies of the serving data. The label and columns outside the schema are never
    compared."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from . import drift as dr
    if not 0 < false_alarm_rate < 1:
        raise MonitorError(f"--false-alarm-rate {false_alarm_rate}: expected a probability between 0 and 1, "
                           f"e.g. 0.01")
    if min_examples < 1:
        raise MonitorError(f"--min-examples {min_examples}: expected a positive number of examples")
    names = {f.name for f in schema.feature if f.name != label}
    thresholds = dict(thresholds or {})
    unknown = sorted({n for _, n in thresholds} - names)
    if unknown:
        raise MonitorError(f"--threshold names {unknown}, not monitored features of the schema; features: "
                           f"{sorted(names)}" + (f" (the label {label!r} is never monitored)" if label else ""))
    skew_threshold = drift_threshold if skew_threshold is None else skew_threshold
    new_table = _without(new_table, [label] if label else [])
    if previous_table is not None:
        previous_table = _without(previous_table, [label] if label else [])
    new = _stats_of_table(new_table, where)
    if previous_table is not None:
        _stats_of_table(previous_table, previous_where)  # raises MonitorError when the previous data has no rows
    train_by = {".".join(f.path.step) or f.name: f for f in train.datasets[0].features}
    kinds = {}
    for f in schema.feature:
        categorical = f.type == schema_pb2.BYTES or f.HasField("domain") or f.HasField("string_domain") or (
            f.HasField("int_domain") and f.int_domain.is_categorical)
        kinds[f.name] = "categorical" if categorical else "numeric"
    rows: dict[str, dict] = {}
    tests = []
    for n in sorted(names):
        row = rows[n] = {"feature": n, "kind": kinds[n]}
        ref = dr.reference(train_by.get(n))
        if ref is None:
            continue  # no training statistics of this feature: nothing to compare with
        row["kind"] = ref.kind
        cur = dr.values(new_table, n)
        base = {"skew": (ref, None, skew_threshold)}
        if previous_table is not None:
            base["drift"] = (ref, dr.values(previous_table, n), drift_threshold)
        for which, (r, prev_vals, default) in base.items():
            thr = float(thresholds.get((which, n), default))
            m = dr.measure(r, cur, prev_vals, min_examples=min_examples)
            m["threshold"] = thr
            row[which] = m
            if "value" in m:
                tests.append(m)
    per_test = false_alarm_rate / max(1, len(tests))  # Bonferroni: at most that rate of false alarms per run
    for m in tests:
        m["exceeded"] = bool(m["p_value"] < per_test and m["value"] > m["threshold"])
    anomalies = {}
    an = tfdv.validate_statistics(new, _serving_schema(schema, label), environment="SERVING")
    for n, info in an.anomaly_info.items():
        anomalies[n] = "; ".join(r.description for r in info.reason) or info.description
    exceeded = sorted(n for n, r in rows.items() if any(r.get(k, {}).get("exceeded") for k in ("drift", "skew")))
    too_few = sorted(n for n, r in rows.items() if any(r.get(k, {}).get("too_few") for k in ("drift", "skew")))
    return {"num_examples": new.datasets[0].num_examples if new.datasets else 0,
            "drift_measured": previous_table is not None, "features": list(rows.values()), "exceeded": exceeded,
            "too_few": too_few, "min_examples": min_examples, "unit": unit, "false_alarm_rate": false_alarm_rate,
            "per_test_level": per_test, "anomalies": anomalies, "drifted": bool(exceeded)}


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
             f"  label: {res['label'] + ' (not monitored)' if res.get('label') else 'unknown (no label_key upstream)'}",
             f"  verdict: distance above the threshold and a chi-squared test at false-alarm rate "
             f"{res['false_alarm_rate']:g} per run (p < {res['per_test_level']:.2g} per test); none below "
             f"{res['min_examples']} {res['unit']} with the feature"]
    w = max([len(r["feature"]) for r in res["features"]] + [7])
    lines.append(f"  {'FEATURE':<{w}}  {'KIND':<11}  {'SKEW':>8} {'THRESH':>6} {'P':>8}  {'DRIFT':>8} {'THRESH':>6} "
                 f"{'P':>8}  STATUS")

    def fmt(m):
        if not m or "value" not in m:
            return f"{'-':>8} {'-':>6} {'-':>8}"
        return f"{m['value']:8.4f} {m['threshold']:6.3g} {m['p_value']:8.2g}"
    for r in res["features"]:
        d, s = r.get("drift"), r.get("skew")
        few = [m for m in (s, d) if m and m.get("too_few")]
        if r["feature"] in res["exceeded"]:
            status = "EXCEEDED"
        elif few:
            n = min(min(m["examples"], m.get("baseline_examples", m["examples"])) for m in few)
            status = f"too few {res['unit']} ({n} < {res['min_examples']}): no verdict"
        elif any(m and m.get("not_comparable") for m in (s, d)):
            status = "not measured: " + next(m["not_comparable"] for m in (s, d) if m and m.get("not_comparable"))
        else:
            status = "ok" if d or s else "not measured"
        lines.append(f"  {r['feature']:<{w}}  {r['kind']:<11}  {fmt(s)}  {fmt(d)}  {status}")
    if res["anomalies"]:
        lines.append("schema anomalies in the serving data (not part of the exit status):")
        lines += [f"  {k}: {v}" for k, v in res["anomalies"].items()]
    if res["drifted"]:
        lines.append(f"EXCEEDED: {len(res['exceeded'])} feature(s) above a skew or drift threshold: "
                     f"{', '.join(res['exceeded'])}")
    else:
        lines.append("no skew or drift above the thresholds"
                     + (f" ({len(res['too_few'])} feature(s) without a verdict: too few {res['unit']})"
                        if res["too_few"] else ""))
    return "\n".join(lines)


def run_monitor(store, *, as_json: bool = False, output: str | None = None, thresholds: list[str] = (),
                **kwargs) -> int:
    """The CLI entry point: 0 nothing exceeded, 1 skew/drift above a threshold, 2 bad input."""
    try:
        res = monitor(store, thresholds=parse_thresholds(thresholds), **kwargs)
    except (MonitorError, RegistryError, records.NotFound) as e:
        print(f"tfpipe monitor: error: {e}", file=sys.stderr)
        return 2
    if output:
        with open(output, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2) if as_json else format_monitor(res))
    return 1 if res["drifted"] else 0
