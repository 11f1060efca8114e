"""Run a compiled DAG with real Airflow, offline: ``airflow dags test --use-executor`` on a
SQLite metadata database in an ``AIRFLOW_HOME`` of our own.

As in a deployment, tasks go through Airflow's LocalExecutor and its task supervisor (a
process per task, logs in ``$AIRFLOW_HOME/logs``) and talk to Airflow's execution API,
served by an ``airflow api-server --apps execution`` this runner starts on a free loopback
port (with a JWT secret generated for this AIRFLOW_HOME) and stops in ``close()``.
Independent branches of the DAG run at the same time. (Plain ``airflow dags test`` runs
tasks one by one in its own process and builds the execution API application anew for
every task, about 2.5 s of CPU each.) Tasks fork from the warm task host
(``orchestrators/taskhost.py``), as the generated DAG asks by default.

Each ``airflow dags test`` is forked from a warm Airflow process of this runner
(``dags_server.py``, started in ``setup()``, stopped in ``close()``), which imported Airflow
once: a new ``airflow`` process spends several seconds on its imports before it parses the
DAG, most of an all-cached re-run (whose node tasks the DAG's cache check skips). Should it
fail to start, each DAG run starts ``airflow`` anew. The runner also sets
``AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=1`` unless set: a task supervisor may otherwise
notice its task's exit up to 5 s late, and the DAG run waits for it.

Airflow lives in its own virtualenv (``make airflow`` -> ``.venv-airflow``); this module
only drives its ``airflow`` command, so it imports nothing from Airflow itself. It is
``tfpipe run --target airflow``'s runner, and the orchestrator tests' and ``make bench``'s
(the questions only tests ask Airflow are in tests/airflow_dags.py); a production
deployment runs the same DAG file under its scheduler instead.
"""
from __future__ import annotations

import glob
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from tfpipe.runner import Runner, RunRecord, RunResult

from .compiler import PYTHON_ENV, compile_airflow, dag_id_of

__all__ = ["AirflowLocalRunner", "AirflowRunError", "AIRFLOW_BIN_ENV"]

AIRFLOW_BIN_ENV = "TFPIPE_AIRFLOW"
DAGS_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags_server.py")


class AirflowRunError(RuntimeError):
    pass


def _end_group(p: subprocess.Popen, wait_s: float = 20) -> None:
    """SIGTERM a process started with ``start_new_session`` and its group, SIGKILL after ``wait_s``."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    except ProcessLookupError:
        p.wait()
    try:  # workers left in the group after its leader exited
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _only_idle_workers(group: int) -> bool:
    """Whether every process of process group ``group`` other than its leader is an idle
    LocalExecutor worker (Airflow sets that process title) or already dead: no task, task
    supervisor or bash command of the DAG run is alive. False where /proc cannot tell."""
    found = False
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != group or pid == group or fields[0] == b"Z":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if b"LocalExecutor: <idle>" not in title:
            return False
        found = True
    return found


def _default_bin() -> str:
    return os.environ.get(AIRFLOW_BIN_ENV) or os.path.join(os.getcwd(), ".venv-airflow", "bin", "airflow")


class AirflowLocalRunner(Runner):
    """Compile the IR into ``<home>/dags`` and run it with ``airflow dags test``."""

    orchestrator = "airflow"
    runs_parts = False
    END_GRACE_S = 30.0  # how long `dags test` may take to exit once its DAG run has finished
    IDLE_GRACE_S = 2.0  # ... when all that is left of it is idle LocalExecutor workers

    def __init__(self, home: str, airflow_bin: str | None = None, python: str | None = None,
                 out=None, verbose: bool = True, timeout_s: float = 1800, warm: bool = True):
        super().__init__(out, verbose)
        self.home = os.path.abspath(home)
        self.airflow = airflow_bin or _default_bin()
        self.python = python or sys.executable
        self.timeout_s = timeout_s
        self.last_log = ""
        self.last_airflow_run = ""  # the Airflow run id of the last DAG run
        self.warm = warm
        self._server: subprocess.Popen | None = None
        self._exits: dict[int, int] = {}
        self._started: queue.Queue = queue.Queue()
        self._api: subprocess.Popen | None = None
        self._api_url = ""

    @property
    def dags(self) -> str:
        return os.path.join(self.home, "dags")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"AIRFLOW_HOME": self.home, "AIRFLOW__CORE__DAGS_FOLDER": self.dags,
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{os.path.join(self.home, 'airflow.db')}",
                    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO", PYTHON_ENV: self.python,
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret()})
        if self._api_url:
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = self._api_url
        # the LocalExecutor forks this many workers up front (Airflow's default, 32, is far more
        # than a local DAG run's widest layer)
        env.setdefault("AIRFLOW__CORE__PARALLELISM", "8")
        # a task's supervisor waits in select() up to this long between heartbeats, and can miss
        # its task's exit until the wait ends; the DAG run goes on only after that (Airflow's
        # default, 5 s, was most of an all-cached re-run: one task, the cache check)
        env.setdefault("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
        env.pop("VIRTUAL_ENV", None)
        return env

    def _jwt_secret(self) -> str:
        """A random secret shared by this home's api-server and executor (made once)."""
        path = os.path.join(self.home, "jwt_secret")
        if not os.path.exists(path):
            os.makedirs(self.home, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        with open(path) as f:
            return f.read().strip()

    def start_api_server(self) -> None:
        """Start Airflow's execution API on a free loopback port, unless it runs already."""
        if self._api is not None and self._api.poll() is None:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._api_url = f"http://127.0.0.1:{port}/execution/"
        log_path = os.path.join(self.home, "api-server.log")
        with open(log_path, "ab") as log:
            self._api = subprocess.Popen(
                [self.airflow, "api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"], env=self.env(), cwd=self.home, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._api.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self._api_url}health", timeout=2) as r:
                    if r.status < 500:
                        return
            except OSError as e:
                if getattr(e, "code", 0) and e.code < 500:  # an HTTP answer: the server is up
                    return
            time.sleep(0.3)
        tail = open(log_path, errors="replace").read()[-3000:]
        self.close()
        raise AirflowRunError(f"airflow api-server (execution API) did not come up on 127.0.0.1:{port}; "
                              f"its log ({log_path}) ends:\n{tail}")

    def close(self) -> None:
        """Stop the warm Airflow process and the api-server this runner started."""
        self._stop_server()
        p, self._api, self._api_url = self._api, None, ""
        if p is not None and p.poll() is None:
            _end_group(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def task_logs(self, dag_id: str, airflow_run_id: str) -> str:
        """Every task attempt's log of one DAG run, as Airflow wrote them."""
        out = []
        pattern = os.path.join(self.home, "logs", f"dag_id={dag_id}", f"run_id={airflow_run_id}", "task_id=*",
                               "attempt=*.log")
        for path in sorted(glob.glob(pattern), key=os.path.getmtime):
            with open(path, errors="replace") as f:
                out.append(f"--- {os.path.relpath(path, self.home)}\n{f.read()}")
        return "\n".join(out)

    def _check_bin(self) -> None:
        if not os.path.exists(self.airflow):
            raise AirflowRunError(f"no airflow command at {self.airflow}; run `make airflow` (creates "
                                  f".venv-airflow) or set ${AIRFLOW_BIN_ENV}")

    def airflow_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        self._check_bin()
        p = subprocess.run([self.airflow, *args], env=self.env(), cwd=self.home, capture_output=True,
                           text=True, timeout=self.timeout_s)
        if check and p.returncode != 0:
            raise AirflowRunError(f"`airflow {' '.join(args)}` exited {p.returncode}:\n{p.stdout[-3000:]}\n"
                                  f"{p.stderr[-3000:]}")
        return p

    def _dags_test(self, dag_id: str, conf: dict) -> tuple[int, str]:
        """``airflow dags test DAG --use-executor``: (exit code, its output), forked from the
        warm Airflow process when one runs (``start_dags_server``), else a new ``airflow``
        process. Once the DAG run has finished, the command only shuts its LocalExecutor
        down; Airflow 3.1's ``LocalExecutor.end()`` can wait forever there for a worker that
        never got its stop message (apache/airflow#45683), so after ``END_GRACE_S`` the
        command's process group is ended. The DAG run's outcome is already in the output and
        in ML Metadata."""
        self._check_bin()
        argv = ["dags", "test", dag_id, "-c", json.dumps(conf), "--use-executor"]
        dag_file = os.path.join(self.dags, f"{dag_id}.py")
        if os.path.exists(dag_file):  # parse (and sync) this DAG's file only, not the whole folder
            argv += ["-f", dag_file]
        os.makedirs(self.home, exist_ok=True)
        fd, log_path = tempfile.mkstemp(prefix="dags-test-", suffix=".log", dir=self.home)
        os.close(fd)
        try:
            if self._server is not None and self._server.poll() is None:
                poll, end, group = self._fork_command(argv, log_path)
            else:
                with open(log_path, "wb") as log:
                    p = subprocess.Popen([self.airflow, *argv], env=self.env(), cwd=self.home,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
                poll, end, group = p.poll, lambda: _end_group(p), p.pid
            rc = self._supervise(dag_id, log_path, poll, end, group)
            with open(log_path, "rb") as f:
                return rc, f.read().decode(errors="replace")
        finally:
            os.unlink(log_path)

    def _supervise(self, dag_id: str, log_path: str, poll, end, group: int | None = None) -> int | None:
        """Wait for the command (``poll()``: its exit code or None) while watching its log;
        ``end()`` it once it outlives its DAG run by END_GRACE_S (IDLE_GRACE_S when nothing
        but idle LocalExecutor workers is left in its process ``group``), or runs past
        timeout_s."""
        t0, finished_at, seen = time.monotonic(), None, 0
        marker = b"DagRun Finished:"
        try:
            with open(log_path, "rb") as log:
                while poll() is None:
                    time.sleep(0.1)
                    now = time.monotonic()
                    if finished_at is None:
                        log.seek(seen)
                        chunk = log.read()
                        if marker in chunk:
                            finished_at = now
                        seen = max(seen, seen + len(chunk) - len(marker))  # a marker may span two reads
                    elif now - finished_at > self.END_GRACE_S:
                        print(f"airflow dags test {dag_id}: the DAG run finished but the command did not exit "
                              f"within {self.END_GRACE_S:.0f} s (LocalExecutor shutdown); ending it",
                              file=self.out)
                        break
                    elif now - finished_at > self.IDLE_GRACE_S and group is not None and _only_idle_workers(group):
                        break  # every task is done; only the executor's shutdown is left (see above)
                    if now - t0 > self.timeout_s:
                        raise AirflowRunError(f"`airflow dags test {dag_id}` ran longer than {self.timeout_s:.0f} s")
        finally:
            if poll() is None:
                end()
        return poll()

    # -- the warm Airflow process ---------------------------------------------------------
    @property
    def warm_pid(self) -> int | None:
        """The pid of the warm Airflow process, while it runs."""
        return self._server.pid if self._server is not None and self._server.poll() is None else None

    def start_dags_server(self) -> bool:
        """Start the warm Airflow process (``dags_server.py`` in Airflow's interpreter) that
        forks every ``airflow dags test`` of this runner, unless it runs already; False
        (commands then start as new processes) when it could not be started."""
        if self._server is not None and self._server.poll() is None:
            return True
        py = os.path.join(os.path.dirname(self.airflow), "python")
        if not os.path.exists(py):
            return False
        log = open(os.path.join(self.home, "dags-server.log"), "ab")
        self._server = subprocess.Popen([py, DAGS_SERVER], env=self.env(), cwd=self.home, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        self._exits, self._started = {}, queue.Queue()
        ready = queue.Queue()
        threading.Thread(target=self._read_server, args=(self._server, ready, self._exits, self._started),
                         daemon=True).start()
        try:
            ready.get(timeout=180)
            return True
        except queue.Empty:
            print(f"airflow: the warm Airflow process did not start (see {self.home}/dags-server.log); "
                  f"each DAG run starts `airflow` anew", file=self.out)
            self._stop_server()
            return False

    @staticmethod
    def _read_server(server: subprocess.Popen, ready: queue.Queue, exits: dict, started: queue.Queue) -> None:
        """The warm process's replies: ready, each command's pid, each command's exit code."""
        for line in server.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ready" in msg:
                ready.put(msg)
            elif "rc" in msg:
                exits[msg["pid"]] = msg["rc"]
            elif "pid" in msg:
                started.put(msg["pid"])

    def _fork_command(self, argv: list[str], log_path: str):
        """Ask the warm process to fork ``airflow <argv>`` (output to ``log_path``): its
        ``poll``, ``end`` and process group for ``_supervise``."""
        server = self._server
        server.stdin.write((json.dumps({"argv": argv, "log": log_path}) + "\n").encode())
        server.stdin.flush()
        pid = self._started.get(timeout=60)

        def poll():
            if pid in self._exits:
                return self._exits[pid]
            return 1 if server.poll() is not None else None  # the server is gone (with its children)

        def end():
            for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    return
                deadline = time.monotonic() + wait_s
                while poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if poll() is not None:
                    break
            try:  # workers left in the group after its leader exited
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return poll, end, pid

    def _stop_server(self) -> None:
        p, self._server = self._server, None
        if p is not None and p.poll() is None:
            try:
                p.stdin.close()  # the server ends its running commands and exits
            except OSError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _end_group(p)

    def setup(self) -> None:
        """Create AIRFLOW_HOME and its SQLite database (``airflow db migrate``) once."""
        os.makedirs(self.dags, exist_ok=True)
        if not os.path.exists(os.path.join(self.home, "airflow.db")):
            self.airflow_cmd("db", "migrate")
        url = self._api_url
        self.start_api_server()
        if url != self._api_url:  # a new execution API: the warm process has the old address
            self._stop_server()
        if self.warm:
            self.start_dags_server()

    def dag_run(self, ir: dict, conf: dict) -> str:
        """Compile ``ir`` and run its DAG once with ``dag_run.conf`` = ``conf`` (as a trigger
        with a configuration does: ``tfpipe_run_id`` and ``<node>__<param>`` values); the
        DAG run's final state. ``last_log`` holds the command's output and every task log."""
        self.setup()
        compile_airflow(ir, self.dags, python=self.python)
        returncode, self.last_log = self._dags_test(dag_id_of(ir), conf)
        m = re.findall(r"DagRun Finished: .*?state=(\w+)", self.last_log)
        for airflow_run in set(re.findall(r"DagRun Finished: .*?run_id=([^,\s]+)", self.last_log)):
            self.last_airflow_run = airflow_run
            self.last_log += "\n" + self.task_logs(dag_id_of(ir), airflow_run)
        if not m:
            raise AirflowRunError(f"`airflow dags test {dag_id_of(ir)}` did not finish a DAG run "
                                  f"(exit {returncode}):\n{self.last_log[-4000:]}")
        return m[-1]

    def _run(self, ir: dict, run_id: str, nodes: list[dict], record: RunRecord,
             enable_cache: bool | None) -> RunResult:
        state = self.dag_run(ir, {"tfpipe_run_id": run_id})
        result = record.collect(nodes)
        result.airflow_state = state
        return result

    def summary_suffix(self, result: RunResult) -> str:
        return f" (airflow dags test: {getattr(result, 'airflow_state', '?')})"
