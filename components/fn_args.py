"""What a user's ``run_fn(fn_args)`` / ``tuner_fn(fn_args)`` receives, shaped like TFX's
``tfx.components.FnArgs`` so a TFX module file ports by changing imports.

``fn_args.data_accessor.tf_dataset_factory(files, options, schema)`` returns a batched
``tf.data.Dataset`` of ``(features, label)``; ``options`` is tfx_bsl's
``tfxio.TensorFlowDatasetOptions`` or this module's look-alike of it. Files are TFRecord
of tf.Example (Transform's output) or Parquet (ExampleGen's raw output); ``schema`` is a
tensorflow_metadata Schema proto (or a path to a schema.pbtxt) describing them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["FnArgs", "DataAccessor", "TensorFlowDatasetOptions", "TunerFnResult", "DataAccessorError",
           "feature_spec_of", "load_schema_proto"]


class DataAccessorError(ValueError):
    pass


@dataclass(frozen=True)
class TensorFlowDatasetOptions:
    """The fields of ``tfx_bsl.public.tfxio.TensorFlowDatasetOptions``, same defaults."""
    batch_size: int
    drop_final_batch: bool = False
    num_epochs: int | None = None
    shuffle: bool = True
    shuffle_buffer_size: int = 10000
    shuffle_seed: int | None = None
    prefetch_buffer_size: int = -1
    reader_num_threads: int = -1
    parser_num_threads: int = -1
    sloppy_ordering: bool = False
    label_key: str | None = None


class TunerFnResult(NamedTuple):
    """What ``tuner_fn`` returns: a KerasTuner tuner and the keyword arguments of
    ``tuner.search(**fit_kwargs)`` (x, validation_data, steps_per_epoch, ...)."""
    tuner: Any
    fit_kwargs: dict


def load_schema_proto(schema):
    """A Schema proto from a proto, a schema.pbtxt path, or a directory holding one."""
    if schema is None or not isinstance(schema, (str, os.PathLike)):
        return schema
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    path = os.fspath(schema)
    if os.path.isdir(path):
        path = os.path.join(path, "schema.pbtxt")
    with open(path) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def feature_spec_of(schema) -> dict:
    """tf.io feature spec of a schema: FixedLenFeature where the schema gives a shape,
    VarLenFeature (a SparseTensor) where it does not."""
    from tensorflow_transform.tf_metadata import schema_utils
    return schema_utils.schema_as_feature_spec(load_schema_proto(schema)).feature_spec


def _parquet_records(path: str, spec: dict):
    """Serialized tf.Example records of a Parquet file, columns limited to ``spec``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tfx_bsl.coders import example_coder

    from tfpipe.tabular import to_list_batch
    pf = pq.ParquetFile(os.fsdecode(path))
    wanted = {n.decode() if isinstance(n, bytes) else str(n) for n in spec}
    cols = [c for c in pf.schema_arrow.names if c in wanted]
    for b in pf.iter_batches(batch_size=4096, columns=cols):
        fields = []
        for f in b.schema:
            t = f.type
            if pa.types.is_floating(t):
                t = pa.float32()
            elif pa.types.is_integer(t) or pa.types.is_boolean(t):
                t = pa.int64()
            fields.append(pa.field(f.name, t))
        b = pa.Table.from_batches([b]).cast(pa.schema(fields)).combine_chunks().to_batches()[0]
        # an integer schema feature stored as float (or the reverse) is cast by the spec
        for rec in example_coder.RecordBatchToExamples(to_list_batch(b)):
            yield rec


class DataAccessor:
    """Builds the batched datasets ``run_fn`` trains on."""

    def tf_dataset_factory(self, file_pattern, options, schema=None):
        import tensorflow as tf
        files = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
        expanded = []
        for f in files:
            expanded.extend(sorted(tf.io.gfile.glob(os.fspath(f))) if any(c in os.fspath(f) for c in "*?[")
                            else [os.fspath(f)])
        if not expanded:
            raise DataAccessorError(f"tf_dataset_factory: no files match {files}")
        if schema is None:
            raise DataAccessorError("tf_dataset_factory: a schema is required to parse the examples (pass "
                                    "tf_transform_output.transformed_metadata.schema, or the raw schema "
                                    "from fn_args.schema_path)")
        spec = feature_spec_of(schema)
        label_key = getattr(options, "label_key", None)
        if label_key and label_key not in spec:
            raise DataAccessorError(f"tf_dataset_factory: label_key {label_key!r} is not a feature of the "
                                    f"schema; features: {sorted(spec)}")
        autotune = tf.data.AUTOTUNE
        threads = options.reader_num_threads if options.reader_num_threads > 0 else autotune
        parquet = [f for f in expanded if f.endswith(".parquet")]
        if parquet and len(parquet) != len(expanded):
            raise DataAccessorError(f"tf_dataset_factory: mixed Parquet and TFRecord files: {expanded}")
        if parquet:
            ds = tf.data.Dataset.from_tensor_slices(parquet).interleave(
                lambda p: tf.data.Dataset.from_generator(_parquet_records, args=(p, list(spec)),
                                                         output_signature=tf.TensorSpec([], tf.string)),
                cycle_length=1)
        else:
            gz = [f.endswith(".gz") for f in expanded]
            comp = "GZIP" if all(gz) else ""
            ds = tf.data.Dataset.from_tensor_slices(expanded).interleave(
                lambda p: tf.data.TFRecordDataset(p, compression_type=comp), cycle_length=min(4, len(expanded)),
                num_parallel_calls=threads, deterministic=not options.sloppy_ordering)
        if options.shuffle:
            ds = ds.shuffle(options.shuffle_buffer_size, seed=options.shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.repeat(options.num_epochs)
        ds = ds.batch(options.batch_size, drop_remainder=options.drop_final_batch)
        parsers = options.parser_num_threads if options.parser_num_threads > 0 else autotune

        def parse(records):
            feats = tf.io.parse_example(records, spec)
            if label_key:
                label = feats.pop(label_key)
                return feats, label
            return feats
        ds = ds.map(parse, num_parallel_calls=parsers, deterministic=not options.sloppy_ordering)
        return ds.prefetch(options.prefetch_buffer_size if options.prefetch_buffer_size > 0 else autotune)


@dataclass
class FnArgs:
    """The arguments of ``run_fn`` / ``tuner_fn``; field names as in TFX."""
    train_files: list = field(default_factory=list)
    eval_files: list = field(default_factory=list)
    train_steps: int | None = None
    eval_steps: int | None = None
    schema_path: str | None = None
    transform_graph_path: str | None = None
    serving_model_dir: str | None = None
    model_run_dir: str | None = None
    hyperparameters: dict | None = None
    custom_config: dict = field(default_factory=dict)
    base_model: str | None = None
    data_accessor: DataAccessor = field(default_factory=DataAccessor)
    working_dir: str | None = None
    examples_format: str = ""

    @property
    def schema_file(self) -> str | None:
        return self.schema_path

    @property
    def transform_output(self) -> str | None:
        return self.transform_graph_path

    @property
    def model_dir(self) -> str | None:  # TFX's older name
        return self.serving_model_dir
