import contextlib
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# what the CLI and every task do before anything imports TensorFlow (tfpipe.runtime.pin_keras)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")


def tfpipe(*args, cwd=None, env=None, timeout=600, check=None):
    """Run the real ``tfpipe`` CLI in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "tfpipe.cli", *args], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError(f"tfpipe {' '.join(args)} exited {p.returncode}, expected {check}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr[-6000:]}")
    return p


@contextlib.contextmanager
def scoped_env(**env: str):
    """Set environment variables for the ``with`` block, then restore what was there (for
    session fixtures, which cannot use monkeypatch)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield os.environ
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# the pytest-xdist worker this process is ("gw0", "gw1", ...; `make test` runs two), or None
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


@pytest.fixture(scope="session", autouse=True)
def task_host(tmp_path_factory):
    """Tasks of Airflow and kfp.local fork from the warm task host (orchestrators/taskhost.py);
    the hosts this session starts stop when it ends, and idle ones sooner. Under pytest-xdist
    each worker has hosts of its own (their sockets in a runtime directory in the worker's
    tmp), so a worker that finishes first and stops its host does not stop the one another
    worker's tasks are running in."""
    from tfpipe.orchestrators import taskhost
    env = {taskhost.IDLE_ENV: os.environ.get(taskhost.IDLE_ENV, "120")}
    if XDIST_WORKER:
        env["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    with scoped_env(**env):
        yield
        taskhost.stop_host(wait_s=30)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh TFPIPE_HOME (metadata + artifacts) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("TFPIPE_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def mysql(tmp_path_factory):
    """A MariaDB server of the session's own on a free loopback port (tests/mysql_server.py);
    ``mysql.create_database(name)`` gives a store URL (password by reference: put
    ``mysql.env()`` in the environment of whatever connects)."""
    from tests.mysql_server import MySQLServer
    server = MySQLServer(str(tmp_path_factory.mktemp("mysql")))
    server.install()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the session's own on a free loopback port
    (tests/postgres_server.py); ``postgres.create_database(name)`` gives a URL for its test
    user (password by reference: put ``postgres.env()`` in the environment of whatever
    connects). A missing PostgreSQL fails the tests that use it: `make test` installs it."""
    from tests.postgres_server import PostgresServer
    server = PostgresServer()
    try:
        server.install()
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """SeaweedFS, the S3 server of record (tests/object_store.py), on a free loopback port
    with its data in the session's tmp; one bucket, ``tfpipe-test``. ``s3.env()`` is what
    a process needs to reach it (endpoint and test credentials, the standard variables)."""
    from tests.object_store import SeaweedFS
    server = SeaweedFS(str(tmp_path_factory.mktemp("seaweedfs"))).start()
    server.bucket = server.make_bucket("tfpipe-test")
    yield server
    server.stop()


@pytest.fixture
def moto_s3(tmp_path):
    """moto's S3 server for one test (in memory: quick to start, and to stop mid-run)."""
    from tests.object_store import MotoS3
    server = MotoS3(str(tmp_path / "moto")).start()
    server.bucket = server.make_bucket("tfpipe-test")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """The GCS emulator (``STORAGE_EMULATOR_HOST``), one bucket ``tfpipe-test``."""
    from tests.object_store import GCSEmulator
    server = GCSEmulator(str(tmp_path_factory.mktemp("gcs"))).start()
    server.bucket = server.make_bucket("tfpipe-test")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """MLflow's tracking server and UI (tests/mlflow_server.py) on a free loopback port: a
    SQLite backend store and the artifacts it serves, in the session's tmp."""
    from tests.mlflow_server import MlflowServer
    server = MlflowServer(str(tmp_path_factory.mktemp("mlflow-server"))).start()
    yield server
    server.stop()


PENGUIN_STEPS = 100  # training steps of the session's penguin store: blessed, and quick


def copy_penguin_store(src, dst) -> str:
    """Copy a penguin store folder (``root/`` and ``metadata.sqlite``) from ``src`` to ``dst``.
    ML Metadata holds absolute paths (artifact URIs; in properties the Pusher's destination,
    its parameters and cache material, the recorded IR): every text value naming ``src`` is
    rewritten to name ``dst``, and the cache key of an execution whose cache material named
    it is computed again, so the copy is a store of its own, as if its runs had been made
    there: a re-run is served from its cache, and its consumer can run on it, promote, roll
    back or garbage-collect without touching the others. Files inside artifacts are copied
    as they are (a few record where they were written)."""
    import json
    import shutil
    import sqlite3

    from tfpipe.cache import material_key
    src, dst = os.path.abspath(str(src)), os.path.abspath(str(dst))
    os.makedirs(dst, exist_ok=True)
    shutil.copytree(os.path.join(src, "root"), os.path.join(dst, "root"), symlinks=True)
    a, b = sqlite3.connect(os.path.join(src, "metadata.sqlite")), sqlite3.connect(os.path.join(dst, "metadata.sqlite"))
    try:
        a.backup(b)
        old, new = src + os.sep, dst + os.sep
        for (table,) in b.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for col in b.execute(f'PRAGMA table_info("{table}")').fetchall():
                if col[2].upper().startswith(("TEXT", "VARCHAR", "CHAR")) or col[2] == "":
                    b.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?) '
                              f'WHERE instr("{col[1]}", ?) > 0', (old, new, old))
        moved = b.execute("SELECT execution_id, string_value FROM ExecutionProperty WHERE name = 'cache_material' "
                          "AND instr(string_value, ?) > 0", (new,)).fetchall()
        for eid, material in moved:
            b.execute("UPDATE ExecutionProperty SET string_value = ? WHERE execution_id = ? AND name = 'cache_key'",
                      (material_key(json.loads(material)), eid))
        b.commit()
    finally:
        a.close()
        b.close()
    return dst


def penguin_kw(d) -> dict:
    """The keywords of examples.penguin's create_pipeline for the penguin store in ``d``."""
    return dict(root=os.path.join(str(d), "root"), metadata=os.path.join(str(d), "metadata.sqlite"),
                train_steps=PENGUIN_STEPS)


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive lock on ``path`` (flock) for the ``with`` block: one process at a time."""
    import fcntl
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class PenguinStore:
    """The session's penguin store, made once, kept as read-only templates to copy
    (``copy_penguin_store``; the ``penguin_copy`` fixture):

    ``trained``: the store after run ``store-trained`` (ExampleGen to the Trainer: the data
    half, Transform, the Trainer);
    ``pushed``: the store after run ``store-pushed`` (the whole pipeline, upstream of the
    Resolver from the cache: the model blessed, infra-blessed and pushed). Made from
    ``trained`` on first use, so a session that needs only a trained model does not
    evaluate and push one.

    Each stage is made under a file lock in ``base`` and marked done there, so that the
    workers of a pytest-xdist session, which share ``base``, make it once between them: the
    first to need it runs it, the others wait and use it (or fail with its error)."""

    def __init__(self, base):
        from examples.penguin.pipeline import create_pipeline
        from tfpipe import compile_pipeline
        self._base = str(base)
        os.makedirs(self._base, exist_ok=True)
        self._dir = os.path.join(self._base, "pushed")
        self._ir = compile_pipeline(create_pipeline(**penguin_kw(self._dir)))
        self.trained = self._stage("trained", self._make_trained)
        self._pushed = None

    def _stage(self, name: str, make) -> str:
        done, failed = (os.path.join(self._base, f"{name}.{s}") for s in ("done", "failed"))
        with _file_lock(os.path.join(self._base, ".lock")):
            if os.path.exists(failed):
                with open(failed) as f:
                    raise AssertionError(f"the penguin store's {name} stage failed (in another worker):\n{f.read()}")
            if not os.path.exists(done):
                try:
                    make()
                except BaseException as e:
                    with open(failed, "w") as f:
                        f.write(f"{type(e).__name__}: {e}")
                    raise
                open(done, "w").close()
        return os.path.join(self._base, name)

    def _make_trained(self) -> None:
        from tfpipe.orchestrators.local import LocalRunner
        r = LocalRunner(verbose=False).run(self._ir, run_id="store-trained", to_node="Trainer")
        assert r.ok, r.error
        copy_penguin_store(self._dir, os.path.join(self._base, "trained"))

    def _make_pushed(self) -> None:
        from tfpipe.orchestrators.local import LocalRunner
        r = LocalRunner(verbose=False).run(self._ir, run_id="store-pushed")
        assert r.ok, r.error
        outs = {n.node_id: {k: v[0] for k, v in n.outputs.items() if v} for n in r.nodes}
        assert outs["Evaluator"]["blessing"].blessed and outs["Pusher"]["pushed_model"].pushed

    @property
    def pushed(self) -> str:
        if self._pushed is None:
            self._stage("pushed", self._make_pushed)
            self._pushed = self._dir
        return self._pushed


@pytest.fixture(scope="session")
def penguin_store(tmp_path_factory):
    """ONE run of the penguin pipeline for the session (``PenguinStore``): under pytest-xdist
    for all its workers, in the session's tmp they share (each worker's is a folder in it)."""
    if XDIST_WORKER:
        return PenguinStore(tmp_path_factory.getbasetemp().parent / "penguin_store")
    return PenguinStore(tmp_path_factory.mktemp("penguin_store"))


@pytest.fixture
def penguin_copy(penguin_store, tmp_path):
    """A copy of the session's pushed penguin store for one test: ``dir``, ``kw`` (for
    create_pipeline: root, metadata, train_steps), ``metadata``, ``root``, ``serving``
    (the push destination) and ``run_id`` (the run that pushed)."""
    import types
    d = copy_penguin_store(penguin_store.pushed, tmp_path / "penguin")
    kw = penguin_kw(d)
    return types.SimpleNamespace(dir=d, kw=kw, root=kw["root"], metadata=kw["metadata"],
                                 serving=os.path.join(kw["root"], "serving_model"), run_id="store-pushed")


# Test tiers (`make test` runs them all; `make test-fast` leaves out the four marked here):
# a test is marked by the fixtures it uses, directly or through other fixtures, so a new test
# on the penguin store or a database server lands in its tier without anyone marking it.
# Shared fixtures go by their name (and folder), a module's own by "<module file>::<name>".
# A test that asks for a server in its body (request.getfixturevalue) carries the mark itself.
TIER_FIXTURES = {
    "slow": {  # trains a model or runs a pipeline past the data half
        "tests::penguin_store", "tests::penguin_copy",
        "tests/components::penguin_model", "tests/components::run_penguin_node",
        "tests/tracking::penguin", "tests/orchestrators::scenarios",
        "tests/components/test_binary_classification.py::run",
        "tests/components/test_data_half.py::penguin",
        "tests/components/test_model_validation.py::runs",
        "tests/examples/test_diabetes.py::diabetes",
        "tests/examples/test_penguin_tfx.py::ported",
        "tests/orchestrators/test_beam_cluster.py::penguin_on_cluster",
        "tests/orchestrators/test_keras_parity.py::parity",
        "tests/pipeline/test_mysql_store.py::penguin_on_mysql",
        "tests/pipeline/test_crash_recovery.py::crash",  # penguin to the Trainer, killed and resumed
        "tests/test_user_repository.py::user_repo",
        "tests/tracking/test_experiments.py::modrepo",
        "tests/tracking/test_sweep.py::sweep",
        "tests/cli/test_init.py::dist",  # python -m build, then a virtualenv installing the wheel
    },
    "airflow": {"tests/orchestrators::airflow_runner", "tests/orchestrators::scenarios",
                "tests/orchestrators/test_keras_parity.py::parity"},  # asks for airflow_runner when run
    "services": {"tests::mysql", "tests::postgres", "tests::s3", "tests::moto_s3", "tests::gcs",
                 "tests::mlflow_server",
                 # these ask for one of the servers above when run (request.getfixturevalue)
                 "tests/pipeline/test_sql_source.py::db", "tests/pipeline/test_object_store.py::store"},
}


def _drives_chromium(item) -> bool:
    """The test calls a helper of tests/tracking/chromium.py (or reads its CHROMIUM)."""
    fn = getattr(item, "function", None)
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    g = fn.__globals__
    return any(getattr(g.get(n), "__module__", None) == "tests.tracking.chromium" or n == "CHROMIUM"
               for n in code.co_names)


# pytest-xdist (`make test`: two workers, --dist loadfile) sends each test module whole to one
# worker, so that its module-scoped fixtures are made once. The modules whose tests share one of
# these expensive session fixtures go together, to one worker, so that it is made once and not
# once per worker (the scheduler below; pytest-xdist's own xdist_group marks do not reach its
# scheduler under pytest 9). A module's group is the first its tests name, in this order.
XDIST_GROUPS = {
    # the four orchestrators' scenarios (the Airflow runner's home among them)
    "tests/orchestrators::scenarios": "orchestrator-scenarios",
    "tests/orchestrators::airflow_runner": "orchestrator-scenarios",
    "tests/orchestrators/test_keras_parity.py::parity": "orchestrator-scenarios",  # asks for airflow_runner
    # the tracking tests' two penguin runs
    "tests/tracking::penguin": "tracking-penguin",
    # the components' copy of the penguin store, trained
    "tests/components::penguin_model": "components-penguin-model",
}
XDIST_GROUPS_ENV = "TFPIPE_TEST_XDIST_GROUPS"  # the file the workers write {module: group} to


def _fixtures_used(item) -> set[str]:
    info = getattr(item, "_fixtureinfo", None)
    used = set()
    for name in getattr(item, "fixturenames", ()):
        for fd in (info.name2fixturedefs.get(name, ()) if info else ()):
            used.add(f"{fd.baseid or 'tests'}::{name}")
    return used


def pytest_collection_modifyitems(config, items):
    groups: dict[str, str] = {}  # module file -> its group, when it has one
    for item in items:
        used = _fixtures_used(item)
        for marker, fixtures in TIER_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)
        if _drives_chromium(item):
            item.add_marker("chromium")
        module = item.nodeid.split("::")[0]
        for fixture, group in XDIST_GROUPS.items():
            if fixture in used and module not in groups:
                groups[module] = group
    if XDIST_WORKER and os.environ.get(XDIST_GROUPS_ENV):  # for the scheduler (every worker collects the same)
        import json
        path = os.environ[XDIST_GROUPS_ENV]
        with open(f"{path}.{XDIST_WORKER}", "w") as f:
            json.dump(groups, f)
        os.replace(f"{path}.{XDIST_WORKER}", path)


def pytest_configure(config):
    """The controller of a pytest-xdist run: where its workers write the modules' groups."""
    if not XDIST_WORKER and getattr(config.option, "numprocesses", None):
        import tempfile
        fd, path = tempfile.mkstemp(prefix="tfpipe-xdist-groups-", suffix=".json")
        os.close(fd)
        os.remove(path)
        os.environ[XDIST_GROUPS_ENV] = config._tfpipe_xdist_groups = path


def pytest_unconfigure(config):
    path = getattr(config, "_tfpipe_xdist_groups", None)
    if path:
        os.environ.pop(XDIST_GROUPS_ENV, None)
        with contextlib.suppress(OSError):
            os.remove(path)


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the modules of one group (``XDIST_GROUPS``) as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadFileGroupScheduling(LoadScopeScheduling):
        _groups: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # called once every worker has collected (and written the file)
                import json
                try:
                    with open(os.environ.get(XDIST_GROUPS_ENV, "")) as f:
                        self._groups = json.load(f)
                except (OSError, ValueError):
                    self._groups = {}
                self.log("module groups:", self._groups)
            module = nodeid.split("::")[0]
            return self._groups.get(module, module)

    return LoadFileGroupScheduling(config, log)
