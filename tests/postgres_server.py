"""A real PostgreSQL server for the tests: the Debian package's binaries (`make test`
installs them, as it installs MariaDB), a cluster made with initdb in a temporary directory
of its own, started on a free loopback port with its unix socket in that directory, stopped
at the end. PostgreSQL refuses to run as root: as root (CI) the cluster belongs to the
``postgres`` user the package creates and the server runs as that user."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class PostgresServer:
    USER, DATABASE, PASSWORD_ENV = "tfpipe", "tfpipe", "TFPIPE_TEST_POSTGRES_PASSWORD"

    def __init__(self):
        # not under pytest's tmp: that is root's, mode 700, and the server runs as postgres
        self.base = tempfile.mkdtemp(prefix="tfpipe-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.password = os.urandom(12).hex()
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.run_as = "postgres" if os.geteuid() == 0 else None
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)

    @staticmethod
    def binary(name: str) -> str:
        path = shutil.which(name)
        if path:
            return path
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                       key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
        if found:
            return found[-1]
        raise RuntimeError(f"{name} is not installed: `make test` installs postgresql (apt-get)")

    def _run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, user=self.run_as, cwd=self.base,
                              env=dict(os.environ, LC_ALL="C.UTF-8"), **kw)

    def url(self, database: str | None = None) -> str:
        """A SQLAlchemy URL for the test user, over TCP; the password by reference
        (``PASSWORD_ENV``; put ``env()`` in the environment of whatever connects)."""
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database or self.DATABASE}"

    def env(self) -> dict:
        return {self.PASSWORD_ENV: self.password}

    def install(self) -> None:
        p = self._run([self.binary("initdb"), "-D", self.datadir, "-U", "postgres", "-E", "UTF8",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")

    def start(self) -> "PostgresServer":
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        log = open(os.path.join(self.base, "postgres.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary("postgres"), "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1",
             "-k", self.base, "-c", "fsync=off", "-c", "shared_buffers=32MB", "-c", "max_connections=100"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, user=self.run_as,
            cwd=self.base, env=dict(os.environ, LC_ALL="C.UTF-8"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: see {self.base}/postgres.log")
            if self._run([self.binary("pg_isready"), "-h", self.base, "-p", str(self.port)]).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not answer on port {self.port} within 120 s")

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket; its output, tuples only."""
        p = self._run([self.binary("psql"), "-h", self.base, "-p", str(self.port), "-U", "postgres", "-d", database,
                       "-v", "ON_ERROR_STOP=1", "-At", "-c", statement], timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"SQL failed: {statement[:500]}\n{p.stderr}")
        return p.stdout

    def create_database(self, name: str) -> str:
        """A database owned by the test user (made once per session); its URL."""
        if not self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{self.USER}'").strip():
            self.sql(f"CREATE ROLE {self.USER} LOGIN PASSWORD '{self.password}'")
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            self.sql(f'CREATE DATABASE "{name}" OWNER {self.USER}')
        return self.url(name)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)
