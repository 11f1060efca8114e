"""What every execution records so that it can be reproduced: code version (git commit
and dirty flag), Python and package versions."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess

__all__ = ["git_info", "environment", "PACKAGES"]

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
