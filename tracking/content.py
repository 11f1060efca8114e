"""Are two artifacts the same *content*? What ``tfpipe reproduce`` asks of each output.

The byte fingerprint is the fast path: equal bytes are equal content. When the bytes
differ, each artifact type is compared by what it means:

- Examples: each split's rows, Parquet tables equal (Arrow ``Table.equals``), or
  TFRecord tf.Examples equal as protos, in order;
- ExampleStatistics: each split's ``DatasetFeatureStatisticsList`` protos equal;
- Schema: the parsed schema protos equal;
- TransformGraph, Model: each SavedModel by its variables (every tensor equal) and its
  signatures (SignatureDef protos), its assets by bytes; a TransformGraph's metadata as
  a schema proto;
- ModelRun: ``history.json``; ModelEvaluation: ``metrics.json``; blessings: their JSON
  files and the verdict, as data (not bytes);
- everything else: bytes (the fingerprint), which is then the meaning.

Heavy libraries (TensorFlow, pyarrow) are imported only when a comparison needs them.
"""
from __future__ import annotations

import glob
import json
import os

from tfpipe import fileio
from tfpipe.artifacts import Examples, ExampleStatistics, Schema

__all__ = ["compare_content", "Verdict"]


class Verdict(dict):
    """``{"identical": bool, "how": what was compared, "detail": the first difference}``."""

    @classmethod
    def of(cls, identical: bool, how: str, detail: str = "") -> "Verdict":
        return cls(identical=identical, how=how, detail=detail)


def _files(root: str) -> list[str]:
    out = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        out += [os.path.relpath(os.path.join(d, n), root) for n in sorted(names)]
    return out


def _same_bytes(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


# -- Examples ---------------------------------------------------------------------------------
def _tfrecords(files: list[str]):
    """The records of TFRecord files in order (the framing: length, its CRC, data, its
    CRC; gzip when the name says so). A damaged file reads as different content."""
    import gzip
    import struct
    for path in files:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            while True:
                head = f.read(12)
                if len(head) < 12:
                    break
                (n,) = struct.unpack("<Q", head[:8])
                data = f.read(n)
                f.read(4)
                yield data


def _examples(a_uri: str, b_uri: str, props: dict) -> Verdict:
    a = Examples(uri=a_uri, properties={k: v for k, v in props.items() if k in Examples.property_types()})
    b = Examples(uri=b_uri, properties=a.properties)
    splits = a.split_names or a.splits_on_disk()
    if sorted(splits) != sorted(b.splits_on_disk()):
        return Verdict.of(False, "splits", f"splits {sorted(splits)} vs {b.splits_on_disk()}")
    total = 0
    if a.payload_format == Examples.TF_EXAMPLE_FORMAT:
        from tensorflow.core.example import example_pb2
        for s in splits:
            ra, rb = _tfrecords(a.tfrecord_files(s)), _tfrecords(b.tfrecord_files(s))
            i = 0
            for i, (x, y) in enumerate(zip(ra, rb, strict=False)):
                if x != y:
                    ea, eb = example_pb2.Example(), example_pb2.Example()
                    ea.ParseFromString(x)
                    eb.ParseFromString(y)
                    if ea != eb:
                        return Verdict.of(False, "tf.Examples as protos, in order",
                                          f"split {s}: example {i} differs")
            rest_a, rest_b = sum(1 for _ in ra), sum(1 for _ in rb)
            if rest_a or rest_b:
                return Verdict.of(False, "tf.Examples as protos, in order",
                                  f"split {s}: {rest_a or rest_b} more example(s) in the "
                                  f"{'original' if rest_a else 'reproduction'}")
            total += i + 1 if a.tfrecord_files(s) else 0
        return Verdict.of(True, "tf.Examples as protos, in order", f"{total} examples equal")
    import pyarrow.parquet as pq
    for s in splits:
        ta = pq.ParquetDataset(a.parquet_files(s)).read()
        tb = pq.ParquetDataset(b.parquet_files(s)).read()
        if not ta.equals(tb):
            return Verdict.of(False, "Parquet tables", f"split {s}: {ta.num_rows} vs {tb.num_rows} rows, "
                                                      f"not equal")
        total += ta.num_rows
    return Verdict.of(True, "Parquet tables", f"{total} rows equal")


# -- protos -------------------------------------------------------------------------------------
def _statistics(a_uri: str, b_uri: str) -> Verdict:
    from tensorflow_metadata.proto.v0 import statistics_pb2
    a, b = ExampleStatistics(uri=a_uri), ExampleStatistics(uri=b_uri)
    if a.splits_with_stats() != b.splits_with_stats():
        return Verdict.of(False, "statistics protos", f"splits {a.splits_with_stats()} vs {b.splits_with_stats()}")
    for s in a.splits_with_stats():
        pa, pb = statistics_pb2.DatasetFeatureStatisticsList(), statistics_pb2.DatasetFeatureStatisticsList()
        with open(a.stats_path(s), "rb") as f:
            pa.ParseFromString(f.read())
        with open(b.stats_path(s), "rb") as f:
            pb.ParseFromString(f.read())
        if pa != pb:
            return Verdict.of(False, "statistics protos", f"split {s} differs")
    return Verdict.of(True, "statistics protos")


def _schema_file(a: str, b: str) -> bool:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    with open(a) as fa, open(b) as fb:
        return text_format.Parse(fa.read(), schema_pb2.Schema()) == text_format.Parse(fb.read(), schema_pb2.Schema())


def _schema(a_uri: str, b_uri: str) -> Verdict:
    pa, pb = Schema(uri=a_uri).schema_path(), Schema(uri=b_uri).schema_path()
    return Verdict.of(_schema_file(pa, pb), "schema protos")


# -- SavedModels --------------------------------------------------------------------------------
def _saved_models(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.dirname(p), root)
                  for p in glob.glob(os.path.join(root, "**", "saved_model.pb"), recursive=True))


def _saved_model(a: str, b: str) -> str:
    """'' when the SavedModels at ``a`` and ``b`` have the same variables and signatures
    (and assets), else the first difference."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    sigs = []
    for d in (a, b):
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(d, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        sigs.append({k: v for mg in sm.meta_graphs for k, v in mg.signature_def.items()})
    if sorted(sigs[0]) != sorted(sigs[1]):
        return f"signatures {sorted(sigs[0])} vs {sorted(sigs[1])}"
    for k in sigs[0]:
        if sigs[0][k] != sigs[1][k]:
            return f"signature {k!r} differs"
    prefixes = [os.path.join(d, "variables", "variables") for d in (a, b)]
    have = [os.path.exists(p + ".index") for p in prefixes]
    if have[0] != have[1]:
        return "variables present in one only"
    if have[0]:
        ra, rb = (tf.train.load_checkpoint(p) for p in prefixes)
        va, vb = ra.get_variable_to_shape_map(), rb.get_variable_to_shape_map()
        if sorted(va) != sorted(vb):
            return f"variables {len(va)} vs {len(vb)} (names differ)"
        for name in sorted(va):
            if name.endswith(".OPTIMIZER_SLOT") or name == "_CHECKPOINTABLE_OBJECT_GRAPH":
                continue
            x, y = ra.get_tensor(name), rb.get_tensor(name)
            if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
                return f"variable {name} differs"
    for d in ("assets", "assets.extra"):
        fa = _files(os.path.join(a, d)) if os.path.isdir(os.path.join(a, d)) else []
        fb = _files(os.path.join(b, d)) if os.path.isdir(os.path.join(b, d)) else []
        if fa != fb:
            return f"{d}: files differ"
        for f in fa:
            if not _same_bytes(os.path.join(a, d, f), os.path.join(b, d, f)):
                return f"{d}/{f} differs"
    return ""


def _models(a_uri: str, b_uri: str, extra: tuple[str, ...] = ()) -> Verdict:
    how = "SavedModel variables and signatures" + (" and transformed metadata" if extra else "")
    ma, mb = _saved_models(a_uri), _saved_models(b_uri)
    if ma != mb:
        return Verdict.of(False, how, f"SavedModels at {ma} vs {mb}")
    if not ma:
        return Verdict.of(False, how, "no SavedModel found")
    for rel in ma:
        why = _saved_model(os.path.join(a_uri, rel), os.path.join(b_uri, rel))
        if why:
            return Verdict.of(False, how, f"{rel}: {why}")
    for rel in extra:
        pa, pb = os.path.join(a_uri, rel), os.path.join(b_uri, rel)
        if os.path.isfile(pa) != os.path.isfile(pb) or (os.path.isfile(pa) and not _schema_file(pa, pb)):
            return Verdict.of(False, how, f"{rel} differs")
    return Verdict.of(True, how, f"{len(ma)} SavedModel(s)")


# -- small result files ------------------------------------------------------------------------
def _json_files(a_uri: str, b_uri: str, names: tuple[str, ...] | None = None) -> Verdict:
    fa = [f for f in _files(a_uri) if f.endswith(".json") and (names is None or f in names)]
    fb = [f for f in _files(b_uri) if f.endswith(".json") and (names is None or f in names)]
    how = f"{', '.join(names) if names else 'JSON files'} as data"
    if fa != fb:
        return Verdict.of(False, how, f"files {fa} vs {fb}")
    if not fa:
        return Verdict.of(False, how, "nothing to compare")
    for f in fa:
        with open(os.path.join(a_uri, f)) as x, open(os.path.join(b_uri, f)) as y:
            if json.load(x) != json.load(y):
                return Verdict.of(False, how, f"{f} differs")
    return Verdict.of(True, how)


def compare_content(type_name: str, a_uri: str, b_uri: str, a_fingerprint: str | None = None,
                    b_fingerprint: str | None = None, properties: dict | None = None) -> Verdict:
    """Whether the artifacts at ``a_uri`` and ``b_uri`` (of ``type_name``) hold the same
    content, and how that was decided."""
    if a_fingerprint and a_fingerprint == b_fingerprint:
        return Verdict.of(True, "bytes")
    if not (fileio.exists(a_uri) and fileio.exists(b_uri)):
        return Verdict.of(False, "bytes", "missing on disk")
    # an artifact on an object store is compared from its local copy (fetched once)
    a_uri, b_uri = fileio.local_copy(a_uri, a_fingerprint or ""), fileio.local_copy(b_uri, b_fingerprint or "")
    try:
        if type_name == "Examples":
            return _examples(a_uri, b_uri, properties or {})
        if type_name == "ExampleStatistics":
            return _statistics(a_uri, b_uri)
        if type_name == "Schema":
            return _schema(a_uri, b_uri)
        if type_name == "TransformGraph":
            return _models(a_uri, b_uri, extra=("transformed_metadata/schema.pbtxt",))
        if type_name == "Model":
            return _models(a_uri, b_uri)
        if type_name == "ModelRun":
            return _json_files(a_uri, b_uri, ("history.json",))
        if type_name == "ModelEvaluation":
            return _json_files(a_uri, b_uri, ("metrics.json",))
        if type_name in ("ModelBlessing", "InfraBlessing", "ExampleAnomalies", "HyperParameters"):
            return _json_files(a_uri, b_uri)
    except Exception as e:  # an unreadable artifact is not the same content; say why
        return Verdict.of(False, f"content of {type_name}", f"could not compare: {type(e).__name__}: {e}")
    return Verdict.of(False, "bytes", "fingerprints differ")
