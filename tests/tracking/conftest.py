"""Shared, expensive fixtures of the tracking tests: the penguin pipeline on the real
components (ExampleGen ... Trainer, Evaluator, Pusher), run twice in one session with a
changed Trainer setting (the second run re-trains, re-evaluates and pushes a second
version; everything upstream is a cache hit)."""
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
    return types.SimpleNamespace(dir=d, metadata=env["TRACKING_METADATA"], push=env["TRACKING_PUSH"],
                                 root=env["TRACKING_ROOT"], runs=runs, ir=ir)


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=test@example.com", "-c", "user.name=Test",
                           *args], capture_output=True, text=True, check=True).stdout


__all__ = ["git", "REPO"]
