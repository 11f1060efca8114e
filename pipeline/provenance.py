"""What every execution records so that it can be reproduced: code version (git commit
and dirty flag), Python and package versions."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess

__all__ = ["git_info", "environment", "PACKAGES", "owner", "owner_is_dead"]

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
