"""Data half (ExampleGen + StatisticsGen + SchemaGen + ExampleValidator) on synthetic
penguins at 100k, 1M and 10M rows (``TFPIPE_BENCH_ROWS``), against
``tfdv.generate_statistics_from_csv`` on the same 1M-row file (``TFPIPE_BENCH_TFDV_ROWS``)
in the same bench run; launcher overhead per node; cached re-run.

Sizes are run cold, one process doing all the work (``--parallel 1``), so time and peak
RSS scale honestly; the speed-up over TFDV is given cold and with the task host warm
(``tfpipe run``'s default from the second run on, which forks each node from a process
that imported TensorFlow, TFDV and Beam already).

Each side is timed as its user runs it, from process start to exit: the data half as
``tfpipe run`` (the installed command), the baseline as a Python script calling TFDV. The
``tfpipe`` command ends without the interpreter's final collection of TensorFlow objects
(about 2 s here), a script does not; so the in-process times of both (imports included,
interpreter start and exit excluded) are reported as a second ratio."""
from __future__ import annotations

import os

from tfpipe.orchestrators import taskhost

from .common import (
    OUT,
    REPO,
    env_sizes,
    fresh_workdir,
    measure_python,
    scaled_penguins,
    tfpipe_cli,
    tfpipe_run,
    write_pipeline,
)

PIPE = """
from tfpipe.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
from tfpipe import Pipeline

def create_pipeline():
    gen = ExampleGen(input_base={data!r}, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    val = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema)
    return Pipeline("bench_{rows}", [gen, stats, schema, val], root={root!r}, metadata={md!r},
                    beam_pipeline_args=["--direct_num_workers=1"])
"""

NOOP = """
from tfpipe import Pipeline
from tests.fixtures.trivial import noop

def create_pipeline():
    return Pipeline("noop", [noop(id=f"n{{i}}") for i in range({n})], root={root!r}, metadata={md!r})
"""


def _pipeline(work: str, rows: int, data_dir: str) -> str:
    return write_pipeline(work, str(rows), PIPE, data=data_dir, rows=rows)


def run(report):
    work = fresh_workdir("data_half")
    sizes = env_sizes("TFPIPE_BENCH_ROWS", "100000,1000000,10000000")
    ref = int(os.environ.get("TFPIPE_BENCH_TFDV_ROWS", "1000000"))
    if ref not in sizes:
        sizes = sorted({*sizes, ref})
    results = {}
    # warm the page cache with one import of the heavy libraries, so the first measured run
    # does not pay for reading them from disk while the others do not
    measure_python("import tensorflow_data_validation, apache_beam, ml_metadata")
    taskhost.stop_host(wait_s=60)
    for rows in sizes:
        d = os.path.join(OUT, "data", f"penguins_{rows}")
        csv = scaled_penguins(rows, os.path.join(d, "penguins.csv"))
        mb = os.path.getsize(csv) / 1e6
        # one process does all the work (no task host), so wait4's peak RSS is the run's
        m = tfpipe_cli("run", "-q", "--parallel", "1", _pipeline(work, rows, d))
        results[rows] = m
        report(f"data half {rows:,} rows ({mb:.0f} MB CSV): wall", m["process_wall_s"], "s", "cold: a fresh process")
        report(f"data half {rows:,} rows: peak RSS", m["peak_rss_mb"], "MB")
    big = max(sizes)
    small = min(sizes)
    if big > ref:
        report(f"wall time ratio {big:,} / {ref:,} rows",
               results[big]["process_wall_s"] / results[ref]["process_wall_s"],
               "x", f"(target <= {big // ref * 12 // 10}x)")
        report(f"peak RSS ratio {big:,} / {ref:,} rows", results[big]["peak_rss_mb"] / results[ref]["peak_rss_mb"],
               "x", "(target <= 2x)")
    if small < ref:
        report(f"peak RSS ratio {ref:,} / {small:,} rows", results[ref]["peak_rss_mb"] / results[small]["peak_rss_mb"],
               "x", "(target <= 1.5x)")
    d_ref = os.path.join(OUT, "data", f"penguins_{ref}")
    csv = os.path.join(d_ref, "penguins.csv")
    base = measure_python("import tensorflow_data_validation as tfdv\n"
                          f"stats = tfdv.generate_statistics_from_csv({csv!r})\n"
                          "assert stats.datasets[0].num_examples > 0")
    report(f"baseline tfdv.generate_statistics_from_csv {ref:,} rows: wall", base["process_wall_s"], "s")
    report(f"baseline tfdv.generate_statistics_from_csv {ref:,} rows: peak RSS", base["peak_rss_mb"], "MB")
    report(f"speed-up of the whole data half over that one TFDV call, {ref:,} rows, cold",
           base["process_wall_s"] / results[ref]["process_wall_s"], "x", "(both a fresh process)")
    # tfpipe run's default: nodes forked from the warm task host (started by the first run,
    # kept for the next ones); the second run is what a user's next run costs
    pipe = _pipeline(work, ref, d_ref)
    tfpipe_cli("run", "-q", "--no-cache", pipe)
    warm = tfpipe_cli("run", "-q", "--no-cache", pipe)
    report(f"data half {ref:,} rows, task host warm: wall", warm["process_wall_s"], "s",
           "tfpipe run's default; nothing cached")
    report(f"speed-up of the whole data half over that one TFDV call, {ref:,} rows, task host warm",
           base["process_wall_s"] / warm["process_wall_s"], "x", "(target >= 10x)")
    inproc = tfpipe_run(pipe, "--no-cache", "--parallel", "1")
    report(f"speed-up over that TFDV call, {ref:,} rows, in-process times of both (cold; interpreter start and "
           "exit excluded)",
           base["wall_s"] / inproc["wall_s"], "x", f"({inproc['wall_s']:.1f} s vs {base['wall_s']:.1f} s)")
    cached = tfpipe_cli("run", "-q", pipe)
    report(f"fully cached re-run of the data half, {ref:,} rows: wall", cached["process_wall_s"], "s",
           "(target < 5 s)")
    # launcher overhead: N no-op nodes, uncached, in one process, minus the 1-node run
    n = 40
    per = {}
    for k in (1, n):
        path = os.path.join(work, f"noop_{k}.py")
        with open(path, "w") as f:
            f.write(NOOP.format(n=k, root=os.path.join(work, f"noop_root_{k}"),
                                md=os.path.join(work, f"noop_{k}.sqlite")))
        per[k] = tfpipe_run(path, "--no-cache", "--parallel", "1", cwd=REPO)["wall_s"]
    report("launcher overhead per node (no-op component, metadata writes + cache check)",
           1000 * (per[n] - per[1]) / (n - 1), "ms", "(target < 50 ms)")
