"""The compiled IR of a pipeline file, kept between runs of ``tfpipe run``.

Loading a pipeline file imports what the file imports (TFMA alone, for a
``tfma.EvalConfig``, takes seconds) and runs its ``create_pipeline()``; an unchanged file
compiles to the same IR every time. So ``tfpipe run`` records, while it loads and compiles
the file, everything the loading depended on, stores the IR with that record
(``$TFPIPE_HOME/ir-cache/``, default ``./.tfpipe/ir-cache/``), and the next run uses the
stored IR when the record still holds, without importing the file.

The rule: a stored IR is used only if all of these are as they were when it was compiled:

- the pipeline file's path and the working directory;
- the Python interpreter, tfpipe's version, and the installed packages (the modification
  times of the site-packages directories, which installing or removing a package changes);
- the content of every Python module loaded from outside the standard library and
  site-packages (the pipeline file, the local modules it imports, tfpipe's own sources in
  a source checkout), and of every other such file the loading opened for reading (a
  config file it reads, the module files the components' compile checks read);
- the entries of every directory it listed (``os.listdir``, ``os.scandir``, ``glob``);
- the value, or absence, of every environment variable it read through ``os.environ``
  (``os.getenv``, ``os.environ.get``, ``[...]``, ``in``), and the whole environment if it
  iterated over it.

A hit replays what the loading did to the process that later nodes could see: the
environment variables it set or removed, and the directories it put on ``sys.path``.
Not seen, so not part of the rule: files read other than through Python's ``open`` (e.g.
``tf.io.gfile``), existence checks (``os.path.exists``), the clock, random numbers,
``sys.argv``, the network. A pipeline file whose IR depends on those runs with
``tfpipe run --no-ir-cache``, which loads it anew (and stores nothing).

Nothing secret is stored: environment values are kept as sha256 digests, and a file that
sets an environment variable named like a secret (PASSWORD, TOKEN, SECRET, CREDENTIAL) is
not cached at all. The IR itself never holds a secret (``tfpipe.compiler``).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import MutableMapping

from tfpipe.files import write_file

__all__ = ["IR_CACHE_VERSION", "Recorder", "record", "lookup", "store", "cache_path"]

IR_CACHE_VERSION = 1
_SECRET_NAME = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL")
_ACTIVE: "Recorder | None" = None
_HOOKED = False


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return _digest(f.read())
    except OSError:
        return None


def _listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _installed_dirs() -> list[str]:
    """The standard library's and site-packages' directories, as given and as real paths."""
    import sysconfig
    paths = sysconfig.get_paths()
    given = {os.path.abspath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return sorted(given | {os.path.realpath(p) for p in given})


def _stdlib_dirs() -> list[str]:
    import sysconfig
    paths = sysconfig.get_paths()
    given = {os.path.abspath(paths[k]) for k in ("stdlib", "platstdlib")}
    return sorted(given | {os.path.realpath(p) for p in given})


def _site_dirs() -> list[str]:
    import sysconfig
    paths = sysconfig.get_paths()
    given = {os.path.abspath(paths[k]) for k in ("purelib", "platlib")}
    return sorted(given | {os.path.realpath(p) for p in given})


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class _RecordingEnviron(MutableMapping):
    """``os.environ`` while a pipeline file loads: reads and writes are recorded."""

    def __init__(self, real, rec: "Recorder"):
        self._real, self._rec = real, rec

    def __getitem__(self, key):
        if self._rec.by_user():
            self._rec.read_env(key, self._real.get(key))
        return self._real[key]

    def __contains__(self, key):
        if self._rec.by_user():
            self._rec.read_env(key, self._real.get(key))
        return key in self._real

    def __setitem__(self, key, value):
        self._real[key] = value
        self._rec.wrote_env(key, value)

    def __delitem__(self, key):
        del self._real[key]
        self._rec.wrote_env(key, None)

    def __iter__(self):
        self._rec.env_all = self._rec.env_all or self._rec.by_user()
        return iter(self._real)

    def __len__(self):
        self._rec.env_all = self._rec.env_all or self._rec.by_user()
        return len(self._real)

    def copy(self):
        self._rec.env_all = self._rec.env_all or self._rec.by_user()
        return self._real.copy()

    def __getattr__(self, name):  # encodekey, putenv hooks and the like of os._Environ
        return getattr(self._real, name)


def _audit(event: str, args) -> None:
    rec = _ACTIVE
    if rec is None:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        reading = ("r" in mode or "+" in mode) if isinstance(mode, str) else (flags & 3) != os.O_WRONLY
        if reading:
            rec.opened(path)
    elif event in ("os.listdir", "os.scandir") and args and not isinstance(args[0], int):
        rec.listed(args[0] if args[0] is not None else ".")


class Recorder:
    """What a pipeline file's loading depended on (see the module's docstring)."""

    def __init__(self):
        self.env_read: dict[str, str | None] = {}
        self.env_written: dict[str, str | None] = {}
        self.env_all = False
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.sys_path_added: list[str] = []
        installed = _installed_dirs()
        self._skip = tuple(d + os.sep for d in installed) + ("/dev/", "/proc/", "/sys/")
        self._skip_dirs = set(installed)
        self._stdlib = tuple(d + os.sep for d in _stdlib_dirs())
        self._site = tuple(d + os.sep for d in _site_dirs())
        self._here = __file__

    def by_user(self) -> bool:
        """Whether the innermost caller outside the standard library (and this module) is the
        user's code or tfpipe's, rather than an installed library going about its own
        business (importing TensorFlow reads dozens of environment variables and files)."""
        f = sys._getframe(1)
        while f is not None:
            name = f.f_code.co_filename
            if name.startswith("<frozen importlib"):  # the import system finding a module: not a read
                return False
            if name.startswith(self._site):  # an installed package: only tfpipe's own reads count
                return str(f.f_globals.get("__name__", "")).startswith("tfpipe")
            if not (name.startswith("<") or name.startswith(self._stdlib) or name == self._here):
                return True
            f = f.f_back
        return False

    def _ours(self, path) -> str | None:
        """The real path of a file of the user's (or of tfpipe's sources), None for one of the
        standard library or an installed package."""
        try:
            p = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        if p.endswith(".pyc") or p.startswith(self._skip) or p in self._skip_dirs:  # without a realpath
            return None
        p = os.path.realpath(p)
        return None if p.startswith(self._skip) or p in self._skip_dirs else p

    def read_env(self, key, value: str | None) -> None:
        if isinstance(key, str) and key not in self.env_read and key not in self.env_written:
            self.env_read[key] = value

    def wrote_env(self, key, value) -> None:
        self.env_written[str(key)] = value

    def opened(self, path) -> None:
        p = self._ours(path)
        if p and os.path.isfile(p) and self.by_user():
            self.files.add(p)

    def listed(self, path) -> None:
        p = self._ours(path)
        if p and self.by_user():
            self.dirs.add(p)

    def entry(self, pipeline_file: str, ir: dict) -> dict | None:
        """The record to store with ``ir``; None when the loading set a secret-looking
        environment variable (its value would have to be stored to replay it)."""
        if any(any(s in k.upper() for s in _SECRET_NAME) for k, v in self.env_written.items() if v):
            return None
        # vars(), not getattr(): a lazy module (TensorFlow has some) would import itself on getattr
        modules = {os.path.realpath(f) for m in list(sys.modules.values())
                   if isinstance(f := (getattr(m, "__dict__", None) or {}).get("__file__"), str) and f.endswith(".py")}
        files = {p for p in (self.files | {self._ours(f) for f in modules}) if p and os.path.isfile(p)}
        return {
            "ir_cache_version": IR_CACHE_VERSION, **_context(pipeline_file),
            "files": {p: _file_digest(p) for p in sorted(files)},
            "dirs": {d: _listing(d) for d in sorted(self.dirs)},
            "env_read": {k: None if v is None else _digest(v.encode()) for k, v in sorted(self.env_read.items())},
            "env_all": _env_digest() if self.env_all else None,
            "env_written": dict(sorted(self.env_written.items())),
            "sys_path_added": self.sys_path_added,
            "stored_at": time.time(),
            "ir": ir,
        }


def _env_digest() -> str:
    return _digest(json.dumps(sorted(os.environ.items())).encode())


def _context(pipeline_file: str) -> dict:
    from tfpipe.version import __version__
    return {"pipeline_file": os.path.abspath(pipeline_file), "cwd": os.getcwd(), "python": sys.executable,
            "tfpipe": __version__, "site_dirs": {d: _mtime(d) for d in _site_dirs()}}


class record:
    """``with record() as rec:`` load and compile a pipeline file; ``rec`` holds what it read."""

    def __enter__(self) -> Recorder:
        global _ACTIVE, _HOOKED
        if not _HOOKED:  # an audit hook cannot be removed; it does nothing while no recorder is active
            sys.addaudithook(_audit)
            _HOOKED = True
        self.rec = Recorder()
        self._environ = os.environ
        # the real environment swapped for a recording wrapper (put back in __exit__), not cleared
        os.environ = _RecordingEnviron(self._environ, self.rec)  # noqa: B003
        self.sys_path = list(sys.path)
        _ACTIVE = self.rec
        return self.rec

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        _ACTIVE = None
        os.environ = self._environ  # noqa: B003 (the real environment back)
        self.rec.sys_path_added = [p for p in sys.path if p not in self.sys_path]


def cache_path(pipeline_file: str) -> str:
    from tfpipe.graph import default_home
    key = _digest(f"{os.path.abspath(pipeline_file)}\0{os.getcwd()}".encode())[:24]
    return os.path.join(default_home(), "ir-cache", f"{key}.json")


def _why_stale(entry: dict, pipeline_file: str) -> str | None:
    """Why a stored entry cannot be used (None when it can)."""
    if entry.get("ir_cache_version") != IR_CACHE_VERSION:
        return "stored by another tfpipe"
    now = _context(pipeline_file)
    for k in ("pipeline_file", "cwd", "python", "tfpipe", "site_dirs"):
        if entry.get(k) != now[k]:
            return {"site_dirs": "installed packages changed"}.get(k, f"{k} changed")
    for k, d in entry["env_read"].items():
        v = os.environ.get(k)
        if (None if v is None else _digest(v.encode())) != d:
            return f"environment variable {k} changed"
    if entry.get("env_all") and entry["env_all"] != _env_digest():
        return "the environment changed (the file reads all of it)"
    for p, d in entry["dirs"].items():
        if _listing(p) != d:
            return f"directory {p} changed"
    for p, d in entry["files"].items():
        if _file_digest(p) != d:
            return f"{p} changed"
    return None


def lookup(pipeline_file: str) -> tuple[dict | None, str]:
    """``(entry, why)``: the stored entry when it holds (``why`` says so), else None and why not."""
    path = cache_path(pipeline_file)
    try:
        with open(path) as f:
            entry = json.load(f)
    except FileNotFoundError:
        return None, "no IR stored"
    except (OSError, ValueError) as e:
        return None, f"the stored IR at {path} is unreadable ({e})"
    why = _why_stale(entry, pipeline_file)
    if why:
        return None, why
    for k, v in entry["env_written"].items():  # what loading the file did, done again
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for p in reversed(entry.get("sys_path_added") or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    return entry, f"unchanged since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry['stored_at']))}: " \
                  f"{len(entry['files'])} file(s), {len(entry['env_read'])} environment variable(s)"


def store(pipeline_file: str, rec: Recorder, ir: dict) -> str | None:
    """Store ``ir`` with what ``rec`` recorded; the path, or None when it is not stored
    (a secret-looking variable set, or the cache directory not writable)."""
    entry = rec.entry(pipeline_file, ir)
    if entry is None:
        return None
    path = cache_path(pipeline_file)
    try:
        write_file(path, json.dumps(entry))
    except OSError:
        return None
    return path
