"""The environment a run ran in, read back and re-created.

Each run references the ``EnvironmentLock`` it ran in by hash (``environment_hash``; see
``tfpipe.provenance``): the Python version, every installed distribution with its
version, and how tfpipe itself was installed. ``lock_differences`` says what differs
from the environment at hand; ``build_environment`` makes a virtualenv from a lock with
pip (from the package registry, every distribution pinned, no resolution), cached by the
lock's hash under ``$TFPIPE_ENV_CACHE`` (default ``$XDG_CACHE_HOME/tfpipe/envs``), and
installs tfpipe as it was: from its recorded source commit when it ran from a checkout,
else the same version from the registry.

A virtualenv counts as built only once its ``.complete`` marker is written, after every
install succeeded; a half-built one is removed and built again.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys

from tfpipe.metadata import MetadataStore
from tfpipe.provenance import environment_lock, lock_hash

__all__ = ["export_commit", "run_lock", "lock_differences", "format_differences", "build_environment", "env_cache_dir",
           "EnvironmentError_", "CACHE_ENV"]

CACHE_ENV = "TFPIPE_ENV_CACHE"
COMPLETE = ".complete"


class EnvironmentError_(RuntimeError):
    """A run's environment cannot be read back or re-created; the message says why."""


def run_lock(store: MetadataStore, env_hash: str | None) -> tuple[dict, str]:
    """The lock (and where it is stored) that a run referenced by ``env_hash``."""
    if not env_hash:
        raise EnvironmentError_("the run recorded no environment (it ran before tfpipe recorded one)")
    for a in store.list_artifacts("EnvironmentLock"):
        if a.lock_hash == env_hash and os.path.isfile(a.lock_path()):
            with open(a.lock_path(), encoding="utf-8") as f:
                lock = json.load(f)
            if lock_hash(lock) != env_hash:
                raise EnvironmentError_(f"environment lock {a.lock_path()} no longer matches its hash {env_hash[:12]}")
            return lock, a.lock_path()
    raise EnvironmentError_(f"the environment lock {env_hash[:12]} is not in the store {store.where} "
                            f"(or its file is gone)")


def lock_differences(lock: dict, current: dict | None = None) -> dict:
    """What differs between a recorded lock and ``current`` (default: this environment)."""
    cur = current or environment_lock()
    a, b = lock.get("packages", {}), cur.get("packages", {})
    ta, tb = lock.get("tfpipe", {}), cur.get("tfpipe", {})
    return {"python": None if lock.get("python") == cur.get("python") else [lock.get("python"), cur.get("python")],
            "changed": [[k, a[k], b[k]] for k in sorted(a) if k in b and a[k] != b[k]],
            "missing": [[k, a[k]] for k in sorted(a) if k not in b],
            "added": [[k, b[k]] for k in sorted(b) if k not in a],
            "tfpipe": None if (ta.get("version"), ta.get("git_commit")) == (tb.get("version"), tb.get("git_commit"))
            else [ta, tb]}


def format_differences(d: dict, limit: int = 20) -> list[str]:
    lines = []
    if d["python"]:
        lines.append(f"python {d['python'][0]} (recorded) vs {d['python'][1]} (here)")
    if d["tfpipe"]:
        a, b = d["tfpipe"]
        lines.append(f"tfpipe {a.get('version')} {str(a.get('git_commit') or '')[:10]} (recorded) vs "
                     f"{b.get('version')} {str(b.get('git_commit') or '')[:10]} (here)")
    rows = ([f"{k} {x} (recorded) vs {y} (here)" for k, x, y in d["changed"]]
            + [f"{k} {x} (recorded) is not installed here" for k, x in d["missing"]]
            + [f"{k} {y} is installed here, not in the recorded environment" for k, y in d["added"]])
    lines += rows[:limit]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return lines


def env_cache_dir() -> str:
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfpipe", "envs")


def _python_for(version: str) -> str:
    major_minor = ".".join(version.split(".")[:2])
    if ".".join(map(str, sys.version_info[:2])) == major_minor:
        return sys.executable
    found = shutil.which(f"python{major_minor}")
    if not found:
        raise EnvironmentError_(f"the run's environment needs Python {version}; no python{major_minor} on the PATH")
    return found


def _run(cmd: list[str], verbose: bool, what: str) -> None:
    p = subprocess.run(cmd, stdout=sys.stderr if verbose else subprocess.PIPE,
                       stderr=sys.stderr if verbose else subprocess.PIPE, text=True)
    if p.returncode != 0:
        tail = "" if verbose else ((p.stdout or "") + (p.stderr or ""))[-3000:]
        raise EnvironmentError_(f"{what} failed (exit {p.returncode}): {' '.join(cmd[:6])} ...\n{tail}")


def export_commit(repo: str, commit: str, into: str) -> str:
    """``git archive`` of ``commit`` unpacked into ``into`` (no shell); '' or the error."""
    git = subprocess.Popen(["git", "-C", repo, "archive", "--format=tar", commit], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", into], stdin=git.stdout, capture_output=True, text=True)
    git.stdout.close()
    err = git.stderr.read().decode(errors="replace")
    git.wait()
    if git.returncode != 0 or tar.returncode != 0:
        return (err or tar.stderr).strip() or f"git archive exited {git.returncode}, tar {tar.returncode}"
    return ""


def _tfpipe_source(info: dict, into: str) -> tuple[str, str]:
    """A directory holding tfpipe as the run had it, and how it was found."""
    src, commit = info.get("source"), info.get("git_commit")
    if src and commit and os.path.isdir(src):
        check = subprocess.run(["git", "-C", src, "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
        if check.returncode == 0:
            os.makedirs(into, exist_ok=True)
            if export_commit(src, commit, into) == "":
                dirty = " (the run had uncommitted changes to tfpipe, not reproduced)" if info.get("git_dirty") else ""
                return into, f"tfpipe from commit {commit[:10]} of {src}{dirty}"
    return "", ""


def build_environment(lock: dict, env_hash: str, verbose: bool = True) -> tuple[str, str]:
    """A virtualenv made from ``lock`` (cached by ``env_hash``): ``(its python, what
    was done)``."""
    root = env_cache_dir()
    final = os.path.join(root, env_hash)
    py = os.path.join(final, "bin", "python")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{env_hash}.lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # one build per environment at a time
        if os.path.isfile(os.path.join(final, COMPLETE)):
            with open(os.path.join(final, COMPLETE)) as f:
                return py, f"reused {final} ({json.load(f).get('tfpipe', '')})"
        shutil.rmtree(final, ignore_errors=True)  # a build that did not finish
        base = _python_for(lock["python"])
        say = (lambda m: print(m, file=sys.stderr, flush=True)) if verbose else (lambda m: None)
        say(f"building the run's environment {env_hash[:12]} in {final}: Python {lock['python']}, "
            f"{len(lock['packages'])} distributions")
        _run([base, "-m", "venv", final], verbose, "creating the virtualenv")
        unavailable = {k: v for k, v in (lock.get("sources") or {}).items() if v and not v.startswith("http")}
        req = os.path.join(final, "requirements.lock")
        with open(req, "w") as f:
            for k, v in lock["packages"].items():
                if k not in unavailable:
                    f.write(f"{k}=={v}\n")
        # --no-compile: a module is byte-compiled when it is first imported; a run imports a
        # fraction of what is installed, so compiling all of it up front is mostly wasted
        _run([py, "-m", "pip", "install", "--no-deps", "--no-input", "--no-compile", "-r", req,
              *([] if verbose else ["-q"])], verbose, "installing the recorded distributions")
        info = lock.get("tfpipe") or {}
        src, how = _tfpipe_source(info, os.path.join(final, "tfpipe-src"))
        if src:
            _run([py, "-m", "pip", "install", "--no-deps", "--no-input", src, *([] if verbose else ["-q"])],
                 verbose, "installing tfpipe")
        else:
            _run([py, "-m", "pip", "install", "--no-deps", "--no-input", f"tfpipe=={info.get('version')}"],
                 verbose, "installing tfpipe from the registry")
            how = f"tfpipe {info.get('version')} from the registry"
        note = (f"; not from a registry, left out: {', '.join(sorted(unavailable))}" if unavailable else "")
        with open(os.path.join(final, COMPLETE), "w") as f:
            json.dump({"hash": env_hash, "tfpipe": how + note, "python": lock["python"]}, f)
        return py, f"built {final} ({how}{note})"
