"""The TFX 1.16 virtualenv the side-by-side benchmark runs TFX in: Python 3.10 (TFX 1.16
has no wheels for the 3.11 tfpipe runs on), every package pinned by
``benchmarks/tfx-lock.txt`` and installed with ``--no-deps`` (the lock is a complete
freeze, so nothing is resolved). Built once, in ``.bench/tfx-venv-<hash of the lock>``
(ignored by git; ``$TFPIPE_BENCH_TFX_VENV`` overrides the place): a changed lock builds
a new one, a build that did not finish is started again.

Python 3.10 is found as ``$TFPIPE_BENCH_PYTHON310``, ``python3.10`` on the PATH, or a
pyenv installation (``$PYENV_ROOT/versions/3.10.*``, default ``~/.pyenv``).
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys

from .common import REPO

LOCK = os.path.join(REPO, "benchmarks", "tfx-lock.txt")
STAMP = ".complete"


class TfxEnvError(RuntimeError):
    """The TFX virtualenv cannot be built here (what is missing, and how to get it)."""


def _is_py310(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                             capture_output=True, text=True, timeout=60)
    except OSError:
        return False
    return out.stdout.strip() == "True"


def find_python310() -> str:
    given = os.environ.get("TFPIPE_BENCH_PYTHON310")
    if given:
        if not _is_py310(given):
            raise TfxEnvError(f"$TFPIPE_BENCH_PYTHON310={given} is not a CPython 3.10 interpreter")
        return given
    candidates = [shutil.which("python3.10")]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "3.10.*", "bin", "python3.10")), reverse=True)
    for c in candidates:
        if c and _is_py310(c):
            return c
    raise TfxEnvError("the TFX side-by-side benchmark needs CPython 3.10 (TFX 1.16 has no wheels for 3.11): "
                      "none found as $TFPIPE_BENCH_PYTHON310, python3.10 on the PATH or under "
                      f"{pyenv}/versions/3.10.*; install one (e.g. `pyenv install 3.10.13`, or the python3.10 "
                      "and python3.10-venv packages) or point $TFPIPE_BENCH_PYTHON310 at it")


def lock_hash() -> str:
    with open(LOCK, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def venv_dir() -> str:
    return os.environ.get("TFPIPE_BENCH_TFX_VENV") or os.path.join(REPO, ".bench", f"tfx-venv-{lock_hash()}")


def _pins() -> list[str]:
    with open(LOCK) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ensure_venv(log=print) -> str:
    """The TFX virtualenv's python, building the virtualenv first if needed."""
    d = venv_dir()
    py = os.path.join(d, "bin", "python")
    if os.path.exists(os.path.join(d, STAMP)):
        return py
    if os.path.exists(d):
        log(f"removing the unfinished TFX virtualenv at {d}")
        shutil.rmtree(d)
    base = find_python310()
    log(f"building the TFX 1.16 virtualenv at {d} from {os.path.relpath(LOCK, REPO)} with {base} "
        f"(once; a few minutes and about 3 GB)")
    subprocess.run([base, "-m", "venv", d], check=True)
    pins = _pins()
    tools = [p for p in pins if p.split("==")[0] in ("pip", "setuptools", "wheel")]

    def pip(*args):
        p = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                           capture_output=True, text=True)
        if p.returncode:
            raise TfxEnvError(f"pip install {' '.join(args[:4])}... failed in {d}:\n{p.stderr[-3000:]}")
    pip(*tools)
    pip("--no-deps", "-r", LOCK)
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode:
        raise TfxEnvError(f"pip check fails in {d} after installing {LOCK}:\n{check.stdout[-3000:]}")
    probe = subprocess.run([py, "-c", "from tfx import v1 as tfx; print(tfx.__version__)"],
                           capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if probe.returncode or probe.stdout.strip() != "1.16.0":
        raise TfxEnvError(f"the TFX virtualenv at {d} does not import tfx 1.16.0:\n{probe.stderr[-3000:]}")
    with open(os.path.join(d, STAMP), "w") as f:
        f.write(lock_hash() + "\n")
    log(f"TFX {probe.stdout.strip()} ready in {d}")
    return py


if __name__ == "__main__":  # python -m benchmarks.tfx_env: build (or find) it, print its python
    print(ensure_venv(log=lambda m: print(m, file=sys.stderr)))
