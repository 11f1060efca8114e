"""The warm task host (orchestrators/taskhost.py): a task handed to it runs in a forked
child with the caller's streams, environment, working directory and exit code, on the
caller's current code, and dies with its caller."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import REPO, scoped_env

CLIENT = ("import sys; from tfpipe.orchestrators.taskhost import run_via_host; "
          "rc = run_via_host(sys.argv[1:], module='probe_task'); sys.exit(99 if rc is None else rc)")

PROBE = '''import os, sys, time
def main(argv):
    if argv[0] == "sleep":
        open(argv[1], "w").write(str(os.getpid()))
        time.sleep(120)
    print("{tag}", os.getcwd(), os.environ.get("PROBE_VALUE"), argv, "host", os.getppid())
    print("probe stderr line", file=sys.stderr)
    return int(argv[0])
'''


@pytest.fixture
def host_env(tmp_path):
    """A host of its own for this test: light preload (so it starts in a blink), stopped after."""
    from tfpipe.orchestrators import taskhost
    env = {taskhost.PRELOAD_ENV: f"json,{tmp_path.name}_marker_missing", taskhost.IDLE_ENV: "60",
           "PYTHONPATH": REPO, "PROBE_VALUE": "from-the-caller"}
    with scoped_env(**env):
        yield dict(os.environ)
        taskhost.stop_host(wait_s=20)


def _client(tmp_path, env, *argv, **kw):
    return subprocess.run([sys.executable, "-c", CLIENT, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def test_task_runs_in_the_host_with_the_callers_streams_env_cwd_exit_code_and_code(tmp_path, host_env):
    (tmp_path / "probe_task.py").write_text(PROBE.format(tag="first version"))
    p1 = _client(tmp_path, host_env, "3")
    assert p1.returncode == 3, p1.stderr
    assert f"first version {tmp_path} from-the-caller ['3'] host" in p1.stdout
    assert "probe stderr line" in p1.stderr
    assert "task host: starting one" in p1.stderr
    host_pid = p1.stdout.split("host")[-1].strip()
    # the same, warm host serves the next task, and runs the code as it is now
    (tmp_path / "probe_task.py").write_text(PROBE.format(tag="second version"))
    p2 = _client(tmp_path, {**host_env, "PROBE_VALUE": "changed"}, "0")
    assert p2.returncode == 0, p2.stderr
    assert f"second version {tmp_path} changed ['0'] host {host_pid}" in p2.stdout
    assert "starting one" not in p2.stderr
    # the task's parent is the host that announced itself on this socket, a process of its own
    from tfpipe.orchestrators import taskhost
    path = taskhost.socket_path()
    with open(path + ".log") as f:
        ready = [ln.split() for ln in f if ln.startswith("task host ") and " ready on " in ln]
    assert ready and ready[-1][2] == host_pid and ready[-1][-1] == path
    os.kill(int(host_pid), 0)  # alive, waiting for the next task


def test_a_task_whose_caller_is_killed_is_killed_too(tmp_path, host_env):
    (tmp_path / "probe_task.py").write_text(PROBE.format(tag="sleeper"))
    pid_file = tmp_path / "task.pid"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, "sleep", str(pid_file)], cwd=tmp_path, env=host_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    task_pid = int(pid_file.read_text())
    assert task_pid != client.pid
    client.send_signal(signal.SIGKILL)  # as Airflow does when a task overruns its timeout
    client.wait()
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{task_pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{task_pid}"), "the task outlived its caller"


@pytest.fixture
def short_dir():
    """A runtime folder short enough for a socket path (pytest's tmp_path may not be)."""
    d = tempfile.mkdtemp(dir="/tmp")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_no_usable_host_means_the_caller_runs_the_task_itself(short_dir, monkeypatch, capsys):
    from tfpipe.orchestrators import taskhost
    (short_dir / f"tfpipe-{os.getuid()}").write_text("a file where the socket directory should be")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    assert taskhost.run_via_host(["--node", "X"]) is None
    assert "running the task here" in capsys.readouterr().err


def test_a_runtime_folder_others_can_open_is_not_used(short_dir, monkeypatch, capsys):
    """Another user could plant a socket in it and be sent the caller's environment."""
    from tfpipe.orchestrators import taskhost
    shared = short_dir / f"tfpipe-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    assert taskhost.run_via_host(["--node", "X"]) is None
    err = capsys.readouterr().err
    assert f"{shared}: expected a folder of user {os.getuid()} that only it can open (mode 0700), " \
           f"found one of user {os.getuid()} with mode 0777" in err
    assert "running the task here" in err
    assert not any(shared.iterdir())


def test_a_runtime_folder_too_deep_for_a_socket_path_gives_way_to_a_short_one(tmp_path, host_env):
    """A Unix socket's path holds about 100 bytes: with $XDG_RUNTIME_DIR and $TMPDIR deeper than
    that, the host listens in /tmp/tfpipe-<uid> and the task still runs in it."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    env = {**host_env, "XDG_RUNTIME_DIR": str(deep), "TMPDIR": str(deep)}
    (tmp_path / "probe_task.py").write_text(PROBE.format(tag="deep"))
    path = subprocess.run([sys.executable, "-c", "from tfpipe.orchestrators.taskhost import socket_path; "
                           "print(socket_path())"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        p = _client(tmp_path, env, "4")
        assert p.returncode == 4, p.stderr
        assert "task host: starting one" in p.stderr and "running the task here" not in p.stderr
        assert f"deep {tmp_path} from-the-caller ['4'] host" in p.stdout
        assert os.path.dirname(path) == f"/tmp/tfpipe-{os.getuid()}" and os.path.exists(path)
        assert len(os.fsencode(path + f".{2 ** 22}.tmp")) < 104
    finally:
        subprocess.run([sys.executable, "-c", "from tfpipe.orchestrators.taskhost import stop_host; "
                        "stop_host(wait_s=20)"], env=env, check=True, timeout=60)
    assert not os.path.exists(path)


LEAKY_PRELOAD = '''import ctypes, os
# what a preloaded library may do to the host's environment: TensorFlow Transform sets
# TF_USE_LEGACY_KERAS=1 through os.environ; C code calls setenv, which os.environ never sees
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["PRELOAD_SET_IN_PYTHON"] = "host"
ctypes.CDLL(None).setenv(b"PRELOAD_SET_IN_C", b"host", 1)
'''

ENV_PROBE = '''import os, subprocess
def main(argv):
    names = ("TF_USE_LEGACY_KERAS", "PRELOAD_SET_IN_PYTHON", "PRELOAD_SET_IN_C", "PROBE_VALUE")
    print("task", [os.environ.get(n) for n in names])
    # a process the task starts gets the C environment
    print("subprocess", subprocess.run(["sh", "-c", "echo $TF_USE_LEGACY_KERAS,$PRELOAD_SET_IN_PYTHON,"
                                        "$PRELOAD_SET_IN_C,$PROBE_VALUE"], capture_output=True, text=True).stdout)
    return 0
'''


def test_what_the_hosts_imports_set_in_the_environment_does_not_reach_a_task(tmp_path, host_env):
    """The host's preload sets TF_USE_LEGACY_KERAS (as TFT's import does) and variables through
    os.environ and C's setenv; a task sees the caller's environment only, and so do the
    processes it starts."""
    from tfpipe.orchestrators import taskhost
    preload = tmp_path / "preload"
    preload.mkdir()
    (preload / "leaky_preload.py").write_text(LEAKY_PRELOAD)
    (tmp_path / "probe_task.py").write_text(ENV_PROBE)
    env = {**host_env, taskhost.PRELOAD_ENV: "json,leaky_preload", "TF_USE_LEGACY_KERAS": "0",
           "PYTHONPATH": os.pathsep.join([REPO, str(preload)])}
    try:
        p = _client(tmp_path, env)
        assert p.returncode == 0, p.stderr
        assert "task ['0', None, None, 'from-the-caller']" in p.stdout
        assert "subprocess 0,,,from-the-caller" in p.stdout
        with open(subprocess.run([sys.executable, "-c", "from tfpipe.orchestrators.taskhost import socket_path; "
                                  "print(socket_path())"], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip() + ".log") as f:
            assert "preload leaky_preload" not in f.read()  # it was imported, without error
    finally:
        with scoped_env(**{taskhost.PRELOAD_ENV: env[taskhost.PRELOAD_ENV], "TF_USE_LEGACY_KERAS": "0"}):
            taskhost.stop_host(wait_s=20)


def test_the_host_is_chosen_by_the_callers_keras():
    """A caller with TF_USE_LEGACY_KERAS=1 and one without it are served by different hosts
    (tf.keras is resolved once, by the host's imports)."""
    from tfpipe.orchestrators import taskhost
    with scoped_env(TF_USE_LEGACY_KERAS="1"):
        legacy = taskhost.socket_path()
    with scoped_env(TF_USE_LEGACY_KERAS="0"):
        keras3 = taskhost.socket_path()
    assert legacy != keras3
