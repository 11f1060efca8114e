"""The penguin pipeline with the model half (Transform + Trainer): first run and cached
re-run through ``tfpipe run`` (wall time, peak RSS), against the same work as a bare
script with the same libraries (TFDV statistics/schema/validation on Beam, TFT
analyze+transform on Beam writing TFRecords and post-transform statistics, Keras fit on
tf.data, SavedModel export with the transform graph) measured in the same bench run;
framework/bare ratio.

Nodes after the Trainer (Evaluator, Pusher... when wired in) run in a separate measured
``tfpipe run`` and are reported on their own, since the bare script does not do that work.
"""
from __future__ import annotations

import os

from .common import REPO, fresh_workdir, measure_python, tfpipe_run

PIPE = """
from examples.penguin.pipeline import create_pipeline as _create

def create_pipeline():
    return _create(name="bench_model", root={root!r}, metadata={md!r})
"""

BARE = r"""
import os, sys
sys.path.append(os.path.join(REPO, "examples", "penguin"))
import numpy as np, pandas as pd, pyarrow as pa
from pyarrow import csv as pacsv
import apache_beam as beam
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util
from tfpipe.tabular import to_list_batch                      # 20 lines of Arrow: plain -> list columns
from tfpipe.components.model_export import export_serving_model  # tf.saved_model.save of a tf.Module
import penguin_transform, penguin_utils

t = pacsv.read_csv(PENGUINS, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
bucket = pd.util.hash_pandas_object(t.to_pandas(), index=False).to_numpy() % 3
splits = {"train": t.filter(bucket < 2), "eval": t.filter(bucket == 2)}
opts = ["--direct_num_workers=1"]
with beam.Pipeline(argv=opts) as p:
    for s, tab in splits.items():
        (p | f"C{s}" >> beam.Create([to_list_batch(b) for b in tab.to_batches()])
           | f"S{s}" >> tfdv.GenerateStatistics() | f"W{s}" >> tfdv.WriteStatisticsToBinaryFile(os.path.join(WORK, f"{s}.stats")))
stats = {s: tfdv.load_stats_binary(os.path.join(WORK, f"{s}.stats")) for s in splits}
schema = tfdv.infer_schema(stats["train"])
anomalies = tfdv.validate_statistics(stats["eval"], schema)
from tensorflow_metadata.proto.v0 import schema_pb2
atype = {schema_pb2.FLOAT: pa.float32(), schema_pb2.INT: pa.int64(), schema_pb2.BYTES: pa.binary()}
aschema = pa.schema([pa.field(f.name, pa.list_(atype[f.type])) for f in schema.feature])
def batches(tab):
    out = []
    for b in tab.select(aschema.names).to_batches():
        lb = to_list_batch(b)
        out.append(pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(lb.columns, aschema)], schema=aschema))
    return out
config = tensor_adapter.TensorAdapterConfig(aschema, tensor_representation_util.InferTensorRepresentationsFromSchema(schema))
tg = os.path.join(WORK, "transform_graph")
with beam.Pipeline(argv=opts) as p, tft_beam.Context(temp_dir=os.path.join(WORK, "tmp")):
    raw = {s: p | f"R{s}" >> beam.Create(batches(tab)) for s, tab in splits.items()}
    fn = (raw["train"], config) | tft_beam.AnalyzeDataset(penguin_transform.preprocessing_fn)
    _ = fn | tft_beam.WriteTransformFn(tg)
    for s in splits:
        rbs, _m = ((raw[s], config), fn) | f"T{s}" >> tft_beam.TransformDataset(output_record_batches=True)
        rbs = rbs | f"B{s}" >> beam.Map(lambda x: x[0])
        (rbs | f"E{s}" >> beam.FlatMap(example_coder.RecordBatchToExamples)
             | f"W{s}" >> beam.io.WriteToTFRecord(os.path.join(WORK, s), file_name_suffix=".tfrecord"))
        (rbs | f"PS{s}" >> tfdv.GenerateStatistics()  # post-transform statistics, as Transform writes them
             | f"PW{s}" >> tfdv.WriteStatisticsToBinaryFile(os.path.join(WORK, f"{s}.post.stats")))
from google.protobuf import text_format
os.makedirs(os.path.join(tg, "metadata"), exist_ok=True)
open(os.path.join(tg, "metadata", "schema.pbtxt"), "w").write(text_format.MessageToString(schema))
tft_out = tft.TFTransformOutput(tg)
spec = tft_out.transformed_feature_spec()
def ds(s, bs):
    d = tf.data.TFRecordDataset(tf.io.gfile.glob(os.path.join(WORK, s + "*.tfrecord"))).shuffle(10000, seed=7).repeat()
    d = d.batch(bs).map(lambda r: tf.io.parse_example(r, spec)).map(lambda f: (f, f.pop("species")))
    return d.prefetch(tf.data.AUTOTUNE)
model = penguin_utils._build_keras_model({}, tft_out)
model.fit(ds("train", 20), steps_per_epoch=100, epochs=5, validation_data=ds("eval", 10), validation_steps=12, verbose=0)
export_serving_model(model, tft_out, os.path.join(WORK, "model", "Format-Serving"), label_key="species")
"""  # noqa: E501 (the bare script is run as written: its long lines are in the string)


def run(report):
    work = fresh_workdir("model")
    pfile = os.path.join(work, "pipe.py")
    with open(pfile, "w") as f:
        f.write(PIPE.format(root=os.path.join(work, "root"), md=os.path.join(work, "md.sqlite")))
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    ir = compile_pipeline(create_pipeline(root=os.path.join(work, "x"), metadata=os.path.join(work, "x.sqlite")))
    after = [n["id"] for n in ir["nodes"]][[n["id"] for n in ir["nodes"]].index("Trainer") + 1:]

    first = tfpipe_run(pfile, "--to", "Trainer", cwd=REPO)
    report("framework_first_run_to_trainer", first["process_wall_s"], "s", "data half + Transform + Trainer")
    report("framework_first_run_peak_rss", first["peak_rss_mb"], "MB")
    cached = tfpipe_run(pfile, "--to", "Trainer", cwd=REPO)
    report("framework_cached_rerun_to_trainer", cached["process_wall_s"], "s", "every node from cache")
    bare_dir = os.path.join(work, "bare")
    os.makedirs(bare_dir)
    body = (f"REPO = {REPO!r}\nWORK = {bare_dir!r}\n"
            f"PENGUINS = {os.path.join(REPO, 'examples', 'penguin', 'data', 'penguins.csv')!r}\n" + BARE)
    bare = measure_python(body, cwd=REPO)
    report("bare_script", bare["process_wall_s"], "s", "same libraries, no framework")
    report("bare_script_peak_rss", bare["peak_rss_mb"], "MB")
    report("framework_over_bare_first_run", first["process_wall_s"] / bare["process_wall_s"], "x", "target <= 1.25")
    report("framework_over_bare_rss", first["peak_rss_mb"] / bare["peak_rss_mb"], "x")
    if after:
        tail = tfpipe_run(pfile, cwd=REPO)
        report("framework_nodes_after_trainer", tail["process_wall_s"], "s", ", ".join(after))
        full_cached = tfpipe_run(pfile, cwd=REPO)
        report("framework_cached_rerun_full", full_cached["process_wall_s"], "s", "target <= 10 s")
