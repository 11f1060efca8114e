"""What a test asks Airflow about an ``AirflowLocalRunner``'s home: how its DagBag parses the
DAG folder, and the task states of one DAG run. Test-only questions; the runner itself is
``tfpipe run --target airflow``'s and stays in the package (orchestrators/airflow/local.py)."""
from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING

from tfpipe.orchestrators.airflow.local import AirflowRunError

if TYPE_CHECKING:
    from tfpipe.orchestrators.airflow.local import AirflowLocalRunner

__all__ = ["inspect_dags", "task_states"]


def task_states(runner: AirflowLocalRunner, dag_id: str, airflow_run_id: str) -> dict:
    """task id -> its state in one DAG run, from Airflow's database."""
    p = runner.airflow_cmd("tasks", "states-for-dag-run", dag_id, airflow_run_id, "-o", "json")
    start = p.stdout.find("[")
    try:
        rows = json.loads(p.stdout[start:]) if start >= 0 else None
    except ValueError:
        rows = None
    if not isinstance(rows, list):
        raise AirflowRunError(f"`airflow tasks states-for-dag-run {dag_id} {airflow_run_id}`: expected a JSON "
                              f"list, found:\n{p.stdout[-2000:]}")
    return {r["task_id"]: r["state"] for r in rows}


def inspect_dags(runner: AirflowLocalRunner) -> dict:
    """What Airflow's DagBag makes of ``<home>/dags``: ``{"errors": {file: error},
    "dags": {dag_id: {task_id: {"upstream", "retries", "timeout_s", "operator"}}}}``."""
    py = os.path.join(os.path.dirname(runner.airflow), "python")
    code = (
        "import json\n"
        "from airflow.models.dagbag import DagBag\n"
        f"b = DagBag({runner.dags!r}, include_examples=False)\n"
        "dags = {d: {t.task_id: {'upstream': sorted(t.upstream_task_ids), 'retries': t.retries,\n"
        "            'timeout_s': t.execution_timeout.total_seconds() if t.execution_timeout else None,\n"
        "            'operator': type(t).__name__} for t in dag.tasks} for d, dag in b.dags.items()}\n"
        "print('TFPIPE_JSON', json.dumps({'errors': b.import_errors, 'dags': dags}))\n")
    p = subprocess.run([py, "-c", code], env=runner.env(), cwd=runner.home, capture_output=True, text=True,
                       timeout=runner.timeout_s)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("TFPIPE_JSON ")]
    if p.returncode != 0 or not line:
        raise AirflowRunError(f"DagBag of {runner.dags} could not be loaded:\n{p.stderr[-3000:]}")
    return json.loads(line[-1][len("TFPIPE_JSON "):])
