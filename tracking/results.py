"""Reading the result files the model-half components write, without importing them:

- Trainer: ``<ModelRun.uri>/history.json``  ``{metric: [value per epoch]}``
- Tuner: ``<HyperParameters.uri>/trials.json``  a list of trials (hyperparameters, score)
- Evaluator: ``ModelEvaluation`` metrics per slice (JSON), ``ModelBlessing`` (blessed, reasons)

Every reader returns plain data (or an empty value when the file is absent) so that
run listings, comparisons, reports and the MLflow export share one interpretation.
"""
from __future__ import annotations

import glob
import json
import math
import os
from typing import Any

from tfpipe import fileio
from tfpipe.artifacts import HyperParameters, ModelEvaluation, ModelRun

__all__ = ["load_history", "load_trials", "load_evaluation", "headline_metrics", "OVERALL",
           "ResultFileError", "thresholds_from_eval_config"]

OVERALL = "Overall"

HEADLINE_ORDER = ("accuracy", "sparse_categorical_accuracy", "auc", "f1", "loss", "mse", "mae",
                  "rmse", "r2", "example_count")


class ResultFileError(ValueError):
    pass


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def _num(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, dict):  # {"doubleValue": ...} or {"value": ...}
        for k in ("doubleValue", "double_value", "value"):
            if k in v:
                return _num(v[k])
    return None


def _local(uri: str | None) -> str | None:
    """A local path to read an artifact from: a copy of one on an object store (artifacts
    do not change once LIVE, so the copy is kept by URI)."""
    if uri and fileio.is_remote(uri):
        return fileio.local_copy(uri) if fileio.exists(uri) else None
    return uri


def load_history(uri: str | None) -> dict[str, list[float]]:
    """``{metric: [per-epoch values]}`` from ``history.json`` under ``uri`` (or ``{}``)."""
    uri = _local(uri)
    if not uri:
        return {}
    name = ModelRun.HISTORY_FILE
    for path in (ModelRun(uri=uri).history_path(), *sorted(glob.glob(os.path.join(uri, "*", name)))):
        if os.path.isfile(path):
            data = _read_json(path)
            if isinstance(data, dict) and "history" in data and isinstance(data["history"], dict):
                data = data["history"]
            if not isinstance(data, dict):
                raise ResultFileError(f"{path}: expected {{metric: [values per epoch]}}, found "
                                      f"{type(data).__name__}")
            return {str(k): [float(x) if _num(x) is not None else float("nan") for x in v]
                    for k, v in data.items() if isinstance(v, list)}
    return {}


def load_trials(uri: str | None) -> list[dict]:
    """Tuner trials: ``[{"trial": i, "hyperparameters": {...}, "score": float|None, ...}]``."""
    uri = _local(uri)
    if not uri:
        return []
    path = HyperParameters(uri=uri).trials_path()
    if not os.path.isfile(path):
        return []
    data = _read_json(path)
    if isinstance(data, dict):
        data = data.get("trials", list(data.values()))
    out = []
    for i, t in enumerate(data if isinstance(data, list) else []):
        if not isinstance(t, dict):
            continue
        hp = t.get("hyperparameters") or t.get("hparams") or t.get("values") or {}
        score = _num(t.get("score", t.get("objective", t.get("value"))))
        out.append({**t, "trial": i, "trial_id": t.get("trial_id", t.get("trial", i)), "hyperparameters": hp,
                    "score": score})
    return out


def _slice_name(key: Any) -> str:
    if key in (None, "", (), [], {}, "()", "overall", "Overall", "OVERALL"):
        return OVERALL
    if isinstance(key, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(key.items())) or OVERALL
    if isinstance(key, (list, tuple)):
        return ", ".join(f"{k}={v}" for k, v in key) if all(isinstance(x, (list, tuple)) for x in key) else str(key)
    return str(key)


def _metrics_dict(m: Any) -> dict[str, float]:
    out = {}
    if isinstance(m, dict):
        for k, v in m.items():
            n = _num(v)
            if n is not None:
                out[str(k)] = n
    elif isinstance(m, list):  # [{"name": ..., "value": ...}]
        for x in m:
            if isinstance(x, dict) and "name" in x:
                n = _num(x.get("value"))
                if n is not None:
                    out[str(x["name"])] = n
    return out


def _normalise_slices(data: Any) -> dict[str, dict[str, float]]:
    if isinstance(data, dict):
        for key in ("slices", "metrics_by_slice", "per_slice", "slice_metrics"):
            if key in data:
                return _normalise_slices(data[key])
        if "metrics" in data and isinstance(data["metrics"], dict) and all(
                isinstance(v, dict) for v in data["metrics"].values()):
            return _normalise_slices(data["metrics"])
        if "metrics" in data and not isinstance(data.get("metrics"), list):
            flat = _metrics_dict(data["metrics"])
            if flat:
                return {OVERALL: flat}
        if data and all(isinstance(v, dict) for v in data.values()):
            return {_slice_name(k): _metrics_dict(v.get("metrics", v)) for k, v in data.items()}
        flat = _metrics_dict(data)
        return {OVERALL: flat} if flat else {}
    if isinstance(data, list):
        out = {}
        for row in data:
            if isinstance(row, dict):
                key = row.get("slice", row.get("slice_key", row.get("name")))
                out[_slice_name(key)] = _metrics_dict(row.get("metrics") or row.get("candidate") or {})
        return out
    return {}


def _thresholds(data: Any) -> dict[str, dict]:
    if not isinstance(data, dict):
        return {}
    th = data.get("thresholds") or {}
    if isinstance(th, list):
        th = {str(t.get("metric", t.get("name", i))): t for i, t in enumerate(th) if isinstance(t, dict)}
    return {str(k): (v if isinstance(v, dict) else {"value": v}) for k, v in th.items()}


_EVAL_FILES = (ModelEvaluation.METRICS_FILE, "evaluation.json", "eval_result.json", "metrics_by_slice.json")


def load_evaluation(uri: str | None) -> dict:
    """``{"slices": {slice: {metric: value}}, "thresholds": {metric: {...}}, "file": path}``
    from the ModelEvaluation artifact at ``uri`` (empty slices when none is found)."""
    empty = {"slices": {}, "thresholds": {}, "file": None}
    uri = _local(uri)
    if not uri or not os.path.isdir(uri):
        return empty
    def cands():
        yield from (os.path.join(uri, n) for n in _EVAL_FILES)
        yield from sorted(p for p in glob.glob(os.path.join(uri, "*.json"))
                          if os.path.basename(p) not in _EVAL_FILES)

    for path in cands():
        if not os.path.isfile(path):
            continue
        data = _read_json(path)
        slices = _normalise_slices(data)
        if slices:
            slices = {k: v for k, v in slices.items() if v}
            if OVERALL in slices:  # overall first
                slices = {OVERALL: slices.pop(OVERALL), **slices}
            res = {"slices": slices, "thresholds": _thresholds(data), "file": path}
            if isinstance(data, dict):
                rows = data.get("slices") if isinstance(data.get("slices"), list) else []
                base = {_slice_name(r.get("slice")): _metrics_dict(r["baseline"]) for r in rows
                        if isinstance(r, dict) and r.get("baseline")}
                if base:
                    res["baseline"] = base
                for k in ("blessed", "reasons", "notes"):
                    if k in data:
                        res[k] = data[k]
            return res
    return empty


def _snake(name: str) -> str:
    import re
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def thresholds_from_eval_config(cfg: dict | None) -> dict[str, dict]:
    """``{metric: {"lower_bound"/"upper_bound"/"change_direction"/"change_absolute"...}}``
    from a TFMA EvalConfig dict (the Evaluator's ``eval_config`` parameter): the thresholds
    on the overall slice, a metric's own and its per-slice ones whose slicing specs hold the
    overall slice (``{}``, as TFX's penguin example gives its change threshold)."""
    out: dict[str, dict] = {}
    for spec in (cfg or {}).get("metrics_specs") or []:
        for m in spec.get("metrics") or []:
            if not m.get("class_name"):
                continue
            overall = [t.get("threshold") or {} for t in m.get("per_slice_thresholds") or []
                       if isinstance(t, dict) and {} in (t.get("slicing_specs") or [])]
            row = {}
            for th in [m.get("threshold") or {}, *overall]:
                for k, v in (th.get("value_threshold") or {}).items():
                    row[k] = v.get("value") if isinstance(v, dict) else v
                for k, v in (th.get("change_threshold") or {}).items():
                    row[f"change_{k}"] = v.get("value") if isinstance(v, dict) else v
            if row:
                out[_snake(m["class_name"])] = row
    return out


def headline_metrics(slices: dict[str, dict[str, float]], n: int = 3) -> dict[str, float]:
    """A few of the overall slice's metrics, the most telling first."""
    overall = slices.get(OVERALL) or (next(iter(slices.values())) if slices else {})
    names = sorted(overall, key=lambda k: (next((i for i, h in enumerate(HEADLINE_ORDER) if k.lower() == h),
                                                len(HEADLINE_ORDER)), k))
    return {k: overall[k] for k in names[:n]}
