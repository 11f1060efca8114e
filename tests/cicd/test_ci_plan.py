"""`tfpipe ci plan` on real git history: a temporary repository with one commit per kind of
change, classified with the project's own tfpipe-ci.toml."""
import json
import os
import shutil

import pytest

from tests.cicd.gitrepo import commit, git, write
from tests.conftest import REPO, tfpipe
from tfpipe.tracking.ci_plan import (
    CiPlanError,
    glob_to_regex,
    make_plan,
    module_overrides,
)

ZERO = "0" * 40


MODULE = "def preprocessing_fn(inputs):\n" + "".join(f"    x{i} = inputs['f{i}'] * {i}\n" for i in range(20)) \
    + "    return inputs\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Commits: first (everything), docs, tests, module, data, rename module->docs, delete
    component, mixed docs+module+pipeline, Dockerfile."""
    repo = tmp_path_factory.mktemp("cirepo")
    git(repo, "init", "-q", "-b", "main")
    shutil.copy(os.path.join(REPO, "tfpipe-ci.toml"), repo / "tfpipe-ci.toml")
    write(repo, "README.md", "# demo\n")
    write(repo, "pipeline/graph.py", "X = 1\n")
    write(repo, "components/trainer.py", "def run(): pass\n")
    write(repo, "components/extra.py", "def extra(): pass\n")
    write(repo, "examples/penguin/pipeline.py", "def create_pipeline(): pass\n")
    write(repo, "examples/penguin/penguin_utils.py", MODULE)
    write(repo, "examples/penguin/data/penguins.csv", "a,b\n1,2\n")
    write(repo, "docs/index.md", "docs\n")
    write(repo, "tests/test_x.py", "def test(): pass\n")
    h = {"first": commit(repo, "first")}
    write(repo, "docs/index.md", "more docs\n")
    write(repo, "examples/penguin/README.md", "about penguins\n")
    h["docs"] = commit(repo, "docs only")
    write(repo, "tests/test_x.py", "def test(): assert True\n")
    h["tests"] = commit(repo, "tests only")
    write(repo, "examples/penguin/penguin_utils.py", MODULE.replace("return inputs", "return dict(inputs)"))
    h["module"] = commit(repo, "trainer module")
    write(repo, "examples/penguin/data/penguins.csv", "a,b\n1,2\n3,4\n")
    h["data"] = commit(repo, "fresh data")
    git(repo, "mv", "examples/penguin/penguin_utils.py", "docs/old_utils.py")
    h["rename"] = commit(repo, "move module into docs")
    git(repo, "rm", "-q", "components/extra.py")
    h["delete"] = commit(repo, "delete a component")
    write(repo, "docs/index.md", "docs again\n")
    write(repo, "examples/penguin/trainer_module.py", MODULE)
    write(repo, "pipeline/graph.py", "X = 2\n")
    h["mixed"] = commit(repo, "docs, module and core")
    write(repo, "Dockerfile", "FROM python:3.11-slim\n")
    h["docker"] = commit(repo, "image")
    return repo, h


def plan(history, base_key, head_key):
    repo, h = history
    return make_plan(str(repo), h[base_key] if base_key else "", h[head_key]).to_dict()


ORDER = ["first", "docs", "tests", "module", "data", "rename", "delete", "mixed", "docker"]


def step(history, key):
    return plan(history, ORDER[ORDER.index(key) - 1], key)


def test_first_commit_without_base_counts_every_file_as_added(history):
    repo, h = history
    for base in ("", ZERO):
        d = make_plan(str(repo), base, h["first"]).to_dict()
        assert d["base"] is None and d["action"] == "full_rebuild"
        assert {c["status"] for c in d["changes"]} == {"A"}
        assert "examples/penguin/penguin_utils.py" in d["changed_files"]
        assert len(d["changed_files"]) == 10
        rules = {r["path"]: r["rule"] for r in d["matches"]}
        assert rules["pipeline/graph.py"] == "pipeline-code"
        assert rules["examples/penguin/penguin_utils.py"] == "user-modules"
        assert rules["docs/index.md"] == "docs-and-tests"
        assert rules["examples/penguin/data/penguins.csv"] == "training-data"


def test_docs_and_tests_only_is_nothing(history):
    d = step(history, "docs")
    assert d["action"] == "nothing" and d["reasons"][0]["rule"] == "docs-and-tests"
    assert sorted(d["changed_files"]) == ["docs/index.md", "examples/penguin/README.md"]
    assert step(history, "tests")["action"] == "nothing"


def test_module_change_is_modules_only_and_lists_the_file_to_upload(history):
    d = step(history, "module")
    assert d["action"] == "modules_only"
    assert d["module_files"] == ["examples/penguin/penguin_utils.py"]
    assert d["reasons"] == [{"path": "examples/penguin/penguin_utils.py", "side": "new", "status": "M",
                             "rule": "user-modules", "pattern": "examples/*/*_utils.py",
                             "action": "modules_only"}]


def test_data_change_is_data_only(history):
    d = step(history, "data")
    assert d["action"] == "data_only"
    assert d["reasons"][0]["pattern"] == "examples/*/data/"


def test_rename_counts_both_sides(history):
    d = step(history, "rename")
    assert d["changes"] == [{"status": "R", "path": "docs/old_utils.py",
                             "old_path": "examples/penguin/penguin_utils.py"}]
    sides = {(m["side"], m["path"]): m["action"] for m in d["matches"]}
    assert sides == {("new", "docs/old_utils.py"): "nothing",
                     ("old", "examples/penguin/penguin_utils.py"): "modules_only"}
    assert d["action"] == "modules_only"
    assert d["module_files"] == []  # nothing left at head to upload; the resubmit still happens
    assert set(d["changed_files"]) == {"docs/old_utils.py", "examples/penguin/penguin_utils.py"}


def test_deletion_counts_the_deleted_path(history):
    d = step(history, "delete")
    assert d["action"] == "full_rebuild"
    assert d["reasons"] == [{"path": "components/extra.py", "side": "deleted", "status": "D",
                             "rule": "pipeline-code", "pattern": "components/", "action": "full_rebuild"}]


def test_strongest_action_wins_and_reasons_name_only_the_deciding_paths(history):
    d = step(history, "mixed")
    assert d["action"] == "full_rebuild"
    assert [r["path"] for r in d["reasons"]] == ["pipeline/graph.py"]
    assert {m["action"] for m in d["matches"]} == {"nothing", "modules_only", "full_rebuild"}
    assert step(history, "docker")["reasons"][0]["path"] == "Dockerfile"


def test_a_range_of_several_commits(history):
    d = plan(history, "first", "data")  # docs + tests + module + data
    assert d["action"] == "modules_only"
    assert {m["action"] for m in d["matches"]} == {"nothing", "modules_only", "data_only"}


def test_cli_text_and_json(history):
    repo, h = history
    p = tfpipe("ci", "plan", "--base", h["data"], "--head", h["module"], "--json", cwd=repo, check=0)
    d = json.loads(p.stdout)
    assert d["action"] == "data_only" and d["head"] == h["module"]
    t = tfpipe("ci", "plan", "--base", h["data"], "--head", h["rename"], cwd=repo, check=0).stdout
    assert t.splitlines()[0] == "action: modules_only"
    assert "R examples/penguin/penguin_utils.py [old] -> modules_only by rule 'user-modules'" in t
    assert "R docs/old_utils.py [new] -> nothing by rule 'docs-and-tests'" in t


def test_unknown_sha_is_a_usage_error_naming_it(history):
    repo, h = history
    bad = "1234567890abcdef1234567890abcdef12345678"
    p = tfpipe("ci", "plan", "--base", bad, "--head", h["docs"], cwd=repo, check=2)
    assert f"--base {bad}: unknown commit" in p.stderr and p.stdout == ""
    p = tfpipe("ci", "plan", "--base", h["first"], "--head", "nosuchref", cwd=repo, check=2)
    assert "--head nosuchref: unknown commit" in p.stderr


def test_not_a_repository_and_bad_config_are_usage_errors(history, tmp_path):
    repo, h = history
    p = tfpipe("ci", "plan", "--base", "", "--head", "HEAD", "--config", str(repo / "tfpipe-ci.toml"),
               "--repo", str(tmp_path), check=2)
    assert "not inside a git repository" in p.stderr
    cfg = tmp_path / "ci.toml"
    cfg.write_text('[[rule]]\nname = "x"\naction = "rebuild_everything"\npaths = ["a"]\n')
    p = tfpipe("ci", "plan", "--base", h["first"], "--head", h["docs"], "--config", str(cfg), cwd=repo, check=2)
    assert str(cfg) in p.stderr and "'rebuild_everything'" in p.stderr and "full_rebuild" in p.stderr
    cfg.write_text('[[rule]\nname = "x"\n')
    p = tfpipe("ci", "plan", "--base", h["first"], "--head", h["docs"], "--config", str(cfg), cwd=repo, check=2)
    assert "not valid TOML" in p.stderr and "line 1" in p.stderr
    with pytest.raises(CiPlanError, match="does not exist"):
        make_plan(str(repo), h["first"], h["docs"], config=str(tmp_path / "missing.toml"))


def test_unmatched_paths_take_the_configured_action(history, tmp_path):
    repo, h = history
    cfg = tmp_path / "ci.toml"
    cfg.write_text('unmatched = "nothing"\n[[rule]]\nname = "data"\naction = "data_only"\npaths = ["**/*.csv"]\n')
    d = make_plan(str(repo), h["tests"], h["data"], config=str(cfg)).to_dict()
    assert d["action"] == "data_only"
    assert {m["rule"] for m in d["matches"]} == {"data", "(unmatched)"}


@pytest.mark.parametrize("pattern,path,hit", [
    ("examples/*/*_utils.py", "examples/penguin/penguin_utils.py", True),
    ("examples/*/*_utils.py", "examples/penguin/sub/penguin_utils.py", False),
    ("**/*.md", "README.md", True),
    ("**/*.md", "a/b/c.md", True),
    ("docs/", "docs/a/b.txt", True),
    ("docs/", "docsx/a.txt", False),
    ("Dockerfile", "sub/Dockerfile", False),
    ("examples/**/*.py", "examples/x.py", True),
    ("data_v[0-9].csv", "data_v3.csv", True),
    ("a?c", "a/c", False),
])
def test_glob_semantics(pattern, path, hit):
    assert bool(glob_to_regex(pattern).fullmatch(path)) is hit


def test_same_commit_is_nothing(history):
    d = plan(history, "module", "module")
    assert d["action"] == "nothing" and d["changes"] == [] and d["reasons"] == []


def test_module_overrides_point_module_parameters_at_the_uploaded_copies():
    ir = {"nodes": [
        {"id": "Transform", "parameters": {"module_file": "/opt/tfpipe/examples/penguin/penguin_transform.py"}},
        {"id": "Trainer", "parameters": {"module_file": "/opt/tfpipe/examples/penguin/penguin_utils.py",
                                         "train_steps": 5}},
        {"id": "Tuner", "parameters": {"module_file": "/opt/tfpipe/examples/penguin/penguin_utils.py"}},
        {"id": "Other", "parameters": {"module_file": "/opt/tfpipe/examples/other/x_penguin_utils.py"}},
    ]}
    over, unused = module_overrides(ir, ["examples/penguin/penguin_utils.py", "examples/penguin/helpers_utils.py"],
                                    "/gcs/b/root/modules/abc/")
    assert over == {"Trainer__module_file": "/gcs/b/root/modules/abc/examples/penguin/penguin_utils.py",
                    "Tuner__module_file": "/gcs/b/root/modules/abc/examples/penguin/penguin_utils.py"}
    assert unused == ["examples/penguin/helpers_utils.py"]
