"""ML Metadata on a real MySQL-compatible server (MariaDB, started by the session): the whole
penguin pipeline; four data-half runs at once from separate processes; runs list, compare,
the registry and reproduce reading it; and the server killed mid-run (a clear error naming
it, nothing LIVE that should not be, and the next run completing once it is back). The
store is named by URL, its password by reference, as a team configures it."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.conftest import git

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")

DATA_HALF = '''
import os
from tfpipe import Pipeline
from tfpipe.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen

def create_pipeline():
    gen = ExampleGen(input_base={data!r}, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    return Pipeline("datahalf", [ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema)],
                    root={root!r})
'''


def _env(mysql, url, home):
    return {**mysql.env(), "TFPIPE_METADATA": url, "TFPIPE_HOME": str(home)}


def _store(mysql, url):
    os.environ.update(mysql.env())
    from tfpipe.metadata import MetadataStore
    return MetadataStore(url)


@pytest.fixture(scope="module")
def penguin_on_mysql(mysql, tmp_path_factory):
    url = mysql.create_database("penguin")
    home = tmp_path_factory.mktemp("penguin-mysql")
    env = _env(mysql, url, home)
    first = tfpipe("run", PENGUIN, "--run-id", "pm-1", env=env)
    second = tfpipe("run", PENGUIN, "--run-id", "pm-2", env=env)
    return url, env, first, second


def test_the_whole_penguin_pipeline_on_mysql(penguin_on_mysql, mysql):
    url, env, first, second = penguin_on_mysql
    assert first.returncode == 0, first.stderr[-3000:]
    assert "run pm-1 COMPLETE" in first.stderr
    rows = json.loads(tfpipe("runs", "list", "--json", env=env, check=0).stdout)  # $TFPIPE_METADATA
    assert {r["run_id"]: r["status"] for r in rows} == {"pm-1": "COMPLETE", "pm-2": "COMPLETE"}
    assert rows[0]["blessed"] is True
    store = _store(mysql, url)
    from tfpipe.tracking import records
    states = {e["node_id"]: e["state"] for e in records.show_run(store, "pm-2")["executions"]}
    assert states["Trainer"] == "CACHED" and states["ExampleGen"] == "CACHED"


def test_runs_compare_and_the_registry_read_mysql(penguin_on_mysql):
    url, env, _, _ = penguin_on_mysql
    p = tfpipe("runs", "compare", "pm-1", "pm-2", "--metadata", url, "--json", env=env, check=0)
    assert json.loads(p.stdout)["runs"][0]["run_id"] == "pm-1"
    versions = json.loads(tfpipe("models", "list", "--json", "--metadata", url, env=env, check=0).stdout)
    assert versions and versions[0]["model"] == "penguin"
    p = tfpipe("models", "promote", versions[0]["version"], "--stage", "production", "--model", "penguin",
               "--reason", "on mysql", "--metadata", url, env=env, check=0)
    assert "production" in p.stdout


def test_four_data_half_runs_at_once_from_separate_processes(mysql, tmp_path):
    url = mysql.create_database("concurrent")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), data / "p.csv")
    f = tmp_path / "datahalf.py"
    f.write_text(DATA_HALF.format(data=str(data), root=str(tmp_path / "root")))
    env = {**os.environ, **_env(mysql, url, tmp_path / "home"), "PYTHONPATH": REPO}
    procs = [subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", str(f), "--run-id", f"c-{i}", "-q"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], [err[-2000:] for _, err in results]
    store = _store(mysql, url)
    from tfpipe.tracking import records
    for i in range(4):
        info = records.show_run(store, f"c-{i}")
        assert info["status"] == "COMPLETE"
        assert sorted(e["node_id"] for e in info["executions"]) == ["ExampleGen", "ExampleValidator", "SchemaGen",
                                                                     "StatisticsGen"]
        assert all(e["state"] in ("COMPLETE", "CACHED") for e in info["executions"])
    # every LIVE artifact is on disk: no half-written output was published by the races
    live = [a for a in store.list_artifacts() if a.state == "LIVE"]
    assert live and all(os.path.exists(a.uri) for a in live)


REPRO = '''
import os
from tfpipe import Examples, Input, Integer, Output, Pipeline, component
from tfpipe.components import ExampleGen


@component
def count_rows(examples: Input[Examples], result: Output[Integer]) -> None:
    result.write(sum(examples.row_counts.values()))


def create_pipeline():
    eg = ExampleGen(input_base=os.environ["REPRO_DATA"], label_key="species")
    return Pipeline("repro", [count_rows(examples=eg.outputs.examples)])
'''


def test_reproduce_a_run_recorded_on_mysql(mysql, tmp_path):
    url = mysql.create_database("repro")
    repo, data = tmp_path / "repo", tmp_path / "data"
    repo.mkdir()
    data.mkdir()
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), data / "p.csv")
    (repo / "pipeline.py").write_text(REPRO)
    git(repo, "init", "-q")
    git(repo, "add", "pipeline.py")
    git(repo, "commit", "-qm", "first")
    env = {**_env(mysql, url, tmp_path / "home"), "REPRO_DATA": str(data)}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r1", cwd=str(tmp_path), env=env, check=0)
    p = tfpipe("reproduce", "r1", "-o", str(tmp_path / "again"), "--json", "-q", cwd=str(tmp_path), env=env, check=0)
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2


def test_the_server_killed_mid_run(mysql, tmp_path):
    """The server dies while a node runs: the run ends with one error naming the server;
    once it is back, the next command recovers the dead run (nothing LIVE that should not
    be) and the next run completes."""
    url = mysql.create_database("killed")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), data / "p.csv")
    f = tmp_path / "datahalf.py"
    f.write_text(DATA_HALF.format(data=str(data), root=str(tmp_path / "root")))
    env = {**os.environ, **_env(mysql, url, tmp_path / "home"), "PYTHONPATH": REPO}
    p = subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", str(f), "--run-id", "lost-1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in p.stderr:
            lines.append(line)
            if "StatisticsGen (StatisticsGen) running" in line:
                mysql.kill()
                break
        err = "".join(lines) + p.stderr.read()
        assert p.wait(timeout=300) == 1, err[-3000:]
    finally:
        if mysql.proc.poll() is not None:
            mysql.start()
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"tfpipe: error: ML Metadata store {url.split('?')[0]}: lost the connection"), err[-3000:]
    assert "Traceback" not in err
    r = tfpipe("runs", "list", "--json", env=env, check=0)
    assert "run lost-1 marked FAILED (killed)" in r.stderr, r.stderr
    assert {x["run_id"]: x["status"] for x in json.loads(r.stdout)}["lost-1"] == "FAILED"
    store = _store(mysql, url)
    from tfpipe.tracking import records
    info = records.show_run(store, "lost-1")
    assert {e["node_id"]: e["state"] for e in info["executions"]}.get("StatisticsGen") in ("FAILED", None)
    live_stats = [a for a in store.list_artifacts("ExampleStatistics") if a.state == "LIVE"]
    assert live_stats == []  # nothing LIVE was made by the run that lost its store
    assert all(os.path.exists(a.uri) for a in store.list_artifacts() if a.state == "LIVE")
    again = tfpipe("run", str(f), "--run-id", "lost-2", env=env, check=0)
    assert "run lost-2 COMPLETE" in again.stderr
    states = {e["node_id"]: e["state"] for e in records.show_run(_store(mysql, url), "lost-2")["executions"]}
    assert states["ExampleGen"] == "CACHED" and states["StatisticsGen"] == "COMPLETE"


def test_a_client_left_mid_transaction_by_its_server_is_replaced():
    """After its server went away mid-transaction, ML Metadata's client answers every later
    call with "Transaction already open": the store treats that as a lost connection (a new
    client; with the server still down, the one-line "lost the connection" error), as it does
    the lost connection itself. Which of the two a run meets depends on when the server dies."""
    from tfpipe.metadata import _is_connection_lost
    assert _is_connection_lost(RuntimeError("FailedPreconditionError: Transaction already open."))
    assert _is_connection_lost(RuntimeError("mysql_query failed: errno: Lost connection to MySQL server"))
    assert not _is_connection_lost(RuntimeError("AlreadyExistsError: Given node already exists"))
