"""Content fingerprints: of files and directories (artifacts, input data) and of user
module files together with the local modules they import."""
from __future__ import annotations

import ast
import hashlib
import os

__all__ = ["fingerprint_path", "fingerprint_contents", "fingerprint_files", "module_fingerprint", "module_files",
           "module_file_fingerprints", "file_sha256", "ModuleFileError"]

_CHUNK = 1 << 20


class ModuleFileError(ValueError):
    pass


def _hash_file(h, path: str) -> None:
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)


def fingerprint_files(paths: list[str], root: str | None = None) -> str:
    """sha256 over (relative name, size, content) of each file, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(paths):
        name = os.path.relpath(p, root) if root else os.path.basename(p)
        h.update(name.encode() + b"\0" + str(os.path.getsize(p)).encode() + b"\0")
        _hash_file(h, p)
    return h.hexdigest()


def fingerprint_contents(files: dict[str, bytes]) -> str:
    """What :func:`fingerprint_path` gives for a directory holding these files (relative
    name -> content), without writing them."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + str(len(files[name])).encode() + b"\0")
        h.update(files[name])
    return h.hexdigest()


def fingerprint_path(path: str) -> str:
    """Fingerprint of a file, or of every file below a directory."""
    if os.path.isfile(path):
        return fingerprint_files([path])
    files = []
    for d, dirs, names in os.walk(path):
        dirs.sort()
        files.extend(os.path.join(d, n) for n in names)
    return fingerprint_files(files, root=path)


def _local_imports(path: str, search: list[str]) -> list[str]:
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except SyntaxError as e:
        raise ModuleFileError(f"module file {path}: syntax error at line {e.lineno}, column {e.offset}: "
                              f"{e.msg}") from None
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's directory
                base = os.path.dirname(path)
                for _ in range(node.level - 1):
                    base = os.path.dirname(base)
                mod = (node.module or "").replace(".", os.sep)
                cands = [os.path.join(base, mod)] if mod else []
                cands += [os.path.join(base, mod, a.name) if mod else os.path.join(base, a.name) for a in node.names]
                names.extend("\0" + c for c in cands)
            elif node.module:
                names.append(node.module)
                names.extend(f"{node.module}.{a.name}" for a in node.names)
    found = []
    for n in names:
        if n.startswith("\0"):
            cands = [n[1:]]
        else:
            rel = n.replace(".", os.sep)
            cands = [os.path.join(s, rel) for s in search]
        for c in cands:
            for f in (c + ".py", os.path.join(c, "__init__.py")):
                if os.path.isfile(f):
                    found.append(os.path.abspath(f))
    return found


def module_files(path: str) -> list[str]:
    """A user module file and every module it imports from its own directory tree
    (recursively), as sorted absolute paths."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ModuleFileError(f"module file {path} does not exist")
    search = [os.path.dirname(path)]
    seen, todo = set(), [path]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(_local_imports(p, search))
    return sorted(seen)


def module_fingerprint(path: str) -> str:
    """Fingerprint of a user module file and of every module it imports from its own
    directory tree (recursively), so editing a helper next to the module misses the cache."""
    return fingerprint_files(module_files(path), root=os.path.dirname(os.path.abspath(path)))


def module_file_fingerprints(path: str) -> dict[str, str]:
    """The same files, each with its own fingerprint, by path relative to the module's
    folder; ``"__main__"`` names the module file itself. What a cache plan shows as
    "this helper module changed"."""
    root = os.path.dirname(os.path.abspath(path))
    out = {os.path.relpath(p, root): fingerprint_files([p]) for p in module_files(path)}
    out["__main__"] = os.path.basename(path)
    return out


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes (what ``git hash-object`` is not: plain content)."""
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()
