"""The Evaluator's configuration: TensorFlow Model Analysis's ``EvalConfig``, given as the
message itself (``tfma.EvalConfig(...)``, as in a TFX pipeline) or as its dict (the JSON
form of the proto with the proto's field names), checked before any heavy work. A message
becomes its dict when the node is defined (``from_message``), so the IR stays JSON.

    {"model_specs": [{"label_key": "species", "prediction_key": "outputs",
                      "preprocessing_function_names": ["transform_features"]}],
     "slicing_specs": [{}, {"feature_keys": ["island"]}],
     "metrics_specs": [{"metrics": [
         {"class_name": "SparseCategoricalAccuracy",
          "threshold": {"value_threshold": {"lower_bound": 0.6},
                        "change_threshold": {"direction": "HIGHER_IS_BETTER",
                                             "absolute": -0.01}}}]}]}

Metric names may be class names (``SparseCategoricalAccuracy``) or the snake_case names
results carry (``sparse_categorical_accuracy``); bounds are plain numbers
(``{"value": x}`` is accepted too).
"""
from __future__ import annotations

import copy
import difflib
import inspect

__all__ = ["EvalConfigError", "normalize", "check_metric_names", "label_keys", "to_proto",
           "describe_slice", "from_message", "EVAL_CONFIG_MESSAGE"]

EVAL_CONFIG_MESSAGE = "tensorflow_model_analysis.EvalConfig"  # the proto's full name


class EvalConfigError(ValueError):
    """The eval config is malformed, names an unknown metric, or a label the data lacks."""


_TOP = {"model_specs", "slicing_specs", "metrics_specs", "options", "cross_slicing_specs"}


def _unwrap_value(d: dict, *keys: str) -> None:
    """Bounds are protobuf DoubleValue wrappers, plain numbers in JSON; accept {"value": x}."""
    for k in keys:
        if isinstance(d.get(k), dict) and set(d[k]) == {"value"}:
            d[k] = d[k]["value"]


def from_message(value):
    """A ``tfma.EvalConfig`` message as its dict (proto field names, wrapper values as plain
    numbers); any other value unchanged. Recognised by the message's full name, so the
    node's definition needs no TFMA import of its own."""
    desc = getattr(value, "DESCRIPTOR", None)
    name = getattr(desc, "full_name", None)
    if name is None or not hasattr(value, "SerializeToString"):
        return value
    if name != EVAL_CONFIG_MESSAGE:
        raise TypeError(f"expected a {EVAL_CONFIG_MESSAGE} message or its dict, found a {name} message")
    from google.protobuf import json_format
    return json_format.MessageToDict(value, preserving_proto_field_name=True)


def normalize(cfg: dict) -> dict:
    """A deep copy in the form the proto parser wants; shape errors named."""
    if not isinstance(cfg, dict):
        raise EvalConfigError(f"eval_config: expected a dict (TFMA EvalConfig as JSON), found "
                              f"{type(cfg).__name__}")
    unknown = sorted(set(cfg) - _TOP)
    if unknown:
        raise EvalConfigError(f"eval_config: unknown key(s) {unknown}; expected some of {sorted(_TOP)}")
    cfg = copy.deepcopy(cfg)
    specs = cfg.get("model_specs") or [{}]
    if len(specs) == 2 and sum(bool(s.get("is_baseline")) for s in specs) == 1:
        specs = [s for s in specs if not s.get("is_baseline")]  # TFX's form; the input gives the baseline
    if len(specs) != 1:
        raise EvalConfigError(f"eval_config.model_specs: expected one model spec (the candidate; the "
                              f"baseline comes from the baseline_model input), found {len(specs)}")
    cfg["model_specs"] = specs
    if not cfg.get("metrics_specs"):
        raise EvalConfigError("eval_config.metrics_specs: expected at least one metric, found none")
    for where, th in _thresholds(cfg):
        _unwrap_value(th.get("value_threshold") or {}, "lower_bound", "upper_bound")
        _unwrap_value(th.get("change_threshold") or {}, "absolute", "relative")
        ct = th.get("change_threshold")
        if ct and str(ct.get("direction", "")).upper() not in ("HIGHER_IS_BETTER", "LOWER_IS_BETTER"):
            raise EvalConfigError(f"{where}: change_threshold direction {ct.get('direction')!r}; expected "
                                  f"'HIGHER_IS_BETTER' or 'LOWER_IS_BETTER'")
        if ct:
            ct["direction"] = ct["direction"].upper()
    return cfg


def _thresholds(cfg: dict):
    """(where, threshold dict) for every MetricThreshold in the config: a metric's
    ``threshold``, its ``per_slice_thresholds`` and ``cross_slice_thresholds``, and a metrics
    spec's ``thresholds``, ``per_slice_thresholds`` and ``cross_slice_thresholds`` by metric name."""
    for i, ms in enumerate(cfg.get("metrics_specs") or []):
        for j, m in enumerate(ms.get("metrics") or []):
            at = f"eval_config.metrics_specs[{i}].metrics[{j}] ({m.get('class_name')})"
            if isinstance(m.get("threshold"), dict):
                yield at, m["threshold"]
            for kind in ("per_slice_thresholds", "cross_slice_thresholds"):
                for k, t in enumerate(m.get(kind) or []):
                    if isinstance(t, dict) and isinstance(t.get("threshold"), dict):
                        yield f"{at}.{kind}[{k}]", t["threshold"]
        for name, th in (ms.get("thresholds") or {}).items():
            if isinstance(th, dict):
                yield f"eval_config.metrics_specs[{i}].thresholds[{name!r}]", th
        for kind in ("per_slice_thresholds", "cross_slice_thresholds"):
            for name, group in (ms.get(kind) or {}).items():
                for k, t in enumerate((group or {}).get("thresholds") or []):
                    if isinstance(t, dict) and isinstance(t.get("threshold"), dict):
                        yield f"eval_config.metrics_specs[{i}].{kind}[{name!r}].thresholds[{k}]", t["threshold"]


def _drop_change_thresholds(cfg: dict) -> None:
    """Remove every change threshold, then what is left empty by that: a threshold without a
    value threshold, a per-slice or cross-slice entry without a threshold, an empty list or map."""
    for _where, th in list(_thresholds(cfg)):
        th.pop("change_threshold", None)
    for ms in cfg.get("metrics_specs") or []:
        for m in ms.get("metrics") or []:
            if m.get("threshold") == {}:
                m.pop("threshold")
            for kind in ("per_slice_thresholds", "cross_slice_thresholds"):
                if kind in m:
                    m[kind] = [t for t in m[kind] if t.get("threshold")]
                    if not m[kind]:
                        m.pop(kind)
        if "thresholds" in ms:
            ms["thresholds"] = {n: t for n, t in ms["thresholds"].items() if t}
            if not ms["thresholds"]:
                ms.pop("thresholds")
        for kind in ("per_slice_thresholds", "cross_slice_thresholds"):
            if kind in ms:
                kept = {n: [t for t in (g or {}).get("thresholds") or [] if t.get("threshold")]
                        for n, g in ms[kind].items()}
                ms[kind] = {n: {**ms[kind][n], "thresholds": ts} for n, ts in kept.items() if ts}
                if not ms[kind]:
                    ms.pop(kind)


def _known_metrics() -> dict[str, str]:
    """squashed lower-case name -> class name, for TFMA and Keras metrics."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    names: dict[str, str] = {}
    for mod, base in ((tf.keras.metrics, tf.keras.metrics.Metric), (tfma.metrics, tfma.metrics.Metric)):
        for n in dir(mod):
            obj = getattr(mod, n)
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not n.startswith("_"):
                names[n.replace("_", "").lower()] = n
    return names


def check_metric_names(cfg: dict) -> list[str]:
    """Turn every metric name into its class name; raise naming the unknown ones."""
    known = _known_metrics()
    out = []
    for i, ms in enumerate(cfg["metrics_specs"]):
        for j, m in enumerate(ms.get("metrics") or []):
            name = m.get("class_name", "")
            if m.get("module"):  # a user's custom metric class
                out.append(name)
                continue
            cls = known.get(name.replace("_", "").lower())
            if cls is None:
                close = difflib.get_close_matches(name.replace("_", "").lower(), list(known), n=3)
                raise EvalConfigError(
                    f"eval_config.metrics_specs[{i}].metrics[{j}]: unknown metric {name!r}; expected a "
                    f"TFMA or Keras metric class name or its snake_case form"
                    f"{' such as ' + ', '.join(known[c] for c in close) if close else ''} "
                    f"(e.g. SparseCategoricalAccuracy, AUC, MeanSquaredError, MeanAbsoluteError, ExampleCount)")
            m["class_name"] = cls
            out.append(cls)
    return out


def label_keys(cfg: dict) -> list[str]:
    spec = cfg["model_specs"][0]
    keys = [spec["label_key"]] if spec.get("label_key") else []
    keys += list((spec.get("label_keys") or {}).values())
    return keys


def to_proto(cfg: dict, has_baseline: bool):
    """The EvalConfig proto: candidate (+ baseline) model specs; change thresholds are
    dropped when there is no baseline (value thresholds still apply)."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format
    cfg = copy.deepcopy(cfg)
    spec = cfg["model_specs"][0]
    spec["name"] = "candidate"
    specs = [spec]
    if has_baseline:
        specs.append({**spec, "name": "baseline", "is_baseline": True})
    else:
        _drop_change_thresholds(cfg)
    cfg["model_specs"] = specs
    try:
        return json_format.ParseDict(cfg, tfma.EvalConfig())
    except json_format.ParseError as e:
        raise EvalConfigError(f"eval_config does not match TFMA's EvalConfig: {e}") from None


def describe_slice(slice_key) -> str:
    """'Overall' or 'island=Dream' (from a tfma SliceKey proto)."""
    parts = []
    for c in slice_key.single_slice_keys:
        v = c.WhichOneof("kind")
        val = getattr(c, v) if v else ""
        if isinstance(val, bytes):
            val = val.decode()
        parts.append(f"{c.column}={val}")
    return ", ".join(parts) or "Overall"
