"""Run a compiled DAG with real Airflow, offline: ``airflow dags test`` on a SQLite
metadata database in an ``AIRFLOW_HOME`` of our own.

Airflow lives in its own virtualenv (``make airflow`` -> ``.venv-airflow``); this module
only drives its ``airflow`` command, so it imports nothing from Airflow itself. Used by the
orchestrator tests and ``make bench``; a production deployment runs the same DAG file under
its scheduler instead.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from pipeline.metadata import MetadataStore

from ..local.runner import RunResult, new_run_id
from ..task import collect_run
from .compiler import PYTHON_ENV, compile_airflow, dag_id_of

__all__ = ["AirflowLocalRunner", "AirflowRunError", "AIRFLOW_BIN_ENV"]

AIRFLOW_BIN_ENV = "TFPIPE_AIRFLOW"


class AirflowRunError(RuntimeError):
    pass


def _default_bin() -> str:
    return os.environ.get(AIRFLOW_BIN_ENV) or os.path.join(os.getcwd(), ".venv-airflow", "bin", "airflow")


class AirflowLocalRunner:
    """Compile the IR into ``<home>/dags`` and run it with ``airflow dags test``."""

    def __init__(self, home: str, airflow_bin: str | None = None, python: str | None = None,
                 out=None, verbose: bool = True, timeout_s: float = 1800):
        self.home = os.path.abspath(home)
        self.airflow = airflow_bin or _default_bin()
        self.python = python or sys.executable
        self.out = out or sys.stderr
        self.verbose = verbose
        self.timeout_s = timeout_s
        self.last_log = ""

    @property
    def dags(self) -> str:
        return os.path.join(self.home, "dags")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"AIRFLOW_HOME": self.home, "AIRFLOW__CORE__DAGS_FOLDER": self.dags,
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{os.path.join(self.home, 'airflow.db')}",
                    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO", PYTHON_ENV: self.python})
        env.pop("VIRTUAL_ENV", None)
        return env

    def airflow_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if not os.path.exists(self.airflow):
            raise AirflowRunError(f"no airflow command at {self.airflow}; run `make airflow` (creates "
                                  f".venv-airflow) or set ${AIRFLOW_BIN_ENV}")
        p = subprocess.run([self.airflow, *args], env=self.env(), cwd=self.home, capture_output=True,
                           text=True, timeout=self.timeout_s)
        if check and p.returncode != 0:
            raise AirflowRunError(f"`airflow {' '.join(args)}` exited {p.returncode}:\n{p.stdout[-3000:]}\n"
                                  f"{p.stderr[-3000:]}")
        return p

    def setup(self) -> None:
        """Create AIRFLOW_HOME and its SQLite database (``airflow db migrate``) once."""
        os.makedirs(self.dags, exist_ok=True)
        if not os.path.exists(os.path.join(self.home, "airflow.db")):
            self.airflow_cmd("db", "migrate")

    def inspect_dags(self) -> dict:
        """What Airflow's DagBag makes of ``<home>/dags``: ``{"errors": {file: error},
        "dags": {dag_id: {task_id: {"upstream", "retries", "timeout_s", "operator"}}}}``."""
        py = os.path.join(os.path.dirname(self.airflow), "python")
        code = (
            "import json\n"
            "from airflow.models.dagbag import DagBag\n"
            f"b = DagBag({self.dags!r}, include_examples=False)\n"
            "dags = {d: {t.task_id: {'upstream': sorted(t.upstream_task_ids), 'retries': t.retries,\n"
            "            'timeout_s': t.execution_timeout.total_seconds() if t.execution_timeout else None,\n"
            "            'operator': type(t).__name__} for t in dag.tasks} for d, dag in b.dags.items()}\n"
            "print('TFPIPE_JSON', json.dumps({'errors': b.import_errors, 'dags': dags}))\n")
        p = subprocess.run([py, "-c", code], env=self.env(), cwd=self.home, capture_output=True, text=True,
                           timeout=self.timeout_s)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("TFPIPE_JSON ")]
        if p.returncode != 0 or not line:
            raise AirflowRunError(f"DagBag of {self.dags} could not be loaded:\n{p.stderr[-3000:]}")
        return json.loads(line[-1][len("TFPIPE_JSON "):])

    def run(self, ir: dict, run_id: str | None = None, from_node: str | None = None,
            to_node: str | None = None, enable_cache: bool | None = None,
            parameters: dict | None = None) -> RunResult:
        if from_node or to_node or enable_cache is not None:
            raise AirflowRunError("an Airflow DAG run runs the whole pipeline with the launcher's cache; "
                                  "--from/--to/--no-cache are not available with this target")
        self.setup()
        run_id = run_id or new_run_id()
        compile_airflow(ir, self.dags, python=self.python)
        conf = {**(parameters or {}), "tfpipe_run_id": run_id}
        t0 = time.monotonic()
        p = self.airflow_cmd("dags", "test", dag_id_of(ir), "-c", json.dumps(conf), check=False)
        self.last_log = p.stdout + p.stderr
        m = re.findall(r"DagRun Finished: .*?state=(\w+)", self.last_log)
        if not m:
            raise AirflowRunError(f"`airflow dags test {dag_id_of(ir)}` did not finish a DAG run "
                                  f"(exit {p.returncode}):\n{self.last_log[-4000:]}")
        result = collect_run(MetadataStore(ir["pipeline"]["metadata"]), ir, run_id, ir["nodes"])
        result.duration_s = time.monotonic() - t0
        result.airflow_state = m[-1]
        if self.verbose:
            print(f"run {run_id} {result.status} in {result.duration_s:.1f}s (airflow dags test: {m[-1]})",
                  file=self.out)
        return result
