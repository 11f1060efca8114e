"""Airflow 3 adapter: the DAG module parses light and clean in Airflow's own venv, runs
with real Airflow (`airflow dags test`, SQLite), and leaves the lineage a local run leaves
(the lineage comparison itself is in test_contract.py, which shares these runs)."""
import ast
import json
import os

import pytest

from tests.airflow_dags import inspect_dags
from tfpipe.metadata import MetadataStore

from .conftest import compile_file, summary


@pytest.fixture(scope="module")
def airflow(scenarios):
    return scenarios("airflow")


def test_the_dag_file_is_the_fixed_module_and_imports_only_airflow(airflow):
    from tfpipe.orchestrators.airflow.compiler import DAG_MODULE
    path = os.path.join(airflow.runner.dags, "penguin.py")
    text = open(path).read()
    assert text == open(DAG_MODULE).read()  # no value of the pipeline is ever written as code
    tree = ast.parse(text)
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert top == {"datetime", "json", "os"}
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert mods == {"airflow.sdk", "airflow.providers.standard.operators.bash",
                    "airflow.providers.cncf.kubernetes.operators.pod"}


def test_dagbag_has_no_import_errors_and_mirrors_the_ir(airflow):
    bag = inspect_dags(airflow.runner)
    assert bag["errors"] == {}
    assert {"penguin", "contract", "flaky"} <= set(bag["dags"])
    check = "tfpipe.cache_check"
    for ir in (airflow.penguin_ir, airflow.contract_ir):
        tasks = bag["dags"][ir["pipeline"]["name"]]
        # the cache check comes first: upstream of every node's task
        assert tasks == {check: {"upstream": [], "retries": 0, "timeout_s": None, "operator": "BashOperator"},
                         **{n["id"]: {"upstream": sorted(n["upstream"] + [check]), "retries": 0, "timeout_s": None,
                                      "operator": "BashOperator"} for n in ir["nodes"]}}
    flaky = bag["dags"]["flaky"]
    assert flaky["Flaky"] == {"upstream": ["FlakyStart", check], "retries": 1, "timeout_s": 600.0,
                              "operator": "BashOperator"}
    assert flaky["FlakyStart"]["upstream"] == [check] and flaky[check]["retries"] == 0  # never retried


def test_run_records_airflow_as_orchestrator(airflow):
    from tfpipe.tracking import runs
    store = MetadataStore(airflow.penguin_ir["pipeline"]["metadata"])
    rows = {r["run_id"]: r for r in runs.list_runs(store, "penguin")}
    assert rows["penguin-1"]["orchestrator"] == "airflow" and rows["penguin-1"]["status"] == "COMPLETE"
    assert airflow.results["penguin-1"].airflow_state == "success"


def test_failed_task_log_shows_the_component_error(airflow):
    log = airflow.summaries["contract-1"]["airflow_log"]
    assert "node ContractBoom failed: ValueError: contract: boom asked to fail" in log
    assert airflow.results["contract-1"].airflow_state == "failed"


def test_retry_succeeds_without_duplicate_live_artifacts_and_conf_parameters(airflow):
    r, log = airflow.results["flaky-1"], airflow.summaries["flaky-1"]["airflow_log"]
    assert r.airflow_state == "success" and r.ok, log[-3000:]
    assert "flaky: first attempt fails" in log  # the first attempt's error, in the task log
    assert os.path.exists(airflow.marker)
    store = MetadataStore(airflow.flaky_ir["pipeline"]["metadata"])
    run = summary(store, "flaky-1")
    assert run["status"] == "COMPLETE"  # the retry that succeeded closed the run
    attempts = [e for e in run["executions"] if e["node_id"] == "Flaky"]
    assert [e["state"] for e in attempts] == ["FAILED", "COMPLETE"]
    assert [a["state"] for a in attempts[0]["outputs"]["echoed"]] == ["ABANDONED"]
    live = [a for a in store.list_artifacts("String") if a.state == "LIVE" and "/Flaky/" in a.uri]
    assert len(live) == 1
    assert open(os.path.join(live[0].uri, "value")).read() == "from dag_run.conf"
    start = run["nodes"]["FlakyStart"]
    assert start["parameters"]["message"] == "from dag_run.conf"


def test_kubernetes_pod_operator_option_renders_tasks_in_the_image(tmp_path, monkeypatch):
    from tfpipe.orchestrators.airflow import AirflowCompileError, compile_airflow
    from tfpipe.orchestrators.airflow.local import AirflowLocalRunner

    from .conftest import AIRFLOW_BIN, CONTRACT
    ir = compile_file(CONTRACT, str(tmp_path / "home"))
    ir["pipeline"]["settings"] = {"airflow_operator": "kubernetes", "image": "registry.example/tfpipe:1",
                                  "namespace": "pipelines", "retries": 2}
    monkeypatch.setenv("TFPIPE_METADATA", '{"grpc": {"host": "metadata-grpc-service", "port": 8080}}')
    runner = AirflowLocalRunner(str(tmp_path / "af"), airflow_bin=AIRFLOW_BIN)
    compile_airflow(ir, runner.dags)
    data = json.loads(open(os.path.join(runner.dags, "contract.ir.json")).read())
    assert data["airflow"] == {"operator": "kubernetes", "image": "registry.example/tfpipe:1", "namespace": "pipelines",
                               "env": {"TFPIPE_METADATA": '{"grpc": {"host": "metadata-grpc-service", "port": 8080}}'}}
    tasks = inspect_dags(runner)["dags"]["contract"]
    assert {t: v["operator"] for t, v in tasks.items()} == {n["id"]: "KubernetesPodOperator" for n in ir["nodes"]
                                                            } | {"tfpipe.cache_check": "KubernetesPodOperator"}
    assert tasks["ContractSink"]["upstream"] == ["ContractBoom", "tfpipe.cache_check"]
    assert tasks["ContractSink"]["retries"] == 2 and tasks["tfpipe.cache_check"]["retries"] == 0
    assert tasks["ContractSource"]["upstream"] == ["tfpipe.cache_check"]
    ir["pipeline"]["settings"]["cache_check"] = False  # without the check: one task per node, nothing more
    compile_airflow(ir, runner.dags)
    assert set(inspect_dags(runner)["dags"]["contract"]) == {n["id"] for n in ir["nodes"]}
    ir["pipeline"]["settings"] = {"airflow_operator": "celery"}
    with pytest.raises(AirflowCompileError, match="expected 'bash' or 'kubernetes', found 'celery'"):
        compile_airflow(ir, str(tmp_path / "dags2"))


def test_cli_compile_target_airflow_writes_dag_and_ir(tmp_path):
    import json

    from tests.conftest import tfpipe

    from .conftest import CONTRACT
    dags = tmp_path / "dags"
    p = tfpipe("compile", CONTRACT, "--target", "airflow", "-o", str(dags),
               env={"TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_PYTHON": "/opt/runtime/bin/python"}, check=0)
    assert f"wrote {dags / 'contract.py'}" in p.stderr
    ir = json.loads((dags / "contract.ir.json").read_text())
    assert sorted(n["id"] for n in ir["nodes"]) == ["ContractBoom", "ContractSide", "ContractSink", "ContractSource"]
    assert ir["airflow"] == {"operator": "bash", "python": "/opt/runtime/bin/python", "task_host": True}


def test_dags_test_that_hangs_after_its_dag_run_finished_is_ended(tmp_path):
    """Airflow 3.1's LocalExecutor.end() can wait forever for a worker that missed its stop
    message (apache/airflow#45683). The runner supervises `airflow dags test`: once the DAG run
    has finished it allows END_GRACE_S, then ends the command's whole process group. Here the
    command is a stand-in script that reports a finished DAG run and then hangs, with a child
    of its own, as `dags test` did with its workers."""
    import signal
    import stat
    import subprocess
    import time

    from tfpipe.orchestrators.airflow.local import AirflowLocalRunner

    pidfile = tmp_path / "worker.pid"
    script = tmp_path / "airflow"
    script.write_text("#!/bin/sh\n"
                      f"sleep 600 & echo $! > {pidfile}\n"
                      "echo 'DagRun Finished: dag_id=p, run_id=manual__1, state=success'\n"
                      "exec sleep 600\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    runner = AirflowLocalRunner(str(tmp_path / "home"), airflow_bin=str(script), out=open(os.devnull, "w"))
    runner.END_GRACE_S = 1.0
    t0 = time.monotonic()
    code, log = runner._dags_test("p", {})
    assert time.monotonic() - t0 < 60
    assert code == -signal.SIGTERM and "DagRun Finished: dag_id=p" in log
    worker = int(pidfile.read_text())
    for _ in range(50):  # the stand-in's own child went with its process group
        stat = subprocess.run(["ps", "-o", "stat=", "-p", str(worker)], capture_output=True, text=True).stdout
        if stat.strip() in ("", "Z"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"process {worker} of the ended group still runs")
