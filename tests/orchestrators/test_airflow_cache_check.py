"""The Airflow DAG's cache check (task ``tfpipe.cache_check``): a re-run whose every node is a
cache hit is recorded by that one task, every node task is skipped, and ML Metadata holds,
node by node, what a local all-cached re-run records; a run with a changed parameter (from
``dag_run.conf``) runs the changed node and its downstream as before; the check task never
takes a node from the cache that is not a hit."""
import os
import re

import pytest

from tests.airflow_dags import task_states
from tfpipe.metadata import MetadataStore

from .conftest import CONTRACT, compile_file


def _normal(store: MetadataStore, run_id: str, root: str) -> dict:
    """node id -> what the run recorded for it, without store-specific ids: state, component,
    parameters, where a CACHED execution came from (node and run of the source execution,
    and whether their cache keys agree), input and output artifacts (URI under the root with
    its last part, the producing execution's id, replaced by that execution's node and run:
    parallel tasks take ids in the order they start, so the ids are not comparable), type,
    state) and the contexts it is linked to."""
    from tfpipe.tracking import records
    info = records.show_run(store, run_id)

    def where(uri):
        head, _, tail = os.path.relpath(uri, root).rpartition("/")
        [producer] = store.executions([int(tail)])
        p = store.props(producer)
        return f"{head}/<{p.get('node_id')} in {p.get('run_id')}>"

    assert info["status"] == "COMPLETE", info
    out = {}
    for e in info["executions"]:
        src = None
        if e["cached_from"] is not None:
            [s] = store.executions([int(e["cached_from"])])
            sp = store.props(s)
            src = {"node": sp.get("node_id"), "run": sp.get("run_id"),
                   "same_key": sp.get("cache_key") == e["cache_key"]}
        arts = {a.id: a for a in store.get_artifacts([i for ids in e["inputs"].values() for i in ids])}
        assert e["node_id"] not in out, f"two executions of {e['node_id']} in run {run_id}"
        out[e["node_id"]] = {
            "state": str(e["state"]), "component": e["component"], "parameters": e["parameters"],
            "cached_from": src,
            "inputs": {k: [(where(arts[i].uri), arts[i].type_name, arts[i].state) for i in ids]
                       for k, ids in e["inputs"].items()},
            "outputs": {k: [(where(a["uri"]), a["type"], a["state"]) for a in v]
                        for k, v in e["outputs"].items()},
            "contexts": sorted((store.type_name(c.type_id, "c"), c.name)
                               for c in store.contexts_of_execution(e["execution_id"]))}
    return out


@pytest.fixture(scope="module")
def cached_runs(tmp_path_factory, airflow_runner):
    """The contract pipeline (its Boom never fails here) run twice locally and twice under
    Airflow, each in a TFPIPE_HOME of its own; then a third Airflow run with Boom's
    parameter changed through dag_run.conf."""
    from tfpipe.orchestrators.local import LocalRunner
    base = tmp_path_factory.mktemp("cache-check")
    env = {"CONTRACT_FAIL_FLAG": str(base / "never-there")}
    local_ir = compile_file(CONTRACT, str(base / "home-local"), env)
    air_ir = compile_file(CONTRACT, str(base / "home-airflow"), env)
    local = LocalRunner(verbose=False)
    conf = {"tfpipe_run_id": "c-3", "ContractBoom__fail_flag": str(base / "still-never-there")}
    for rid in ("c-1", "c-2", "c-3"):
        assert local.run(local_ir, run_id=rid, parameters={k: v for k, v in conf.items() if rid == "c-3"
                                                           and k != "tfpipe_run_id"}).ok
    logs, results = {}, {}
    states = {}
    airflow_runner.setup()
    warm = airflow_runner.warm_pid
    for rid in ("c-1", "c-2"):
        results[rid] = airflow_runner.run(air_ir, run_id=rid)
        logs[rid] = airflow_runner.last_log
        states[rid] = task_states(airflow_runner, "contract", airflow_runner.last_airflow_run)
    results["c-3"] = airflow_runner.dag_run(air_ir, conf)
    logs["c-3"] = airflow_runner.last_log
    states["c-3"] = task_states(airflow_runner, "contract", airflow_runner.last_airflow_run)
    return {"local": local_ir, "airflow": air_ir, "logs": logs, "results": results, "states": states,
            "warm": (warm, airflow_runner.warm_pid)}


def test_all_cached_rerun_is_recorded_by_the_check_task_and_the_node_tasks_are_skipped(cached_runs):
    r1, r2 = cached_runs["results"]["c-1"], cached_runs["results"]["c-2"]
    assert r1.ok and r2.ok, cached_runs["logs"]["c-2"][-4000:]
    assert r2.airflow_state == "success"
    assert {n.state for n in r2.nodes} == {"CACHED"} and len(r2.nodes) == 4
    log1, log2 = cached_runs["logs"]["c-1"], cached_runs["logs"]["c-2"]
    assert "cache check: some nodes will run; the node tasks run" in log1
    assert "cache check: all 4 nodes taken from the cache; the node tasks are skipped" in log2
    ids = ["tfpipe.cache_check"] + [n["id"] for n in cached_runs["airflow"]["nodes"]]
    assert cached_runs["states"]["c-2"] == {t: "skipped" for t in ids}, log2[-4000:]
    assert cached_runs["states"]["c-1"] == {t: "success" for t in ids}
    # no node task started: the DAG run's only task log is the check task's
    assert re.findall(r"^--- logs/dag_id=contract/run_id=[^/]+/task_id=([^/]+)/", log2, re.M) == ["tfpipe.cache_check"]


def test_all_cached_rerun_records_what_a_local_all_cached_rerun_records(cached_runs):
    local_ir, air_ir = cached_runs["local"], cached_runs["airflow"]
    local = _normal(MetadataStore(local_ir["pipeline"]["metadata"]), "c-2", local_ir["pipeline"]["root"])
    air = _normal(MetadataStore(air_ir["pipeline"]["metadata"]), "c-2", air_ir["pipeline"]["root"])
    assert set(air) == {n["id"] for n in air_ir["nodes"]}
    for node in local:
        assert air[node] == local[node], node
        assert air[node]["state"] == "CACHED"
        assert air[node]["cached_from"] == {"node": node, "run": "c-1", "same_key": True}
    from tfpipe.tracking import runs
    [row] = [r for r in runs.list_runs(MetadataStore(air_ir["pipeline"]["metadata"]), "contract")
             if r["run_id"] == "c-2"]
    assert row["status"] == "COMPLETE" and row["orchestrator"] == "airflow"


def test_changed_parameter_from_conf_runs_the_changed_node_and_its_downstream(cached_runs):
    assert cached_runs["results"]["c-3"] == "success", cached_runs["logs"]["c-3"][-4000:]
    log = cached_runs["logs"]["c-3"]
    assert "cache check: some nodes will run; the node tasks run" in log
    assert re.search(r"ContractBoom\s+RUN\s+parameter fail_flag: ", log)  # the plan, in the check task's log
    ir, local_ir = cached_runs["airflow"], cached_runs["local"]
    run = _normal(MetadataStore(ir["pipeline"]["metadata"]), "c-3", ir["pipeline"]["root"])
    # Boom runs with its new parameter; Sink's task runs too and, Boom's output being the same
    # bytes as before, takes Sink from the cache itself: what the local runner does
    assert {k: v["state"] for k, v in run.items()} == {"ContractSource": "CACHED", "ContractSide": "CACHED",
                                                       "ContractBoom": "COMPLETE", "ContractSink": "CACHED"}
    assert run["ContractBoom"]["parameters"]["fail_flag"].endswith("still-never-there")
    local = _normal(MetadataStore(local_ir["pipeline"]["metadata"]), "c-3", local_ir["pipeline"]["root"])
    assert run == local
    assert cached_runs["states"]["c-3"] == {t: "success"
                                            for t in ["tfpipe.cache_check"] + [n["id"] for n in ir["nodes"]]}


def test_check_records_nothing_when_a_node_would_run(tmp_path):
    """In process, against a store where one node changed: None, and no execution, context
    or run status was added by the check."""
    from tfpipe.orchestrators.local import LocalRunner
    from tfpipe.orchestrators.task import check_cache
    ir = compile_file(CONTRACT, str(tmp_path / "home"), {"CONTRACT_FAIL_FLAG": str(tmp_path / "nope")})
    assert LocalRunner(verbose=False).run(ir, run_id="r-1").ok
    store = MetadataStore(ir["pipeline"]["metadata"])
    before = len(store.store.get_executions())
    assert check_cache(ir, "r-2", "airflow", {"ContractSource__rows": 6}, store=store, verbose=False) is None
    assert store.context("pipeline_run", "contract.r-2", create=False) is None
    assert len(store.store.get_executions()) == before
    got = check_cache(ir, "r-3", "airflow", {}, store=store, verbose=False)
    assert [(r.node_id, r.state) for r in got] == [(n["id"], "CACHED") for n in ir["nodes"]]
    assert store.props(store.context("pipeline_run", "contract.r-3", create=False))["status"] == "COMPLETE"


def test_cache_only_never_executes_a_node_that_is_not_a_hit(tmp_path):
    """run_node(cache_only=True) on a node without a hit: FAILED with the reason, nothing
    staged or LIVE, the executor never called."""
    from tfpipe.launcher import NodeFailed, run_node
    ir = compile_file(CONTRACT, str(tmp_path / "home"), {"CONTRACT_FAIL_FLAG": str(tmp_path / "nope")})
    store = MetadataStore(ir["pipeline"]["metadata"])
    with pytest.raises(NodeFailed, match="no cache hit for cache key [0-9a-f]{12}"):
        run_node(ir, "ContractSource", "r-1", store=store, verbose=False, cache_only=True)
    [e] = store.executions_by_context(store.context("pipeline_run", "contract.r-1", create=False))
    assert store.state_name(e) == "FAILED"
    assert not os.path.exists(os.path.join(ir["pipeline"]["root"], "ContractSource", "examples"))


def test_every_dag_run_was_forked_from_one_warm_airflow_process(cached_runs):
    before, after = cached_runs["warm"]
    assert before is not None and before == after


def test_a_group_with_only_idle_executor_workers_left_is_recognised(tmp_path):
    """What lets the runner end `dags test` 2 s after its DAG run finished instead of 30 s:
    the rest of its process group is idle LocalExecutor workers (their process title), and
    nothing else."""
    import signal
    import subprocess
    import time

    from tfpipe.orchestrators.airflow.local import _only_idle_workers

    def group(script):
        p = subprocess.Popen(["bash", "-c", script], start_new_session=True)
        time.sleep(0.5)
        return p
    idle = "(exec -a 'airflow worker -- LocalExecutor: <idle>' sleep 60) & "
    cases = [(idle + "exec sleep 60", True),
             (idle + "(exec -a 'airflow worker -- LocalExecutor: 01a2' sleep 60) & exec sleep 60", False),
             (idle + "sleep 60 & exec sleep 60", False),
             ("exec sleep 60", False)]  # no worker at all: not the executor's shutdown
    for script, want in cases:
        p = group(script)
        try:
            assert _only_idle_workers(p.pid) is want, script
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_cache_check_command_exit_codes(tmp_path):
    """The task command: 99 when it took every node from the cache; 0 having recorded nothing
    when a parameter is unknown (the node tasks then fail on it, naming it, as before)."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO
    from tfpipe.orchestrators.local import LocalRunner
    ir = compile_file(CONTRACT, str(tmp_path / "home"), {"CONTRACT_FAIL_FLAG": str(tmp_path / "nope")})
    assert LocalRunner(verbose=False).run(ir, run_id="r-1").ok
    path = tmp_path / "ir.json"
    path.write_text(json.dumps(ir))
    env = {k: v for k, v in os.environ.items() if k != "TFPIPE_TASK_HOST"}

    def check(run_id, params):
        return subprocess.run([sys.executable, "-m", "tfpipe.orchestrators.task", "--ir", str(path), "--cache-check",
                               "--run", run_id, "--orchestrator", "airflow", "--params", json.dumps(params)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    p = check("r-2", {"ContractSource__nope": 1})
    assert p.returncode == 0, p.stderr
    assert "cache check: no plan (ParameterError: " in p.stderr and "ContractSource__nope" in p.stderr
    store = MetadataStore(ir["pipeline"]["metadata"])
    assert store.context("pipeline_run", "contract.r-2", create=False) is None
    p = check("r-3", {})
    assert p.returncode == 99, p.stderr
    assert "plan of pipeline contract against its ML Metadata: 4 cached, 0 to run, 0 to resolve" in p.stderr
    assert store.props(store.context("pipeline_run", "contract.r-3", create=False))["status"] == "COMPLETE"
