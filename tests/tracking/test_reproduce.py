"""tfpipe reproduce: a run re-made from its recorded commit, parameters and data, and the
refusals (changed data, uncommitted changes, code not available)."""
import json
import os
import shutil

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.conftest import git

PIPELINE = '''
import os
from tfpipe.components.example_gen import ExampleGen
from tfpipe import Examples, Input, Integer, Output, Pipeline, component

HERE = os.path.dirname(os.path.abspath(__file__))


@component
def count_rows(examples: Input[Examples], result: Output[Integer], offset: int = 0) -> None:
    result.write(sum(examples.row_counts.values()) + offset)


def create_pipeline():
    eg = ExampleGen(input_base=os.environ["REPRO_DATA"], label_key="species")
    return Pipeline("repro", [count_rows(examples=eg.outputs.examples, offset=OFFSET)])
'''


@pytest.fixture
def project(tmp_path):
    """A user's git repository holding a pipeline file (named pipeline.py, as users do), data
    outside it, and one clean run recorded in TFPIPE_HOME."""
    repo, data = tmp_path / "repo", tmp_path / "data"
    repo.mkdir()
    data.mkdir()
    shutil.copyfile(os.path.join(REPO, "examples", "penguin", "data", "penguins.csv"), data / "penguins.csv")
    (repo / "pipeline.py").write_text(PIPELINE.replace("OFFSET", "1"))
    git(repo, "init", "-q")
    git(repo, "add", "pipeline.py")
    git(repo, "commit", "-qm", "first")
    env = {"TFPIPE_HOME": str(tmp_path / "home"), "REPRO_DATA": str(data)}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r1", cwd=str(tmp_path), env=env, check=0)
    return tmp_path, repo, data, env


def test_reproduce_clean_run_gives_identical_artifacts(project):
    tmp, repo, data, env = project
    # the work tree moves on after the run: reproduce uses the recorded commit, not HEAD
    (repo / "pipeline.py").write_text(PIPELINE.replace("OFFSET", "100"))
    git(repo, "commit", "-qam", "second")
    out = tmp / "again"
    p = tfpipe("reproduce", "r1", "-o", str(out), "--json", "-q", cwd=str(tmp), env=env, check=0)
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2
    assert {r["node"] for r in res["artifacts"]} == {"ExampleGen", "count_rows"}
    assert all(r["reproduced_uri"].startswith(str(out)) for r in res["artifacts"])
    assert res["data_checks"][0]["ok"] and res["data_checks"][0]["node"] == "ExampleGen"
    # the re-run is recorded in its own fresh store, naming what it reproduces
    rows = json.loads(tfpipe("runs", "list", "--json", "--metadata", res["metadata"], check=0).stdout)
    assert [r["run_id"] for r in rows] == [res["reproduced_run_id"]]
    [integer] = [r for r in res["artifacts"] if r["node"] == "count_rows"]
    assert json.load(open(os.path.join(integer["reproduced_uri"], "value"))) == 345  # offset 1 of commit one
    text = tfpipe("reproduce", "r1", "-q", cwd=str(tmp), env=env, check=0).stdout
    assert "artifacts: 2 of 2 identical" in text


def test_reproduce_refuses_changed_data(project):
    tmp, repo, data, env = project
    with open(data / "penguins.csv", "a") as f:
        f.write("Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n")
    out = tmp / "again"
    p = tfpipe("reproduce", "r1", "-o", str(out), "-q", cwd=str(tmp), env=env)
    assert p.returncode == 1
    assert "data no longer matches its recorded fingerprint" in p.stderr and "ExampleGen" in p.stderr
    assert str(data / "penguins.csv") in p.stderr
    assert not out.exists()  # nothing left behind
    os.remove(data / "penguins.csv")
    p = tfpipe("reproduce", "r1", "-q", cwd=str(tmp), env=env)
    assert p.returncode == 1 and "files missing" in p.stderr


def test_reproduce_refuses_dirty_record_and_missing_code(project):
    tmp, repo, data, env = project
    edited = PIPELINE.replace("OFFSET", "1").replace("+ offset)", "+ offset + 10)")
    (repo / "pipeline.py").write_text(edited)  # an uncommitted change to the component's code
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "dirty", cwd=str(tmp), env=env, check=0)
    p = tfpipe("reproduce", "dirty", "-q", cwd=str(tmp), env=env)
    assert p.returncode == 1 and "uncommitted changes" in p.stderr and "--allow-dirty" in p.stderr
    res = json.loads(tfpipe("reproduce", "dirty", "--allow-dirty", "--json", "-q", cwd=str(tmp), env=env,
                            check=0).stdout)
    assert res["status"] == "COMPLETE" and res["allowed_dirty"]
    # the committed code ran, not the uncommitted edit: that component's output differs
    diff = {r["node"]: r["identical"] for r in res["artifacts"]}
    assert diff == {"ExampleGen": True, "count_rows": False}
    shutil.rmtree(repo / ".git")
    p = tfpipe("reproduce", "r1", "-q", cwd=str(tmp), env=env)
    assert p.returncode == 1 and "code is not available" in p.stderr


def test_reproduce_a_run_kept_on_object_storage(tmp_path, moto_s3):
    """Data and artifact root on S3: the reproduction reads the recorded data back from the
    bucket, checks its fingerprint, and compares its outputs with the run's on S3."""
    from tests.conftest import scoped_env
    from tfpipe import fileio
    repo = tmp_path / "repo"
    repo.mkdir()
    data, root = f"{moto_s3.bucket}/data/penguin", f"{moto_s3.bucket}/root"
    (repo / "pipeline.py").write_text(PIPELINE.replace("OFFSET", "1").replace(
        '[count_rows(examples=eg.outputs.examples, offset=1)])',
        '[count_rows(examples=eg.outputs.examples, offset=1)], root=os.environ["REPRO_ROOT"])'))
    git(repo, "init", "-q")
    git(repo, "add", "pipeline.py")
    git(repo, "commit", "-qm", "first")
    env = {**moto_s3.env(), "TFPIPE_HOME": str(tmp_path / "home"), "REPRO_DATA": data, "REPRO_ROOT": root}
    with scoped_env(**env):
        fileio.copy_tree(os.path.join(REPO, "examples", "penguin", "data"), data)
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r1", cwd=str(tmp_path), env=env, check=0)
    p = tfpipe("reproduce", "r1", "-o", str(tmp_path / "again"), "--json", "-q", cwd=str(tmp_path), env=env, check=0)
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2, res
    assert res["data_checks"][0]["ok"] and res["data_checks"][0]["files"] == [f"{data}/penguins.csv"]
    assert all(r["original_uri"].startswith(root + "/") for r in res["artifacts"]), res["artifacts"]
