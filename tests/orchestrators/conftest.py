"""Shared, session-scoped orchestrator runs: each orchestrator runs the scenarios once
(in its own TFPIPE_HOME) and every contract / adapter test reads the results."""
import os
import sys
import threading

import pytest

from tests.conftest import REPO, scoped_env

HERE = os.path.dirname(os.path.abspath(__file__))
PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")
CONTRACT = os.path.join(HERE, "contract_pipeline.py")
FLAKY = os.path.join(HERE, "flaky_pipeline.py")
AIRFLOW_BIN = os.path.join(REPO, ".venv-airflow", "bin", "airflow")
ORCHESTRATORS = ["local", "beam", "kfp-local", "airflow"]


def compile_file(path: str, home: str, env: dict | None = None) -> dict:
    """Compile a pipeline file to its IR with TFPIPE_HOME=home (and ``env``) set while
    the pipeline is created."""
    from tfpipe.cli.common import load_pipeline
    from tfpipe.compiler import compile_pipeline
    with scoped_env(TFPIPE_HOME=home, **(env or {})):
        p = load_pipeline(path)
        ir = compile_pipeline(p)
        ir["pipeline"]["source"] = p.source
        return ir


def penguin_full(home: str, store: str | None = None) -> dict:
    """The whole penguin pipeline, ExampleGen to Pusher (the training steps of the session's
    penguin store): what every orchestrator runs in the contract. ``store``: a bucket URI under which the input data,
    the artifact root and the push destination go (the metadata stays in ``home``)."""
    from examples.penguin.pipeline import DATA, create_pipeline
    from tests.conftest import PENGUIN_STEPS
    from tfpipe import fileio
    from tfpipe.compiler import compile_pipeline
    data, root = DATA, os.path.join(home, "artifacts", "penguin")
    if store:
        data, root = fileio.join(store, "data", "penguin"), fileio.join(store, "artifacts", "penguin")
        fileio.copy_tree(DATA, data)
    p = create_pipeline(data_root=data, root=root, metadata=os.path.join(home, "metadata.sqlite"),
                        train_steps=PENGUIN_STEPS)
    ir = compile_pipeline(p)
    ir["pipeline"]["source"] = PENGUIN
    return ir


def summary(store, run_id: str) -> dict:
    """node_id -> the node's latest execution in the run: state and outputs."""
    from tfpipe.tracking import records
    info = records.show_run(store, run_id)
    out = {}
    for e in info["executions"]:
        out[e["node_id"]] = e
    return {"status": info["status"], "nodes": out, "executions": info["executions"]}


class Scenario:
    """What one orchestrator did with the penguin and the contract pipelines."""

    def __init__(self, name: str, tmp, airflow_runner_factory, store: str | None = None, penguin_store=None):
        self.name, self.tmp, self.store, self.penguin_store = name, tmp, store, penguin_store
        self.home = str(tmp / "home")
        self.flag = str(tmp / "fail.flag")
        self.runner = self._runner(airflow_runner_factory)
        self.results, self.summaries = {}, {}

    def _runner(self, airflow_factory):
        if self.name == "local":
            from tfpipe.orchestrators.local import LocalRunner
            return LocalRunner(verbose=False)
        if self.name == "beam":
            from tfpipe.orchestrators.beam import BeamDagRunner
            return BeamDagRunner(verbose=False)
        if self.name == "kfp-local":
            from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner
            return KfpLocalRunner(verbose=False, workdir=str(self.tmp / "kfp"))
        if self.name == "airflow":
            return airflow_factory()
        raise KeyError(self.name)

    def run(self, ir: dict, run_id: str, **kw):
        from tfpipe.metadata import MetadataStore
        r = self.runner.run(ir, run_id=run_id, **kw)
        self.results[run_id] = r
        self.summaries[run_id] = summary(MetadataStore(ir["pipeline"]["metadata"]), run_id)
        if self.name == "airflow":
            self.summaries[run_id]["airflow_log"] = self.runner.last_log
        return r

    def prepare(self):
        """Compile the IRs (in the main thread: compiling sets environment variables)."""
        self.penguin_ir = penguin_full(self.home, self.store)
        self.contract_ir = compile_file(CONTRACT, self.home, {"CONTRACT_FAIL_FLAG": self.flag})
        if self.name == "airflow":
            self.marker = str(self.tmp / "first-attempt")
            self.flaky_ir = compile_file(FLAKY, self.home, {"FLAKY_MARKER": self.marker})
        return self

    def disk_reference(self):
        """``penguin-disk``: the same penguin pipeline run by the local runner on local disk,
        which is the session's penguin store (tests/conftest.py; its run ``store-pushed``),
        copied."""
        from tests.conftest import copy_penguin_store, penguin_kw
        from tfpipe.metadata import MetadataStore
        kw = penguin_kw(copy_penguin_store(self.penguin_store.pushed, self.tmp / "disk"))
        self.disk_ir = {"pipeline": {"metadata": kw["metadata"], "root": kw["root"]}}
        self.summaries["penguin-disk"] = summary(MetadataStore(kw["metadata"]), "store-pushed")

    def play(self):
        self.run(self.penguin_ir, "penguin-1")
        self.run(self.penguin_ir, "penguin-2")
        if self.name == "local":  # the reference on local disk for the object-store runs
            self.disk_reference()
        open(self.flag, "w").close()
        self.run(self.contract_ir, "contract-1")   # Boom fails
        os.remove(self.flag)
        self.run(self.contract_ir, "contract-2")   # resumes: upstream of Boom from cache
        if self.name == "airflow":  # a task that fails once, retried; a parameter from dag_run.conf
            self.run(self.flaky_ir, "flaky-1", parameters={"FlakyStart__message": "from dag_run.conf"})
        return self


@pytest.fixture(autouse=True)
def _reach_s3(s3, monkeypatch):
    """The penguin runs' artifacts are on the S3 server: every check here reads them there."""
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)


@pytest.fixture(scope="session")
def airflow_runner(tmp_path_factory):
    """An AIRFLOW_HOME in tmp with a migrated SQLite database (airflow db migrate)."""
    from tfpipe.orchestrators.airflow.local import AirflowLocalRunner
    if not os.path.exists(AIRFLOW_BIN):
        pytest.fail(f"{AIRFLOW_BIN} is missing: `make airflow` creates the Airflow virtualenv "
                    f"(make test depends on it)")
    runner = AirflowLocalRunner(str(tmp_path_factory.mktemp("airflow-home")), airflow_bin=AIRFLOW_BIN,
                                python=sys.executable, verbose=False)  # set up by its first run
    yield runner
    runner.close()  # its execution API server and warm Airflow process


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory, request, s3, penguin_store):
    """``scenarios(name)``: what orchestrator ``name`` did. All four scenarios are played on
    the first request, Airflow's in a background thread (its time is mostly spent waiting
    on the `airflow` subprocesses) while the others play in the foreground. The penguin
    pipeline runs with its data, artifacts and pushed models on the S3 server (each
    orchestrator under its own prefix), the contract pipeline on local disk, and the local
    runner's penguin on local disk (``penguin-disk``) is the session's penguin store: every
    orchestrator on both."""
    done: dict[str, Scenario] = {}

    def play_all():
        with scoped_env(**s3.env()):
            _play_all()

    def _play_all():
        factory = lambda: request.getfixturevalue("airflow_runner")  # noqa: E731
        plays = {n: Scenario(n, tmp_path_factory.mktemp(f"orch-{n}"), factory, store=f"{s3.bucket}/orch-{n}",
                             penguin_store=penguin_store).prepare() for n in ORCHESTRATORS}
        errors: list[BaseException] = []

        def background():
            try:
                plays["airflow"].play()
            except BaseException as e:  # re-raised in the main thread
                errors.append(e)
        t = threading.Thread(target=background, name="airflow-scenario")
        t.start()
        try:
            for n in ORCHESTRATORS:
                if n != "airflow":
                    plays[n].play()
        finally:
            t.join()
        if errors:
            raise errors[0]
        done.update(plays)

    def get(name: str) -> Scenario:
        if not done:
            play_all()
        return done[name]
    return get
