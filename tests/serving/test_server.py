"""The model server process (``python -m tfpipe.serving`` on a free loopback port, tiny real
SavedModels) against what TF Serving, or the stricter choice, does: bad input is a JSON 4xx,
requests are bounded in size, count and time, answers show no paths, other models or long
excerpts of input, a broken version or models.config never takes down what serves, and the
request log loses no batch for one bad row."""
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.serving.conftest import example, example_with_bad_name, put_version
from tfpipe.serving.client import ServerProcess
from tfpipe.serving.config import ModelEntry, write_config

VERSION = 1796505019  # a Pusher-style version number


def call(srv, method, path, body=None, raw: bytes | None = None, headers=None, timeout=120):
    """(status, headers, decoded JSON body); the body must be JSON whatever the status."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read()
        assert resp.getheader("Content-Type", "").startswith("application/json"), (resp.status, text[:300])
        return resp.status, resp, json.loads(text)
    finally:
        conn.close()


def health(srv) -> dict:
    return call(srv, "GET", "/healthz")[2]


def wait_for(cond, what: str, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_syncs(srv, n: int) -> None:
    """Until the server re-read its sources ``n`` more times (so a repeated log line would show)."""
    start = health(srv)["syncs"]
    wait_for(lambda: health(srv)["syncs"] >= start + n, f"{n} more syncs")


def b64(rec: bytes) -> dict:
    return {"b64": base64.b64encode(rec).decode()}


def drained(srv) -> dict:
    def done():
        st = health(srv)["request_log"]
        return st if st["queued"] == 0 and st["written"] + st["dropped"] == st["offered"] else None
    return wait_for(done, "the request log to drain")


@pytest.fixture(scope="module")
def srv(saved_models, tmp_path_factory):
    """Two models from a models.config: m (version VERSION = y = x) and secret; small limits."""
    root = tmp_path_factory.mktemp("srv")
    for name in ("m", "secret"):
        os.makedirs(root / name)
        put_version(str(root / name), VERSION, saved_models[1])
    cfg = str(root / "models.config")
    write_config(cfg, [ModelEntry("m", str(root / "m"), versions=[VERSION], labels={"production": VERSION}),
                       ModelEntry("secret", str(root / "secret"))])
    s = ServerProcess.start(["--model-config-file", cfg, "--log-requests", str(root / "log"),
                             "--max-body-bytes", "3000000", "--max-instances", "60000", "--header-timeout", "1",
                             "--body-timeout", "1"])
    s.root, s.log_dir = str(root), str(root / "log")
    yield s
    s.stop()


def test_a_bad_b64_row_is_set_aside_alone_and_the_batch_is_written(srv):
    import pyarrow.dataset as ds
    before = drained(srv)
    rows = [b64(example(1.0))] * 50 + [b64(example_with_bad_name(2.0))] + [b64(example(3.0))] * 50
    status, _, out = call(srv, "POST", "/v1/models/m:predict", {"instances": rows})
    assert status == 200 and len(out["predictions"]) == 101  # TensorFlow takes it, as TF Serving
    after = drained(srv)
    assert after["written"] - before["written"] == 100
    assert after["set_aside"] - before["set_aside"] == 1 and after["dropped"] - before["dropped"] == 1
    assert "cannot read" in after["last_set_aside"] and after["errors"] == 0
    assert ds.dataset(srv.log_dir, format="parquet").count_rows() == after["written"]


def test_bad_input_is_a_json_400_naming_where(srv):
    cases = [
        (b'{"instances": [{"x": ' + b"9" * 400 + b'}]}', "instances[0].x: expected a number (float)"),
        (b'{"instances": ' + b"[" * 10000 + b"]" * 10000 + b"}", "nested too deep"),
        (b'{"instances": [{"x": 1.0, "s": "\\ud800"}]}', "instances[0].s: expected a string of Unicode"),
        (b'{"instances": [{"x": 1e300}]}', "float32"),
        (b'{"instances": [{"x": 1.0, "s": null}], "signature_name": ["a"]}', "signature_name"),
        (b"\xff\xfe", "not JSON"),
        # TensorFlow's parse error quotes the whole example, and fails on one that is not UTF-8
        (json.dumps({"instances": [b64(b"\x0a\x02A\n" + b"B" * 100_000)]}).encode(), "Could not parse example input"),
        (json.dumps({"instances": [b64(b"\x0a\xff\xff\xff" + b"A" * 100_000)]}).encode(),
         "not a serialized tf.Example"),
    ]
    for raw, msg in cases:
        status, resp, out = call(srv, "POST", "/v1/models/m:predict", raw=raw)
        assert status == 400 and msg in out["error"] and len(out["error"]) < 400, (raw[:60], out["error"][:400])
        assert resp.getheader("X-Model-Version") == str(VERSION)
    # Starlette's own answers are JSON too
    assert call(srv, "GET", "/nowhere")[0] == 404
    assert call(srv, "PUT", "/v1/models/m:predict", raw=b"{}")[0] == 405
    assert "Traceback" not in srv.stderr()


def _answer(s) -> tuple[int, dict]:
    """The status and JSON body of the one response on raw socket ``s``."""
    head, _, body = _read_all(s).partition(b"\r\n\r\n")
    s.close()
    return int(head.split()[1]), json.loads(body)


def test_body_size_and_instances_are_limited(srv):
    # a Content-Length over --max-body-bytes is refused before the body is read
    s = _connect(srv)
    s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    status, out = _answer(s)
    assert status == 413 and "50000000 bytes" in out["error"] and "--max-body-bytes" in out["error"]
    # a chunked body is refused as soon as it passes the limit (here with its last chunk)
    s = _connect(srv)
    s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"[" * 100_000
    for _ in range(31):  # 3,100,000 bytes > 3,000,000
        s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    s.sendall(b"0\r\n\r\n")
    status, out = _answer(s)
    assert status == 413 and "--max-body-bytes" in out["error"]
    many = {"instances": [{"x": 1.0, "s": None}] * 60_001}
    status, _, out = call(srv, "POST", "/v1/models/m:predict", many)
    assert status == 413 and "60001 examples" in out["error"] and "--max-instances" in out["error"]
    status, _, out = call(srv, "POST", "/v1/models/m:predict", {"inputs": {"x": [1.0] * 60_001}})
    assert status == 413 and "--max-instances" in out["error"]


def _connect(srv, timeout=60):
    return socket.create_connection((srv.host, srv.port), timeout=timeout)


def _read_all(s) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_slow_headers_and_bodies_are_cut_off(srv):
    # headers never finished: the server closes the connection (--header-timeout 1)
    conns = [_connect(srv, timeout=20) for _ in range(4)]
    for s in conns:
        s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n")
    for s in conns:
        assert _read_all(s) == b""  # closed by the server (the socket gives it 20 s)
        s.close()
    # a body that stops short of its Content-Length: a JSON 408 and the connection closed
    s = _connect(srv, timeout=20)
    s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n" + b'{"instances": [{"x"')
    answer = _read_all(s)
    s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"--body-timeout" in json.loads(body)["error"].encode()


def test_a_client_that_disconnects_leaves_no_traceback(srv):
    for _ in range(5):
        s = _connect(srv)
        s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inst")
        s.close()
    assert call(srv, "POST", "/v1/models/m:predict", {"instances": [{"x": 1.0, "s": None}]})[0] == 200
    err = srv.stderr()
    assert "Traceback" not in err and "Exception in ASGI" not in err, err[-3000:]


def test_a_large_request_does_not_hold_up_small_ones(srv):
    """A 50,000-example request is parsed on the parse pool: a small request sent once the
    large one is sent is answered before the large one's answer begins. Parsed on the event
    loop, the small one could not even be read until the large one had been
    parsed, and then waited behind it for the model."""
    import itertools
    big = json.dumps({"instances": [{"x": float(i % 7), "s": ["a", "b"]} for i in range(50_000)]}).encode()
    order, sent, seq = {}, threading.Event(), itertools.count()

    def send_big():
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=300)
        conn.request("POST", "/v1/models/m:predict", body=big, headers={"Content-Type": "application/json"})
        sent.set()
        resp = conn.getresponse()  # returns once the answer's status line and headers are in
        order["big"] = next(seq)
        order["status"] = resp.status
        resp.read()
        conn.close()
    before = drained(srv)
    t = threading.Thread(target=send_big)
    t.start()
    assert sent.wait(300)
    status, resp, out = call(srv, "POST", "/v1/models/m:predict", {"instances": [{"x": 2.0, "s": None}]})
    order["small"] = next(seq)
    t.join()
    assert status == 200 and out["predictions"] == [[2.0]] and order["status"] == 200
    assert order["small"] < order["big"], order
    # the request log's bound is per row: 10,000 of the 50,000 rows at most were queued
    after = drained(srv)
    assert after["dropped"] - before["dropped"] >= 40_000


def test_versions_parse_exactly_and_answers_name_no_path_nor_other_model(srv):
    ok = call(srv, "POST", f"/v1/models/m/versions/{VERSION}:predict", {"instances": [{"x": 1.0, "s": None}]})
    assert (ok[0] == 200 and ok[1].getheader("X-Model-Name") == "m"
            and ok[1].getheader("X-Model-Version") == str(VERSION))
    default = call(srv, "POST", "/v1/models/m:predict", {"instances": [{"x": 1.0, "s": None}]})
    assert default[1].getheader("X-Model-Version") == str(VERSION)
    arabic = "".join(chr(0x660 + int(c)) for c in str(VERSION))
    from urllib.parse import quote
    for v in (f"+{VERSION}", "1_796_505_019", f"%20{VERSION}", f"0{VERSION}", quote(arabic), f"{VERSION}%20"):
        for method, tail in (("POST", ":predict"), ("GET", "")):
            status, _, out = call(srv, method, f"/v1/models/m/versions/{v}{tail}",
                                  {"instances": [{"x": 1.0, "s": None}]} if method == "POST" else None)
            assert status == 404 and "expected a version number" in out["error"], (v, out)
    status, _, out = call(srv, "POST", "/v1/models/nope:predict", {"instances": [{"x": 1.0, "s": None}]})
    assert status == 404 and "secret" not in out["error"]
    long_name = "y" * 100_000
    for body in ({"instances": [{"x": 1.0, long_name: 1}]},
                 {"instances": [{"x": 1.0, "s": None}], "signature_name": long_name},
                 {"inputs": {"x": [1.0], long_name: [1.0, 2.0]}}, {"instances": [{"x": long_name}]}):
        status, _, out = call(srv, "POST", "/v1/models/m:predict", body)
        assert status == 400 and len(out["error"]) < 400 and "y" * 81 not in out["error"], out["error"][:200]
    status, _, out = call(srv, "POST", "/v1/models/m/labels/" + "z" * 5000 + ":predict", {"instances": []})
    assert status == 404 and "z" * 81 not in out["error"]
    h = json.dumps(health(srv))
    assert srv.root not in h and os.path.dirname(srv.root) not in h


def _served(saved_models, tmp_path, config: bool):
    base = str(tmp_path / "m")
    os.makedirs(base)
    put_version(base, 1, saved_models[1])
    put_version(base, 2, saved_models[2])  # archived: never promoted
    if config:
        write_config(os.path.join(base, "models.config"),
                     [ModelEntry("m", base, versions=[1], labels={"production": 1})])
    return base


def _tfpipe_lines(text: str, needle: str) -> list:
    return [ln for ln in text.splitlines() if ln.startswith("[tfpipe serve]") and needle in ln]


def test_a_models_config_that_names_no_model_or_is_not_text_keeps_the_last_good_one(saved_models, tmp_path):
    base = _served(saved_models, tmp_path, config=True)
    cfg = os.path.join(base, "models.config")
    with ServerProcess.start(["--model-base-path", base, "--model-name", "m", "--poll", "0.1"]) as s:
        first = call(s, "POST", "/v1/models/m:predict", {"instances": [{"x": 1.0, "s": None}]})
        assert first[1].getheader("X-Model-Version") == "1"
        for content, says in ((b"", "does not name model m"), (b"model_config_list {\xff}", "not UTF-8")):
            with open(cfg, "wb") as f:
                f.write(content)
            h = wait_for(lambda says=says: (lambda got: got if any(says in p for p in got["problems"]) else None)(
                health(s)), says)
            assert h["status"] == "degraded" and h["models"]["m"]["labels"] == {"production": 1}
            wait_syncs(s, 10)
            status, resp, out = call(s, "POST", "/v1/models/m:predict", {"instances": [{"x": 1.0, "s": None}]})
            assert status == 200 and resp.getheader("X-Model-Version") == "1" and out["predictions"] == [[1.0]]
            assert len(_tfpipe_lines(s.stderr(), says)) == 1, s.stderr()[-3000:]
        assert "poll failed" not in s.stderr() and base not in json.dumps(health(s))
        write_config(cfg, [ModelEntry("m", base, versions=[1], labels={"production": 1})])
        wait_for(lambda: health(s)["status"] == "ok", "ok again")
    # a fresh server refuses such a config: exit 1, one line
    for content, says in ((b"", "does not name model m"), (b"\xff", "not UTF-8")):
        with open(cfg, "wb") as f:
            f.write(content)
        p = subprocess.run([sys.executable, "-m", "tfpipe.serving", "--model-base-path", base, "--model-name", "m",
                            "--port", "0"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("[tfpipe serve]")]
        assert p.returncode == 1 and len(lines) == 1 and "error" in lines[0] and says in lines[0], p.stderr[-3000:]


def test_a_version_that_fails_to_load_never_unloads_the_one_serving(saved_models, tmp_path):
    base = str(tmp_path / "m")
    os.makedirs(base)
    put_version(base, 1, saved_models[1])
    with ServerProcess.start(["--model-base-path", base, "--model-name", "m", "--poll", "0.1"]) as s:
        junk = tmp_path / "junk"
        os.makedirs(junk)
        (junk / "saved_model.pb").write_bytes(b"not a SavedModel")
        os.replace(junk, os.path.join(base, "2"))

        def two_failed():
            st = call(s, "GET", "/v1/models/m")[2]["model_version_status"]
            return st if any(v["version"] == "2" and v["state"] == "END" for v in st) else None
        st = wait_for(two_failed, "version 2 to fail")
        assert {v["version"]: v["state"] for v in st} == {"1": "AVAILABLE", "2": "END"}
        status, resp, out = call(s, "POST", "/v1/models/m:predict", {"instances": [{"x": 3.0, "s": None}]})
        assert status == 200 and resp.getheader("X-Model-Version") == "1" and out["predictions"] == [[3.0]]
        status, _, h = call(s, "GET", "/healthz")
        assert status == 200 and h["status"] == "degraded" and any("version 2" in p for p in h["problems"])
        status, _, nf = call(s, "POST", "/v1/models/m/versions/2:predict", {"instances": [{"x": 3.0, "s": None}]})
        assert status == 404 and "cannot load" in nf["error"]
        for text in (json.dumps(st), json.dumps(h), json.dumps(nf)):
            assert str(tmp_path) not in text and "/saved_model.pb" not in text, text
        wait_syncs(s, 10)
        assert len(_tfpipe_lines(s.stderr(), "version 2: cannot load")) == 1, s.stderr()[-3000:]
        put_version(base, 3, saved_models[2])  # a good newer version replaces both
        wait_for(lambda: call(s, "POST", "/v1/models/m:predict", {"instances": [{"x": 3.0, "s": None}]})[1]
                 .getheader("X-Model-Version") == "3", "version 3 to serve")


def test_a_logged_row_is_on_disk_before_a_sigkill(saved_models, tmp_path):
    """At a low rate a request's rows are written as soon as it is answered (not at the
    writer's next tick): once /healthz counts the row written, a SIGKILL loses nothing."""
    import pyarrow.dataset as ds
    log = str(tmp_path / "log")
    s = ServerProcess.start(["--model-dir", saved_models[2], "--model-name", "m", "--log-requests", log])
    try:
        assert call(s, "POST", "/v1/models/m:predict", {"instances": [{"x": 4.0, "s": None}]})[0] == 200
        wait_for(lambda: health(s)["request_log"]["written"] == 1, "the row to be written")
    finally:
        s.proc.kill()
        s.proc.wait()
        s.stop()
    t = ds.dataset(log, format="parquet").to_table().to_pylist()
    assert len(t) == 1 and t[0]["features"]["x"] == [4.0] and json.loads(t[0]["response"]) == [8.0]
