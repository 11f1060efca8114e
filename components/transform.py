"""Transform: the user's ``preprocessing_fn`` on TensorFlow Transform, run on Beam.

Full-pass analyzers (``tft.scale_to_z_score``, ``tft.compute_and_apply_vocabulary``,
``tft.bucketize``...) see the ``analyze_splits`` (train by default); the resulting
transform graph is applied to every split. Outputs:

- ``transform_graph``: a ``tft.TFTransformOutput`` directory (``transform_fn/``,
  ``transformed_metadata/``), the same graph the Trainer embeds in the serving signature;
- ``transformed_examples``: TFRecord files of tf.Example per split
  (``Split-<s>/transformed_examples-*.tfrecord``, ``payload_format = FORMAT_TF_EXAMPLE``),
  which ``tf.data`` reads and parses in parallel in the Trainer;
- ``post_transform_statistics``: TFDV statistics of the transformed data, laid out as
  StatisticsGen's (``Split-<s>/FeatureStats.pb``).

What ``preprocessing_fn(inputs)`` receives: raw Parquet columns become list-typed Arrow
columns (a null is a missing value, i.e. an empty list), and TFT hands each feature over
as the schema says: a feature with a fixed ``shape`` in the schema is a dense Tensor, one
without (SchemaGen's default, and always when values can be missing) is a
``tf.SparseTensor`` (static shape ``[None, None]``; dense shape ``[batch, 1]``, or
``[batch, 0]`` when no row of the batch has a value) holding no entry where the value is
missing. Densify with ``tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=...)``.
"""
from __future__ import annotations

import os
import tempfile

from tfpipe import (
    Examples,
    ExampleStatistics,
    Input,
    ModuleFile,
    Output,
    Schema,
    TransformGraph,
    component,
    current,
    fileio,
)
from tfpipe.runtime import tracking

from ._autograph import libraries_not_autographed
from ._user_code import call_user_fn, check_static, compile_check, describe, load_user_fn

__all__ = ["Transform", "TransformError", "raw_arrow_schema", "transform_beam_graph"]


class TransformError(RuntimeError):
    pass


def _driver(params: dict) -> dict:
    check_static("Transform", "preprocessing_fn", params.get("module_file") or "",
                 params.get("preprocessing_fn") or "")
    out = {}
    ref = params.get("preprocessing_fn")
    if ref:  # a Python reference: its source file's content joins the cache key
        from tfpipe.fingerprint import module_fingerprint

        from ._user_code import resolve_source
        out["preprocessing_fn_fingerprint"] = module_fingerprint(resolve_source(ref))
    return out


def raw_arrow_schema(schema):
    """The Arrow schema of list-typed columns TFT reads, from a tensorflow_metadata Schema."""
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    types = {schema_pb2.FLOAT: pa.float32(), schema_pb2.INT: pa.int64(), schema_pb2.BYTES: pa.binary()}
    return pa.schema([pa.field(f.name, pa.list_(types[f.type])) for f in schema.feature
                      if f.type in types])


def _to_raw_batches(table, arrow_schema, progress_key: str = ""):
    """A Parquet table -> list-typed record batches cast to the schema's types (its rows
    counted towards the node's progress under ``progress_key``)."""
    import pyarrow as pa

    from tfpipe.runtime import count
    from tfpipe.tabular import to_list_batch
    count(progress_key, table.num_rows)
    missing = [n for n in arrow_schema.names if n not in table.column_names]
    if missing:
        raise TransformError(f"columns {missing} of the schema are not in the examples "
                             f"(columns: {table.column_names})")
    out = []
    for b in table.select(arrow_schema.names).to_batches(max_chunksize=4096):
        lb = to_list_batch(b)
        cols = [c if c.type == f.type else c.cast(f.type) for c, f in zip(lb.columns, arrow_schema)]
        out.append(pa.RecordBatch.from_arrays(cols, schema=arrow_schema))
    return out


def _batched_tfrecord_sink(prefix: str, suffix: str):
    """Beam's TFRecord sink (what ``beam.io.WriteToTFRecord`` writes through: the same
    framing, shard names, temporary files and finalization) taking a whole batch of
    serialized records as one element. A transformed batch stays one element from the
    TFT output to the file instead of fanning out into one Beam element per example, whose
    per-element cost (windowing, the write DoFn, the sink's call per record) was a large
    share of Transform at size (docs/transform_trainer.md, "At size"); the files hold the same
    records in the same order."""
    from apache_beam import coders
    from apache_beam.io import tfrecordio
    from apache_beam.io.filesystem import CompressionTypes

    class _BatchedTFRecordSink(tfrecordio._TFRecordSink):
        def write_record(self, file_handle, value):
            write = tfrecordio._TFRecordUtil.write_record
            for record in value:
                write(file_handle, record)

    return _BatchedTFRecordSink(prefix, coders.BytesCoder(), suffix, 0, None, CompressionTypes.AUTO)


def _read_schema(schema: Schema):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    with open(schema.schema_path()) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def transform_beam_graph(p, *, examples: Examples, raw_schema, preprocessing_fn, transform_graph: TransformGraph,
                         transformed_examples: Examples, post_transform_statistics: ExampleStatistics,
                         analyze_splits: list[str], splits: list[str], compute_statistics: bool,
                         temp_dir: str, progress_key: str = "") -> None:
    """Add Transform's work to Beam pipeline ``p``: TFT analyzes ``analyze_splits`` with
    ``preprocessing_fn`` and writes the transform graph, then transforms each of ``splits``
    into TFRecord files of tf.Example (and their TFDV statistics). Rows read count towards
    ``progress_key`` (``tfpipe.runtime.tracking``)."""
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.coders import example_coder
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    arrow_schema = raw_arrow_schema(raw_schema)
    tensor_reps = tensor_representation_util.InferTensorRepresentationsFromSchema(raw_schema)
    adapter_config = tensor_adapter.TensorAdapterConfig(arrow_schema, tensor_reps)

    def read(split, label="", key=""):
        files = examples.parquet_files(split)
        return (p | f"Read{label}[{split}]" >> beam.io.ReadFromParquetBatched(files[0] if len(files) == 1 else
                                                                              examples.parquet_glob(split))
                  | f"ToLists{label}[{split}]" >> beam.FlatMap(_to_raw_batches, arrow_schema, key)
                  .with_output_types(pa.RecordBatch))

    with tft_beam.Context(temp_dir=temp_dir):
        # The analyzed splits are read once for the analysis and once more to be transformed:
        # TransformDataset waits for the transform_fn, so a read shared by both would be held
        # whole in memory until the analysis ends (Beam's in-process runner buffers a
        # PCollection between stages); reading Parquet again is cheap. Rows count towards the
        # progress as they are read to be transformed.
        raw_by_split = {s: read(s, "", progress_key) for s in splits}
        analyze_in = [read(s, "ForAnalysis") for s in analyze_splits]
        raw = analyze_in[0] if len(analyze_in) == 1 else tuple(analyze_in) | "Flatten" >> beam.Flatten()
        transform_fn = (raw, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_graph.uri)
        for s in splits:
            batches, _meta = (((raw_by_split[s], adapter_config), transform_fn)
                              | f"Transform[{s}]" >> tft_beam.TransformDataset(output_record_batches=True))
            rbs = batches | f"Batches[{s}]" >> beam.Map(lambda t: t[0]).with_output_types(pa.RecordBatch)
            fileio.makedirs(transformed_examples.split_uri(s))
            (rbs | f"Encode[{s}]" >> beam.Map(example_coder.RecordBatchToExamples)
                 | f"Write[{s}]" >> beam.io.Write(_batched_tfrecord_sink(transformed_examples.tfrecord_prefix(s),
                                                                         ".tfrecord")))
            if not compute_statistics:
                continue
            fileio.makedirs(post_transform_statistics.split_uri(s))
            (rbs | f"Stats[{s}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | f"WriteStats[{s}]" >> tfdv.WriteStatisticsToBinaryFile(post_transform_statistics.stats_path(s)))


@component(name="Transform", driver=_driver,
           check=compile_check("Transform", "preprocessing_fn", "preprocessing_fn"))
def Transform(examples: Input[Examples], schema: Input[Schema],
              transform_graph: Output[TransformGraph], transformed_examples: Output[Examples],
              post_transform_statistics: Output[ExampleStatistics],
              module_file: ModuleFile = "", preprocessing_fn: str = "",
              analyze_splits: list = ("train",), transform_splits: list = (),
              compute_statistics: bool = True) -> None:
    """``module_file`` (a file defining ``preprocessing_fn(inputs)``) or ``preprocessing_fn``
    (``'package.module.function'``): exactly one. ``transform_splits``: default all.
    ``compute_statistics=False`` skips the post-transform statistics (TFX's
    ``disable_statistics``); the output then holds no split directories."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    import tensorflow_transform as tft

    ctx = current()
    what = describe(module_file, preprocessing_fn, "preprocessing_fn")
    user_fn = load_user_fn("Transform", "preprocessing_fn", module_file, preprocessing_fn)
    splits = list(transform_splits) or list(examples.split_names or [])
    unknown = [s for s in [*analyze_splits, *splits] if s not in (examples.split_names or [])]
    if unknown:
        raise TransformError(f"splits {unknown} are not in the examples; splits: {examples.split_names}")
    raw_schema = _read_schema(schema)

    def wrapped_fn(inputs):
        out = call_user_fn("Transform", user_fn, what, inputs)
        if not isinstance(out, dict) or not out:
            raise TransformError(f"Transform: {what} returned {type(out).__name__}; expected a non-empty "
                                 f"dict of transformed feature tensors")
        return out

    tmp = ctx.tmp_dir or tempfile.mkdtemp(prefix="tfpipe-transform-")
    ctx.log(f"analyzing {analyze_splits} and transforming {splits} with {what}")
    total = sum((examples.row_counts or {}).get(s, 0) for s in splits) or None
    key = f"Transform {transformed_examples.uri}"
    with libraries_not_autographed(), tracking(key, total, f"rows of {'+'.join(splits)} transformed"), \
            ctx.beam_pipeline() as p:
        transform_beam_graph(p, examples=examples, raw_schema=raw_schema, preprocessing_fn=wrapped_fn,
                             transform_graph=transform_graph, transformed_examples=transformed_examples,
                             post_transform_statistics=post_transform_statistics,
                             analyze_splits=list(analyze_splits), splits=splits,
                             compute_statistics=compute_statistics, temp_dir=os.path.join(tmp, "tft"),
                             progress_key=key)

    # the raw schema beside the graph, as TFX lays it out (raw_feature_spec() reads it)
    from google.protobuf import text_format
    raw_meta_dir = os.path.join(transform_graph.uri, tft.TFTransformOutput.RAW_METADATA_DIR)
    os.makedirs(raw_meta_dir, exist_ok=True)
    with open(os.path.join(raw_meta_dir, "schema.pbtxt"), "w") as f:
        f.write(text_format.MessageToString(raw_schema))
    # check the outputs end to end: the graph loads, and every example was transformed
    tft_out = tft.TFTransformOutput(transform_graph.uri)
    feature_spec = tft_out.transformed_feature_spec()
    counts = {}
    for s in splits:
        if compute_statistics:
            stats = tfdv.load_stats_binary(post_transform_statistics.stats_path(s))
            n = stats.datasets[0].num_examples if stats.datasets else 0
        else:
            n = sum(1 for f in transformed_examples.tfrecord_files(s) for _ in tf.data.TFRecordDataset(f))
        want = (examples.row_counts or {}).get(s)
        if want is not None and n != want:
            raise TransformError(f"split {s}: {n} transformed examples but the input has {want}; the Beam "
                                 f"runner dropped data (check beam_pipeline_args)")
        counts[s] = n
        ctx.log(f"split {s}: {n:,} examples transformed")
    transformed_examples.split_names = splits
    transformed_examples.row_counts = counts
    transformed_examples.payload_format = Examples.TF_EXAMPLE_FORMAT
    transformed_examples.span = examples.span
    transformed_examples.columns = {k: getattr(v, "dtype", tf.string).name for k, v in sorted(feature_spec.items())}
    post_transform_statistics.split_names = splits if compute_statistics else []
    post_transform_statistics.span = examples.span
    ctx.log(f"transform graph: {len(feature_spec)} transformed features: {sorted(feature_spec)}")
