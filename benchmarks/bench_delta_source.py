"""ExampleGen + StatisticsGen from a Delta table against the same rows as Parquet files,
at 100k and 1M rows (``TFPIPE_BENCH_DELTA_ROWS``): the wall time ratio Delta / Parquet at
the largest size (target <= 1.3x) and the peak RSS of the Delta run from the smallest to
the largest size (target: flat, <= 1.5x).

Both inputs are the scaled penguins of bench_data_half (the same rows, in the same order),
written once: Parquet files, and a Delta table of the same Parquet data (one commit). Each
run is cold, one process doing all the work (``--parallel 1``), so time and peak RSS are
the run's; the pipelines differ only in ``input_base``."""
from __future__ import annotations

import os
import shutil

from .common import OUT, env_sizes, fresh_workdir, scaled_penguins, tfpipe_cli, write_pipeline

PIPE = """
from tfpipe.components import ExampleGen, StatisticsGen
from tfpipe import Pipeline

def create_pipeline():
    gen = ExampleGen(input_base={data!r}, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    return Pipeline("bench_{name}", [gen, stats], root={root!r}, metadata={md!r},
                    beam_pipeline_args=["--direct_num_workers=1"])
"""


def _inputs(rows: int) -> tuple[str, str]:
    """(a directory of Parquet files, a Delta table) holding the same ``rows`` rows."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from deltalake import write_deltalake
    base = os.path.join(OUT, "data", f"penguins_{rows}")
    csv = scaled_penguins(rows, os.path.join(base, "penguins.csv"))
    pdir, delta = base + "_parquet", base + "_delta"
    if not os.path.exists(os.path.join(pdir, "penguins.parquet")):
        shutil.rmtree(pdir, ignore_errors=True)
        os.makedirs(pdir)
        reader = pacsv.open_csv(csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        with pq.ParquetWriter(os.path.join(pdir, "penguins.parquet.tmp"), reader.schema) as w:
            for b in reader:
                w.write_batch(b)
        os.replace(os.path.join(pdir, "penguins.parquet.tmp"), os.path.join(pdir, "penguins.parquet"))
    if not os.path.isdir(os.path.join(delta, "_delta_log")):
        shutil.rmtree(delta, ignore_errors=True)
        f = pq.ParquetFile(os.path.join(pdir, "penguins.parquet"))
        write_deltalake(delta, f.iter_batches(), schema=f.schema_arrow)
    return pdir, delta


def _pipeline(work: str, name: str, data: str) -> str:
    return write_pipeline(work, name, PIPE, data=data, name=name)


def run(report):
    work = fresh_workdir("delta_source")
    sizes = env_sizes("TFPIPE_BENCH_DELTA_ROWS", "100000,1000000")
    results: dict[tuple[str, int], dict] = {}
    for rows in sizes:
        pdir, delta = _inputs(rows)
        for kind, data in (("parquet", pdir), ("delta", delta)):
            m = tfpipe_cli("run", "-q", "--parallel", "1", _pipeline(work, f"{kind}_{rows}", data))
            results[kind, rows] = m
            report(f"ExampleGen + StatisticsGen, {rows:,} rows from {kind}: wall", m["process_wall_s"], "s",
                   "cold: a fresh process")
            report(f"ExampleGen + StatisticsGen, {rows:,} rows from {kind}: peak RSS", m["peak_rss_mb"], "MB")
    big, small = max(sizes), min(sizes)
    report(f"wall time ratio Delta / Parquet, {big:,} rows",
           results["delta", big]["process_wall_s"] / results["parquet", big]["process_wall_s"], "x", "(target <= 1.3x)")
    if big > small:
        report(f"peak RSS ratio of the Delta run, {big:,} / {small:,} rows",
               results["delta", big]["peak_rss_mb"] / results["delta", small]["peak_rss_mb"], "x",
               "(target <= 1.5x: flat with rows)")
