"""BulkInferrer: batch predictions over an Examples split on Apache Beam.

Beam's ``RunInference`` transform with a model handler for the TensorFlow SavedModel
(loaded once per worker, shared between bundles, fed batches of serialized raw
tf.Examples through the ``serving_default`` signature). Output: an InferenceResult with
``predictions-*.parquet``: the input columns named in ``keep_columns`` (all columns by
default) plus ``outputs`` (the model's output row) and, for a classifier,
``predicted_class`` and ``score``. When ``model_blessing`` is wired in and says not
blessed, nothing is predicted and the log says why.
"""
from __future__ import annotations

import json
import os

from tfpipe import (
    Examples,
    InferenceResult,
    Input,
    Model,
    ModelBlessing,
    Output,
    component,
    current,
)

__all__ = ["BulkInferrer", "BulkInferrerError", "SavedModelHandler"]


class BulkInferrerError(RuntimeError):
    """Bad BulkInferrer arguments, or predictions that do not cover the split."""


def SavedModelHandler(model_dir: str, signature: str = "serving_default", output_key: str = "outputs"):
    """A RunInference model handler: serialized tf.Example bytes -> output rows."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class _Handler(ModelHandler):
        def load_model(self):
            import tensorflow as tf
            return tf.saved_model.load(model_dir)

        def run_inference(self, batch, model, inference_args=None):
            import tensorflow as tf
            out = model.signatures[signature](examples=tf.constant(list(batch)))[output_key].numpy()
            return [PredictionResult(x, row) for x, row in zip(batch, out)]

        def get_metrics_namespace(self):
            return "tfpipe_bulk_inferrer"

    return _Handler()


def _rows_with_examples(batch, keep):
    """An Arrow table (or record batch) -> (row dict of kept columns, serialized tf.Example) pairs."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder

    from tfpipe.tabular import to_list_batch
    t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    rows = t.select(keep).to_pylist() if keep else [{}] * t.num_rows
    t = t.cast(pa.schema([pa.field(f.name, pa.float32()) if pa.types.is_floating(f.type) else f
                          for f in t.schema]))
    serialized = []
    for b in t.to_batches():
        serialized.extend(example_coder.RecordBatchToExamples(to_list_batch(b)))
    return list(zip(rows, serialized))


def _to_record(keyed):
    import numpy as np
    row, pred = keyed
    out = np.asarray(pred.inference, dtype="float64").reshape(-1)
    rec = dict(row)
    rec["outputs"] = out.tolist()
    if out.size > 1:
        rec["predicted_class"] = int(out.argmax())
        rec["score"] = float(out.max())
    return rec


@component(name="BulkInferrer")
def BulkInferrer(examples: Input[Examples], model: Input[Model], inference_result: Output[InferenceResult],
                 model_blessing: Input[ModelBlessing] | None = None, data_split: str = "eval",
                 keep_columns: list = None, batch_size: int = 256) -> None:
    """Predict every example of ``data_split`` with ``model``."""
    ctx = current()
    os.makedirs(inference_result.uri, exist_ok=True)
    if model_blessing is not None and not model_blessing.blessed:
        why = "; ".join(model_blessing.reasons or ["no reason recorded"])
        ctx.log(f"SKIPPED: Model #{model.id} is not blessed ({why}); no predictions made")
        with open(os.path.join(inference_result.uri, "SKIPPED"), "w") as f:
            f.write(why + "\n")
        inference_result.custom["skipped"] = why
        return
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    files = examples.parquet_files(data_split)
    columns = sorted((examples.columns or {}).keys())
    keep = columns if keep_columns is None else list(keep_columns)
    unknown = [c for c in keep if c not in columns]
    if unknown:
        raise BulkInferrerError(f"BulkInferrer: keep_columns names {unknown}; "
                                f"Examples #{examples.id} has columns {columns}")
    import pyarrow.parquet as pq
    in_schema = pq.read_schema(files[0])
    model_dir = model.saved_model_dir()
    handler = KeyedModelHandler(SavedModelHandler(model_dir))
    fields = [in_schema.field(c) for c in keep] + [pa.field("outputs", pa.list_(pa.float64())),
                                                   pa.field("predicted_class", pa.int64()),
                                                   pa.field("score", pa.float64())]
    prefix = os.path.join(inference_result.uri, "predictions")
    ctx.log(f"predicting {(examples.row_counts or {}).get(data_split, '?')} examples of {data_split} "
            f"with Model #{model.id} on Beam")
    with ctx.beam_pipeline() as p:
        (p
         | "Read" >> beam.io.ReadFromParquetBatched(examples.parquet_glob(data_split))
         | "ToExamples" >> beam.FlatMap(_rows_with_examples, keep)
         | "Predict" >> RunInference(handler)
         | "ToRecords" >> beam.Map(_to_record)
         | "Write" >> beam.io.WriteToParquet(prefix, pa.schema(fields), file_name_suffix=".parquet"))
    written = pa.concat_tables([pq.read_table(os.path.join(inference_result.uri, f))
                                for f in sorted(os.listdir(inference_result.uri)) if f.endswith(".parquet")])
    want = (examples.row_counts or {}).get(data_split)
    if want is not None and written.num_rows != want:
        raise BulkInferrerError(f"BulkInferrer wrote {written.num_rows} predictions for {want} examples of "
                           f"{data_split}; the Beam runner dropped data (check beam_pipeline_args)")
    with open(os.path.join(inference_result.uri, "inference.json"), "w") as f:
        json.dump({"model_id": model.id, "split": data_split, "rows": written.num_rows,
                   "columns": written.column_names}, f, indent=2)
    inference_result.custom["rows"] = written.num_rows
    inference_result.custom["split"] = data_split
    ctx.log(f"wrote {written.num_rows:,} predictions")
