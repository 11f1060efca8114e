"""Hostile values never execute, expand or escape: a pipeline kept in a folder whose name is
an attack, with string and dict parameters full of quotes, triple quotes, backslashes,
newlines, Jinja (`{{ }}`, `{% %}`), KFP placeholders (`{{$...}}`), `$( )`, backticks and
`../`, runs under real Airflow 3 (`dags test`, and `dag_run.conf` carrying another such
value), under kfp.local and locally; every node receives every value exactly as written, no
file appears that the payloads try to create, and nothing is written outside the artifact
root. Names that become identifiers are checked when a pipeline is defined."""
import glob
import json
import os
import subprocess

import pytest

from tests.airflow_dags import inspect_dags
from tfpipe.metadata import MetadataStore

from .conftest import AIRFLOW_BIN, compile_file

PAYLOAD = ("q'\"\"\"; import os; os.system('touch PWNED_py') #\\ {{ 7*7 }}{{ var.value.secret }}{% raw %}"
           "{{$.pipeline_job_name}}{{$}}{{$.inputs.parameters['message']}}$(touch PWNED_sh)`touch PWNED_bt`"
           "\n../../escaped\"\"\"'")
CONF_PAYLOAD = "conf {{ run_id }} {{ dag_run.conf }} $(touch PWNED_conf) `touch PWNED_conf2` '\"\"\" ../.."
FOLDER = "dir'\"\"\"{{ 7*7 }}$(touch PWNED_dir)`touch PWNED_dir2`\nnext"

PIPELINE = '''
import json

from tfpipe import Output, Pipeline, String, component

PAYLOAD = {payload!r}


@component
def echo(out: Output[String], message: str = "", config: dict = None) -> None:
    out.write(json.dumps({{"message": message, "config": config}}, sort_keys=True))


def create_pipeline():
    return Pipeline("hostile", [echo(message=PAYLOAD, config={{"note": PAYLOAD, "list": [PAYLOAD, 1]}})])
'''


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The pipeline file, in a hostile folder, and its IR (TFPIPE_HOME under tmp)."""
    base = tmp_path_factory.mktemp("hostile")
    folder = base / FOLDER
    folder.mkdir()
    path = folder / "pipeline.py"
    path.write_text(PIPELINE.format(payload=PAYLOAD))
    return base, str(path)


def _echoed(ir: dict, run_id: str) -> dict:
    store = MetadataStore(ir["pipeline"]["metadata"])
    from tfpipe.tracking import records
    info = records.show_run(store, run_id)
    [e] = [e for e in info["executions"] if e["node_id"] == "echo"]
    assert e["state"] == "COMPLETE", e.get("error")
    [out] = e["outputs"]["out"]
    root = os.path.abspath(ir["pipeline"]["root"])
    assert os.path.commonpath([root, out["uri"]]) == root  # inside the artifact root
    [art] = store.get_artifacts([out["id"]])
    return json.loads(art.read())


def _no_pwned(*dirs):
    found = [p for d in dirs for p in glob.glob(os.path.join(d, "**", "PWNED*"), recursive=True)]
    found += glob.glob(os.path.join(os.getcwd(), "PWNED*")) + glob.glob("/tmp/PWNED*")
    assert found == []


def test_local_run_receives_every_value_as_written(hostile):
    base, path = hostile
    from tfpipe.orchestrators.local import LocalRunner
    ir = compile_file(path, str(base / "home-local"))
    assert ir["pipeline"]["source"] == path
    r = LocalRunner(verbose=False).run(ir, run_id="local-1")
    assert r.ok, r.error
    assert _echoed(ir, "local-1") == {"message": PAYLOAD, "config": {"note": PAYLOAD, "list": [PAYLOAD, 1]}}
    _no_pwned(str(base))


def test_airflow_dag_parses_and_runs_hostile_values_as_data(hostile, airflow_runner):
    base, path = hostile
    ir = compile_file(path, str(base / "home-airflow"))
    r = airflow_runner.run(ir, run_id="af-1", parameters={"echo__message": CONF_PAYLOAD})
    assert r.ok, airflow_runner.last_log[-4000:]
    assert inspect_dags(airflow_runner)["errors"] == {}
    got = _echoed(ir, "af-1")
    assert got == {"message": CONF_PAYLOAD, "config": {"note": PAYLOAD, "list": [PAYLOAD, 1]}}
    text = open(os.path.join(airflow_runner.dags, "hostile.py")).read()
    assert "PWNED" not in text and FOLDER not in text  # the DAG module is fixed; values live in the JSON
    _no_pwned(str(base), airflow_runner.home)


def test_airflow_all_cached_rerun_with_hostile_conf_goes_through_the_cache_check(hostile, airflow_runner):
    """The same run again, its hostile dag_run.conf value now reaching the cache check task
    (which plans with it): every node from the cache, recorded by the check, nothing executed
    or expanded."""
    base, path = hostile
    ir = compile_file(path, str(base / "home-airflow3"))
    conf = {"echo__message": CONF_PAYLOAD}
    assert airflow_runner.dag_run(ir, {"tfpipe_run_id": "af-3a", **conf}) == "success"
    assert airflow_runner.dag_run(ir, {"tfpipe_run_id": "af-3b", **conf}) == "success"
    log = airflow_runner.last_log
    assert "cache check: all 1 nodes taken from the cache; the node tasks are skipped" in log, log[-4000:]
    store = MetadataStore(ir["pipeline"]["metadata"])
    from tfpipe.tracking import records
    [first] = records.show_run(store, "af-3a")["executions"]
    [e] = records.show_run(store, "af-3b")["executions"]
    assert e["state"] == "CACHED" and e["cached_from"] == first["execution_id"]
    assert e["parameters"]["message"] == CONF_PAYLOAD and e["parameters"]["config"]["note"] == PAYLOAD
    assert e["outputs"] == first["outputs"]
    _no_pwned(str(base), airflow_runner.home)


def test_airflow_conf_values_reach_the_task_unrendered(hostile, airflow_runner, tmp_path):
    """dag_run.conf is user data: the task receives it as JSON, not rendered by Jinja."""
    base, path = hostile
    ir = compile_file(path, str(base / "home-airflow2"))
    airflow_runner.run(ir, run_id="af-2", parameters={"echo__message": "{{ 7*7 }} {{ run_id }}"})
    assert _echoed(ir, "af-2")["message"] == "{{ 7*7 }} {{ run_id }}"


def test_kubernetes_pod_tasks_render_only_airflows_own_templates(hostile, tmp_path):
    """KubernetesPodOperator mode: Airflow's own template rendering of every task leaves the
    IR, the image, the namespace and the environment exactly as given (literal()), and
    renders only the run id and dag_run.conf."""
    base, path = hostile
    from tfpipe.orchestrators.airflow import compile_airflow
    ir = compile_file(path, str(base / "home-k8s"))
    ir["pipeline"]["settings"] = {"airflow_operator": "kubernetes", "image": "registry.example/t:{{ 7*7 }}",
                                  "namespace": "ns", "env": {"NOTE": PAYLOAD}}
    dags = tmp_path / "dags"
    compile_airflow(ir, str(dags))
    code = (
        "import json, sys, types\n"
        "from airflow.models.dagbag import DagBag\n"
        "bag = DagBag(sys.argv[1], include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "conf = {'echo__message': 'from conf {{ 7*7 }}'}\n"
        "def rendered(task_id):\n"
        "    t = bag.dags['hostile'].get_task(task_id)\n"
        "    t.render_template_fields({'run_id': 'manual__1', 'dag_run': types.SimpleNamespace(conf=conf)})\n"
        "    return {'arguments': t.arguments, 'image': t.image, 'namespace': t.namespace,\n"
        "            'env': {e.name: e.value for e in t.env_vars}}\n"
        "print('RENDERED', json.dumps({**rendered('echo'), 'check': rendered('tfpipe.cache_check')}))\n")
    p = subprocess.run([os.path.join(os.path.dirname(AIRFLOW_BIN), "python"), "-c", code, str(dags)],
                       capture_output=True, text=True, timeout=300)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RENDERED ")]
    assert p.returncode == 0 and line, p.stderr[-3000:]
    got = json.loads(line[-1][len("RENDERED "):])
    args = got["arguments"]
    task_ir = json.loads(args[args.index("--ir-json") + 1])
    [node] = task_ir["nodes"]
    assert node["parameters"]["message"] == PAYLOAD and node["parameters"]["config"]["note"] == PAYLOAD
    assert args[args.index("--run") + 1] == "manual__1"
    assert json.loads(args[args.index("--params") + 1]) == {"echo__message": "from conf {{ 7*7 }}"}
    assert got["image"] == "registry.example/t:{{ 7*7 }}" and got["namespace"] == "ns"
    assert got["env"]["NOTE"] == PAYLOAD
    check = got["check"]  # the cache check pod: the same IR, run id and conf, as data
    assert json.loads(check["arguments"][check["arguments"].index("--ir-json") + 1]) == task_ir
    assert "--cache-check" in check["arguments"] and "--node" not in check["arguments"]
    assert json.loads(check["arguments"][check["arguments"].index("--params") + 1]) == {
        "echo__message": "from conf {{ 7*7 }}"}
    assert check["image"] == "registry.example/t:{{ 7*7 }}" and check["env"]["NOTE"] == PAYLOAD


def test_kfp_local_receives_every_value_as_written(hostile, tmp_path):
    base, path = hostile
    from tfpipe.orchestrators.kubeflow.compiler import compile_kubeflow
    from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner
    ir = compile_file(path, str(base / "home-kfp"))
    spec_path = compile_kubeflow(ir, str(tmp_path / "hostile.yaml"))
    spec = open(spec_path).read()
    assert "PWNED" not in spec and "{{ 7*7 }}" not in spec  # every expandable value travels encoded
    for e in __import__("yaml").safe_load(spec)["deploymentSpec"]["executors"].values():
        assert "hostile" not in e["container"]["command"][-1]  # no node id or value in the source
    r = KfpLocalRunner(verbose=False, workdir=str(tmp_path / "kfp")).run(ir, run_id="kfp-1")
    assert r.ok, r.error
    assert _echoed(ir, "kfp-1") == {"message": PAYLOAD, "config": {"note": PAYLOAD, "list": [PAYLOAD, 1]}}
    _no_pwned(str(base), str(tmp_path))
