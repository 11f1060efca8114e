"""tfpipe inside a user's own repository, as a new user meets it: the repository has its
own ``pipeline.py``, ``components/`` and ``orchestrators/`` packages (the most common names
in ML repositories), and every command works from it, with the installed ``tfpipe`` only
(no checkout of tfpipe on the import path)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.airflow_dags import inspect_dags
from tests.conftest import REPO
from tests.tracking.conftest import git

TFPIPE = os.path.join(os.path.dirname(sys.executable), "tfpipe")

PIPELINE = '''
import os

from components import doubled  # the user's own components package
from tfpipe import Examples, Input, Integer, Output, Pipeline, component
from tfpipe.components import ExampleGen

HERE = os.path.dirname(os.path.abspath(__file__))


@component
def count_rows(examples: Input[Examples], result: Output[Integer]) -> None:
    result.write(doubled(sum(examples.row_counts.values())))


def create_pipeline():
    gen = ExampleGen(input_base=os.path.join(HERE, "data"), label_key="species")
    return Pipeline("userrepo", [count_rows(examples=gen.outputs.examples)])
'''


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory):
    """A git repository of the user's, its pipeline run once; tfpipe's own checkout is not
    on the import path of anything started here."""
    base = tmp_path_factory.mktemp("user")
    repo = base / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), repo / "data" / "p.csv")
    (repo / "pipeline.py").write_text(PIPELINE)
    (repo / "components").mkdir()
    (repo / "components" / "__init__.py").write_text(
        "ExampleGen = 'the user\\'s, not tfpipe\\'s'\n\ndef doubled(n):\n    return 2 * n\n")
    for name in ("orchestrators", "tracking", "cli"):
        (repo / name).mkdir()
        (repo / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package was imported')\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a user's pipeline")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TFPIPE_HOME")}
    env["TFPIPE_HOME"] = str(base / "home")
    p = _run([TFPIPE, "run", "pipeline.py", "--run-id", "u1"], repo, env)
    assert p.returncode == 0, p.stderr[-3000:]
    return repo, env, base


def _run(argv, cwd, env, timeout=600):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_run_from_a_repository_with_its_own_pipeline_and_components(user_repo):
    repo, env, _ = user_repo
    p = _run([TFPIPE, "runs", "show", "u1", "--json"], repo, env)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["status"] == "COMPLETE"
    counts = [e for e in info["executions"] if e["node_id"] == "count_rows"]
    assert counts and counts[0]["state"] == "COMPLETE"
    from tfpipe.metadata import MetadataStore
    store = MetadataStore(os.path.join(env["TFPIPE_HOME"], "metadata.sqlite"))
    [result] = store.get_artifacts([counts[0]["outputs"]["result"][0]["id"]])
    assert result.read() == 2 * 344  # the user's components.doubled ran


def test_compile_for_airflow_and_kubeflow_from_the_repository(user_repo, tmp_path):
    repo, env, _ = user_repo
    from tfpipe.orchestrators.airflow.local import AirflowLocalRunner
    airflow = AirflowLocalRunner(str(tmp_path / "airflow"), airflow_bin=os.path.join(REPO, ".venv-airflow", "bin",
                                                                                     "airflow"))
    p = _run([TFPIPE, "compile", "pipeline.py", "--target", "airflow", "-o", airflow.dags], repo, env)
    assert p.returncode == 0, p.stderr
    dag = open(os.path.join(airflow.dags, "userrepo.py")).read()
    assert "-m tfpipe.orchestrators.task" in dag
    parsed = inspect_dags(airflow)  # Airflow's own DagBag
    assert parsed["errors"] == {}
    tasks = parsed["dags"]["userrepo"]
    assert sorted(tasks["count_rows"]["upstream"]) == ["ExampleGen", "tfpipe.cache_check"]
    assert tasks["tfpipe.cache_check"]["upstream"] == []  # the cache check of the whole run goes first
    out = tmp_path / "userrepo.yaml"
    p = _run([TFPIPE, "compile", "pipeline.py", "--target", "kubeflow", "-o", str(out)], repo, env)
    assert p.returncode == 0, p.stderr
    spec = yaml.safe_load(out.read_text())
    assert sorted(spec["root"]["dag"]["tasks"]) == ["count-rows", "examplegen"]
    for e in spec["deploymentSpec"]["executors"].values():
        assert "from tfpipe.orchestrators.kubeflow.entry import run" in e["container"]["command"][-1]


def test_tasks_run_through_the_warm_task_host_from_the_repository(user_repo, tmp_path):
    """What an Airflow or kfp.local task runs, with the user's repository as its working
    directory: the host forks the task there, and tfpipe's modules are still tfpipe's."""
    repo, env, base = user_repo
    ir_path = tmp_path / "ir.json"
    p = _run([TFPIPE, "compile", "pipeline.py", "-o", str(ir_path)], repo, env)
    assert p.returncode == 0, p.stderr
    task_env = {**env, "TFPIPE_TASK_HOST": "1", "TFPIPE_TASK_HOST_IDLE": "30"}
    for node in ("ExampleGen", "count_rows"):
        p = _run([sys.executable, "-m", "tfpipe.orchestrators.task", "--ir", str(ir_path), "--node", node,
                  "--run", "task-run", "--orchestrator", "airflow"], repo, task_env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "running the task here" not in p.stderr  # it did run in the host
    p = _run([TFPIPE, "runs", "show", "task-run", "--json"], repo, env)
    assert json.loads(p.stdout)["status"] == "COMPLETE"


def test_reproduce_a_run_of_the_repository(user_repo, tmp_path):
    repo, env, _ = user_repo
    p = _run([TFPIPE, "reproduce", "u1", "-o", str(tmp_path / "again"), "--json", "-q"], repo, env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2


def test_nothing_of_tfpipe_is_importable_under_the_generic_names(tmp_path):
    """Outside any repository, the installed environment has only ``tfpipe``."""
    code = ("import importlib.util, json\n"
            "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in "
            "('pipeline', 'components', 'orchestrators', 'tracking', 'cli', 'v1', 'tfpipe')}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert json.loads(p.stdout) == {"pipeline": False, "components": False, "orchestrators": False,
                                    "tracking": False, "cli": False, "v1": False, "tfpipe": True}
