"""A warm task host: one process per machine that has imported TensorFlow, TFDV, TFT, TFMA
and Beam once, and forks a fresh child for every orchestrator task.

Orchestrators that start each node as a new process (an Airflow task, a ``kfp.local``
task) would otherwise pay 5-15 s of imports per node, most of a small pipeline's time.
With ``TFPIPE_TASK_HOST=1`` in its environment, ``python -m tfpipe.orchestrators.task`` becomes a
thin client: it hands its argv, environment, working directory and its own stdin/stdout/
stderr (as file descriptors, over a Unix socket) to the host, which forks; the child runs
the task exactly as the command would have, writing straight into the caller's streams (so
the Airflow task log shows the component's output and error), and the client exits with
the child's exit code. This is the pre-fork pattern of Airflow 2's task runner and of
gunicorn's ``--preload``.

- Isolation: each task is a forked child in a process group of its own; nothing of one
  task outlives it; the child drops every ``tfpipe`` module the host imported (only this
  one and the core it sits in) and imports tfpipe afresh, so edited code is always used.
- The caller dying (Airflow's ``execution_timeout``, a SIGKILL) closes the socket; the host
  then kills the child's process group.
- The host is keyed by the interpreter, the installed packages (site-packages' mtime) and
  this file; it listens on ``$XDG_RUNTIME_DIR`` (or the temp dir, or ``/tmp`` when those are
  too deep for a socket's path) ``/tfpipe-<uid>/<key>.sock`` (mode 0700, checked: a folder
  others can open is refused), appears there only once its imports are done, and exits after
  ``TFPIPE_TASK_HOST_IDLE`` seconds (default 300) without a task.
- Any failure to reach or start a host falls back to running the task in the caller's
  process, with a one-line note.

Only the standard library is imported here at module level.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import threading
import time
import traceback

__all__ = ["ENABLE_ENV", "IDLE_ENV", "PRELOAD_ENV", "enabled", "socket_path", "run_via_host", "serve",
           "stop_host"]

ENABLE_ENV = "TFPIPE_TASK_HOST"
IDLE_ENV = "TFPIPE_TASK_HOST_IDLE"
PRELOAD_ENV = "TFPIPE_TASK_HOST_PRELOAD"
DEFAULT_PRELOAD = ("numpy,pyarrow,pandas,ml_metadata,apache_beam,tensorflow,tensorflow_data_validation,"
                   "tensorflow_transform,tensorflow_model_analysis,keras_tuner")
KERAS_ENV = "TF_USE_LEGACY_KERAS"  # tfpipe.runtime.KERAS_ENV (only the standard library here)
_HDR = struct.Struct("!Q")
_READY_TIMEOUT_S = 300.0


def enabled(env=None) -> bool:
    return (env if env is not None else os.environ).get(ENABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _key() -> str:
    purelib = sysconfig.get_paths()["purelib"]
    parts = [sys.executable, sys.prefix, purelib, str(_mtime(purelib)), os.path.abspath(__file__),
             str(_mtime(os.path.abspath(__file__))), os.environ.get(PRELOAD_ENV, DEFAULT_PRELOAD),
             # the Keras tf.keras resolved to in the host's imports (tfpipe.runtime.pin_keras)
             os.environ.get(KERAS_ENV, "0")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


#: what a Unix socket's path may hold: ``sun_path`` is 108 bytes on Linux and 104 on macOS,
#: with the terminating NUL, and the host binds ``<path>.<pid>.tmp`` first
_SUN_PATH_MAX = 103 - len(".4194304.tmp")


def _runtime_dir(name_len: int) -> str:
    """``$XDG_RUNTIME_DIR`` (or the temp dir) ``/tfpipe-<uid>``, made private to this user;
    ``/tmp/tfpipe-<uid>`` where that would make a socket path of ``name_len`` more bytes too
    long. An OSError when the folder is not this user's alone (another user could plant a
    socket there and be sent this process's environment)."""
    import tempfile
    sub = f"tfpipe-{os.getuid()}"
    bases = [b for b in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp") if b and os.path.isdir(b)]
    fits = [b for b in bases if len(os.fsencode(os.path.join(b, sub))) + 1 + name_len <= _SUN_PATH_MAX]
    if not fits:
        raise OSError(f"no runtime folder gives a Unix socket path of at most {_SUN_PATH_MAX} bytes "
                      f"(tried {', '.join(bases)})")
    d = os.path.join(fits[0], sub)
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{d}: expected a folder of user {os.getuid()} that only it can open (mode 0700), "
                      f"found one of user {st.st_uid} with mode {st.st_mode & 0o7777:04o}")
    return d


def socket_path() -> str:
    name = f"taskhost-{_key()}.sock"
    return os.path.join(_runtime_dir(len(name)), name)


# --- client -------------------------------------------------------------------------------

def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:
        s.close()
        return None


def _start_host(path: str) -> subprocess.Popen | None:
    """Start a host for ``path`` unless another caller is starting one (file lock)."""
    lock = open(path + ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None  # someone else is starting it; wait for the socket
    log = open(path + ".log", "ab")
    env = dict(os.environ)
    env.pop(ENABLE_ENV, None)
    # the lock is inherited by the host, which holds it while it lives
    p = subprocess.Popen([sys.executable, "-c", "import sys; "
                          "from tfpipe.orchestrators.taskhost import serve; serve(sys.argv[1], int(sys.argv[2]))",
                          path, str(lock.fileno())],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=os.path.dirname(path),
                         start_new_session=True, pass_fds=(lock.fileno(),))
    lock.close()
    log.close()
    return p


def _wait_for_host(path: str, proc: subprocess.Popen | None) -> socket.socket | None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        s = _connect(path)
        if s is not None:
            return s
        if proc is not None and proc.poll() is not None:
            return None
        if proc is None and not _locked(path + ".lock"):
            proc = _start_host(path)  # the one who was starting it gave up
        time.sleep(0.1)
    return None


def _locked(lock_path: str) -> bool:
    try:
        with open(lock_path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _send(s: socket.socket, body: bytes, fds: list[int]) -> None:
    """One request: its length (with the file descriptors passed along), then the JSON body;
    ``_recv_request`` reads it."""
    socket.send_fds(s, [_HDR.pack(len(body))], fds)
    s.sendall(body)


def run_via_host(argv: list[str], module: str = "tfpipe.orchestrators.task", on_connect=None,
                 quiet_start: bool = False) -> int | None:
    """Run ``python -m <module> <argv>`` in a forked child of the task host, with this
    process's streams, environment and working directory; its exit code, or None when no
    host could be reached (the caller then runs the task itself). ``on_connect(socket)``
    receives the connection to the host: shutting it down ends the task (the host kills
    the child's process group, as when the caller dies)."""
    try:
        path = socket_path()
        s = _connect(path)
        if s is None:
            if not quiet_start:
                print("task host: starting one (imports TensorFlow and friends once for every task)",
                      file=sys.stderr, flush=True)
            s = _wait_for_host(path, _start_host(path))
        if s is None:
            print(f"task host: none could be started (see {path}.log); running the task here",
                  file=sys.stderr, flush=True)
            return None
    except OSError as e:
        print(f"task host: unavailable ({e}); running the task here", file=sys.stderr, flush=True)
        return None
    env = dict(os.environ)
    env.pop(ENABLE_ENV, None)
    body = json.dumps({"op": "run", "module": module, "argv": list(argv), "env": env,
                       "cwd": os.getcwd()}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    if on_connect is not None:
        on_connect(s)
    with s:
        try:
            _send(s, body, [0, 1, 2])
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError as e:
            print(f"task host: lost ({e})", file=sys.stderr, flush=True)
            return 1
    try:
        return int(json.loads(reply)["rc"])
    except (ValueError, KeyError):
        print("task host: it ended without an exit code for the task", file=sys.stderr, flush=True)
        return 1


def stop_host(wait_s: float = 0.0) -> bool:
    """Ask this environment's host to exit once its running tasks are done (and wait up to
    ``wait_s`` for it to be gone); False when none was running."""
    try:
        path = socket_path()
    except OSError:  # no usable runtime folder: no host could have started
        return False
    s = _connect(path)
    if s is None:
        return False
    with s:
        _send(s, json.dumps({"op": "stop"}).encode(), [])
        s.recv(64)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and (os.path.exists(path) or _locked(path + ".lock")):
        time.sleep(0.1)
    return True


# --- host ---------------------------------------------------------------------------------

def _preload() -> None:
    from tfpipe.runtime import pin_keras
    pin_keras()  # before TensorFlow Transform's import could set it (the host's key has it)
    t0 = time.monotonic()
    for name in filter(None, (n.strip() for n in os.environ.get(PRELOAD_ENV, DEFAULT_PRELOAD).split(","))):
        try:
            importlib.import_module(name)
        except Exception as e:  # a missing optional library only means a slower child
            print(f"preload {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    from tfpipe.provenance import environment_lock
    # every task records it; a child imports tfpipe afresh, so it reads the lock again
    # (about 50 ms), but from files this has brought into the page cache
    environment_lock()
    print(f"preloaded in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    msg, fds, _flags, _addr = socket.recv_fds(conn, _HDR.size, 3)
    if len(msg) != _HDR.size:
        raise ValueError("truncated request header")
    (n,) = _HDR.unpack(msg)
    body = b""
    while len(body) < n:
        chunk = conn.recv(min(1 << 20, n - len(body)))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    return json.loads(body), fds


def _caller_environment(env: dict) -> None:
    """The caller's environment and nothing else: what the host's imports set, through
    ``os.environ`` (TensorFlow Transform's ``TF_USE_LEGACY_KERAS=1`` when the host's own was
    unset) or in C (``setenv``, which ``os.environ`` does not see), is gone; so is anything the
    caller had removed."""
    try:
        import ctypes
        ctypes.CDLL(None).clearenv()
    except (OSError, AttributeError):  # no clearenv (not glibc/musl): os.environ's own keys go below
        pass
    os.environ.clear()
    os.environ.update(env)


def _child(req: dict, fds: list[int], keep_closed: list[int]) -> None:
    """In the forked child: become the task process the caller would have started."""
    try:
        os.setpgid(0, 0)
        for fd in keep_closed:
            os.close(fd)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(req["cwd"])
        _caller_environment(req["env"])
        # `python -m` puts the working directory first; tfpipe is imported afresh (the host
        # imported only this module and the core package around it)
        sys.path[0:0] = [req["cwd"]] + [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        for name in [m for m in sys.modules if m.split(".")[0] == "tfpipe"]:
            del sys.modules[name]
        sys.argv = [req["module"], *req["argv"]]
        mod = importlib.import_module(req["module"])
        rc = mod.main(req["argv"])
        rc = rc if isinstance(rc, int) else 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(rc)


def _supervise(conn: socket.socket, pid: int) -> None:
    """Wait for the child; kill its process group if the caller goes away first."""
    rc = None
    try:
        while rc is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                rc = 128 - rc if rc < 0 else rc
                break
            r, _, _ = select.select([conn], [], [], 0.2)
            if r and not conn.recv(1, socket.MSG_PEEK):  # EOF: the caller is gone
                _kill_group(pid)
                os.waitpid(pid, 0)
                return
        conn.sendall((json.dumps({"rc": rc}) + "\n").encode())
    except OSError:
        _kill_group(pid)
    finally:
        conn.close()


def _kill_group(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        t = time.monotonic() + wait
        while time.monotonic() < t:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)


def serve(path: str, lock_fd: int | None = None) -> None:
    """The host's main loop: listen on ``path`` once the imports are done; fork per task.
    ``lock_fd`` (the start lock, held while the host lives) is not passed on to tasks."""
    idle_s = float(os.environ.get(IDLE_ENV, "300"))
    tmp = f"{path}.{os.getpid()}.tmp"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(tmp)
    os.chmod(tmp, 0o600)
    srv.listen(64)
    _preload()
    os.replace(tmp, path)  # callers see the socket only once it is warm
    ino = os.stat(path).st_ino
    print(f"task host {os.getpid()} ready on {path}", file=sys.stderr, flush=True)
    active: set[threading.Thread] = set()
    last = time.monotonic()
    stopping = False
    try:
        while True:
            active = {t for t in active if t.is_alive()}
            if active:
                last = time.monotonic()
            elif stopping or time.monotonic() - last > idle_s:
                break
            r, _, _ = select.select([srv], [], [], 1.0)
            if not r:
                continue
            conn, _ = srv.accept()
            try:
                req, fds = _recv_request(conn)
            except (OSError, ValueError) as e:
                print(f"bad request: {e}", file=sys.stderr, flush=True)
                conn.close()
                continue
            if req.get("op") == "stop":
                stopping = True
                conn.sendall(b"{}\n")
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                srv.close()
                conn.close()
                _child(req, fds, [lock_fd] if lock_fd is not None else [])
            for fd in fds:
                os.close(fd)
            t = threading.Thread(target=_supervise, args=(conn, pid), daemon=True)
            t.start()
            active.add(t)
            last = time.monotonic()
    finally:
        try:
            if os.path.exists(path) and os.stat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass
        srv.close()
