"""Real object-store servers for the tests, each started on a free loopback port with a
data directory of its own and stopped by the test session: SeaweedFS (a disk-backed store
with an S3 API, the S3 server of record), moto's S3 server (in memory, quick to start and
stop), and the GCS emulator. `make test` installs them into their own virtualenv
(.venv-storage, pinned by constraints-storage.txt)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORAGE_VENV = os.environ.get("TFPIPE_STORAGE_VENV") or os.path.join(REPO, ".venv-storage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str) -> str:
    path = os.path.join(STORAGE_VENV, "bin", name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is not installed: `make test` (or `make storage`) installs the object-store "
                           f"servers into {STORAGE_VENV}")
    return path


class Server:
    """A server process on 127.0.0.1; ``env()`` is what a client process needs to reach it."""

    scheme = "s3"
    stop_grace_s = 20.0  # from SIGTERM to SIGKILL

    def __init__(self, base: str):
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "tfpipe-test",
                "AWS_SECRET_ACCESS_KEY": "tfpipe-test-secret", "AWS_REGION": "us-east-1"}

    def process_env(self) -> dict | None:
        """The server process's environment (None: this one's)."""
        return None

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1)
            return True
        except urllib.error.HTTPError:
            return True  # it answers (403 for an anonymous listing is an answer)
        except OSError:
            return False

    def start(self, timeout: float = 60) -> "Server":
        log = open(os.path.join(self.base, "server.log"), "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.base, env=self.process_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[0]} exited {self.proc.returncode}; see {self.base}/server.log")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{type(self).__name__} did not answer on {self.endpoint} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def make_bucket(self, name: str) -> str:
        """Create a bucket; its URI."""
        import pyarrow.fs as pafs
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", region="us-east-1",
                               access_key="tfpipe-test", secret_key="tfpipe-test-secret",
                               allow_bucket_creation=True)
        fs.create_dir(name)
        return f"s3://{name}"


class SeaweedFS(Server):
    """``weed server -s3``: master, volume, filer and S3 gateway in one process, on disk."""

    # On SIGTERM (or SIGINT) it goes on retrying its filer's gRPC socket, already removed,
    # and does not exit: a grace period would only be waited out. Its data is thrown away.
    stop_grace_s = 1.0

    def __init__(self, base: str):
        super().__init__(base)
        self.ports = [free_port() for _ in range(7)]

    def command(self) -> list[str]:
        m, v, f, mg, vg, fg, sg = self.ports
        return [tool("weed"), "server", f"-dir={self.base}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={m}", f"-master.port.grpc={mg}", f"-volume.port={v}", f"-volume.port.grpc={vg}",
                f"-filer.port={f}", f"-filer.port.grpc={fg}", "-s3", f"-s3.port={self.port}",
                f"-s3.port.grpc={sg}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]

    def ready(self) -> bool:  # the gateway answers before the filer behind it can store anything
        if not super().ready():
            return False
        try:
            self.make_bucket("tfpipe-ready-check")
            return True
        except OSError:
            return False


class MotoS3(Server):
    """moto's S3 server: everything in memory."""

    def command(self) -> list[str]:
        return [tool("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]


class GCSEmulator(Server):
    """The GCS JSON API emulator (``STORAGE_EMULATOR_HOST``), in memory."""

    scheme = "gs"

    def command(self) -> list[str]:
        return [tool("gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory"]

    def env(self) -> dict:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def make_bucket(self, name: str) -> str:
        import json
        req = urllib.request.Request(f"{self.endpoint}/storage/v1/b?project=tfpipe", method="POST",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        return f"gs://{name}"
