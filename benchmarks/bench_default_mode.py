"""`tfpipe run`'s default mode against `--parallel 1` (goal: never slower, ratio <= 1 within
noise), on the penguin pipeline (linear: little that can overlap) and on a pipeline with
two long branches (two Trainers and their Evaluators after one Transform).

Each case: a first run into an empty store (no duration known yet) and a re-run with the
cache off (the last durations known), each mode in a fresh `tfpipe` process, the two modes
alternating so a drift of the machine's speed falls on both. The warm task host is started
beforehand, as it is after a user's first forked run. Environment knobs:
``TFPIPE_BENCH_DEFAULT_PAIRS`` (default 2), ``TFPIPE_BENCH_TRAIN_STEPS`` (default 1500, the
branched pipeline's Trainers).
"""
from __future__ import annotations

import os
import statistics
import tempfile

from benchmarks.common import REPO, tfpipe_cli

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")

BRANCHED = '''
import os

from examples.penguin.pipeline import DATA, EVAL_CONFIG, TRAINER_MODULE, TRANSFORM_MODULE
from tfpipe import Pipeline
from tfpipe.components import Evaluator, ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform


def create_pipeline(root: str, metadata: str, train_steps: int = 1500):
    gen = ExampleGen(input_base=DATA, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    tf = Transform(examples=gen.outputs.examples, schema=schema.outputs.schema, module_file=TRANSFORM_MODULE)
    nodes = [gen, stats, schema, tf]
    for units in (8, 32):
        tr = Trainer(id=f"Trainer_{units}", examples=tf.outputs.transformed_examples,
                     transform_graph=tf.outputs.transform_graph, schema=schema.outputs.schema,
                     module_file=TRAINER_MODULE, train_steps=train_steps, eval_steps=12,
                     custom_config={"learning_rate": 1e-2, "units": units})
        ev = Evaluator(id=f"Evaluator_{units}", examples=gen.outputs.examples, model=tr.outputs.model,
                       eval_config=EVAL_CONFIG)
        nodes += [tr, ev]
    return Pipeline("branched", nodes, root=root, metadata=metadata,
                    beam_pipeline_args=["--direct_num_workers=1"])
'''


def _run(pipeline: str, where: str, mode: str, *extra: str) -> float:
    args = ["run", "-q", pipeline, "-P", f"root={where}/root", "-P", f"metadata={where}/m.sqlite", *extra]
    if mode == "p1":
        args += ["--parallel", "1"]
    return tfpipe_cli(*args, env={"PYTHONPATH": REPO}, cwd=REPO)["process_wall_s"]


def run(report) -> None:
    pairs = int(os.environ.get("TFPIPE_BENCH_DEFAULT_PAIRS", "2"))
    steps = os.environ.get("TFPIPE_BENCH_TRAIN_STEPS", "1500")
    work = tempfile.mkdtemp(prefix="bench-default-")
    branched = os.path.join(work, "branched.py")
    with open(branched, "w") as f:
        f.write(BRANCHED)
    cases = {"penguin": (PENGUIN, ()), "branched": (branched, ("-P", f"train_steps={steps}"))}
    # the warm task host, as after a user's first forked run (not timed)
    _run(PENGUIN, os.path.join(work, "warm"), "default", "--parallel", "2", "--to", "SchemaGen")
    for name, (pipeline, extra) in cases.items():
        times: dict[tuple[str, str], list[float]] = {}
        for mode in ("default", "p1"):  # the stores the re-runs use, with durations recorded
            _run(pipeline, os.path.join(work, f"{name}-{mode}-re"), mode, *extra)
        for i in range(pairs):
            for mode in ("default", "p1") if i % 2 == 0 else ("p1", "default"):
                first = os.path.join(work, f"{name}-{mode}-first-{i}")
                times.setdefault(("first", mode), []).append(_run(pipeline, first, mode, *extra))
                re = os.path.join(work, f"{name}-{mode}-re")
                times.setdefault(("rerun", mode), []).append(_run(pipeline, re, mode, *extra, "--no-cache"))
        for case in ("first", "rerun"):
            d, p = statistics.median(times[(case, "default")]), statistics.median(times[(case, "p1")])
            what = "empty store" if case == "first" else "cache off, last durations known"
            report(f"{name}_{case}_default_wall", d, "s", f"tfpipe run, {what}")
            report(f"{name}_{case}_parallel1_wall", p, "s", f"tfpipe run --parallel 1, {what}")
            report(f"{name}_{case}_default_ratio", d / p, "x", "default / --parallel 1 (goal <= 1 within noise)")
