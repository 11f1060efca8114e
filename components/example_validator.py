"""ExampleValidator: TFDV anomalies of each split against the schema, plus drift (against
a baseline, e.g. the previous span's statistics) and skew (between two splits).

Anomalies fail the node by default with a readable summary (feature, kind, expected vs
found); ``fail_on_anomalies=False`` records them and lets the pipeline continue.
"""
from __future__ import annotations

import json
import os

from tfpipe import (
    ExampleAnomalies,
    ExampleStatistics,
    Input,
    Output,
    Schema,
    component,
    current,
)

__all__ = ["ExampleValidator", "AnomaliesFound", "summarize_anomalies"]

ANOMALIES_FILE = "SchemaDiff.pb"


class AnomaliesFound(RuntimeError):
    pass


def summarize_anomalies(anomalies) -> list[dict]:
    """One dict per anomalous feature: feature, kinds, short description and the full
    description (TFDV phrases it as expected vs found)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    rows = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        kinds = [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason]
        rows.append({"feature": name, "kinds": kinds, "short": info.short_description,
                     "description": info.description})
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        rows.append({"feature": "(dataset)",
                     "kinds": [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason],
                     "short": info.short_description, "description": info.description})
    drift = getattr(anomalies, "drift_skew_info", [])
    for d in drift:
        for m in list(d.drift_measurements) + list(d.skew_measurements):
            if m.value > m.threshold:
                rows.append({"feature": ".".join(d.path.step), "kinds": ["DRIFT_OR_SKEW"],
                             "short": "drift/skew above threshold",
                             "description": f"{m.type} {m.value:.4f} above threshold {m.threshold}"})
    return rows


def _set_comparators(schema, thresholds: dict, kind: str) -> None:
    import tensorflow_data_validation as tfdv
    for feat, thr in thresholds.items():
        try:
            f = tfdv.get_feature(schema, feat)
        except ValueError:
            names = [x.name for x in schema.feature]
            raise ValueError(f"{kind}_thresholds names feature {feat!r}, which the schema does not have; "
                             f"features: {names}") from None
        comp = f.drift_comparator if kind == "drift" else f.skew_comparator
        if f.type == 1:  # BYTES: categorical
            comp.infinity_norm.threshold = float(thr)
        else:
            comp.jensen_shannon_divergence.threshold = float(thr)


@component(name="ExampleValidator")
def ExampleValidator(statistics: Input[ExampleStatistics], schema: Input[Schema],
                     anomalies: Output[ExampleAnomalies],
                     baseline_statistics: Input[ExampleStatistics] | None = None,
                     exclude_splits: list = (), fail_on_anomalies: bool = True,
                     drift_thresholds: dict = None, skew_thresholds: dict = None,
                     skew_splits: list = ("train", "eval")) -> None:
    """``drift_thresholds`` ({feature: threshold}) compare each split with the same split of
    ``baseline_statistics``; ``skew_thresholds`` compare ``skew_splits[1]`` with ``[0]``."""
    import tensorflow_data_validation as tfdv


    ctx = current()
    sch = tfdv.load_schema_text(schema.schema_path())
    if drift_thresholds:
        _set_comparators(sch, drift_thresholds, "drift")
    if skew_thresholds:
        _set_comparators(sch, skew_thresholds, "skew")
    splits = [s for s in statistics.split_names if s not in exclude_splits]
    report, total = {}, 0
    for s in splits:
        stats = tfdv.load_stats_binary(statistics.stats_path(s))
        kw = {}
        if drift_thresholds and baseline_statistics is not None and s in (baseline_statistics.split_names or []):
            kw["previous_statistics"] = tfdv.load_stats_binary(baseline_statistics.stats_path(s))
        if skew_thresholds and len(skew_splits) == 2 and s == skew_splits[1] and skew_splits[0] in splits:
            kw["serving_statistics"] = stats
            stats = tfdv.load_stats_binary(statistics.stats_path(skew_splits[0]))
        an = tfdv.validate_statistics(stats, sch, **kw)
        out = anomalies.split_uri(s)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, ANOMALIES_FILE), "wb") as f:
            f.write(an.SerializeToString())
        rows = summarize_anomalies(an)
        report[s] = rows
        total += len(rows)
    with open(anomalies.path("anomalies.json"), "w") as f:
        json.dump(report, f, indent=2)
    anomalies.split_names = splits
    anomalies.span = statistics.span
    anomalies.anomaly_count = total
    lines = [f"split {s}: feature {r['feature']!r}: {r['short']} ({', '.join(r['kinds'])}): {r['description']}"
             for s, rows in report.items() for r in rows]
    if total:
        summary = f"{total} anomal{'y' if total == 1 else 'ies'} against the schema: " + "; ".join(lines)
        if fail_on_anomalies:
            raise AnomaliesFound(summary + " (set fail_on_anomalies=False to warn and continue)")
        ctx.log("WARNING " + summary)
    else:
        ctx.log(f"no anomalies in splits {splits}")
