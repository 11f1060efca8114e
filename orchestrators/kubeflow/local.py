"""Run a compiled KFP pipeline spec offline with ``kfp.local`` (SubprocessRunner).

kfp.local runs lightweight Python components in subprocesses of this interpreter (no
container), in dependency order, and stops at the first failed task. Each task enters
the launcher, so ML Metadata ends up exactly as under any other orchestrator. Tasks fork
from the warm task host (``orchestrators/taskhost.py``) unless ``task_host=False``.
"""
from __future__ import annotations

import os
import tempfile
import warnings

from tfpipe.runner import Runner, RunRecord, RunResult

from .. import taskhost
from .compiler import compile_kubeflow

__all__ = ["run_package", "KfpLocalRunner", "KfpLocalError"]


class KfpLocalError(RuntimeError):
    pass


def run_package(package_path: str, arguments: dict | None = None, pipeline_root: str | None = None) -> None:
    """Run a compiled pipeline YAML with kfp.local. A failing task stops the run (kfp.local
    logs it); the outcome is in ML Metadata, where the tasks recorded it (``RunRecord.collect``)."""
    from kfp import components, local
    root = pipeline_root or tempfile.mkdtemp(prefix="tfpipe-kfp-local-")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=False)
    comp = components.load_component_from_file(package_path)
    with warnings.catch_warnings():
        # the base image is the pipeline image; here its environment is this interpreter's
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            comp(**(arguments or {}))
        except Exception as e:  # kfp.local raises only on unusable input (bad arguments, ...)
            raise KfpLocalError(f"kfp.local could not run {package_path}: {type(e).__name__}: {e}") from e


class KfpLocalRunner(Runner):
    """Compile the IR to a KFP spec and run it with kfp.local."""

    orchestrator = "kubeflow"
    runs_parts = False

    def __init__(self, out=None, verbose: bool = True, workdir: str | None = None, task_host: bool = True):
        super().__init__(out, verbose)
        self.workdir = workdir
        self.task_host = task_host  # fork tasks from the warm task host (orchestrators/taskhost.py)

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        work = self.workdir or tempfile.mkdtemp(prefix="tfpipe-kfp-")
        os.makedirs(work, exist_ok=True)
        # kfp.local's task subprocesses inherit this process's environment and nothing else: each
        # task sets whether it forks from the task host in its own environment (this one is untouched)
        pkg = compile_kubeflow(ir, os.path.join(work, f"{ir['pipeline']['name']}.yaml"),
                               task_env={taskhost.ENABLE_ENV: "1" if self.task_host else "0"})
        run_package(pkg, {"tfpipe_run_id": run_id}, os.path.join(work, "kfp-root"))
        return record.collect(nodes)

    def summary_suffix(self, result: RunResult) -> str:
        return " (kfp.local)"
