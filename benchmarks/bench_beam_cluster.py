"""StatisticsGen (TFDV on Beam) over scaled penguins: on the default in-process runner
against a local Beam cluster (``tfpipe.orchestrators.beam.cluster``: the portable runner,
a job server and an external pool of two SDK worker processes, the way Flink and Spark
run Python), in the same bench run, upstream ExampleGen cached; cluster/direct ratio, and
the statistics' example counts of both (they must be equal to the rows written)."""
from __future__ import annotations

import os

from .common import OUT, REPO, fresh_workdir, scaled_penguins, tfpipe_run

ROWS = int(os.environ.get("TFPIPE_BENCH_CLUSTER_ROWS", "100000"))

PIPE = """
from tfpipe import Pipeline
from tfpipe.components import ExampleGen, StatisticsGen

def create_pipeline():
    gen = ExampleGen(input_base={data!r}, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    return Pipeline({name!r}, [gen, stats], root={root!r}, metadata={md!r}, beam_pipeline_args={args!r})
"""


def _examples_counted(md: str) -> int:
    from tfpipe.components.statistics_gen import load_statistics
    from tfpipe.metadata import MetadataStore
    stats = MetadataStore(md).list_artifacts("ExampleStatistics")[-1]
    return sum(load_statistics(stats, s).datasets[0].num_examples for s in stats.split_names)


def run(report):
    from tfpipe.orchestrators.beam.cluster import LocalBeamCluster
    work = fresh_workdir("beam_cluster")
    data = os.path.dirname(scaled_penguins(ROWS, os.path.join(OUT, "data", f"penguins-{ROWS}", "penguins.csv")))
    md = os.path.join(work, "md.sqlite")

    def pipeline_file(name: str, args: list[str]) -> str:
        path = os.path.join(work, f"{name}.py")
        with open(path, "w") as f:
            f.write(PIPE.format(data=data, name=name, root=os.path.join(work, "root"), md=md, args=args))
        return path

    direct = pipeline_file("direct", ["--direct_num_workers=1"])
    tfpipe_run(direct, "--to", "ExampleGen", cwd=REPO)
    d = tfpipe_run(direct, "--from", "StatisticsGen", "--no-cache", cwd=REPO)
    report("statistics_direct", d["process_wall_s"], "s", f"{ROWS:,} rows, in-process FnApiRunner")
    report("statistics_direct_examples", _examples_counted(md), "rows")
    with LocalBeamCluster(workers=2, log_dir=os.path.join(work, "cluster")) as cluster:
        on_cluster = pipeline_file("cluster", cluster.pipeline_args)
        tfpipe_run(on_cluster, "--to", "ExampleGen", cwd=REPO)
        c = tfpipe_run(on_cluster, "--from", "StatisticsGen", "--no-cache", cwd=REPO)
        workers = {pid for job in cluster.bundles_by_job().values() for pid in job}
    report("statistics_cluster", c["process_wall_s"], "s", f"{ROWS:,} rows, portable runner, 2 SDK worker processes")
    report("statistics_cluster_examples", _examples_counted(md), "rows")
    report("statistics_cluster_workers", len(workers), "procs", "SDK worker processes that processed bundles")
    report("cluster_over_direct", c["process_wall_s"] / d["process_wall_s"], "x")
