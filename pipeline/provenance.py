"""What every execution records so that it can be reproduced: code version (git commit
and dirty flag), Python and package versions, and the full environment: a lock of every
installed distribution and the Python version (``environment_lock``), stored once per
distinct environment as an ``EnvironmentLock`` artifact and referenced by its hash from
each run and execution (``record_environment``)."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess

from . import fileio
from .state import ArtifactState

__all__ = ["git_info", "environment", "PACKAGES", "owner", "owner_is_dead", "environment_lock", "lock_hash",
           "record_environment", "tfpipe_installation", "normalize_name", "ENVIRONMENTS_DIR", "environment_record"]

ENVIRONMENTS_DIR = "_environments"  # under the pipeline root: <root>/_environments/<hash>/environment.json

PACKAGES = ("tfpipe", "tensorflow", "tensorflow-data-validation", "tensorflow-transform",
            "tfx-bsl", "apache-beam", "ml-metadata", "pyarrow", "numpy", "pandas", "keras")


@functools.lru_cache(maxsize=32)
def git_info(path: str) -> dict:
    """``{"git_commit": sha, "git_dirty": bool}`` of the git work tree holding ``path``,
    or ``{}`` when it is not in one."""
    d = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        sha = subprocess.run(["git", "-C", d, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return {}
        st = subprocess.run(["git", "-C", d, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10)
        return {"git_commit": sha.stdout.strip(), "git_dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


@functools.lru_cache(maxsize=1)
def environment() -> dict:
    from importlib import metadata
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "packages": json.dumps(versions, sort_keys=True)}


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return "?"


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the pid, it names a process
    unambiguously (a pid can be reused; the pair cannot)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has ended already


def owner() -> str:
    """``host:boot:pid:start`` of this process: recorded on the runs and executions it
    owns, so that a later command can tell when their owner died without recording an end."""
    import socket
    pid = os.getpid()
    return f"{socket.gethostname()}:{_boot_id()}:{pid}:{_start_ticks(pid) or '?'}"


def owner_is_dead(recorded: str | None) -> bool:
    """True when ``recorded`` (see ``owner``) names a process of this machine that no
    longer exists (gone, or its pid reused, or the machine rebooted since). An owner on
    another machine, or one that cannot be told, is not dead."""
    import socket
    if not recorded or recorded.count(":") < 3:
        return False
    host, boot, pid, start = recorded.rsplit(":", 3)
    if host != socket.gethostname() or boot == "?" or start == "?":
        return False
    if boot != _boot_id():
        return True
    try:
        now = _start_ticks(int(pid))
    except ValueError:
        return False
    return now is None or now != start


def normalize_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    import re
    return re.sub(r"[-_.]+", "-", name).lower()


def tfpipe_installation() -> dict:
    """How tfpipe itself is installed: its version, the source tree it runs from when that
    is a checkout (an editable install: the directory holding pyproject.toml) with its git
    commit, else the installed distribution."""
    from .version import __version__
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(here)
    out: dict = {"version": __version__}
    pyproject = os.path.join(top, "pyproject.toml")
    if os.path.isfile(pyproject):
        with open(pyproject, encoding="utf-8") as f:
            if 'name = "tfpipe"' in f.read():
                out["source"] = top
                out.update(git_info(top))
    return out


def _name_and_version(dist) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version`` from the header of its METADATA (or
    PKG-INFO), read as text. ``dist.metadata`` parses the whole file, description included,
    with the email parser: a quarter of a second for the ~280 distributions here, on every
    run and every task. Falls back to that parser when the header does not have both."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found = {}
    for line in text.splitlines():
        if not line:
            break  # the end of the header
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in found:
            found[key] = value.strip()
            if len(found) == 2:
                return found["Name"], found["Version"]
    return dist.metadata["Name"], dist.version


@functools.lru_cache(maxsize=1)
def environment_lock() -> dict:
    """Every installed distribution (name -> version; tfpipe apart), where a distribution
    came from when not from a package index (its PEP 610 ``direct_url.json``), the Python
    version and platform."""
    import sys
    from importlib import metadata
    packages, sources = {}, {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if not name:
            continue
        key = normalize_name(name)
        if key in packages or key == "tfpipe":
            continue
        packages[key] = version
        try:
            direct = dist.read_text("direct_url.json")
        except Exception:  # unreadable metadata: the version is what matters
            direct = None
        if direct:
            try:
                sources[key] = json.loads(direct).get("url")
            except ValueError:
                pass
    return {"python": platform.python_version(), "implementation": sys.implementation.name,
            "platform": f"{sys.platform}-{platform.machine()}",
            "packages": dict(sorted(packages.items())), "sources": dict(sorted(sources.items())),
            "tfpipe": tfpipe_installation()}


def lock_hash(lock: dict) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(lock, sort_keys=True).encode()).hexdigest()


_RECORDED: set = set()


def record_environment(store, root: str) -> str:
    """The hash of this process's environment lock, stored once per distinct environment
    in ``store`` as an EnvironmentLock artifact at ``<root>/_environments/<hash>/``."""
    from .artifacts import EnvironmentLock
    from .fingerprint import fingerprint_contents
    lock = environment_lock()
    h = lock_hash(lock)
    key = (store.where, h)
    if key in _RECORDED:
        return h
    uri = fileio.join(fileio.abspath(root), ENVIRONMENTS_DIR, h)
    if not store.has_artifacts_at(uri):
        art = EnvironmentLock(uri=uri, state=ArtifactState.LIVE)
        path = art.lock_path()
        text = json.dumps(lock, indent=1, sort_keys=True)
        if not fileio.isfile(path):
            fileio.write_text(path, text)
        art.lock_hash, art.python = h, lock["python"]
        art.fingerprint = fingerprint_contents({EnvironmentLock.LOCK_FILE: text.encode()})
        store.put_artifacts([art])
    _RECORDED.add(key)
    return h


def environment_record(store, root: str) -> dict:
    """``{"environment_hash": h}`` for a run's or an execution's properties, or
    ``{"environment_error": why}`` when the lock could not be stored (the run goes on)."""
    try:
        return {"environment_hash": record_environment(store, root)}
    except Exception as e:  # an unwritable root fails the node later, with its own error
        return {"environment_error": f"{type(e).__name__}: {e}"}
