"""A sweep against the same runs one by one: the penguin example over a 2x2 grid
(learning_rate x units), from an empty TFPIPE_HOME each way.

- one by one: four ``tfpipe run examples/penguin/pipeline.py -P learning_rate=.. -P units=..``
  in a row, as a user would type them (the first computes the data half, the others take
  it from the cache);
- sweep: ``tfpipe run ... -P learning_rate=A,B -P units=C,D --parallel N`` (the shared data
  half once, then the four combinations, N at a time).

Knobs: ``TFPIPE_BENCH_TRAIN_STEPS`` (default 30), ``TFPIPE_BENCH_SWEEP_PARALLEL`` (default
the number of cores).
"""
from __future__ import annotations

import os
import tempfile

from .common import REPO, tfpipe_cli

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")
GRID = {"learning_rate": ["0.003", "0.03"], "units": ["4", "8"]}


def run(report) -> None:
    steps = os.environ.get("TFPIPE_BENCH_TRAIN_STEPS", "30")
    parallel = os.environ.get("TFPIPE_BENCH_SWEEP_PARALLEL", str(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        one_home = os.path.join(tmp, "one-by-one")
        total = 0.0
        for lr in GRID["learning_rate"]:
            for units in GRID["units"]:
                m = tfpipe_cli("run", PENGUIN, "-q", "-P", f"train_steps={steps}", "-P", f"learning_rate={lr}",
                               "-P", f"units={units}", env={"TFPIPE_HOME": one_home})
                total += m["process_wall_s"]
        report("4 runs one by one", total, "s", f"train_steps={steps}")
        sweep = tfpipe_cli("run", PENGUIN, "-q", "-P", f"train_steps={steps}",
                           "-P", "learning_rate=" + ",".join(GRID["learning_rate"]),
                           "-P", "units=" + ",".join(GRID["units"]), "--parallel", parallel,
                           env={"TFPIPE_HOME": os.path.join(tmp, "sweep")})
        report("2x2 sweep", sweep["process_wall_s"], "s",
               f"--parallel {parallel}; {total / sweep['process_wall_s']:.2f}x the speed of one by one")
