"""Artifacts, data and models on object storage, against real servers the tests start
(tests/object_store.py): the file-system layer's semantics on each (no directory markers,
existence by listing), pipelines in-process and forked with their root and data on S3 and
on GCS, a SIGKILL in the middle of publishing, and the store going down mid-run.

The orchestrator contract (tests/orchestrators/test_contract.py) runs the whole penguin
pipeline on SeaweedFS under every orchestrator; this file covers what is particular to
object stores."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import REPO, scoped_env, tfpipe

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")
DATA = os.path.join(REPO, "examples", "penguin", "data")

PIPELINE = '''
import os
import time

from tfpipe import Examples, Output, Pipeline, String, component


@component(name="Big")
def big(out: Output[Examples], files: int = 400, size: int = 262144) -> None:
    """Many objects to publish: an upload that takes a while."""
    os.makedirs(out.uri, exist_ok=True)
    block = os.urandom(size)
    for i in range(files):
        with open(os.path.join(out.uri, f"part-{i:05d}.bin"), "wb") as f:
            f.write(block)


@component(name="Slow")
def slow(out: Output[String], started: str = "", go: str = "") -> None:
    """Says it started, then waits for the go file."""
    open(started, "w").close()
    while not os.path.exists(go):
        time.sleep(0.05)
    out.write("done")


def create_pipeline(root: str = "", metadata: str = "", which: str = "big", started: str = "", go: str = ""):
    node = big() if which == "big" else slow(started=started, go=go)
    return Pipeline("objstore", [node], root=root, metadata=metadata)
'''


@pytest.fixture(params=["s3", "moto_s3", "gcs"])
def store(request, monkeypatch):
    server = request.getfixturevalue(request.param)
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    return server


def test_file_system_layer_on_each_store(store, tmp_path):
    from tfpipe import fileio
    base = f"{store.bucket}/fileio-{uuid.uuid4().hex[:8]}"
    fileio.makedirs(f"{base}/empty")  # no marker object: a prefix exists once an object is under it
    assert fileio.list_files(base) == {} and not fileio.exists(f"{base}/empty") and not fileio.isdir(base)
    fileio.write_text(f"{base}/a/one.txt", "1")
    fileio.write_bytes(f"{base}/a/sub/two.bin", b"22")
    assert fileio.isdir(f"{base}/a") and fileio.exists(f"{base}/a") and not fileio.isfile(f"{base}/a")
    assert fileio.isfile(f"{base}/a/one.txt") and not fileio.isdir(f"{base}/a/one.txt")
    assert not fileio.exists(f"{base}/a/on")  # the start of a name is not a folder
    assert fileio.list_files(base) == {"a/one.txt": 1, "a/sub/two.bin": 2}
    assert fileio.listdir(f"{base}/a") == ["one.txt", "sub"]
    assert fileio.glob(f"{base}/*/*.txt") == [f"{base}/a/one.txt"]
    assert fileio.glob(f"{base}/**.bin") == [f"{base}/a/sub/two.bin"]
    assert fileio.read_text(f"{base}/a/one.txt") == "1"
    with fileio.open_file(f"{base}/w.txt", "w") as f:
        f.write("héllo")
    assert fileio.read_bytes(f"{base}/w.txt") == "héllo".encode()
    local = tmp_path / "tree"
    (local / "x").mkdir(parents=True)
    (local / "x" / "f.txt").write_text("abc")
    assert fileio.upload_tree(str(local), f"{base}/up") == {"x/f.txt": 3}
    copy = fileio.local_copy(f"{base}/up", "v1")
    assert open(os.path.join(copy, "x", "f.txt")).read() == "abc"
    assert fileio.local_copy(f"{base}/up", "v1") == copy  # fetched once
    with pytest.raises(FileNotFoundError, match=r"bucket tfpipe-test, key fileio-\w+/nope"):
        fileio.read_bytes(f"{base}/nope")
    assert fileio.rmtree(base) == 4
    assert not fileio.exists(base) and fileio.list_files(base) == {}


def test_an_unreachable_store_is_named_without_credentials(monkeypatch):
    from tests.object_store import free_port
    from tfpipe import fileio
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTFPIPETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-shown-0f9a")
    with pytest.raises(fileio.StorageError) as e:
        fileio.read_bytes("s3://team-bucket/root/x.bin")
    msg = str(e.value)
    assert f"endpoint {endpoint}, bucket team-bucket, key root/x.bin" in msg
    assert "not-to-be-shown" not in msg and "AKIDTFPIPETEST" not in msg


def test_data_half_in_process_cached_and_explained_on_s3(moto_s3, tmp_path):
    """--parallel 1 (every node in the tfpipe process): data on S3, root on S3; the re-run
    and --explain take every node from the cache, reading nothing back from local disk."""
    from tfpipe import fileio
    env = {**moto_s3.env(), "TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_CACHE_DIR": str(tmp_path / "cache")}
    data, root = f"{moto_s3.bucket}/data/penguin", f"{moto_s3.bucket}/root"
    with scoped_env(**env):
        fileio.copy_tree(DATA, data)
    args = [PENGUIN, "-P", f"data_root={data}", "-P", f"root={root}", "--to", "ExampleValidator"]
    p = tfpipe("run", *args, "--parallel", "1", env=env, check=0)
    assert "COMPLETE" in p.stderr + p.stdout
    with scoped_env(**env):
        files = fileio.list_files(root)
    assert any(k.startswith("ExampleGen/examples/") and k.endswith(".parquet") for k in files), sorted(files)
    assert any(k.startswith("StatisticsGen/statistics/") and k.endswith("FeatureStats.pb") for k in files)
    assert not os.path.exists(os.path.join(tmp_path, "home", "artifacts"))
    plan = tfpipe("run", *args, "--explain", env=env, check=0)
    assert "4 cached, 0 to run" in plan.stdout and plan.stdout.count(" cached   from execution") == 4, plan.stdout
    again = tfpipe("run", *args, "--parallel", "1", env=env, check=0)
    assert (again.stdout + again.stderr).count("cached in") == 4, again.stderr
    assert os.listdir(tmp_path / "cache" / "staging") == [] or not any(
        os.listdir(os.path.join(tmp_path, "cache", "staging", d)) for d in os.listdir(tmp_path / "cache" / "staging"))


def test_data_half_forked_from_the_task_host_on_gcs(gcs, tmp_path):
    from tfpipe import fileio
    env = {**gcs.env(), "TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_CACHE_DIR": str(tmp_path / "cache")}
    data, root = f"{gcs.bucket}/data/penguin", f"{gcs.bucket}/root"
    with scoped_env(**env):
        fileio.copy_tree(DATA, data)
    tfpipe("run", PENGUIN, "-P", f"data_root={data}", "-P", f"root={root}", "--to", "ExampleValidator",
           "--parallel", "2", env=env, check=0)
    with scoped_env(**env):
        files = fileio.list_files(root)
    assert any(k.startswith("SchemaGen/schema/") and k.endswith("schema.pbtxt") for k in files), sorted(files)


def _store(metadata):
    from tfpipe.metadata import MetadataStore
    return MetadataStore(metadata)


def test_sigkill_while_publishing_leaves_nothing_live(s3, tmp_path):
    """Killed while its output is being uploaded (some objects there, not all): nothing is
    LIVE, and the next command's recovery removes the objects and the local staging."""
    from tfpipe import fileio
    src = tmp_path / "pipe.py"
    src.write_text(PIPELINE)
    root, md = f"{s3.bucket}/kill-{uuid.uuid4().hex[:8]}", str(tmp_path / "md.sqlite")
    env = {**os.environ, **s3.env(), "TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": REPO}
    proc = subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", str(src), "-P", f"root={root}",
                             "-P", f"metadata={md}", "--parallel", "1", "--run-id", "k-1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    seen, deadline = {}, time.monotonic() + 120
    with scoped_env(**s3.env()):
        while time.monotonic() < deadline and proc.poll() is None:
            seen = fileio.list_files(f"{root}/Big/out")
            if seen:
                break
            time.sleep(0.02)
        assert seen and proc.poll() is None, "the upload was not caught in progress"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert 0 < len(fileio.list_files(f"{root}/Big/out")) < 400  # cut off mid-publish
    store = _store(md)
    e = store.find_executions("last_known_state = RUNNING")[0]
    assert [a.state for arts in store.io_of(e.id)[1].values() for a in arts] == ["PENDING"]
    p = tfpipe("runs", "list", "--metadata", md, env={**s3.env(), "TFPIPE_CACHE_DIR": str(tmp_path / "cache")},
               check=0)
    assert "recovered after a killed process: run k-1 marked FAILED" in p.stdout + p.stderr
    store = _store(md)
    outs = store.io_of(e.id)[1]
    assert [a.state for arts in outs.values() for a in arts] == ["ABANDONED"]
    with scoped_env(**s3.env()):
        assert fileio.list_files(f"{root}/Big/out") == {}
    staging = tmp_path / "cache" / "staging"
    assert not any(os.listdir(staging / d) for d in os.listdir(staging))


def test_the_store_going_down_mid_run_fails_the_node_naming_it(moto_s3, tmp_path):
    src = tmp_path / "pipe.py"
    src.write_text(PIPELINE)
    root, md = f"{moto_s3.bucket}/down", str(tmp_path / "md.sqlite")
    started, go = tmp_path / "started", tmp_path / "go"
    env = {**os.environ, **moto_s3.env(), "TFPIPE_HOME": str(tmp_path / "home"), "PYTHONPATH": REPO,
           "TFPIPE_CACHE_DIR": str(tmp_path / "cache"), "AWS_MAX_ATTEMPTS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", str(src), "-P", f"root={root}",
                             "-P", f"metadata={md}", "-P", "which=slow", "-P", f"started={started}", "-P", f"go={go}",
                             "--parallel", "1", "--run-id", "down-1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert started.exists(), proc.communicate()
    moto_s3.stop()
    go.touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, (out, err)
    store = _store(md)
    (e,) = [x for x in store.find_executions("last_known_state = FAILED")]
    error = store.props(e)["error"]
    assert f"endpoint {moto_s3.endpoint}" in error and "bucket tfpipe-test" in error and "key down/Slow/out/" in error
    assert [a.state for arts in store.io_of(e.id)[1].values() for a in arts] == ["ABANDONED"]
    assert "Traceback" not in err



def test_penguin_on_s3_served_logged_and_monitored(s3, tmp_path):
    """Everything on the S3 server: the penguin pipeline pushes a model to the bucket, the
    registry writes models.config there, `tfpipe serve` serves the production version from
    the bucket, logs requests under a prefix on it, and `tfpipe monitor --requests` reads
    that log (unshifted traffic: no alarm)."""
    import csv
    import json

    from tfpipe import fileio
    from tfpipe.serving.client import ServerProcess
    base = f"{s3.bucket}/served-{uuid.uuid4().hex[:8]}"
    md = str(tmp_path / "md.sqlite")
    env = {**s3.env(), "TFPIPE_HOME": str(tmp_path / "home"), "TFPIPE_CACHE_DIR": str(tmp_path / "cache")}
    with scoped_env(**env):
        fileio.copy_tree(DATA, f"{base}/data")
    tfpipe("run", PENGUIN, "-P", f"data_root={base}/data", "-P", f"root={base}/root", "-P", f"metadata={md}",
           "-P", "train_steps=100", env=env, check=0)
    rows = json.loads(tfpipe("models", "list", "--metadata", md, "--json", env=env, check=0).stdout)
    (version,) = [r["version"] for r in rows]
    tfpipe("models", "alias", "set", "penguin@production", version, "--metadata", md, env=env, check=0)
    with scoped_env(**env):
        config = fileio.read_text(f"{base}/root/serving_model/models.config")
        assert f'base_path: "{base}/root/serving_model"' in config and "production" in config
        assert fileio.read_text(f"{base}/root/serving_model/serving").strip() == version
    log = f"{base}/requests"
    srv = ServerProcess.start(["--metadata", md, "--poll", "0.1", "--log-requests", log, "--sample-rate", "1.0"],
                              command=[sys.executable, "-m", "tfpipe.cli", "serve"], env={**env, "PYTHONPATH": REPO})
    try:
        instances = []
        for r in csv.DictReader(open(os.path.join(DATA, "penguins.csv"))):
            inst = {}
            for k in ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"):
                v = r[k]
                inst[k] = None if v in ("", "NA") else (
                    v if k in ("island", "sex") else
                    (int(float(v)) if k in ("flipper_length_mm", "body_mass_g", "year") else float(v)))
            instances.append(inst)
        status, body = srv.request("POST", "/v1/models/penguin/labels/production:predict", {"instances": instances})
        assert status == 200 and len(body["predictions"]) == len(instances), body
        status, body = srv.request("GET", "/v1/models/penguin")
        assert [v["version"] for v in body["model_version_status"] if v["state"] == "AVAILABLE"] == [version]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = srv.request("GET", "/healthz")[1]["request_log"]
            if stats["queued"] == 0 and stats["written"] >= len(instances):
                break
            time.sleep(0.1)
        assert stats["written"] >= len(instances) and stats["errors"] == 0, stats
    finally:
        srv.stop()
    with scoped_env(**env):
        parts = [k for k in fileio.list_files(log) if k.endswith(".parquet")]
    assert parts and all(k.startswith("day=") for k in parts), parts
    p = tfpipe("monitor", "--requests", log, "--model", "penguin", "--metadata", md, "--json", env=env)
    res = json.loads(p.stdout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["num_examples"] >= len(instances) and res["data"] == log
