"""The user code of runs, file by file: which module files (and the local modules they
import) each node's execution ran, with their sha256 as the launcher recorded them
(``code_files``), which of them changed between runs, and a short unified diff of a
changed text file from git, when both versions are still in the repository.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import subprocess

__all__ = ["code_file_rows", "file_at_commit", "code_diff", "display_paths"]


def code_file_rows(by_node: list[dict], nodes: list[str]) -> list[dict]:
    """One row per (node, file) over the runs: ``values`` the sha256 in each run (None
    where the run's execution did not use the file), ``differs``."""
    rows = []
    for node in nodes:
        es = [m.get(node) for m in by_node]
        files = sorted({f for e in es if e for f in (e.get("code_files") or {})})
        for f in files:
            vals = [(e.get("code_files") or {}).get(f) if e else None for e in es]
            rows.append({"node": node, "file": f, "values": vals, "differs": len(set(vals)) > 1,
                         "commits": [e.get("git_commit") if e else None for e in es]})
    return rows


def display_paths(paths: list[str]) -> dict[str, str]:
    """Each absolute path as shown: relative to the directory all of them share."""
    if not paths:
        return {}
    common = os.path.commonpath([os.path.dirname(p) for p in paths]) if len(paths) > 1 else os.path.dirname(paths[0])
    return {p: os.path.relpath(p, common) for p in paths}


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", cwd, *args], capture_output=True, timeout=60)


def file_at_commit(path: str, commit: str | None, sha256: str | None) -> tuple[bytes | None, str]:
    """The content of ``path`` at ``commit`` when it is the content a run recorded
    (``sha256``), else ``(None, why not)``."""
    if not commit:
        return None, "the run recorded no git commit"
    d = os.path.dirname(path)
    while d and not os.path.isdir(d):
        d = os.path.dirname(d)
    top = _git(d, "rev-parse", "--show-toplevel") if d else None
    if top is None or top.returncode != 0:
        return None, f"{os.path.dirname(path)} is not in a git work tree"
    repo = top.stdout.decode().strip()
    rel = os.path.relpath(path, repo)
    got = _git(repo, "show", f"{commit}:{rel}")
    if got.returncode != 0:
        return None, f"{rel} is not in commit {commit[:10]} of {repo}"
    if sha256 and hashlib.sha256(got.stdout).hexdigest() != sha256:
        return None, f"{rel} differs from commit {commit[:10]}: the run used uncommitted changes"
    return got.stdout, ""


def code_diff(path: str, a: tuple[str | None, str | None], b: tuple[str | None, str | None],
              label_a: str, label_b: str, max_lines: int = 60) -> dict:
    """A unified diff of ``path`` between two runs' versions (``(commit, sha256)`` each),
    read from git: ``{"diff": [lines], "truncated": n}`` or ``{"unavailable": why}``."""
    old, why_a = file_at_commit(path, *a)
    new, why_b = file_at_commit(path, *b)
    if old is None or new is None:
        return {"unavailable": why_a or why_b}
    try:
        ta, tb = old.decode("utf-8").splitlines(), new.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return {"unavailable": "not a text file"}
    lines = list(difflib.unified_diff(ta, tb, f"{label_a}/{os.path.basename(path)}",
                                      f"{label_b}/{os.path.basename(path)}", n=2, lineterm=""))
    return {"diff": lines[:max_lines], "truncated": max(0, len(lines) - max_lines)}
