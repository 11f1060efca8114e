"""Compile the IR for Airflow 3: ``tfpipe compile P.py --target airflow -o dags/``.

Writes ``<dags>/<pipeline>.ir.json`` (the IR, plus an ``airflow`` block: the operator, the
runtime interpreter or the image) and ``<dags>/<pipeline>.py``, a copy of the fixed DAG
module ``dag_file.py``, which builds the DAG from that JSON when Airflow parses it. No
value of the pipeline is ever written as code (see ``dag_file.py`` for how values reach
the operators without being rendered by Jinja).
"""
from __future__ import annotations

import json
import os
import shutil
import sys

from tfpipe.compiler import check_ir
from tfpipe.credentials import check_env_secrets, check_no_inline_secrets
from tfpipe.version import DEFAULT_IMAGE

from ..task import METADATA_ENV

__all__ = ["compile_airflow", "dag_id_of", "airflow_spec", "AirflowCompileError", "PYTHON_ENV", "IMAGE_ENV",
           "DAG_MODULE"]

PYTHON_ENV = "TFPIPE_PYTHON"
IMAGE_ENV = "TFPIPE_IMAGE"
DAG_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dag_file.py")


class AirflowCompileError(ValueError):
    pass


def dag_id_of(ir: dict) -> str:
    return ir["pipeline"]["name"]


def airflow_spec(ir: dict, python: str | None = None) -> dict:
    """What the DAG module needs beyond the IR: the operator kind and, for bash tasks, the
    runtime interpreter (``$TFPIPE_PYTHON`` at compile time, else this interpreter); for
    KubernetesPodOperator tasks the image, namespace and environment (``$TFPIPE_METADATA``
    at compile time is passed on: a reference to the shared store, never a secret)."""
    s = ir["pipeline"].get("settings") or {}
    kind = s.get("airflow_operator", "bash")
    if kind == "bash":
        return {"operator": "bash", "python": python or os.environ.get(PYTHON_ENV) or sys.executable,
                "task_host": bool(s.get("task_host", True))}
    if kind == "kubernetes":
        env = {k: str(v) for k, v in (s.get("env") or {}).items()}
        if os.environ.get(METADATA_ENV):
            env.setdefault(METADATA_ENV, os.environ[METADATA_ENV])
        return {"operator": "kubernetes", "image": s.get("image") or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE,
                "namespace": s.get("namespace", "default"), "env": env}
    raise AirflowCompileError(f"settings['airflow_operator']: expected 'bash' or 'kubernetes', found {kind!r}")


def compile_airflow(ir: dict, output: str | None = None, python: str | None = None) -> str:
    """Write the IR file and the DAG module into the directory ``output`` (created if
    missing); returns the DAG module's path."""
    check_ir(ir)
    out_dir = output or "dags"
    if out_dir.endswith(".py"):
        raise AirflowCompileError(f"-o {out_dir}: expected a DAGs directory (the DAG file is named after the "
                                  f"pipeline, {dag_id_of(ir)}.py, next to its IR)")
    spec = airflow_spec(ir, python)
    data = {**ir, "airflow": spec}
    check_no_inline_secrets(data, "the Airflow IR file")
    check_env_secrets(spec.get("env") or {}, "the Airflow IR file: environment of the tasks")
    os.makedirs(out_dir, exist_ok=True)
    name = ir["pipeline"]["name"]
    with open(os.path.join(out_dir, f"{name}.ir.json"), "w") as f:
        json.dump(data, f, indent=2)
    path = os.path.join(out_dir, f"{name}.py")
    shutil.copyfile(DAG_MODULE, path)
    return path
