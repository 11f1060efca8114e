"""Run cloudbuild.yaml's steps locally, in order, read from the YAML itself.

Cloud Build's substitution rules are applied to the file as written (``$$`` is a literal
``$``; ``$NAME`` / ``${NAME}`` are built-in or ``_USER`` substitutions, dynamic substitutions
resolved in their values). Only the steps whose builder needs the cloud are neutralised,
chosen explicitly by builder name: the docker builder and the Cloud SDK builder run their
own scripts with ``docker`` / ``gcloud`` / ``gsutil`` replaced by recorders. The steps that run
in the pipeline image (``tfpipe compile``, ``tfpipe submit``) run for real, with
``_DRY_RUN=true`` so the submit validates and prints the Vertex AI job without a network.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tfpipe.tracking.ci_plan import make_plan

CLOUDBUILD = os.path.join(REPO, "cloudbuild.yaml")
SHA = "0123456789abcdef0123456789abcdef01234567"
BUILTINS = {"PROJECT_ID": "test-project", "COMMIT_SHA": SHA, "BUILD_ID": "test-build-1",
            "LOCATION": "us-central1", "PROJECT_NUMBER": "123456789012"}
TEST_SUBS = {"_REGION": "europe-west4", "_REPOSITORY": "ct-repo", "_DRY_RUN": "true",
             "_PIPELINE_ROOT": "gs://test-bucket/root", "_METADATA": "",
             "_SERVICE_ACCOUNT": "runner@test-project.iam.gserviceaccount.com"}
IMAGE = f"europe-west4-docker.pkg.dev/test-project/ct-repo/tfpipe:{SHA}"
# Builders that need the cloud, by name (tag stripped), and the commands they provide.
CLOUD_BUILDERS = {"gcr.io/cloud-builders/docker": ("docker",),
                  "gcr.io/google.com/cloudsdktool/cloud-sdk": ("gcloud", "gsutil")}
DEFAULT_ENTRYPOINT = {"gcr.io/cloud-builders/docker": "docker"}
_SUB = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class CloudBuildFileError(AssertionError):
    pass


def substitute(text: str, subs: dict, where: str) -> str:
    """Cloud Build substitution; an unknown name or a bare ``$`` fails (cloud build would
    reject or silently blank it)."""
    out, i = [], 0
    for m in _SUB.finditer(text):
        out.append(text[i:m.start()])
        if m.group(1):
            out.append("$")
        else:
            name = m.group(2) or m.group(3)
            if name not in subs:
                raise CloudBuildFileError(f"{where}: ${name} is neither a built-in nor a declared substitution "
                                          f"(write $${name} for a shell variable)")
            out.append(subs[name])
        i = m.end()
    rest = text[i:]
    out.append(rest)
    stray = [j for j in range(len(text))
             if text[j] == "$" and not any(m.start() <= j < m.end() for m in _SUB.finditer(text))]
    if stray:
        raise CloudBuildFileError(f"{where}: bare '$' at offset {stray[0]}: "
                                  f"{text[max(0, stray[0] - 20):stray[0] + 20]!r}")
    return "".join(out)


def resolve_substitutions(doc: dict, overrides: dict) -> dict:
    subs = dict(BUILTINS)
    user = {k: str(v) for k, v in (doc.get("substitutions") or {}).items()}
    unknown = set(overrides) - set(user)
    assert not unknown, f"test passes substitutions cloudbuild.yaml does not declare: {unknown}"
    user.update(overrides)
    assert doc.get("options", {}).get("dynamicSubstitutions") is True or not any("$" in v for v in user.values())
    for _ in range(5):  # dynamic substitutions may refer to each other
        subs.update(user)
        user = {k: substitute(v, subs, f"substitutions.{k}") for k, v in user.items()}
    subs.update(user)
    return subs


def write_recorders(bin_dir, log):
    bin_dir.mkdir()
    for cmd in ("docker", "gcloud", "gsutil"):
        p = bin_dir / cmd
        p.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                     f"with open({str(log)!r}, 'a') as f:\n"
                     f"    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n")
        p.chmod(0o755)


def run_cloudbuild(tmp_path, overrides):
    """Run every step of cloudbuild.yaml in order in a copy of the repository; returns
    (steps run [(id, kind, CompletedProcess)], recorded cloud commands, workspace)."""
    with open(CLOUDBUILD) as f:
        doc = yaml.safe_load(f)
    # /workspace (the uploaded source) and the repository as the pipeline image holds it
    work, image_src = tmp_path / "workspace", tmp_path / "image-src"
    subs = resolve_substitutions(doc, {**overrides, "_IMAGE_SOURCE_DIR": str(image_src)})
    for rel in subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True, text=True,
                              check=True).stdout.split("\0"):
        src = os.path.join(REPO, rel)
        if rel and os.path.isfile(src):
            for root in (work, image_src):
                os.makedirs(root / os.path.dirname(rel), exist_ok=True)
                shutil.copy2(src, root / rel)
    log = tmp_path / "cloud-commands.jsonl"
    log.touch()
    recorders = tmp_path / "recorders"
    write_recorders(recorders, log)
    venv_bin = os.path.dirname(sys.executable)
    ran = []
    for n, step in enumerate(doc["steps"]):
        sid = step.get("id", f"step-{n}")
        where = f"cloudbuild.yaml steps[{n}] ({sid})"
        name = substitute(step["name"], subs, where + ".name")
        builder = name.split("@")[0]
        builder = builder.rsplit(":", 1)[0] if ":" in builder.rsplit("/", 1)[-1] else builder
        entry = step.get("entrypoint") or DEFAULT_ENTRYPOINT.get(builder)
        assert entry, f"{where}: no entrypoint and builder {builder} has no known default"
        argv = [substitute(entry, subs, where)] + [substitute(str(a), subs, where) for a in step.get("args", [])]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TFPIPE_", "GOOGLE_", "CLOUDSDK_"))}
        for kv in step.get("env", []):
            k, _, v = substitute(kv, subs, where + ".env").partition("=")
            env[k] = v
        if builder in CLOUD_BUILDERS:
            kind = "neutralised"
            env["PATH"] = str(recorders) + os.pathsep + env["PATH"]
        elif name == IMAGE:
            kind = "real"
            env["PATH"] = venv_bin + os.pathsep + env["PATH"]
            env["PYTHONPATH"] = REPO
        else:
            raise CloudBuildFileError(f"{where}: builder {name!r} is neither a cloud builder the test "
                                      f"neutralises ({sorted(CLOUD_BUILDERS)}) nor the pipeline image {IMAGE}")
        cwd = work / substitute(step.get("dir", ""), subs, where)
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        ran.append((sid, kind, p))
        assert p.returncode == 0, (f"{where} exited {p.returncode}\n$ {' '.join(argv)}\n"
                                   f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    for rel in (doc.get("artifacts") or {}).get("objects", {}).get("paths", []):
        assert (work / rel).is_file(), f"cloudbuild.yaml artifacts.objects.paths: no {rel} after the steps"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return ran, calls, work


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return run_cloudbuild(tmp_path_factory.mktemp("full"), {**TEST_SUBS, "_MODULES_ONLY": "false"})


@pytest.fixture(scope="module")
def module_files():
    files = make_plan(REPO, "", "HEAD").module_files()
    assert files, "the repository has no user module file matching tfpipe-ci.toml's modules_only rule"
    return files


@pytest.fixture(scope="module")
def modules_only(tmp_path_factory, module_files):
    return run_cloudbuild(tmp_path_factory.mktemp("modules"),
                          {**TEST_SUBS, "_MODULES_ONLY": "true", "_MODULE_FILES": " ".join(module_files)})


def _submit_json(ran):
    p = dict((sid, p) for sid, _, p in ran)["submit"]
    return json.loads(p.stdout)


def test_steps_run_in_order_and_only_cloud_builders_are_neutralised(full):
    ran, calls, _ = full
    kinds = [(sid, kind) for sid, kind, _ in ran]
    assert [k for _, k in kinds].count("real") >= 2
    assert ("compile", "real") in kinds and ("submit", "real") in kinds
    assert [sid for sid, _ in kinds].index("compile") < [sid for sid, _ in kinds].index("submit")


def test_full_build_builds_and_pushes_the_image_tagged_with_the_commit(full):
    ran, calls, _ = full
    docker = [c for c in calls if c[0] == "docker"]
    build = next(c for c in docker if c[1] == "build")
    assert os.path.isfile(full[2] / "Dockerfile")  # the build context "." has one
    assert IMAGE in build and build[-1] == "."
    assert ["docker", "push", IMAGE] in docker
    assert [c for c in calls if c[0] in ("gcloud", "gsutil")] == []  # no module upload, no re-tag


def test_compile_writes_a_kfp_spec_running_the_commit_image(full):
    ran, calls, work = full
    with open(work / "pipeline.yaml") as f:
        spec = yaml.safe_load(f)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    assert spec["pipelineInfo"]["name"]
    text = open(work / "pipeline.yaml").read()
    assert "/gcs/test-bucket/root/tfpipe" in text
    # paths recorded in the IR point into the image's copy, never into the build workspace
    assert str(work.parent / "image-src") in text and str(work) not in text


def test_image_source_dir_is_the_dockerfile_workdir():
    with open(CLOUDBUILD) as f:
        default = yaml.safe_load(f)["substitutions"]["_IMAGE_SOURCE_DIR"]
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", open(os.path.join(REPO, "Dockerfile")).read(), re.M)
    assert workdirs and workdirs[-1] == default
    assert re.search(r"^COPY examples/", open(os.path.join(REPO, "Dockerfile")).read(), re.M)


def test_submit_dry_run_prints_the_vertex_job(full):
    job = _submit_json(full[0])
    assert job["dry_run"] is True and job["target"] == "vertex"
    assert job["project"] == "test-project" and job["region"] == "europe-west4"
    assert job["pipeline_root"] == "gs://test-bucket/root"
    assert job["service_account"] == "runner@test-project.iam.gserviceaccount.com"
    assert job["images"] == [IMAGE]
    assert job["display_name"] == "tfpipe-continuous-training"
    assert job["runtime_config"]["gcsOutputDirectory"] == "gs://test-bucket/root"
    assert "job" not in job  # nothing was created
    assert job["parameters"] == {}  # a full build runs the modules baked into the image


def test_modules_only_skips_the_build_retags_uploads_and_resubmits(modules_only, module_files):
    ran, calls, _ = modules_only
    assert [c for c in calls if c[0] == "docker"] == []
    base = IMAGE.rsplit(":", 1)[0]
    assert ["gcloud", "artifacts", "docker", "tags", "add", f"{base}:latest", IMAGE] in calls
    uploads = [c for c in calls if c[:3] == ["gcloud", "storage", "cp"]]
    assert uploads == [["gcloud", "storage", "cp", f, f"gs://test-bucket/root/modules/{SHA}/{f}"]
                       for f in module_files]
    job = _submit_json(ran)
    assert job["dry_run"] is True and job["images"] == [IMAGE]
    # the resubmitted job reads the uploaded modules (Cloud Storage FUSE path), not the image's
    root = f"/gcs/test-bucket/root/modules/{SHA}/"
    params = job["parameters"]
    assert params["Trainer__module_file"] == root + "examples/penguin/penguin_utils.py"
    assert params["Transform__module_file"] == root + "examples/penguin/penguin_transform.py"
    assert all(k.endswith("__module_file") and v[len(root):] in module_files for k, v in params.items())


def test_a_module_file_missing_from_the_source_fails_the_upload(tmp_path):
    with pytest.raises(AssertionError, match=r"upload-modules.*exited 1(.|\n)*not in the source"):
        run_cloudbuild(tmp_path, {**TEST_SUBS, "_MODULES_ONLY": "true", "_MODULE_FILES": "examples/nope_utils.py"})


def test_substitution_rules_catch_drift():
    subs = {"_A": "a", "PROJECT_ID": "p"}
    assert substitute("x${_A}-$PROJECT_ID-$${HOME}-$$f", subs, "t") == "xa-p-${HOME}-$f"
    with pytest.raises(CloudBuildFileError, match=r"\$_TYPO is neither"):
        substitute("echo ${_TYPO}", subs, "t")
    with pytest.raises(CloudBuildFileError, match="bare"):
        substitute('for f in x; do echo "$ f"; done', subs, "t")
