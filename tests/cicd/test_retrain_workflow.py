"""Run retrain.yml's own shell steps (read from the workflow file) the way a runner would:
the step's env with its ``${{ }}`` expressions evaluated against a test event, GITHUB_OUTPUT /
GITHUB_STEP_SUMMARY files, ``bash -e``. The plan runs the real ``tfpipe ci plan`` on a
temporary git history; ``gcloud`` (the only cloud command) is a recorder that answers like
Cloud Build."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.cicd.gitrepo import commit, git, write
from tests.conftest import REPO

WORKFLOW = os.path.join(REPO, ".github", "workflows", "retrain.yml")
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load():
    with open(WORKFLOW) as f:
        return yaml.safe_load(f)


def lookup(ctx, path):
    cur = ctx
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def evaluate(expr, ctx):
    """The expression forms the workflow uses: a context path, or ``path && 'a' || 'b'``."""
    m = re.fullmatch(r"([\w.-]+)\s*&&\s*'([^']*)'\s*\|\|\s*'([^']*)'", expr)
    if m:
        return m.group(2) if lookup(ctx, m.group(1)) else m.group(3)
    if re.fullmatch(r"[\w.-]+", expr):
        v = lookup(ctx, expr)
        return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    raise AssertionError(f"retrain.yml uses an expression this test cannot evaluate: {expr!r}")


def render(value, ctx):
    return _EXPR.sub(lambda m: evaluate(m.group(1), ctx), str(value))


def run_step(job_id, step_name, ctx, tmp, cwd, path_prefix):
    wf = load()
    job = wf["jobs"][job_id]
    step = next(s for s in job["steps"] if s.get("name") == step_name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TFPIPE_"))}
    env.update({k: render(v, ctx) for k, v in (wf.get("env") or {}).items()})
    env.update({k: render(v, ctx) for k, v in (job.get("env") or {}).items()})
    env.update({k: render(v, ctx) for k, v in (step.get("env") or {}).items()})
    out, summary = tmp / f"{step_name}.out", tmp / "summary.md"
    out.write_text("")
    env.update(GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary), RUNNER_TEMP=str(tmp),
               GITHUB_SHA=ctx["github"]["sha"], GITHUB_REF_NAME="main",
               PATH=path_prefix + os.pathsep + os.environ["PATH"])
    script = tmp / "step.sh"
    script.write_text(step["run"])
    p = subprocess.run(["bash", "--noprofile", "--norc", "-e", str(script)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    return p, outputs


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = tmp_path_factory.mktemp("wfrepo")
    git(r, "init", "-q", "-b", "main")
    shutil.copy(os.path.join(REPO, "tfpipe-ci.toml"), r / "tfpipe-ci.toml")
    write(r, "pipeline/graph.py", "X = 1\n")
    write(r, "examples/penguin/penguin_utils.py", "def run_fn(): pass\n")
    first = commit(r, "first")
    write(r, "examples/penguin/penguin_utils.py", "def run_fn(): return 1\n")
    write(r, "docs/a.md", "a\n")
    second = commit(r, "module + docs")
    return r, first, second


def ctx_for(event, sha, **extra):
    ctx = {"github": {"event_name": event, "sha": sha, "actor": "octocat", "event": {}}, "inputs": {},
           "vars": {}, "steps": {}, "needs": {}}
    for k, v in extra.items():
        ctx[k].update(v) if isinstance(v, dict) and k in ctx else ctx.__setitem__(k, v)
    return ctx


def plan(repo, tmp_path, ctx):
    r = repo[0]
    return run_step("plan", "Plan", ctx, tmp_path, r, os.path.dirname(sys.executable))


def test_push_plans_from_the_event_before_sha(repo, tmp_path):
    r, first, second = repo
    ctx = ctx_for("push", second, github={"event_name": "push", "sha": second, "actor": "octocat",
                                          "event": {"before": first, "head_commit": {"message": "x"}}})
    p, out = plan(repo, tmp_path, ctx)
    assert p.returncode == 0, p.stderr
    assert out["action"] == "modules_only"
    assert out["module_files"] == "examples/penguin/penguin_utils.py"
    assert out["why"] == f"tfpipe ci plan {first}..{second}"
    assert json.loads((tmp_path / "plan.json").read_text())["action"] == "modules_only"


def test_push_with_an_unknown_before_sha_plans_every_file(repo, tmp_path):
    r, first, second = repo
    ctx = ctx_for("push", second)
    ctx["github"]["event"] = {"before": "f" * 40}
    p, out = plan(repo, tmp_path, ctx)
    assert p.returncode == 0, p.stderr
    assert "::warning::base commit " + "f" * 40 in p.stdout
    assert out["action"] == "full_rebuild"  # pipeline/graph.py counts as added


def test_schedule_is_a_data_only_retrain_and_dispatch_can_force_an_action(repo, tmp_path):
    r, first, second = repo
    p, out = plan(repo, tmp_path, ctx_for("schedule", second))
    assert p.returncode == 0 and out["action"] == "data_only" and out["module_files"] == ""
    ctx = ctx_for("workflow_dispatch", second, inputs={"action": "full_rebuild", "base": "", "dry_run": True})
    p, out = plan(repo, tmp_path, ctx)
    assert out["action"] == "full_rebuild" and out["why"] == "requested by octocat through workflow_dispatch"
    ctx = ctx_for("workflow_dispatch", second, inputs={"action": "auto", "base": "", "dry_run": False})
    p, out = plan(repo, tmp_path, ctx)  # auto without a base: the parent of head
    assert out["action"] == "modules_only" and first in out["why"]


def test_summary_says_what_and_why_and_keeps_the_commit_message_out_of_the_script(repo, tmp_path):
    r, first, second = repo
    ctx = ctx_for("push", second)
    ctx["github"]["event"] = {"before": first, "head_commit": {"message": 'evil "$(touch pwned)" `id`\nmore'}}
    p, out = plan(repo, tmp_path, ctx)
    ctx["steps"] = {"plan": {"outputs": out}}
    p, _ = run_step("plan", "Summary of the plan", ctx, tmp_path, r, os.path.dirname(sys.executable))
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "summary.md").read_text()
    assert "## Retrain plan: `modules_only`" in text
    assert "examples/penguin/penguin_utils.py [new] -> modules_only by rule 'user-modules'" in text
    assert "upload the changed module files" in text
    assert '- commit: evil "$(touch pwned)" id' in text and not (r / "pwned").exists()


RECORDER = """#!{python}
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["builds", "submit"]:
    print("build-42")
elif sys.argv[1:3] == ["builds", "describe"]:
    print("SUCCESS")
"""


def parse_substitutions(arg):
    """gcloud's alternate-delimiter syntax: '^;^K=V;K2=V2'."""
    m = re.fullmatch(r"\^(.)\^(.*)", arg, re.S)
    assert m, arg
    return dict(kv.split("=", 1) for kv in m.group(2).split(m.group(1)))


@pytest.mark.parametrize("action,modules_only", [("modules_only", "true"), ("full_rebuild", "false")])
def test_cloud_build_step_submits_cloudbuild_yaml_with_declared_substitutions(tmp_path, action, modules_only):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "gcloud.jsonl"
    (bindir / "gcloud").write_text(RECORDER.format(python=sys.executable, log=str(log)))
    (bindir / "gcloud").chmod(0o755)
    sha = "a" * 40
    ctx = ctx_for("workflow_dispatch", sha, inputs={"dry_run": True},
                  vars={"GCP_PROJECT_ID": "my-proj", "GCP_REGION": "us-central1", "GCP_ARTIFACT_REPOSITORY": "ct",
                        "GCP_PIPELINE_ROOT": "gs://b/root",
                        "GCP_BUILD_SERVICE_ACCOUNT": "build@my-proj.iam.gserviceaccount.com",
                        "VERTEX_SERVICE_ACCOUNT": ""},
                  needs={"plan": {"outputs": {"action": action, "module_files": "a/x_utils.py b/y_utils.py"}}})
    p, out = run_step("cloud-build", "Submit the Cloud Build", ctx, tmp_path, tmp_path, str(bindir))
    assert p.returncode == 0, p.stderr
    assert out["build_id"] == "build-42"
    argv = json.loads(log.read_text().splitlines()[0])
    assert argv[:3] == ["builds", "submit", "."] and argv[argv.index("--config") + 1] == "cloudbuild.yaml"
    assert "--async" in argv and argv[argv.index("--gcs-source-staging-dir") + 1] == "gs://b/root/_cloudbuild_source"
    assert argv[argv.index("--service-account") + 1] == \
        "projects/my-proj/serviceAccounts/build@my-proj.iam.gserviceaccount.com"
    subs = parse_substitutions(argv[argv.index("--substitutions") + 1])
    assert subs["COMMIT_SHA"] == sha and subs["_MODULES_ONLY"] == modules_only and subs["_DRY_RUN"] == "true"
    assert subs["_MODULE_FILES"] == "a/x_utils.py b/y_utils.py"
    with open(os.path.join(REPO, "cloudbuild.yaml")) as f:
        declared = set(yaml.safe_load(f)["substitutions"])
    assert {k for k in subs if k.startswith("_")} <= declared
    assert "build-42" in (tmp_path / "summary.md").read_text()
    ctx["steps"] = {"build": {"outputs": out}}
    p, _ = run_step("cloud-build", "Wait for the build", ctx, tmp_path, tmp_path, str(bindir))
    assert p.returncode == 0, p.stderr
    assert "build succeeded" in (tmp_path / "summary.md").read_text()
