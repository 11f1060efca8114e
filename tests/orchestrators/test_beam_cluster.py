"""The Beam-based components on Beam's portable runner with an external pool of two SDK
worker processes (orchestrators/beam/cluster.py: the way Flink and Spark run Python),
with row counts conserved from ExampleGen to the Evaluator."""
import json
import os
import re
import subprocess
import sys

import pytest

from tfpipe.orchestrators.beam.cluster import ClusterError, LocalBeamCluster, bundles_by_job


@pytest.fixture(scope="module")
def penguin_on_cluster(tmp_path_factory):
    """The penguin pipeline up to the Evaluator, every Beam pipeline on the cluster."""
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner
    tmp = tmp_path_factory.mktemp("beam_cluster")
    with LocalBeamCluster(workers=2, log_dir=str(tmp / "cluster")) as cluster:
        ir = compile_pipeline(create_pipeline(root=str(tmp / "root"), metadata=str(tmp / "m.sqlite"),
                                              train_steps=30, beam_pipeline_args=cluster.pipeline_args))
        result = LocalRunner(verbose=False).run(ir, to_node="Evaluator")
        args = cluster.pipeline_args
    with open(tmp / "cluster" / "cluster.log") as f:
        log = f.read()
    return {"result": result, "args": args, "jobs": bundles_by_job(str(tmp / "cluster")), "log": log}


def test_the_cluster_args_are_the_portable_runner_on_loopback(penguin_on_cluster):
    args = penguin_on_cluster["args"]
    assert args[0] == "--runner=PortableRunner"
    assert re.fullmatch(r"--job_endpoint=127\.0\.0\.1:\d+", args[1])
    assert args[2] == "--environment_type=EXTERNAL"
    assert re.fullmatch(r"--environment_config=127\.0\.0\.1:\d+", args[3])
    assert args[4] == "--sdk_worker_parallelism=2"


def test_statistics_transform_and_evaluation_each_ran_on_two_sdk_worker_processes(penguin_on_cluster):
    r = penguin_on_cluster["result"]
    assert r.ok, r.error
    jobs = penguin_on_cluster["jobs"]
    # StatisticsGen, Transform and the Evaluator: one Beam job each, each served by two workers
    assert len(jobs) == 3, jobs
    started = {int(p) for p in re.findall(r"SDK worker \S+ started \(pid (\d+)\)", penguin_on_cluster["log"])}
    for job, bundles in jobs.items():
        assert len(bundles) == 2, (job, bundles)
        assert all(n > 0 for n in bundles.values()), (job, bundles)
        assert set(bundles) <= started  # the pool's own child processes ...
        assert os.getpid() not in bundles  # ... not this process
    assert len({pid for b in jobs.values() for pid in b}) == 6  # a fresh pair per job


def test_row_counts_are_conserved_from_example_gen_to_the_evaluator(penguin_on_cluster):
    from tfpipe.components.statistics_gen import load_statistics
    r = penguin_on_cluster["result"]
    assert r.ok, r.error
    out = {n.node_id: {k: v[0] for k, v in n.outputs.items()} for n in r.nodes}
    rows = out["ExampleGen"]["examples"].row_counts
    assert sum(rows.values()) == 344  # the penguin table
    for split, n in rows.items():
        stats = load_statistics(out["StatisticsGen"]["statistics"], split)
        assert stats.datasets[0].num_examples == n
    assert out["Transform"]["transformed_examples"].row_counts == rows
    with open(out["Evaluator"]["evaluation"].metrics_path()) as f:
        report = json.load(f)
    assert report["examples"] == rows["eval"]
    overall = [s for s in report["slices"] if s["slice"] == "Overall"][0]
    assert overall["candidate"]["example_count"] == rows["eval"]


def test_a_cluster_without_workers_is_refused_with_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "tfpipe.orchestrators.beam.cluster", "--workers", "0",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "workers: expected a positive number of SDK workers, found 0" in p.stderr


def test_a_cluster_that_cannot_start_says_why(tmp_path):
    with pytest.raises(ClusterError, match=r"exited with status 2 before listening(.|\n)*found -1"):
        LocalBeamCluster(workers=-1, log_dir=str(tmp_path)).start()


def test_cli_beam_cluster_serves_two_workers_until_interrupted(tmp_path):
    """`tfpipe beam-cluster` prints the beam_pipeline_args; a Beam pipeline given them runs
    on two SDK worker processes; SIGINT stops the cluster and its workers."""
    import signal

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    log_dir = tmp_path / "cluster"
    proc = subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "beam-cluster", "--workers", "2",
                             "--log-dir", str(log_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("beam_pipeline_args = "), line + proc.stderr.read()
        args = json.loads(line.split("=", 1)[1])
        out = str(tmp_path / "sum")
        with beam.Pipeline(options=PipelineOptions(args)) as p:
            (p | beam.Create(range(1000)) | beam.Map(lambda x: x * 2) | beam.CombineGlobally(sum)
               | beam.Map(str) | beam.io.WriteToText(out, shard_name_template=""))
        with open(out) as f:
            assert int(f.read()) == 2 * sum(range(1000))
        [bundles] = bundles_by_job(str(log_dir)).values()
        assert len(bundles) == 2 and all(n > 0 for n in bundles.values()), bundles
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in bundles:  # the workers are gone with the cluster
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_a_busy_port_is_reported(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "tfpipe.cli", "beam-cluster", "--worker-port", str(port),
                            "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert f"worker pool: cannot listen on 127.0.0.1:{port}" in p.stderr


def test_jobs_that_got_the_same_control_port_are_told_apart(tmp_path):
    """The OS may give a later job the control port of an earlier one: a job is still the
    processes that served it (each worker id one process within a job)."""
    from tfpipe.orchestrators.beam.cluster import BUNDLES_LOG, bundles_by_job
    (tmp_path / BUNDLES_LOG).write_text(
        "101 worker_0 localhost:5000 b1\n102 worker_1 localhost:5000 b2\n101 worker_0 localhost:5000 b3\n"
        "201 worker_0 localhost:6000 b1\n202 worker_1 localhost:6000 b2\n"
        "301 worker_0 localhost:6000 b1\n302 worker_1 localhost:6000 b2\n301 worker_0 localhost:6000 b3\n")
    assert bundles_by_job(str(tmp_path)) == {"localhost:5000": {101: 2, 102: 1}, "localhost:6000": {201: 1, 202: 1},
                                             "localhost:6000#2": {301: 2, 302: 1}}
