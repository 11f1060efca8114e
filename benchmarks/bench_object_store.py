"""Object storage against local disk, the same work in the same bench run: the data half at
1M rows (``TFPIPE_BENCH_OBJECT_ROWS``) and the penguin pipeline end to end, each with its
input data, artifact root and push destination on a SeaweedFS S3 server on loopback
(started here, as the tests start it), then on local disk; and an all-cached re-run of the
penguin pipeline on S3.

Each pair alternates (disk, S3, disk, S3) from a fresh process and an empty root, one
process doing all the work (``--parallel 1``), with the local copy cache emptied before
every S3 run, so the S3 side pays for every download and upload. The ratio is the median
S3 time over the median disk time."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile

from .common import OUT, REPO, fresh_workdir, scaled_penguins, tfpipe_cli

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")
PIPE = """
from tfpipe.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
from tfpipe import Pipeline

def create_pipeline(data: str = "", root: str = "", metadata: str = ""):
    gen = ExampleGen(input_base=data, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    val = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema)
    return Pipeline("bench_object_store", [gen, stats, schema, val], root=root, metadata=metadata,
                    beam_pipeline_args=["--direct_num_workers=1"])
"""


def _pairs(report, name: str, pipeline: str, data_disk: str, data_s3: str, work: str, env: dict, bucket: str,
           extra: tuple = (), rounds: int = 2) -> None:
    times = {"disk": [], "s3": []}
    for i in range(rounds):
        for where in ("disk", "s3"):
            tag = f"{name.split()[0]}-{where}-{i}"
            if where == "disk":
                data, root, e = data_disk, os.path.join(work, tag, "root"), {}
            else:
                data, root, e = data_s3, f"{bucket}/{tag}/root", env
                shutil.rmtree(env["TFPIPE_CACHE_DIR"], ignore_errors=True)
            m = tfpipe_cli("run", "-q", "--parallel", "1", pipeline, "-P", f"{extra[0] if extra else 'data'}={data}",
                           "-P", f"root={root}", "-P", f"metadata={os.path.join(work, tag + '.sqlite')}",
                           *extra[1:], env=e)
            times[where].append(m["process_wall_s"])
    disk, s3 = statistics.median(times["disk"]), statistics.median(times["s3"])
    report(f"{name} on local disk: wall", disk, "s", f"median of {rounds}")
    report(f"{name} on S3 (SeaweedFS on loopback): wall", s3, "s", f"median of {rounds}")
    return s3 / disk


def run(report):
    from tests.conftest import scoped_env
    from tests.object_store import SeaweedFS
    from tfpipe import fileio
    work = fresh_workdir("object_store")
    server = SeaweedFS(tempfile.mkdtemp(prefix="bench-seaweedfs-")).start()
    try:
        bucket = server.make_bucket("bench")
        env = {**server.env(), "TFPIPE_CACHE_DIR": os.path.join(work, "cache")}
        with scoped_env(**env):
            rows = int(os.environ.get("TFPIPE_BENCH_OBJECT_ROWS", "1000000"))
            d = os.path.join(OUT, "data", f"penguins_{rows}")
            scaled_penguins(rows, os.path.join(d, "penguins.csv"))
            fileio.copy_tree(d, f"{bucket}/data/penguins_{rows}")
            fileio.copy_tree(os.path.join(REPO, "examples", "penguin", "data"), f"{bucket}/data/penguin")
            pipe = os.path.join(work, "data_half.py")
            with open(pipe, "w") as f:
                f.write(PIPE)
            ratio = _pairs(report, f"data half {rows:,} rows", pipe, d, f"{bucket}/data/penguins_{rows}", work, env,
                           bucket)
            report(f"data half {rows:,} rows: S3 / local disk", ratio, "x", "(target <= 1.5x)")
            ratio = _pairs(report, "penguin pipeline end to end", PENGUIN,
                           os.path.join(REPO, "examples", "penguin", "data"), f"{bucket}/data/penguin", work, env,
                           bucket, extra=("data_root",))
            report("penguin pipeline end to end: S3 / local disk", ratio, "x", "(target <= 1.3x)")
            tag = "penguin-s3-0"
            cached = tfpipe_cli("run", "-q", PENGUIN, "-P", f"data_root={bucket}/data/penguin",
                                "-P", f"root={bucket}/{tag}/root",
                                "-P", f"metadata={os.path.join(work, tag + '.sqlite')}", env=env)
            report("penguin pipeline, all cached, on S3: wall", cached["process_wall_s"], "s", "(target <= 2 s)")
    finally:
        server.stop()
