"""A warm ``airflow`` command for ``AirflowLocalRunner``: imports Airflow once, then forks a
fresh ``airflow <args>`` (``dags test ...``) per request.

``airflow dags test`` spends several seconds importing Airflow and its providers before it
parses a DAG, every time; a re-run whose nodes are all cached is otherwise a fraction of
that. This script runs in Airflow's own virtualenv (``.venv-airflow/bin/python
dags_server.py``, never imported by tfpipe there), so it imports only the standard library
at module level, and Airflow in ``serve()``. Protocol, one JSON line each way::

    -> {"argv": ["dags", "test", "penguin", "-c", "{...}", "--use-executor"], "log": "/path/of/log"}
    <- {"pid": 1234}          the forked command (its own session: pid = process group id)
    <- {"pid": 1234, "rc": 0} when it has exited (its exit code, 128+N for signal N)

Each command is a forked child of the warm process with a fresh session, its stdin on
/dev/null and its output in ``log``: what ``airflow <args>`` would do as a new process
(the same CLI entry point, ``airflow.__main__.main``), without its imports. The server
exits when its stdin closes (the runner's ``close()``), ending any command still running.
"""
import json
import os
import signal
import sys
import threading
import traceback

PRELOAD = ("airflow.cli.commands.dag_command", "airflow.models.dagrun", "airflow.models.dagbag",
           "airflow.serialization.serialized_objects", "airflow.executors.local_executor",
           "airflow.jobs.scheduler_job_runner", "airflow.dag_processing.bundles.manager",
           "airflow.sdk.execution_time.supervisor", "airflow.sdk.execution_time.task_runner",
           "airflow.providers.standard.operators.bash", "airflow.sdk", "airflow.utils.db", "alembic")


def _child(argv: list, log_path: str) -> None:
    rc = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from airflow import settings
        if getattr(settings, "engine", None) is not None:  # connections of the parent are not ours
            settings.engine.dispose(close=False)
        from airflow.__main__ import main
        sys.argv = ["airflow", *argv]
        main()
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc)


def serve() -> None:
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:  # a module a later Airflow moved: only a slower command
            print(f"preload {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    try:  # what every command does first: the CLI parser, the providers' configuration
        from airflow.cli import cli_parser
        from airflow.providers_manager import ProvidersManager
        cli_parser.get_parser()
        ProvidersManager().initialize_providers_configuration()
    except Exception as e:
        print(f"preload of the CLI: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    out = sys.stdout
    lock = threading.Lock()

    def reply(msg: dict) -> None:
        with lock:
            out.write(json.dumps(msg) + "\n")
            out.flush()

    def wait(pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        reply({"pid": pid, "rc": 128 - rc if rc < 0 else rc})

    reply({"ready": os.getpid()})
    children = []
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _child(list(req["argv"]), req["log"])
            children.append(pid)
            reply({"pid": pid})
            threading.Thread(target=wait, args=(pid,), daemon=True).start()
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    serve()
