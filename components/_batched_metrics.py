"""Metrics a batch at a time: a TFMA evaluator (TFMA's own extension point) that computes the
same metric values TFMA's default evaluator does without turning each batch into one Python
object per example.

TFMA's default evaluation unbatches every record batch after the model has run (a quarter
of the Evaluator's time at 1M rows on the penguin example) and feeds each example through
per-example Python: slice keys, a metric preprocessor, and the Keras-metric combiner's
``add_input`` (together three quarters of what was left). This module keeps TFMA's own
extractors up to the model's predictions (features, transformed features, labels, example
weights, predictions: the same batched arrays, from the same code), drops its unbatch and
slice-key stages, and replaces the per-example evaluator with one that:

- finds each row's slice keys with TFMA's own ``slicer.get_slices_for_features_dicts``, called
  once per distinct value of the slicing columns in a batch rather than once per row;
- updates each Keras metric with a batch's rows of a slice in one ``update_state`` call and
  keeps its weights, as TFMA's ``_CompilableMetricsCombiner`` does for its own batches
  (reset, update, add the weights), so accumulators merge by adding weights, as in TFMA;
- counts examples per slice (TFMA's ``ExampleCount``);
- adds the candidate-minus-baseline diff metrics as TFMA does and validates every slice with
  TFMA's own ``metrics_validator.validate_metrics``.

TFMA's writers then write the metrics, plots, attributions and the validation result, so
``tfma.load_eval_result`` and friends read them as usual.

Only the configurations whose values this reproduces exactly take this path
(``unsupported`` says why any other does not; the Evaluator then runs TFMA's default
evaluation): the sparse multi-class Keras metrics (``KERAS_METRICS``, each a
``MeanMetricWrapper``: an additive total and count) and ``ExampleCount``, unweighted, no sub keys
or aggregation, single-output models, slicing by feature keys and values (no SQL, no
cross-slicing), no confidence intervals, no minimum slice size, and no default metrics
taken from a Keras model's compile. ``tests/components/test_batched_metrics.py`` compares
the two evaluations' outputs.
"""
from __future__ import annotations

from typing import Any

from ._autograph import libraries_not_autographed

__all__ = ["STAGE_NAME", "BatchedMetricsEvaluator", "batched_extractors", "unsupported"]

STAGE_NAME = "EvaluateMetricsInBatches"

# Keras metrics whose state is a total and a count added over examples (MeanMetricWrapper),
# each compared with TFMA's own evaluation in tests/components/test_batched_metrics.py.
# (Binary and regression metrics by those names are TFMA's own classes, which TFMA prefers:
# BinaryAccuracy, BinaryCrossEntropy, MeanSquaredError, ...; they stay with TFMA's evaluator.)
KERAS_METRICS = frozenset({"SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
                           "SparseTopKCategoricalAccuracy"})


def unsupported(eval_config, eval_shared_models: list) -> str | None:
    """Why this module cannot compute ``eval_config`` (defaults applied, as
    ``with_defaults`` returns it) exactly as TFMA's default evaluator would, or None."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_specs

    if eval_config.cross_slicing_specs:
        return "cross-slicing specs"
    if any(s.slice_keys_sql for s in eval_config.slicing_specs):
        return "a slicing spec in SQL"
    opts = eval_config.options
    if opts.compute_confidence_intervals.value:
        return "confidence intervals"
    if opts.min_slice_size.value > 1:
        return "a minimum slice size"
    include_defaults = not opts.HasField("include_default_metrics") or opts.include_default_metrics.value
    if include_defaults and any(m.include_default_metrics and m.model_type == tfma.TF_KERAS
                                for m in eval_shared_models):
        return "default metrics from a Keras model's compile()"
    for spec in eval_config.model_specs:
        if (spec.example_weight_key or spec.example_weight_keys or spec.label_keys or spec.prediction_keys
                or spec.HasField("padding_options")):
            return f"model spec {spec.name!r} has example weights, several outputs or padding"
        if not spec.label_key:
            return f"model spec {spec.name!r} has no label_key"
    for ms in eval_config.metrics_specs:
        if ms.query_key or ms.HasField("binarize") or ms.HasField("aggregate") or ms.output_names:
            return "a metrics spec with a query key, binarization, aggregation or output names"
        if ms.HasField("example_weights") and ms.example_weights.weighted:
            return "example-weighted metrics"
    for key, config, instance in metric_specs.keys_and_metrics_from_specs(eval_config, eval_config.metrics_specs):
        if key.sub_key is not None or key.aggregation_type is not None or key.example_weighted or key.output_name:
            return f"metric {config.class_name} has a sub key, aggregation, example weight or output name"
        if config.module:
            return f"metric {config.class_name} comes from module {config.module}"
        if isinstance(instance, tfma.metrics.ExampleCount):
            continue
        if type(instance).__name__ not in KERAS_METRICS or type(instance).__module__.split(".")[0] != "tf_keras":
            return f"metric {config.class_name} is computed by TFMA's own code"
    return None


def with_defaults(eval_config, eval_shared_models: list):
    """``eval_config`` with TFMA's defaults applied (model names, baseline), as TFMA's
    ``ExtractEvaluateAndWriteResults`` applies them before choosing its extractors."""
    from tensorflow_model_analysis.utils import config_util, model_util
    return config_util.update_eval_config_with_defaults(
        eval_config, has_baseline=len(eval_shared_models) > 1,
        rubber_stamp=model_util.has_rubber_stamp(eval_shared_models))


def batched_extractors(eval_config, eval_shared_models: list) -> list:
    """TFMA's default extractors for ``eval_config``, up to the predictions: without its
    unbatching and slice-key stages, whose work ``BatchedMetricsEvaluator`` does per batch."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
    drop = {unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME, slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME}
    extractors = tfma.default_extractors(eval_config=eval_config, eval_shared_model=eval_shared_models)
    kept = [e for e in extractors if e.stage_name not in drop]
    if len(kept) != len(extractors) - len(drop):
        raise ValueError(f"TFMA's default extractors are {[e.stage_name for e in extractors]}; expected "
                         f"{sorted(drop)} among them")
    return kept


def _by_model(value, model_name: str, multi: bool):
    if multi and isinstance(value, dict) and model_name in value:
        return value[model_name]
    return value


def _per_row(value, n: int):
    """A batch's column as something indexed by row (row i: that example's values, as TFMA's
    unbatching gives them), or None for a layout only TFMA's own split handles. An array
    with a batch dimension, or a ``VarLenTensorValue`` (a column with missing or repeated
    values: each row its own, possibly empty, array of values)."""
    import numpy as np
    from tensorflow_model_analysis.api import types
    if isinstance(value, np.ndarray):
        if value.ndim == 0 or value.shape[0] != n:
            return None
        return value.reshape(n, 1) if value.ndim == 1 else value  # (n,): one value a row, as TFMA splits it
    if isinstance(value, types.VarLenTensorValue) and len(value.dense_shape) == 2 and value.dense_shape[0] == n:
        rows = np.asarray(value.indices)[:, 0] if len(value.values) else np.zeros(0, dtype=np.int64)
        if np.any(np.diff(rows) < 0):
            return None
        bounds = np.searchsorted(rows, np.arange(n + 1))
        return [value.values[bounds[i]:bounds[i + 1]] for i in range(n)]
    return None


def _row_value(arr, i: int) -> tuple:
    """Row ``i`` of a ``_per_row`` column (an array of that row's values) as a hashable key."""
    return tuple(arr[i].tolist())


def _metric_objects(cfg) -> dict:
    """{MetricKey: a fresh Keras metric, or None for ExampleCount} for ``cfg``'s metrics,
    made from the instances TFMA's own spec code makes."""
    from tensorflow_model_analysis.metrics import metric_specs
    out = {}
    for key, _, instance in metric_specs.keys_and_metrics_from_specs(cfg, cfg.metrics_specs):
        if key not in out:
            out[key] = None if type(instance).__name__ == "ExampleCount" else \
                type(instance).from_config(instance.get_config())
    return out


class _Configured:
    """A plain callable for ``beam.Map``/``FlatMap`` holding an EvalConfig; what ``setup``
    builds from it (metric objects) is made on the first call in each worker, never pickled."""

    def __init__(self, eval_config):
        self._eval_config = eval_config
        self._ready = False

    def __getstate__(self):
        return {"_eval_config": self._eval_config, "_ready": False}

    def _ensure_setup(self):
        if not self._ready:
            self.setup()
            self._ready = True


class _MetricsFn(_Configured):
    """Batched extracts -> for each slice key with rows in the batch, the metrics' state
    over those rows: ``(slice key, {metric_key: count or list of weight arrays})``."""

    def setup(self):
        from tensorflow_model_analysis.slicer import slicer_lib as slicer
        cfg = self._eval_config
        self._multi = len(cfg.model_specs) > 1
        self._specs = [slicer.SingleSliceSpec(spec=s) for s in cfg.slicing_specs] or [slicer.SingleSliceSpec()]
        self._overall_only = all(s.is_overall() for s in self._specs)
        self._columns = sorted({c for s in cfg.slicing_specs for c in [*s.feature_keys, *s.feature_values]})
        self._model_names = [s.name if self._multi else "" for s in cfg.model_specs]
        self._prediction_keys = {m: s.prediction_key for m, s in zip(self._model_names, cfg.model_specs)}
        self._label_keys = {m: s.label_key for m, s in zip(self._model_names, cfg.model_specs)}
        self._metrics: dict[str, list] = {m: [] for m in self._model_names}
        for key, metric in _metric_objects(cfg).items():
            self._metrics[key.model_name].append((key, metric))

    def _slice_rows(self, extracts, n: int) -> dict:
        """{slice key: row indices} for this batch, keys as TFMA's slicer makes them."""
        import numpy as np
        from tensorflow_model_analysis import constants
        from tensorflow_model_analysis.slicer import slicer_lib as slicer
        if self._overall_only:
            return {(): None}
        transformed = extracts.get(constants.TRANSFORMED_FEATURES_KEY) or {}
        if self._multi:
            dicts = [transformed[m] for m in self._model_names if m in transformed]
        else:
            dicts = [transformed] if transformed else []
        raw = extracts.get(constants.FEATURES_KEY) or {}
        sources = [*dicts, raw]
        arrays = [(si, c, _per_row(src[c], n)) for si, src in enumerate(sources) for c in self._columns
                  if src.get(c) is not None]
        if any(a is None for _, _, a in arrays):
            return self._slice_rows_split(sources, n)
        groups: dict[tuple, list[int]] = {}
        values = [[_row_value(a, i) for i in range(n)] for _, _, a in arrays]
        rows_values = zip(*values) if values else [()] * n
        for i, row in enumerate(rows_values):
            groups.setdefault(row, []).append(i)
        out: dict[Any, list] = {}
        for rows in groups.values():
            r = rows[0]
            one = [{} for _ in sources]
            for si, c, a in arrays:
                one[si][c] = a[r]
            keys = set(slicer.get_slices_for_features_dicts(one[:-1], one[-1], self._specs))
            for k in keys:
                out.setdefault(k, []).extend(rows)
        return {k: np.sort(np.asarray(v)) for k, v in out.items()}

    def _slice_rows_split(self, sources, n: int) -> dict:
        """Slicing columns in a layout ``_per_row`` does not index (a sparse or ragged
        tensor value): one row at a time, through TFMA's own split of a batch into examples."""
        import numpy as np
        from tensorflow_model_analysis.slicer import slicer_lib as slicer
        from tensorflow_model_analysis.utils import util
        cols = set(self._columns)
        small = {f"s{i}": {c: v for c, v in src.items() if c in cols} for i, src in enumerate(sources)}
        rows = util.split_extracts(small)
        if len(rows) != n:
            raise ValueError(f"slicing columns {sorted(cols)} split into {len(rows)} rows, not the batch's {n}")
        out: dict[Any, list] = {}
        for i, row in enumerate(rows):
            dicts = [row.get(f"s{j}") or {} for j in range(len(sources))]
            for k in set(slicer.get_slices_for_features_dicts(dicts[:-1], dicts[-1], self._specs)):
                out.setdefault(k, []).append(i)
        return {k: np.asarray(v) for k, v in out.items()}

    def __call__(self, extracts):
        import numpy as np
        from tensorflow_model_analysis import constants
        from tensorflow_model_analysis.metrics import metric_util
        self._ensure_setup()
        labels_all = extracts[constants.LABELS_KEY]
        preds_all = extracts[constants.PREDICTIONS_KEY]
        n = None
        inputs = {}
        for m in self._model_names:
            label = _by_model(labels_all, m, self._multi)
            if isinstance(label, dict):
                label = label.get(self._label_keys[m], label)
            pred = _by_model(preds_all, m, self._multi)
            _, pred = metric_util.prepare_labels_and_predictions(None, pred, self._prediction_keys[m])
            label = np.asarray(label)
            inputs[m] = (label, pred)
            n = len(label) if n is None else n
            if len(label) != n or len(pred) != n:
                raise ValueError(f"model {m!r}: {len(label)} labels and {len(pred)} predictions for a batch of {n}")
        out = []
        with libraries_not_autographed():  # else AutoGraph converts tf_keras's update_state on every call
            for sk, rows in self._slice_rows(extracts, n).items():
                acc = {}
                out.append((sk, acc))
                size = n if rows is None else len(rows)
                for m, metrics in self._metrics.items():
                    label, pred = inputs[m]
                    if rows is not None:
                        label, pred = label[rows], pred[rows]
                    for key, metric in metrics:
                        if metric is None:
                            acc[key] = acc.get(key, 0) + size
                            continue
                        metric.reset_states()
                        metric.update_state(label, pred)
                        acc[key] = metric.get_weights()
        return out


def _merge(states) -> dict:
    """Adds states of one slice (``beam.CombinePerKey``): counts, and Keras metric weights
    (a total and a count each), as TFMA's combiner adds them."""
    out: dict = {}
    for state in states:
        for key, v in state.items():
            old = out.get(key)
            if old is None:
                out[key] = v
            elif isinstance(v, list):
                out[key] = [a + b for a, b in zip(old, v)]
            else:
                out[key] = old + v
    return out


class _ResultsFn(_Configured):
    """(slice key, merged state) -> (slice key, {MetricKey: value}) with the diff metrics
    TFMA adds for a baseline model."""

    def setup(self):
        from tensorflow_model_analysis.utils import model_util
        cfg = self._eval_config
        self._metrics = _metric_objects(cfg)
        baseline = model_util.get_baseline_model_spec(cfg)
        self._baseline = baseline.name if baseline else None

    def __call__(self, item):
        import numpy as np
        self._ensure_setup()
        slice_key, acc = item
        result = {}
        with libraries_not_autographed():
            for key, v in acc.items():
                if isinstance(v, list):
                    metric = self._metrics[key]
                    metric.set_weights(v)
                    result[key] = metric.result().numpy()
                else:
                    result[key] = np.float64(v)
        if self._baseline:  # TFMA's diff metrics: candidate minus baseline, per metric key
            for key, v in list(result.items()):
                if key.model_name != self._baseline and not key.is_diff:
                    base = key.make_baseline_key(self._baseline)
                    if base in result:
                        result[key.make_diff_key()] = v - result[base]
        return slice_key, result


def BatchedMetricsEvaluator(eval_config, run_after: str):
    """A ``tfma.evaluators.Evaluator`` computing ``eval_config``'s metrics and validations
    from batched extracts (``batched_extractors``), ``eval_config`` with defaults applied."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis import constants
    from tensorflow_model_analysis.evaluators import metrics_validator

    @beam.ptransform_fn
    def _evaluate(extracts):
        metrics = (extracts
                   | "MetricsPerBatch" >> beam.FlatMap(_MetricsFn(eval_config))
                   | "MergePerSlice" >> beam.CombinePerKey(_merge)
                   | "Results" >> beam.Map(_ResultsFn(eval_config)))
        empty = metrics | "NoPlots" >> beam.MapTuple(lambda sk, _: (sk, {}))
        return {constants.METRICS_KEY: metrics,
                constants.PLOTS_KEY: empty,
                constants.ATTRIBUTIONS_KEY: metrics | "NoAttributions" >> beam.MapTuple(lambda sk, _: (sk, {})),
                constants.VALIDATIONS_KEY: metrics | "Validate" >> beam.Map(metrics_validator.validate_metrics,
                                                                             eval_config)}

    return tfma.evaluators.Evaluator(stage_name=STAGE_NAME, run_after=run_after, ptransform=_evaluate())
