"""`tfpipe run --target airflow` and `--target kfp-local`: the compiled pipeline under a real
Airflow 3 and under kfp.local from one command, exit 0 when every node succeeded and 1 when
one failed (naming it), the run in `tfpipe runs`, and nothing of Airflow left running."""
import json
import os

import pytest

from tests.conftest import tfpipe

from .conftest import AIRFLOW_BIN

PIPELINE = '''
from tfpipe import Integer, Output, Pipeline, component


@component
def count(out: Output[Integer], n: int = 3, fail: bool = False) -> None:
    if fail:
        raise ValueError("count was asked to fail")
    out.write(n)


def create_pipeline(fail: bool = False):
    return Pipeline("targets", [count(n=3, fail=fail)])
'''


def _airflow_processes(home: str) -> list[str]:
    """Airflow's processes (the api-server, `dags test`, its executor's workers) whose
    environment names this AIRFLOW_HOME. tfpipe's warm task host, which the tasks started
    and which stays for the next run, is not one of them."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                mine = f"AIRFLOW_HOME={home}".encode() + b"\0" in f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mine and "airflow" in cmd and "tfpipe.orchestrators.taskhost" not in cmd:
            found.append(cmd)
    return found


@pytest.mark.parametrize("target,orchestrator", [("kfp-local", "kubeflow"), ("airflow", "airflow")])
def test_run_target_exit_codes_and_record(tmp_path, target, orchestrator):
    src = tmp_path / "pipeline.py"
    src.write_text(PIPELINE)
    home = tmp_path / "home"
    env = {"TFPIPE_HOME": str(home), "TFPIPE_AIRFLOW": AIRFLOW_BIN}
    ok = tfpipe("run", str(src), "--target", target, "--run-id", "t-ok", cwd=str(tmp_path), env=env)
    assert ok.returncode == 0, ok.stderr[-4000:]
    assert "run t-ok COMPLETE" in ok.stderr
    bad = tfpipe("run", str(src), "-P", "fail=true", "--target", target, "--run-id", "t-bad", cwd=str(tmp_path),
                 env=env)
    assert bad.returncode == 1, bad.stderr[-4000:]
    assert "count was asked to fail" in bad.stderr and "Traceback" not in bad.stderr.splitlines()[-1]
    rows = {r["run_id"]: r for r in json.loads(tfpipe("runs", "list", "--json", env=env, cwd=str(tmp_path),
                                                      check=0).stdout)}
    assert rows["t-ok"]["status"] == "COMPLETE" and rows["t-bad"]["status"] == "FAILED"
    assert rows["t-ok"]["orchestrator"] == orchestrator
    if target == "airflow":
        assert _airflow_processes(str(home / "airflow")) == []  # api-server and warm process stopped


def test_run_target_airflow_without_airflow_is_a_usage_error(tmp_path):
    src = tmp_path / "pipeline.py"
    src.write_text(PIPELINE)
    p = tfpipe("run", str(src), "--target", "airflow", cwd=str(tmp_path),
               env={"TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_AIRFLOW": str(tmp_path / "no-airflow"),
                    "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "no Airflow 3 found" in p.stderr and "TFPIPE_AIRFLOW" in p.stderr
