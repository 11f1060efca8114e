"""A real MySQL-compatible server for the tests: MariaDB from the Debian packages (`make
test` installs it, as it installs Chromium), started on a free loopback port with a data
directory of its own, stopped (or killed, and started again) by the tests."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time


class MySQLServer:
    USER, DATABASE, PASSWORD_ENV = "tfpipe", "tfpipe", "TFPIPE_TEST_MYSQL_PASSWORD"

    def __init__(self, base: str):
        self.base = base
        self.datadir = os.path.join(base, "data")
        self.socket = os.path.join(base, "mysqld.sock")
        self.password = os.urandom(12).hex()
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def binary(name: str) -> str:
        for cand in (name, name.replace("mariadb", "mysql")):
            path = shutil.which(cand) or shutil.which(cand, path="/usr/sbin:/usr/bin")
            if path:
                return path
        raise RuntimeError(f"{name} is not installed: `make test` installs mariadb-server (apt-get)")

    def url(self, database: str | None = None) -> str:
        """The store's URL: the password by reference (an environment variable)."""
        return (f"mysql://{self.USER}@127.0.0.1:{self.port}/{database or self.DATABASE}"
                f"?password_env={self.PASSWORD_ENV}")

    def env(self) -> dict:
        return {self.PASSWORD_ENV: self.password}

    def install(self) -> None:
        os.makedirs(self.datadir, exist_ok=True)
        p = subprocess.run([self.binary("mariadb-install-db"), f"--datadir={self.datadir}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")

    def start(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        log = open(os.path.join(self.base, "mysqld.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary("mariadbd"), "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.socket}", "--user=root", "--skip-name-resolve",
             f"--pid-file={os.path.join(self.base, 'mysqld.pid')}", "--innodb-buffer-pool-size=64M",
             "--max-connections=200"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: see {self.base}/mysqld.log")
            if subprocess.run([self.binary("mariadb-admin"), f"--socket={self.socket}", "-uroot", "ping"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not answer on {self.socket} within 120 s")

    def sql(self, statement: str) -> str:
        p = subprocess.run([self.binary("mariadb"), f"--socket={self.socket}", "-uroot", "-N", "-e", statement],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"SQL failed: {statement}\n{p.stderr}")
        return p.stdout

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE IF NOT EXISTS `{name}`; "
                 f"CREATE USER IF NOT EXISTS '{self.USER}'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                 f"GRANT ALL ON `{name}`.* TO '{self.USER}'@'127.0.0.1'; FLUSH PRIVILEGES;")
        return self.url(name)

    def kill(self) -> None:
        """SIGKILL, as a crashed or lost server."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
