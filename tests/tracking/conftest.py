"""Shared, expensive fixtures of the tracking tests: the penguin pipeline on the real
components (ExampleGen ... Trainer, Evaluator, Pusher), run twice in one session with a
changed Trainer setting (the second run re-trains, re-evaluates and pushes a second
version; everything upstream is a cache hit).

The registry is state the tests change (aliases, promotions and rollbacks are recorded in
ML Metadata, models.config and the serving link are written beside the pushed versions).
A test module that changes it works on ``own_registry``: a copy of the metadata as the two
runs left it and of the pushed versions, so no module sees another's changes and the
order they run in does not matter."""
import os
import shutil
import sqlite3
import subprocess
import types

import pytest

from tests.conftest import REPO, scoped_env


@pytest.fixture(scope="session")
def penguin(tmp_path_factory):
    from tests.tracking import penguin_full
    from tfpipe import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner

    d = tmp_path_factory.mktemp("tracking")
    env = {"TRACKING_ROOT": str(d / "root"), "TRACKING_METADATA": str(d / "metadata.sqlite"),
           "TRACKING_PUSH": str(d / "serving")}
    runs = []
    for epochs in ("2", "3"):
        with scoped_env(**env, TRACKING_EPOCHS=epochs):
            ir = compile_pipeline(penguin_full.create_pipeline())
        res = LocalRunner(verbose=False).run(ir)
        assert res.ok, f"penguin run failed: {res.error}"
        runs.append(res.run_id)
    pristine = str(d / "metadata.pristine.sqlite")
    _copy_sqlite(env["TRACKING_METADATA"], pristine)
    return types.SimpleNamespace(dir=d, metadata=env["TRACKING_METADATA"], push=env["TRACKING_PUSH"],
                                 root=env["TRACKING_ROOT"], runs=runs, ir=ir, pristine=pristine)


def _copy_sqlite(src: str, dst: str) -> None:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def own_registry(penguin, d):
    """``penguin`` with a registry of its own under ``d``: the metadata as the two runs left
    it (no transitions) and a copy of the pushed versions, which the copied PushedModel
    artifacts point at. The runs' other artifacts (under ``penguin.root``) are shared, read
    only."""
    from tfpipe.metadata import MetadataStore
    md, push = str(d / "metadata.sqlite"), str(d / "serving")
    _copy_sqlite(penguin.pristine, md)
    os.makedirs(push)
    for v in os.listdir(penguin.push):
        if v.isdigit():
            shutil.copytree(os.path.join(penguin.push, v), os.path.join(push, v))
    store = MetadataStore(md)
    arts = [a for a in store.list_artifacts("PushedModel") if a.destination == penguin.push]
    for a in arts:
        a.destination = push
    store.put_artifacts(arts)
    return types.SimpleNamespace(**{**vars(penguin), "metadata": md, "push": push})


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=test@example.com", "-c", "user.name=Test",
                           *args], capture_output=True, text=True, check=True).stdout


__all__ = ["git", "REPO", "own_registry"]
