"""Starting a model server process and talking to it (standard library only): what the
InfraValidator, the tests and the benchmark use.

    proc = ServerProcess.start(["--model-dir", DIR, "--model-name", "m"])
    status, body = proc.request("POST", "/v1/models/m:predict", {"instances": [...]})
    proc.stop()   # SIGTERM: requests in flight finish; the exit status
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

__all__ = ["ServerProcess", "ServerStartError", "request"]


class ServerStartError(RuntimeError):
    """The server process exited or did not become ready in time."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode, self.stderr = returncode, stderr


def request(host: str, port: int, method: str, path: str, body=None, timeout: float = 60.0) -> tuple[int, dict]:
    """One HTTP request; (status, decoded JSON body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw or b"null")
        except ValueError:
            return resp.status, {"error": raw.decode(errors="replace")}
    finally:
        conn.close()


class ServerProcess:
    """A model server in a child process, on a free loopback port unless told otherwise."""

    def __init__(self, proc: subprocess.Popen, info: dict, stderr_path: str, workdir):
        self.proc, self.info, self._stderr_path, self._workdir = proc, info, stderr_path, workdir
        self.host, self.port = info["host"], int(info["port"])

    @classmethod
    def start(cls, args: list[str], command: list[str] | None = None, timeout_s: float = 300.0,
              env: dict | None = None) -> "ServerProcess":
        """Run ``command`` (default ``python -m tfpipe.serving``) with ``args`` plus
        ``--ready-file`` (and ``--port 0`` when no port is given); wait until it serves."""
        workdir = tempfile.TemporaryDirectory(prefix="tfpipe-serve-")
        ready = os.path.join(workdir.name, "ready.json")
        err_path = os.path.join(workdir.name, "stderr.txt")
        cmd = [*(command or [sys.executable, "-m", "tfpipe.serving"]), *args, "--ready-file", ready]
        if "--port" not in args:
            cmd += ["--port", "0"]
        e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=e)
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(ready):
            if proc.poll() is not None:
                tail = cls._tail(err_path)
                workdir.cleanup()
                raise ServerStartError(f"the model server process exited {proc.returncode}: {tail}",
                                       proc.returncode, tail)
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                workdir.cleanup()
                raise ServerStartError(f"the model server did not become ready within {timeout_s:g} s")
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        return cls(proc, info, err_path, workdir)

    @staticmethod
    def _tail(path: str) -> str:
        try:
            with open(path) as f:
                lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        except OSError:
            return "no output"
        errs = [ln for ln in lines if "error" in ln.lower()]
        return (errs or lines or ["no output"])[-1]

    def request(self, method: str, path: str, body=None, timeout: float = 60.0) -> tuple[int, dict]:
        return request(self.host, self.port, method, path, body, timeout)

    def stderr(self) -> str:
        try:
            with open(self._stderr_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then wait (graceful shutdown); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.last_stderr = self.stderr()
        self._workdir.cleanup()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
