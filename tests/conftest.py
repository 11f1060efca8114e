import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tfpipe(*args, cwd=None, env=None, timeout=600, check=None):
    """Run the real ``tfpipe`` CLI in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError(f"tfpipe {' '.join(args)} exited {p.returncode}, expected {check}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr[-6000:]}")
    return p


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh TFPIPE_HOME (metadata + artifacts) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("TFPIPE_HOME", str(h))
    return h
