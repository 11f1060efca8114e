"""The Evaluator node (TFMA behind the launcher: config checks, TFRecord of the eval
split, metrics.json, blessing) against a bare ``tfma.run_model_analysis`` script on the
same model, data and EvalConfig, both as fresh processes in the same bench run (imports
included); framework/bare ratio. Also the InfraValidator and Pusher on the blessed model."""
from __future__ import annotations

import os

from .common import REPO, fresh_workdir, measure_python, tfpipe_run

PIPE = """
from tfpipe.components import Evaluator, ExampleGen, InfraValidator, Pusher
from tfpipe import Pipeline
from tests.components.test_model_validation import EVAL_CONFIG
from tests.fixtures.tiny_model import TinyClassifierTrainer

def create_pipeline():
    gen = ExampleGen(input_base={data!r}, label_key="species")
    trainer = TinyClassifierTrainer(examples=gen.outputs.examples, id="Trainer")
    ev = Evaluator(examples=gen.outputs.examples, model=trainer.outputs.model, eval_config=EVAL_CONFIG)
    infra = InfraValidator(model=trainer.outputs.model, examples=gen.outputs.examples, drop_columns=["species"])
    push = Pusher(model=trainer.outputs.model, model_blessing=ev.outputs.blessing,
                  infra_blessing=infra.outputs.blessing, push_destination={serving!r})
    return Pipeline("bench_eval", [gen, trainer, ev, infra, push], root={root!r}, metadata={md!r},
                    beam_pipeline_args=["--direct_num_workers=1"])
"""

BARE = r"""
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfpipe.components.examples_io import serialized_examples
from tfpipe.metadata import MetadataStore
from tests.components.test_model_validation import EVAL_CONFIG
st = MetadataStore(MD)
ex = [a for a in st.list_artifacts("Examples")][0]
model = [a for a in st.list_artifacts("Model")][0]
data = os.path.join(WORK, "eval.tfrecord")
with tf.io.TFRecordWriter(data) as w:
    for r in serialized_examples(ex, "eval"):
        w.write(r)
cfg = dict(EVAL_CONFIG)
for m in cfg["metrics_specs"][0]["metrics"]:
    m.get("threshold", {}).pop("change_threshold", None)
cfg["metrics_specs"][0]["metrics"][0]["class_name"] = "SparseCategoricalAccuracy"
config = json_format.ParseDict(cfg, tfma.EvalConfig())
shared = tfma.default_eval_shared_model(os.path.join(model.uri, "Format-Serving"), eval_config=config)
tfma.run_model_analysis(eval_shared_model=shared, eval_config=config, data_location=data,
                        output_path=os.path.join(WORK, "out"))
assert tfma.load_validation_result(os.path.join(WORK, "out")).validation_ok
"""


def run(report):
    work = fresh_workdir("evaluator")
    md = os.path.join(work, "md.sqlite")
    pfile = os.path.join(work, "pipe.py")
    with open(pfile, "w") as f:
        f.write(PIPE.format(data=os.path.join(REPO, "examples", "penguin", "data"), root=os.path.join(work, "root"),
                            md=md, serving=os.path.join(work, "serving")))
    tfpipe_run(pfile, "--to", "Trainer", cwd=REPO)
    ev = tfpipe_run(pfile, "--to", "Evaluator", cwd=REPO)
    report("evaluator_node_process", ev["process_wall_s"], "s", "tfpipe run: Evaluator executes, upstream cached")
    report("evaluator_node_peak_rss", ev["peak_rss_mb"], "MB")
    bare_dir = os.path.join(work, "bare")
    os.makedirs(bare_dir)
    bare = measure_python(f"import os\nWORK = {bare_dir!r}\nMD = {md!r}\n" + BARE, cwd=REPO)
    report("bare_tfma_process", bare["process_wall_s"], "s", "run_model_analysis, same model/data/config")
    report("evaluator_over_bare_tfma", ev["process_wall_s"] / bare["process_wall_s"], "x")
    tail = tfpipe_run(pfile, cwd=REPO)
    report("infra_validator_and_pusher", tail["process_wall_s"], "s", "separate-process load + requests, push")
    cached = tfpipe_run(pfile, cwd=REPO)
    report("cached_rerun", cached["process_wall_s"], "s", "every node from cache")
