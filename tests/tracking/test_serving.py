"""The loop closed on real penguin models: `tfpipe serve` (a subprocess on a free loopback
port) answers TF Serving REST requests in both formats, follows promote/rollback under
concurrent load without a failed request, logs requests, and `tfpipe monitor --requests`
flags a shifted feature and passes unshifted traffic. The registry's aliases reach
models.config (parsed with TF Serving's own protos) and MLflow, where
`mlflow.pyfunc.load_model("models:/NAME@production")` predicts."""
import csv
import datetime as dt
import json
import os
import sys
import threading
import time

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.conftest import own_registry
from tfpipe.metadata import MetadataStore
from tfpipe.serving.client import ServerProcess
from tfpipe.tracking.registry import Registry

PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")
MODEL = "penguin_tracking"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def _rows(shift: bool = False) -> list[dict]:
    """The penguin table as JSON instances (NA -> null); ``shift``: every penguin on Dream, 60 % heavier."""
    out = []
    for r in csv.DictReader(open(PENGUINS)):
        row = {}
        for k in FEATURES:
            v = r[k]
            if v in ("", "NA"):
                row[k] = None
            elif k in ("island", "sex"):
                row[k] = v
            elif k in ("flipper_length_mm", "body_mass_g", "year"):
                row[k] = int(float(v))
            else:
                row[k] = float(v)
        if shift:
            row["island"] = "Dream"
            row["body_mass_g"] = int(row["body_mass_g"] * 1.6) if row["body_mass_g"] else None
        out.append(row)
    return out


@pytest.fixture(scope="module")
def penguin(penguin, tmp_path_factory):
    """This module's own registry (promotions, aliases, models.config): the session's is
    shared with test_registry.py, which expects versions nobody promoted yet."""
    return own_registry(penguin, tmp_path_factory.mktemp("serving_registry"))


def _ensure(md, alias, version):
    held = Registry(MetadataStore(md)).aliases(MODEL)
    if alias not in held or held[alias]["version"] != version:
        tfpipe("models", "alias", "set", f"{MODEL}@{alias}", version, "--metadata", md, check=0)


@pytest.fixture(scope="module")
def versions(penguin):
    rows = Registry(MetadataStore(penguin.metadata)).list_versions(MODEL)
    v1, v2 = (r["version"] for r in rows)
    _ensure(penguin.metadata, "production", v1)
    return v1, v2


@pytest.fixture(scope="module")
def server(penguin, versions, tmp_path_factory):
    log = tmp_path_factory.mktemp("requestlog") / "log"
    exe = [sys.executable, "-m", "tfpipe.cli", "serve"]
    srv = ServerProcess.start(["--metadata", penguin.metadata, "--poll", "0.1", "--log-requests", str(log),
                               "--sample-rate", "1.0", "--max-instances", "1000"], command=exe,
                              env={"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    srv.log_dir = str(log)
    yield srv
    srv.stop()


def _label_version(srv, label):
    status, body = srv.request("GET", f"/v1/models/{MODEL}/labels/{label}")
    return body["model_version_status"][0]["version"] if status == 200 else None


def test_models_config_follows_aliases_and_parses_with_tf_serving_protos(penguin, versions):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    v1, v2 = versions
    md = penguin.metadata
    _ensure(md, "staging", v2)
    tfpipe("models", "alias", "set", f"{MODEL}@canary", v2, "--reason", "10% traffic", "--metadata", md, check=0)
    cfg = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(open(os.path.join(penguin.push, "models.config")).read(), cfg)
    [c] = cfg.model_config_list.config
    assert c.name == MODEL and c.base_path == penguin.push and c.model_platform == "tensorflow"
    assert set(c.model_version_policy.specific.versions) >= {int(v1), int(v2)}
    assert dict(c.version_labels) == {"production": int(v1), "staging": int(v2), "canary": int(v2)}
    # a delete is recorded with who and why, and leaves the file
    p = tfpipe("models", "alias", "delete", f"{MODEL}@canary", "--reason", "done", "--metadata", md,
               env={"TFPIPE_USER": "dora"}, check=0)
    assert f"{MODEL}@canary deleted (was version {v2}) by dora" in p.stdout
    text_format.Parse(open(os.path.join(penguin.push, "models.config")).read(), cfg := type(cfg)())
    assert "canary" not in dict(cfg.model_config_list.config[0].version_labels)
    last = Registry(MetadataStore(md)).transitions(MODEL)[-1]
    assert (last["kind"], last["alias"], last["user"], last["reason"]) == ("alias-delete", "canary", "dora", "done")
    # production is a stack, not deletable; bad names are refused before anything is recorded
    n = len(Registry(MetadataStore(md)).transitions(MODEL))
    p = tfpipe("models", "alias", "delete", f"{MODEL}@production", "--metadata", md)
    assert p.returncode == 1 and "production is a stack" in p.stderr
    p = tfpipe("models", "alias", "set", f"{MODEL}@latest", v1, "--metadata", md)
    assert p.returncode == 2 and "reserved by MLflow" in p.stderr
    p = tfpipe("models", "alias", "set", "no-at-sign", v1, "--metadata", md)
    assert p.returncode == 2 and "expected NAME@ALIAS" in p.stderr
    assert len(Registry(MetadataStore(md)).transitions(MODEL)) == n


def test_both_request_formats_classify_and_errors(server, versions):
    v1, v2 = versions
    rows = _rows()[:3]
    status, body = server.request("GET", f"/v1/models/{MODEL}")
    assert status == 200
    states = {s["version"]: s["state"] for s in body["model_version_status"]}
    assert states.get(v1) == "AVAILABLE" and states.get(v2) == "AVAILABLE"
    status, meta = server.request("GET", f"/v1/models/{MODEL}/metadata")
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["examples"]["dtype"] == "DT_STRING" and meta["model_spec"]["version"] == v1
    status, row = server.request("POST", f"/v1/models/{MODEL}:predict", {"instances": rows})
    assert status == 200 and len(row["predictions"]) == 3
    assert all(abs(sum(p) - 1) < 1e-4 and len(p) == 3 for p in row["predictions"])
    columns = {k: [r[k] for r in rows] for k in FEATURES}
    status, col = server.request("POST", f"/v1/models/{MODEL}/labels/production:predict", {"inputs": columns})
    import numpy as np
    assert status == 200 and np.allclose(col["outputs"], row["predictions"], atol=1e-6)
    status, by_version = server.request("POST", f"/v1/models/{MODEL}/versions/{v2}:predict", {"instances": rows})
    assert status == 200 and not np.allclose(by_version["predictions"], row["predictions"])  # another model
    status, cls = server.request("POST", f"/v1/models/{MODEL}:classify",
                                 {"examples": [{k: v for k, v in r.items() if k != "year"} for r in rows],
                                  "context": {"year": 2007}})
    assert status == 200 and {c[0] for c in cls["results"][0]} == {"Adelie", "Gentoo", "Chinstrap"}
    # errors: TF Serving's {"error": ...}, naming the field and what was expected
    bad = dict(rows[0], island=3)
    status, err = server.request("POST", f"/v1/models/{MODEL}:predict", {"instances": [rows[1], bad]})
    assert status == 400 and err["error"].startswith("instances[1].island: expected a string")
    status, err = server.request("POST", f"/v1/models/{MODEL}:predict",
                                 {"instances": [{k: v for k, v in rows[0].items() if k != "sex"}]})
    assert status == 400 and "missing feature(s) ['sex']" in err["error"]
    status, err = server.request("POST", f"/v1/models/{MODEL}:predict", {"inputs": {"island": ["Dream"],
                                                                                    "sex": []}})
    assert status == 400 and "lengths differ" in err["error"]
    status, err = server.request("POST", f"/v1/models/{MODEL}:regress", {"examples": rows})
    assert status == 400 and "use :classify or :predict" in err["error"]
    for path in ("/v1/models/nope:predict", f"/v1/models/{MODEL}/versions/7:predict",
                 f"/v1/models/{MODEL}/labels/nope:predict"):
        status, err = server.request("POST", path, {"instances": rows})
        assert status == 404 and "error" in err, path
    status, health = server.request("GET", "/healthz")
    assert status == 200 and health["models"][MODEL]["labels"]["production"] == int(v1)
    # `tfpipe serve` takes the server's limits; answers name the version that answered
    status, err = server.request("POST", f"/v1/models/{MODEL}:predict", {"instances": rows[:1] * 1001})
    assert status == 413 and "1001 examples" in err["error"] and "--max-instances" in err["error"]
    import http.client
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.request("POST", f"/v1/models/{MODEL}:predict", body=json.dumps({"instances": rows[:1]}).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200 and resp.getheader("X-Model-Name") == MODEL and resp.getheader("X-Model-Version") == v1


def test_promote_and_rollback_under_load_fail_no_request(server, penguin, versions):
    v1, v2 = versions
    md = penguin.metadata
    rows = _rows()
    stop, results, lock = threading.Event(), [], threading.Lock()

    def client(i):
        k = 0
        while not stop.is_set():
            batch = [rows[(i * 37 + k + j) % len(rows)] for j in range(3)]
            body = ({"instances": batch} if k % 2 else {"inputs": {f: [r[f] for r in batch] for f in FEATURES}})
            try:
                status, out = server.request("POST", f"/v1/models/{MODEL}:predict", body, timeout=30)
            except OSError as e:
                status, out = -1, {"error": str(e)}
            with lock:
                results.append((status, out.get("error")))
            k += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for cycle in range(3):
            tfpipe("models", "promote", v2, "--stage", "production", "--reason", f"cycle {cycle}", "--metadata", md,
                   check=0)
            _wait(lambda: _label_version(server, "production") == v2)
            tfpipe("models", "rollback", "--reason", f"cycle {cycle}", "--metadata", md, check=0)
            _wait(lambda: _label_version(server, "production") == v1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [r for r in results if r[0] != 200]
    assert len(results) > 20 and failed == [], failed[:3]


def _wait(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the server did not follow the registry"
        time.sleep(0.05)


def _monitor(md, log, *extra):
    return tfpipe("monitor", "--requests", log, "--model", MODEL, "--metadata", md, "--json", *extra)


def test_request_log_and_monitor_flags_shift(server, penguin, versions, tmp_path):
    """The load above was logged; then one request of shifted penguins goes to a fresh log
    whose previous window holds the unshifted rows."""
    from tfpipe.serving.request_log import ParquetSink, RequestLog
    md = penguin.metadata
    status, out = server.request("POST", f"/v1/models/{MODEL}:predict", {"instances": _rows()})
    assert status == 200
    _wait(lambda: server.request("GET", "/healthz")[1]["request_log"]["queued"] == 0)
    _wait(lambda: (lambda s: s["written"] == s["offered"] - s["dropped"])(server.request("GET", "/healthz")[1]
                                                                           ["request_log"]))
    stats = server.request("GET", "/healthz")[1]["request_log"]
    assert stats["written"] >= 344 and stats["errors"] == 0
    days = [d for d in os.listdir(server.log_dir) if d.startswith("day=")]
    assert days == [f"day={dt.datetime.now(dt.timezone.utc):%Y-%m-%d}"]
    import pyarrow.parquet as pq
    t = pq.read_table(os.path.join(server.log_dir, days[0]))
    assert {"time", "model", "version", "label", "features", "response"} <= set(t.column_names)
    assert set(t.column("model").to_pylist()) == {MODEL}
    assert "species" not in [f.name for f in t.schema.field("features").type]
    assert len(json.loads(t.column("response")[0].as_py())) == 3
    # unshifted traffic: no skew; nothing logged before it, so drift is not measured
    p = _monitor(md, server.log_dir)
    res = json.loads(p.stdout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["label"] == "species" and "species" not in {r["feature"] for r in res["features"]}
    assert not res["drift_measured"] and res["num_examples"] >= 344
    # shifted traffic in another log, the unshifted rows a day earlier as its previous window
    log = str(tmp_path / "shifted")
    rl = RequestLog(ParquetSink(log))
    spec = _spec(penguin)
    day_ago = time.time() - 86400 - 3600
    rl.offer(model=MODEL, version=1, label="production", signature="serving_default", spec=spec,
             rows=[{k: ([v] if v is not None else None) for k, v in r.items()} for r in _rows()], records=[],
             outputs=[[1, 0, 0]] * 344, when=day_ago)
    rl.close()
    with ServerProcess.start(["--model-dir", os.path.join(penguin.push, versions[0]), "--model-name", MODEL,
                              "--log-requests", log]) as shifted:
        assert shifted.request("POST", f"/v1/models/{MODEL}:predict", {"instances": _rows(shift=True)})[0] == 200
    p = _monitor(md, log, "--threshold", "bill_length_mm=0.9")
    res = json.loads(p.stdout)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    rows = {r["feature"]: r for r in res["features"]}
    assert {"island", "body_mass_g"} <= set(res["exceeded"]) and "bill_length_mm" not in res["exceeded"]
    assert res["drift_measured"] and res["previous_examples"] == 344
    assert rows["island"]["skew"]["exceeded"] and rows["island"]["drift"]["exceeded"]
    assert rows["island"]["skew"]["comparator"] == "L_INFTY"
    assert rows["body_mass_g"]["drift"]["comparator"] == "JENSEN_SHANNON_DIVERGENCE"
    # skew (vs training) and drift (vs the day before) are different measurements
    assert rows["bill_depth_mm"]["skew"]["value"] != rows["bill_depth_mm"]["drift"]["value"]
    # a window with nothing logged is bad input (exit 2), not "retrain"
    p = _monitor(md, str(tmp_path / "nothing"))
    assert p.returncode == 2 and "no request log there" in p.stderr


def _spec(penguin):
    from tfpipe.serving.features import read_model_info
    v = sorted(d for d in os.listdir(penguin.push) if d.isdigit())[0]
    return read_model_info(os.path.join(penguin.push, v)).parse_specs["serving_default"]


def test_mlflow_aliases_and_pyfunc_load(penguin, versions, tmp_path, monkeypatch):
    import numpy as np
    from mlflow.tracking import MlflowClient
    v1, v2 = versions
    md = penguin.metadata
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for run in penguin.runs:
        p = tfpipe("mlflow", "export", run, "--mlflow-uri", uri, "--metadata", md, "--json", check=0)
        assert json.loads(p.stdout)["registered_model"] == MODEL, p.stdout + p.stderr[-2000:]
    tfpipe("models", "promote", v2, "--stage", "production", "--reason", "mirror", "--mlflow-uri", uri,
           "--metadata", md, check=0)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias(MODEL, "production")
    assert mv.tags["tfpipe.pushed_version"] == v2
    assert set(client.get_registered_model(MODEL).aliases) == {"production"}  # staging went with the promotion
    import mlflow.pyfunc
    from tensorflow.core.example import example_pb2
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # how a user points MLflow at the store
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@production")
    records = []
    for r in _rows()[:4]:
        ex = example_pb2.Example()
        for k, v in r.items():
            if v is None:
                continue
            f = ex.features.feature[k]
            (f.bytes_list.value.append(v.encode()) if isinstance(v, str) else
             f.int64_list.value.append(v) if isinstance(v, int) else f.float_list.value.append(v))
        records.append(ex.SerializeToString())
    probs = np.asarray(model.predict(np.array(records, dtype=object)))
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # rollback is mirrored too
    tfpipe("models", "rollback", "--mlflow-uri", uri, "--metadata", md, check=0)
    assert client.get_model_version_by_alias(MODEL, "production").tags["tfpipe.pushed_version"] == v1
