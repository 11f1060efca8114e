"""SchemaGen (TFDV inference from statistics) and ImportSchemaGen (a curated schema file)."""
from __future__ import annotations

import os
import shutil

from tfpipe import ExampleStatistics, Input, Output, Schema, component, current

__all__ = ["SchemaGen", "ImportSchemaGen", "SchemaFileError"]


class SchemaFileError(ValueError):
    pass


@component(name="SchemaGen")
def SchemaGen(statistics: Input[ExampleStatistics], schema: Output[Schema],
              infer_feature_shape: bool = False, exclude_splits: list = ()) -> None:
    """Infer a schema from the first split not excluded, then widen it with each other
    split's statistics (``tfdv.update_schema``), so a value or a missing rate seen only in
    one split is not an anomaly of that split."""
    import tensorflow_data_validation as tfdv

    splits = [s for s in statistics.split_names if s not in exclude_splits]
    if not splits:
        raise ValueError(f"exclude_splits {list(exclude_splits)} leaves no split; splits: {statistics.split_names}")
    inferred = None
    for split in splits:
        stats = tfdv.load_stats_binary(statistics.stats_path(split))
        if inferred is None:
            inferred = tfdv.infer_schema(stats, infer_feature_shape=infer_feature_shape)
        else:
            inferred = tfdv.update_schema(inferred, stats)
    os.makedirs(schema.uri, exist_ok=True)
    tfdv.write_schema_text(inferred, schema.schema_path())
    current().log(f"schema of {len(inferred.feature)} features inferred from splits {splits}")


def parse_schema_file(path: str):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    if not os.path.isfile(path):
        raise SchemaFileError(f"schema file {path} does not exist; expected a text-format "
                              f"tensorflow_metadata Schema (schema.pbtxt)")
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise SchemaFileError(f"schema file {path}: {e} (expected a text-format tensorflow_metadata "
                              f"Schema)") from None


def _fingerprint_schema_file(params: dict) -> dict:
    from tfpipe.fingerprint import fingerprint_files
    parse_schema_file(params["schema_file"])
    return {"schema_fingerprint": fingerprint_files([params["schema_file"]])}


@component(name="ImportSchemaGen", driver=_fingerprint_schema_file)
def ImportSchemaGen(schema: Output[Schema], schema_file: str) -> None:
    """Use a curated schema file, checked to parse, as the pipeline's schema."""
    parsed = parse_schema_file(schema_file)
    os.makedirs(schema.uri, exist_ok=True)
    shutil.copyfile(schema_file, schema.schema_path())
    current().log(f"imported schema of {len(parsed.feature)} features from {schema_file}")
