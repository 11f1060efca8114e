"""Evaluator: TensorFlow Model Analysis over an Examples split, per-slice metrics, value
thresholds and change thresholds against a baseline model; a ModelBlessing that says
which metric on which slice failed which threshold.

The model's ``serving_default`` signature takes serialized raw tf.Examples; with
``preprocessing_function_names: ["transform_features"]`` in the model spec TFMA runs the
model's transform signature first, so a string label (penguin species) is compared as
the integer id the model was trained on. The config is TFMA's ``EvalConfig``, the message
itself or its dict (see ``components/_eval_config.py``); it is checked (metric names,
label column) before any model is loaded or any data read.

Outputs: ``evaluation`` holds TFMA's own output (``tfma.load_eval_result`` reads it) plus
``metrics.json`` (readable per-slice metrics) and ``summary.txt``; ``blessing`` holds a
``BLESSED`` or ``NOT_BLESSED`` marker file, as in TFX, and the ``blessed`` / ``reasons``
properties.
"""
from __future__ import annotations

import json
import os
import re

from tfpipe import (
    Examples,
    Input,
    Model,
    ModelBlessing,
    ModelEvaluation,
    Output,
    component,
    current,
)

from . import _eval_config as ec
from ._autograph import libraries_not_autographed
from .model_export import signature_defs

__all__ = ["Evaluator", "EvalConfigError", "EvaluationError", "evaluation_graph", "load_metrics"]


class EvaluationError(RuntimeError):
    pass


def _counted(batch, progress_key: str):
    from tfpipe.runtime import count
    count(progress_key, batch.num_rows)
    return batch


# Rows per record batch handed to TFMA (one model call per batch). Not tfx_bsl's 1,000 of a
# TFXIO source: TFMA calls the model's signatures with the serialized examples as one
# positional tensor, which a loaded signature (keyword arguments only) first fails to bind;
# TensorFlow formats the whole input tensor into that error before it falls back to the flat
# signature, and numpy prints a tensor in full up to 1,000 elements (summarized above). At
# 1,000 rows that repr was about a tenth of the Evaluator's Beam time; at 8,192 it is a few
# lines, and the per-batch costs (two signature calls, the Arrow-to-tensor conversions) are
# spread over 8x the rows. The metrics are the same: TFMA unbatches before computing them.
EVAL_BATCH_ROWS = 8192


def columns_tfma_reads(eval_config) -> str | None:
    """Which data columns TFMA reads as features under ``eval_config`` (slicing, labels,
    example weights, model-agnostic predictions, metric configs): those named anywhere in
    the config's text (returned), or every column (None) when the config slices by SQL or
    names a metric from a module of its own, which may read any feature. The model reads
    the serialized tf.Example of every column either way. TFMA unbatches every feature of
    every example before computing metrics, each column a per-example cost (5 of the 13
    arrays it split per example on the penguin example)."""
    from google.protobuf import text_format
    specs = list(eval_config.slicing_specs) + [c for cs in eval_config.cross_slicing_specs
                                               for c in [cs.baseline_spec, *cs.slicing_specs]]
    if any(s.slice_keys_sql for s in specs) or any(m.module for ms in eval_config.metrics_specs for m in ms.metrics):
        return None
    return text_format.MessageToString(eval_config)


def _named_in(name: str, text: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text) is not None


def _with_raw_records(table, progress_key: str = "", rows: int = EVAL_BATCH_ROWS, config_text: str | None = None):
    """A plain-column Parquet table (what ``ReadFromParquetBatched`` yields) -> record
    batches of up to ``rows`` rows as TFMA gets them from a TFRecord of tf.Examples through
    TFXIO: list-typed columns (floats as float32, the only
    float tf.Example holds; a null is a missing value) plus the serialized tf.Example of
    each row in ``tfma.ARROW_INPUT_COLUMN``, which the model's signatures parse. With
    ``config_text`` (``columns_tfma_reads``) only the columns it names are handed over as
    features; the serialized tf.Example holds them all."""
    import pyarrow as pa
    from tensorflow_model_analysis import ARROW_INPUT_COLUMN
    from tfx_bsl.coders import example_coder
    from tfx_bsl.tfxio.record_based_tfxio import AppendRawRecordColumn

    from tfpipe.runtime import count
    from tfpipe.tabular import to_list_batch
    count(progress_key, table.num_rows)
    for batch in table.to_batches(max_chunksize=rows):
        lb = to_list_batch(batch)
        cols = [c.cast(pa.list_(pa.float32())) if pa.types.is_floating(c.type.value_type) else c for c in lb.columns]
        lb = pa.RecordBatch.from_arrays(cols, names=lb.schema.names)
        out = AppendRawRecordColumn(lb, ARROW_INPUT_COLUMN, example_coder.RecordBatchToExamples(lb))
        if config_text is not None:
            names = [n for n in lb.schema.names if _named_in(n, config_text)] + [ARROW_INPUT_COLUMN]
            out = pa.RecordBatch.from_arrays([out.column(out.schema.get_field_index(n)) for n in names], names=names)
        yield out


def evaluation_graph(p, *, eval_config, output_path: str, model_dir: str, data_location: str | None = None,
                     parquet_patterns: list[str] | None = None, baseline_dir: str | None = None,
                     progress_key: str = "", metrics: str = "auto") -> str:
    """Add the evaluation to Beam pipeline ``p``: examples as Arrow record batches into
    TFMA's ``ExtractEvaluateAndWriteResults``, which writes metrics, plots and the
    validation result under ``output_path``. What ``tfma.run_model_analysis`` builds, on
    the pipeline's own runner. The examples are ``parquet_patterns`` (Parquet files, as
    ExampleGen writes them; streamed, each batch given its serialized tf.Examples) or
    ``data_location`` (TFRecord files of tf.Example, read through TFXIO).

    ``metrics="auto"`` computes the metrics a batch at a time (``_batched_metrics``) when
    that gives exactly TFMA's values for this config, else with TFMA's default evaluator;
    ``"tfma"`` always uses TFMA's. Returns how they are computed, for the log: "in batches"
    or "by TFMA's default evaluator (<why>)"."""
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_model_analysis as tfma
    from tfx_bsl.public.tfxio import TFExampleRecord
    if (data_location is None) == (parquet_patterns is None):
        raise ValueError("evaluation_graph: give exactly one of data_location and parquet_patterns")
    if metrics not in ("auto", "tfma"):
        raise ValueError(f"evaluation_graph: metrics must be 'auto' or 'tfma', not {metrics!r}")
    models = [tfma.default_eval_shared_model(model_dir, eval_config=eval_config, model_name="candidate")]
    if baseline_dir is not None:
        models.append(tfma.default_eval_shared_model(baseline_dir, eval_config=eval_config, model_name="baseline"))
    if parquet_patterns is not None:
        reads = [p | f"ReadParquet[{i}]" >> beam.io.ReadFromParquetBatched(pattern)
                 for i, pattern in enumerate(parquet_patterns)]
        raw = reads[0] if len(reads) == 1 else tuple(reads) | "FlattenSplits" >> beam.Flatten()
        config_text = columns_tfma_reads(eval_config)
        if config_text is not None:  # a model may take features by name instead of serialized examples
            config_text += "\n" + " ".join(name for d in [model_dir, baseline_dir] if d is not None
                                            for sig in signature_defs(d).values() for name in sig.inputs)
        batches = raw | "ToExamples" >> beam.FlatMap(_with_raw_records, progress_key, EVAL_BATCH_ROWS,
                                                      config_text).with_output_types(pa.RecordBatch)
    else:
        tfxio = TFExampleRecord(file_pattern=data_location, raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
                                telemetry_descriptors=["tfpipe"])
        batches = (p | "ReadExamples" >> tfxio.BeamSource()
                     | "CountRows" >> beam.Map(_counted, progress_key).with_output_types(pa.RecordBatch))
    extractors = evaluators = None
    how = "by TFMA's default evaluator (asked for)"
    if metrics == "auto":
        from . import _batched_metrics as bm
        config = bm.with_defaults(eval_config, models)
        why = bm.unsupported(config, models)
        if why is None:
            extractors = bm.batched_extractors(config, models)
            evaluators = [bm.BatchedMetricsEvaluator(config, run_after=extractors[-1].stage_name)]
            how = "in batches"
        else:
            how = f"by TFMA's default evaluator ({why})"
    _ = batches | "ExtractEvaluateAndWriteResults" >> tfma.ExtractEvaluateAndWriteResults(
        eval_config=eval_config, eval_shared_model=models if len(models) > 1 else models[0],
        output_path=output_path, extractors=extractors, evaluators=evaluators)
    return how

EvalConfigError = ec.EvalConfigError


def _check_label(cfg: dict, examples, model) -> None:
    """Every label key must be a column of the data or, with a preprocessing function, an
    output of the model's transform signature."""
    columns = sorted(examples.columns or {})
    if not columns:  # Examples from a producer that records no columns: read the Parquet schema
        import pyarrow.parquet as pq

        columns = sorted(pq.read_schema(examples.parquet_files(examples.split_names[0])[0]).names)
    missing = [k for k in ec.label_keys(cfg) if k not in columns]
    if not missing:
        return
    fns = cfg["model_specs"][0].get("preprocessing_function_names") or []
    produced: list[str] = []
    if fns:  # the signatures' declared outputs, read from saved_model.pb (no model load)
        sigs = signature_defs(model.saved_model_dir())
        for fn in fns:
            if fn not in sigs:
                raise EvalConfigError(f"eval_config.model_specs[0].preprocessing_function_names names {fn!r}, "
                                      f"but the model at {model.saved_model_dir()} has signatures "
                                      f"{sorted(sigs)}")
            produced += list(sigs[fn].outputs)
        missing = [k for k in missing if k not in produced]
    if missing:
        raise EvalConfigError(
            f"eval_config.model_specs[0]: label {missing[0]!r} is not in the data; columns of Examples "
            f"#{examples.id} are {columns}" + (f" and the model's {fns} signature outputs {sorted(produced)}"
                                               if fns else ""))


def _value(mv) -> float | None:
    kind = mv.WhichOneof("type")
    if kind == "double_value":
        return mv.double_value.value
    return None


def _threshold_text(th) -> str:
    if th.HasField("value_threshold"):
        v = th.value_threshold
        parts = []
        if v.HasField("lower_bound"):
            parts.append(f"lower bound {v.lower_bound.value:g}")
        if v.HasField("upper_bound"):
            parts.append(f"upper bound {v.upper_bound.value:g}")
        return "value threshold " + " and ".join(parts)
    c = th.change_threshold
    import tensorflow_model_analysis as tfma
    parts = [tfma.MetricDirection.Name(c.direction)]
    if c.HasField("absolute"):
        parts.append(f"absolute {c.absolute.value:g}")
    if c.HasField("relative"):
        parts.append(f"relative {c.relative.value:g}")
    return "change threshold (" + ", ".join(parts) + ")"


def _reasons(validation) -> list[str]:
    out = []
    for v in validation.metric_validations_per_slice:
        where = ec.describe_slice(v.slice_key)
        for f in v.failures:
            value = _value(f.metric_value)
            vtxt = f"{value:.4f}" if value is not None else str(f.metric_value).strip()
            what = (f"change in {f.metric_key.name} vs the baseline" if f.metric_key.is_diff
                    else f"{f.metric_key.name}")
            out.append(f"{what} on slice {where} = {vtxt} fails the {_threshold_text(f.metric_threshold)}")
    for s in validation.missing_slices:
        spec = str(s).replace("\n", " ").strip() or "Overall"
        out.append(f"slicing spec {{{spec}}} matched no examples, so its thresholds cannot be checked")
    if validation.missing_thresholds:
        out.append("a metric with a threshold was not computed (see validations in the evaluation)")
    return out


def _metrics_table(output_path: str) -> list[dict]:
    import tensorflow_model_analysis as tfma
    rows = []
    for mfs in tfma.load_metrics(output_path):
        row = {"slice": ec.describe_slice(mfs.slice_key), "candidate": {}, "baseline": {}, "diff": {}}
        for kv in mfs.metric_keys_and_values:
            v = _value(kv.value)
            if v is None:
                continue
            side = "diff" if kv.key.is_diff else ("baseline" if kv.key.model_name == "baseline" else "candidate")
            name = kv.key.name + (f"[{kv.key.sub_key}]".replace("\n", " ") if kv.key.HasField("sub_key") else "")
            row[side][name] = v
        rows.append({k: v for k, v in row.items() if v != {}})
    rows.sort(key=lambda r: (r["slice"] != "Overall", r["slice"]))
    return rows


def load_metrics(evaluation) -> dict:
    """The readable per-slice metrics an Evaluator wrote."""
    with open(evaluation.metrics_path()) as f:
        return json.load(f)


def _summary(table: list[dict], blessed: bool, reasons: list[str], notes: list[str]) -> str:
    lines = [f"{'BLESSED' if blessed else 'NOT BLESSED'}"]
    lines += [f"  - {r}" for r in reasons] + [f"  note: {n}" for n in notes]
    for row in table:
        cand = ", ".join(f"{k}={v:.4f}" for k, v in sorted(row.get("candidate", {}).items()))
        lines.append(f"{row['slice']}: {cand}")
        if row.get("baseline"):
            base = ", ".join(f"{k}={v:.4f}" for k, v in sorted(row["baseline"].items()))
            lines.append(f"{' ' * len(row['slice'])}  baseline: {base}")
    return "\n".join(lines) + "\n"


@component(name="Evaluator", converters={"eval_config": ec.from_message})
def Evaluator(examples: Input[Examples], model: Input[Model], evaluation: Output[ModelEvaluation],
              blessing: Output[ModelBlessing], eval_config: dict,
              baseline_model: Input[Model] | None = None, example_splits: list = ("eval",)) -> None:
    """Evaluate ``model`` (and ``baseline_model``, if any) on ``example_splits`` with TFMA."""
    ctx = current()
    cfg = ec.normalize(eval_config)
    for s in example_splits:
        if s not in (examples.split_names or []):
            raise EvalConfigError(f"example_splits names {s!r}; Examples #{examples.id} has splits "
                                  f"{examples.split_names}")
    _check_label(cfg, examples, model)
    names = ec.check_metric_names(cfg)
    has_baseline = baseline_model is not None
    notes = []
    if not has_baseline:
        notes.append("no baseline model: change thresholds skipped, value thresholds applied")
    elif baseline_model.id == model.id:
        notes.append(f"the baseline is the candidate itself (Model #{model.id})")
    proto = ec.to_proto(cfg, has_baseline)
    ctx.log(f"metrics {names}; {len(proto.slicing_specs) or 1} slicing spec(s); baseline: "
            f"{'Model #%s' % baseline_model.id if has_baseline else 'none'}")

    import pyarrow.parquet as pq
    import tensorflow_model_analysis as tfma
    patterns, n = [], 0
    for split in example_splits:  # streamed from ExampleGen's Parquet files: no copy of the rows on disk or in memory
        files = examples.parquet_files(split)
        patterns.append(files[0] if len(files) == 1 else examples.parquet_glob(split))
        n += sum(pq.read_metadata(f).num_rows for f in files)  # footers only; a gs:// or s3:// URI too
    ctx.log(f"evaluating on {n:,} examples of {list(example_splits)}")
    os.makedirs(evaluation.uri, exist_ok=True)
    from tfpipe.runtime import tracking
    key = f"Evaluator {evaluation.uri}"
    with libraries_not_autographed(), tracking(key, n, "rows evaluated"), \
            ctx.beam_pipeline() as p:  # tf_keras / TFT code traced unconverted
        how = evaluation_graph(p, parquet_patterns=patterns, eval_config=proto, output_path=evaluation.uri,
                               model_dir=model.saved_model_dir(),
                               baseline_dir=baseline_model.saved_model_dir() if has_baseline else None,
                               progress_key=key)
        ctx.log(f"metrics computed {how}")
    evaluation.custom["metrics_computed"] = how
    validation = tfma.load_validation_result(evaluation.uri)
    reasons = _reasons(validation)
    blessed = bool(validation.validation_ok) and not reasons
    table = _metrics_table(evaluation.uri)
    overall = next((r for r in table if r["slice"] == "Overall"), {})
    counted = overall.get("candidate", {}).get("example_count")
    if counted is not None and int(counted) != n:  # every example must be evaluated (as StatisticsGen checks)
        raise EvaluationError(f"TFMA evaluated {int(counted):,} examples of the {n:,} in {list(example_splits)}; "
                              f"the Beam runner dropped data (check beam_pipeline_args)")
    report = {"blessed": blessed, "reasons": reasons, "notes": notes, "examples": n,
              "splits": list(example_splits), "model": model.id,
              "baseline_model": baseline_model.id if has_baseline else None, "slices": table}
    with open(evaluation.metrics_path(), "w") as f:
        json.dump(report, f, indent=2)
    summary = _summary(table, blessed, reasons, notes)
    with open(os.path.join(evaluation.uri, "summary.txt"), "w") as f:
        f.write(summary)
    for line in summary.splitlines()[: 12]:
        ctx.log(line)
    os.makedirs(blessing.uri, exist_ok=True)
    with open(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as f:
        f.write("\n".join(reasons) + ("\n" if reasons else ""))
    blessing.blessed = blessed
    blessing.reasons = reasons or [f"all thresholds passed on {len(table)} slice(s)"]
    blessing.custom["model_id"] = model.id
    if has_baseline:
        blessing.custom["baseline_model_id"] = baseline_model.id
