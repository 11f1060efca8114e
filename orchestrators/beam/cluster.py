"""A local Beam cluster of the kind Flink and Spark run Python on, on loopback only.

Flink and Spark run a Python pipeline through Beam's portability layer: the client
(``--runner=PortableRunner``) submits the pipeline to a **job server** over the Job API;
the job server runs it and hands bundles to **SDK worker processes** started by an
**external worker pool** (``--environment_type=EXTERNAL --environment_config=HOST:PORT``),
``--sdk_worker_parallelism`` of them per job. This module runs that arrangement on one
machine, without Java:

- the job server is Beam's own Python job service (``LocalJobServicer``), whose job
  runs the pipeline's stages with Beam's portable FnApiRunner and, like Flink's task
  slots, asks the pool for ``--sdk_worker_parallelism`` workers and splits each stage's
  input among them (Beam's Python job service itself always asks for one);
- the pool starts each SDK worker as a process of its own
  (``python -m tfpipe.orchestrators.beam.sdk_worker``, the same interpreter, so the
  workers import the same tfpipe, TFDV, TFT and TFMA), and records in ``bundles.log``
  each bundle a worker processed (``pid worker_id control_endpoint instruction_id``; the
  control endpoint is the job's own).

Use it from Python::

    with LocalBeamCluster(workers=2) as cluster:
        Pipeline(..., beam_pipeline_args=cluster.pipeline_args)   # or create_pipeline(beam_pipeline_args=...)

or as a process of its own (``tfpipe beam-cluster --workers 2`` prints the
``beam_pipeline_args`` to use and serves until interrupted).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tfpipe.files import write_file

__all__ = ["ClusterError", "LocalBeamCluster", "pipeline_args", "serve", "bundles_by_job"]

HOST = "127.0.0.1"
WORKER_MODULE = "tfpipe.orchestrators.beam.sdk_worker"
BUNDLES_LOG = "bundles.log"


class ClusterError(RuntimeError):
    pass


def pipeline_args(*, job_port: int, worker_port: int, workers: int) -> list[str]:
    """The ``beam_pipeline_args`` that send a pipeline's Beam work to the cluster."""
    return ["--runner=PortableRunner", f"--job_endpoint={HOST}:{job_port}", "--environment_type=EXTERNAL",
            f"--environment_config={HOST}:{worker_port}", f"--sdk_worker_parallelism={workers}"]


def bundles_by_job(log_dir: str) -> dict[str, dict[int, int]]:
    """{job (its control endpoint, ``#2``... when a later job got the same port): {SDK worker
    process id: bundles it processed}}, in the order the jobs started, from the pool's
    ``bundles.log``."""
    jobs: dict[str, dict[int, int]] = {}
    path = os.path.join(log_dir, BUNDLES_LOG)
    if not os.path.exists(path):
        return jobs
    current: dict[str, tuple[str, dict[str, int]]] = {}  # control -> (its latest job's key, worker id -> pid)
    with open(path) as f:
        for line in f:
            pid, wid, control, _instruction = line.split()
            key, workers = current.get(control, (control, {}))
            if workers.get(wid, int(pid)) != int(pid):
                # within a job a worker id is one process; another process under a worker id
                # already taken is the next job, which the OS gave the same control port
                n = sum(1 for k in jobs if k == control or k.startswith(control + "#")) + 1
                key, workers = f"{control}#{n}", {}
            workers[wid] = int(pid)
            current[control] = (key, workers)
            counts = jobs.setdefault(key, {})
            counts[int(pid)] = counts.get(int(pid), 0) + 1
    return jobs


def _job_types():
    """The job server's classes (built lazily: importing this module needs no Beam)."""
    from apache_beam.options.pipeline_options import PortableOptions
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class ParallelJob(local_job_service.BeamJob):
        """A job run with ``--sdk_worker_parallelism`` SDK workers (Beam's runs one)."""

        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            options = self.pipeline_options()
            workers = int(options.view_as(PortableOptions).sdk_worker_parallelism or 1)
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            # FnApiRunner takes its worker count from direct_num_workers only in run(); a
            # job service hands it a pipeline proto, so the count is set here (Beam 2.69).
            runner._num_workers = max(1, workers)
            return runner.run_via_runner_api(self._pipeline_proto, options)

    class LoopbackJobServicer(local_job_service.LocalJobServicer):
        def get_service_address(self):
            return HOST

    return ParallelJob, LoopbackJobServicer


def _pool_servicer(log_dir: str):
    """An external worker pool that starts each SDK worker as a process of its own."""
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    class ProcessPool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
        def __init__(self):
            self.procs: dict[str, subprocess.Popen] = {}
            self.lock = threading.Lock()

        def StartWorker(self, request, context=None):
            wid = request.worker_id
            out = open(os.path.join(log_dir, f"worker-{wid}.log"), "ab")
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", WORKER_MODULE, "--control", request.control_endpoint.url,
                     "--worker-id", wid, "--bundles-log", os.path.join(log_dir, BUNDLES_LOG)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            except OSError as e:
                return beam_fn_api_pb2.StartWorkerResponse(error=f"cannot start SDK worker {wid}: {e}")
            finally:
                out.close()
            with self.lock:
                self.procs[wid] = proc
            print(f"tfpipe beam-cluster: SDK worker {wid} started (pid {proc.pid})", file=sys.stderr, flush=True)
            return beam_fn_api_pb2.StartWorkerResponse()

        def StopWorker(self, request, context=None):
            with self.lock:
                proc = self.procs.pop(request.worker_id, None)
            if proc is not None:
                _stop(proc)
                print(f"tfpipe beam-cluster: SDK worker {request.worker_id} (pid {proc.pid}) stopped",
                      file=sys.stderr, flush=True)
            return beam_fn_api_pb2.StopWorkerResponse()

        def stop_all(self):
            with self.lock:
                procs, self.procs = list(self.procs.values()), {}
            for p in procs:
                _stop(p)

    return ProcessPool()


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(*, workers: int, log_dir: str, ready_file: str | None = None, job_port: int = 0,
          worker_port: int = 0, announce=None) -> None:
    """Run the job server and the worker pool on loopback until SIGINT or SIGTERM. When
    both listen, write ``{"job_port", "worker_port", "pipeline_args"}`` to ``ready_file``
    (atomically) and call ``announce(info)``."""
    if workers < 1:
        raise ClusterError(f"workers: expected a positive number of SDK workers, found {workers}")
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.utils import thread_pool_executor

    os.makedirs(log_dir, exist_ok=True)
    job_type, servicer_type = _job_types()
    job_service = servicer_type(beam_job_type=job_type)
    try:
        job_port = job_service.start_grpc_server(job_port)
    except RuntimeError as e:  # grpc: the port is taken
        raise ClusterError(f"job server: cannot listen on {HOST}:{job_port}: {e}") from None
    pool = _pool_servicer(log_dir)
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    try:
        bound = server.add_insecure_port(f"{HOST}:{worker_port}")
    except RuntimeError:
        bound = 0
    if not bound:
        job_service.stop()
        raise ClusterError(f"worker pool: cannot listen on {HOST}:{worker_port} (is the port in use?)")
    server.start()
    info = {"job_port": job_port, "worker_port": bound,
            "pipeline_args": pipeline_args(job_port=job_port, worker_port=bound, workers=workers)}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if ready_file:
            write_file(ready_file, json.dumps(info))
        if announce:
            announce(info)
        stop.wait()
    finally:
        server.stop(1)
        job_service.stop()
        pool.stop_all()


class LocalBeamCluster:
    """The cluster as a child process (``python -m tfpipe.orchestrators.beam.cluster``),
    started on entering and stopped (with its SDK workers) on leaving."""

    def __init__(self, *, workers: int = 2, log_dir: str | None = None, start_timeout: float = 120.0):
        self.workers = workers
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="tfpipe-beam-cluster-")
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    @property
    def pipeline_args(self) -> list[str]:
        return list(self.info["pipeline_args"])

    def bundles_by_job(self) -> dict[str, dict[int, int]]:
        return bundles_by_job(self.log_dir)

    def start(self) -> "LocalBeamCluster":
        os.makedirs(self.log_dir, exist_ok=True)
        ready = os.path.join(self.log_dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        err = open(os.path.join(self.log_dir, "cluster.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tfpipe.orchestrators.beam.cluster",
                                      "--workers", str(self.workers), "--log-dir", self.log_dir,
                                      "--ready-file", ready], stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise ClusterError(f"the Beam cluster exited with status {self.proc.returncode} before "
                                   f"listening; its log:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"the Beam cluster did not listen within {self.start_timeout:.0f} s; "
                                   f"its log:\n{self._log_tail()}")
            time.sleep(0.1)
        with open(ready) as f:
            self.info = json.load(f)
        return self

    def _log_tail(self, n: int = 20) -> str:
        with open(os.path.join(self.log_dir, "cluster.log"), errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, timeout=20.0)
            self.proc = None

    def __enter__(self) -> "LocalBeamCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tfpipe.orchestrators.beam.cluster",
                                     description="A Beam job server and an external pool of SDK worker "
                                                 "processes on loopback.")
    parser.add_argument("--workers", type=int, default=2, help="SDK worker processes per job (default 2)")
    parser.add_argument("--log-dir", required=True, help="where the workers' logs and bundles.log go")
    parser.add_argument("--ready-file", help="written with the ports once both servers listen")
    parser.add_argument("--job-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--worker-port", type=int, default=0, help="default: a free port")
    a = parser.parse_args(argv)
    try:
        serve(workers=a.workers, log_dir=a.log_dir, ready_file=a.ready_file, job_port=a.job_port,
              worker_port=a.worker_port)
    except ClusterError as e:
        print(f"tfpipe beam-cluster: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
