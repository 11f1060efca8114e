"""No secret in any compiled artifact: a MySQL-backed pipeline compiles for every target
with its password passed by reference, and nothing written contains the password; a
password written into the pipeline (or a URL) is refused with what to do instead."""
import json
import os

import pytest

from tests.conftest import tfpipe

PASSWORD = "s3cr3t-Pa55word-9Q"

PIPELINE = '''
from tfpipe import Output, Pipeline, String, component


@component
def hello(out: Output[String], message: str = "hi") -> None:
    out.write(message)


def create_pipeline():
    return Pipeline("mysqlbacked", [hello()], metadata=METADATA, settings=SETTINGS)
'''


def _file(tmp_path, metadata, settings=None):
    p = tmp_path / "pipe.py"
    p.write_text(PIPELINE.replace("METADATA", repr(metadata)).replace("SETTINGS", repr(settings or {})))
    return str(p)


def _all_text(path) -> str:
    out = []
    for d, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(d, f), errors="replace") as fh:
                out.append(fh.read())
    return "\n".join(out)


def test_every_target_compiles_a_mysql_pipeline_without_its_password(tmp_path):
    md = {"mysql": {"host": "127.0.0.1", "port": 3306, "database": "tfpipe", "user": "ml",
                    "password_env": "TFPIPE_TEST_DB_PASSWORD"}}
    src = _file(tmp_path, md)
    env = {"TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_TEST_DB_PASSWORD": PASSWORD,
           "TFPIPE_METADATA": "mysql://ml@127.0.0.1:3306/tfpipe?password_env=TFPIPE_TEST_DB_PASSWORD"}
    out = tmp_path / "out"
    out.mkdir()
    tfpipe("compile", src, "-o", str(out / "ir.json"), env=env, check=0)
    tfpipe("compile", src, "--target", "airflow", "-o", str(out / "dags"), env=env, check=0)
    tfpipe("compile", src, "--target", "kubeflow", "-o", str(out / "kfp.yaml"), env=env, check=0)
    k8s = _file(tmp_path, md, {"airflow_operator": "kubernetes", "image": "registry.example/tfpipe:1"})
    tfpipe("compile", k8s, "--target", "airflow", "-o", str(out / "dags-k8s"), env=env, check=0)
    p = tfpipe("submit", src, "--target", "vertex", "--project", "my-project", "--region", "us-central1",
               "--pipeline-root", "gs://bucket/root", "--dry-run", "-o", str(out / "vertex.yaml"), env=env, check=0)
    (out / "submit.json").write_text(p.stdout)
    text = _all_text(out)
    assert PASSWORD not in text
    assert "TFPIPE_TEST_DB_PASSWORD" in text  # the reference travels; the secret does not
    ir = json.loads((out / "ir.json").read_text())
    assert ir["pipeline"]["metadata"]["mysql"]["password_env"] == "TFPIPE_TEST_DB_PASSWORD"


@pytest.mark.parametrize("metadata, fragment", [
    ({"mysql": {"host": "127.0.0.1", "database": "tfpipe", "user": "ml", "password": PASSWORD}},
     "metadata: mysql.password holds a password inline"),
    (f"mysql://ml:{PASSWORD}@127.0.0.1:3306/tfpipe", "is a URL with a password in it"),
])
def test_a_password_written_into_the_pipeline_is_refused(tmp_path, metadata, fragment):
    p = tfpipe("compile", _file(tmp_path, metadata), env={"TFPIPE_HOME": str(tmp_path / "h")})
    assert p.returncode == 1
    assert fragment in p.stderr and "password_env" in p.stderr
    assert PASSWORD not in p.stderr + p.stdout


def test_a_secret_environment_variable_in_the_settings_is_refused(tmp_path):
    src = _file(tmp_path, None, {"env": {"DB_PASSWORD": PASSWORD}})
    p = tfpipe("compile", src, "--target", "kubeflow", "-o", str(tmp_path / "k.yaml"),
               env={"TFPIPE_HOME": str(tmp_path / "h")})
    assert p.returncode == 1 and "environment variable DB_PASSWORD" in p.stderr
    assert not (tmp_path / "k.yaml").exists()


def test_a_password_in_tfpipe_metadata_is_not_passed_on_to_compiled_tasks(tmp_path):
    src = _file(tmp_path, None, {"airflow_operator": "kubernetes"})
    env = {"TFPIPE_HOME": str(tmp_path / "h"), "TFPIPE_METADATA": f"mysql://ml:{PASSWORD}@db:3306/tfpipe"}
    for target, out in (("airflow", tmp_path / "dags"), ("kubeflow", tmp_path / "k.yaml")):
        p = tfpipe("compile", src, "--target", target, "-o", str(out), env=env)
        assert p.returncode == 1 and "URL with a password" in p.stderr, (target, p.stderr)
        assert PASSWORD not in p.stderr
        assert PASSWORD not in (_all_text(out) if out.is_dir() else (out.read_text() if out.exists() else ""))


def test_object_store_credentials_reach_no_compiled_output_nor_metadata(tmp_path, moto_s3):
    """The artifact root on S3, the credentials in the standard variables: every target
    compiles without them, and a run's metadata and artifacts hold neither the key id nor
    the secret (tasks read them from their own environment)."""
    secret, key_id = "tfpipe-Secret-Key-7Zq", "AKIATFPIPETESTKEY"
    env = {**moto_s3.env(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_SESSION_TOKEN": secret + "-token", "TFPIPE_HOME": str(tmp_path / "home")}
    src = tmp_path / "pipe.py"
    src.write_text(PIPELINE.replace("metadata=METADATA, settings=SETTINGS",
                                    f"root={moto_s3.bucket + '/root'!r}, metadata={str(tmp_path / 'md.sqlite')!r}"))
    out = tmp_path / "out"
    out.mkdir()
    tfpipe("compile", str(src), "-o", str(out / "ir.json"), env=env, check=0)
    tfpipe("compile", str(src), "--target", "airflow", "-o", str(out / "dags"), env=env, check=0)
    tfpipe("compile", str(src), "--target", "kubeflow", "-o", str(out / "kfp.yaml"), env=env, check=0)
    p = tfpipe("submit", str(src), "--target", "vertex", "--project", "my-project", "--region", "us-central1",
               "--pipeline-root", "gs://bucket/root", "--dry-run", "-o", str(out / "vertex.yaml"), env=env, check=0)
    (out / "submit.json").write_text(p.stdout)
    tfpipe("run", str(src), env=env, check=0)
    with open(tmp_path / "md.sqlite", "rb") as f:
        (out / "metadata.txt").write_bytes(f.read())
    from tests.conftest import scoped_env
    from tfpipe import fileio
    with scoped_env(**env):
        objects = fileio.list_files(moto_s3.bucket + "/root")
        assert any(k.startswith("hello/out/") for k in objects), objects  # the run wrote to the bucket
        text = _all_text(out) + "".join(fileio.read_bytes(f"{moto_s3.bucket}/root/{k}").decode("utf-8", "replace")
                                        for k in objects)
    assert secret not in text and key_id not in text
    assert moto_s3.bucket + "/root" in text  # the root travels; the credentials do not
