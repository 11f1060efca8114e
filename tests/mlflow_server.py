"""A real MLflow tracking server for the tests: ``mlflow server`` from its own virtualenv
(.venv-mlflow, pinned by constraints-mlflow.txt; `make test` builds it) with a SQLite
backend store and the artifacts it serves itself (``--artifacts-destination``: clients
upload through the server, and the UI reads them back through it), on a free loopback port,
stopped (its process group) by the test session."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from tests.object_store import REPO, Server

MLFLOW_VENV = os.environ.get("TFPIPE_MLFLOW_VENV") or os.path.join(REPO, ".venv-mlflow")


class MlflowServer(Server):
    @property
    def uri(self) -> str:
        """The tracking URI (and the UI's address)."""
        return self.endpoint

    def command(self) -> list[str]:
        exe = os.path.join(MLFLOW_VENV, "bin", "mlflow")
        if not os.path.exists(exe):
            raise RuntimeError(f"{exe} is not installed: `make test` (or `make mlflow`) installs MLflow's server "
                               f"into {MLFLOW_VENV}")
        return [exe, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{os.path.join(self.base, 'mlflow.db')}",
                "--serve-artifacts", "--artifacts-destination", os.path.join(self.base, "artifacts")]

    def process_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # its job runner (huey workers): not used here
        return env

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 120) -> "MlflowServer":
        super().start(timeout)
        return self

    def api(self, path: str, **params) -> dict:
        """GET ``/api/2.0/mlflow/<path>`` of the REST API; the decoded JSON."""
        url = f"{self.uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"GET {url}: HTTP {e.code} {e.read()[:500]!r}") from None
