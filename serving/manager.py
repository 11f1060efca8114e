"""Which versions are served, kept in step with their sources.

A *source* says, each time it is asked, which versions of which models should be loaded
and which labels point where:

- ``ConfigSource(path)``: a TF Serving ``models.config`` (every model in it);
- ``BasePathSource(name, base_path)``: a registry destination: its ``models.config`` when
  the registry has written one (the specific versions and labels for ``name``), else the
  latest integer version directory, as TF Serving does without a config;
- ``DirSource(name, path, version)``: one SavedModel directory (the InfraValidator's
  candidate).

Noticing a change: every ``watch_s`` seconds (0.1) the manager stats what each source
reads (the ``models.config`` the registry replaces atomically on every change, the base
directory whose listing changes when a version is pushed) and re-reads the sources only
when one of those changed; every ``poll_s`` seconds it re-reads them anyway (TF Serving's
``--model_config_file_poll_wait_seconds``), a fallback for changes a stat cannot see.

Switching: versions already loaded are switched to at once: the routing table is replaced
in one assignment on the event loop, so a promote or rollback between loaded versions is
a pointer swap. Versions not loaded yet are loaded on a worker thread while the old
table keeps serving (a label moving to such a version stays where it was until it is
loaded), then a second table is swapped in. A request keeps the servable it resolved
until it finishes, whatever is swapped meanwhile.

Warm versions: a version that leaves the config (a production version replaced, a
rollback's former version) is not unloaded at once: the last ``keep_warm`` (default 2)
such versions of each model stay loaded but unaddressable, as TF Serving would have
unloaded them, so promoting or rolling back to them again is a pointer swap too. An older
one is unloaded when its in-flight requests finish. Every labelled version (production,
staging, any alias) and the registry's rollback target are in the config, so always
loaded. A version that fails to load keeps its label on the version it had, and the
failure shows in the model's status.

Availability first (TF Serving's availability-preserving policy): while a wanted version
is loading or has failed to load, the versions it would replace stay served (``held``),
so a junk newer version directory never unloads the one serving. A source that cannot be
read (a ``models.config`` that is empty, not UTF-8, unparsable, gone, or no longer names
a model) is an error on /healthz and in the log, once, while the last good read keeps
serving; never a fall back to the highest version directory.

Memory: after a sync that loaded a version, and after a version is unloaded, the manager
collects garbage once and freezes what is left (``gc.freeze``): a loaded model is
hundreds of thousands of Python objects that live as long as it is served, and the
collector's full passes, which the short-lived objects of requests (more of them when
requests are logged) trigger every few seconds, would otherwise walk all of them each
time (about 0.3 s with the event loop stopped). The one collection costs that once, off
any label switch. The freeze is the manager's share of the interpreter's (``tfpipe.gc_freeze``):
``close()`` gives it back, and the freeze is undone once no other user (a pipeline run in the
same process) holds one.
"""
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field

from tfpipe import fileio
from tfpipe.gc_freeze import FreezeHold

from .config import CONFIG_FILE, ConfigError, ModelEntry, is_version, read_config, resolve_versions
from .features import excerpt
from .servable import LoadError, Servable, without_paths

__all__ = ["ModelManager", "ConfigSource", "BasePathSource", "DirSource", "NotFound", "Wanted"]

DEFAULT_LABEL = "production"


class NotFound(LookupError):
    """No such model, version or label (HTTP 404)."""


@dataclass
class Wanted:
    name: str
    versions: dict[int, str]  # version -> SavedModel directory
    labels: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the source could not be read: keep what is served


def _stat(path: str):
    """What changes when ``path`` is replaced, rewritten or (a directory) gains an entry."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ConfigSource:
    """Every model of a ``models.config``. A file that cannot be read, is not UTF-8, does not
    parse or names no model raises ConfigError: the manager keeps serving what the last
    good read asked for and reports the error."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def watch(self) -> tuple:
        return (_stat(self.path),)

    def wanted(self) -> list[Wanted]:
        entries = read_config(self.path)
        if not entries:
            raise ConfigError(f"{CONFIG_FILE} names no model; expected model_config_list {{ config {{ name: ... "
                              f"base_path: ... }} }}")
        return [_wanted(e) for e in entries]

    def names(self) -> list[str]:
        try:
            return [e.name for e in read_config(self.path)]
        except ConfigError:
            return []


def _wanted(e: ModelEntry) -> Wanted:
    try:
        return Wanted(e.name, resolve_versions(e), dict(e.labels))
    except ConfigError as err:
        return Wanted(e.name, {}, {}, error=str(err))


class BasePathSource:
    """A registry destination: its ``models.config`` when there is one, else its latest
    version directory (TF Serving's ``--model_base_path``). Once a ``models.config`` was
    read, one that no longer names the model, cannot be read or is gone is an error (the
    versions it named keep serving), never a fall back to the latest directory, which may
    be a version nobody promoted."""

    def __init__(self, name: str, base_path: str):
        self.mirror = None
        if fileio.is_remote(base_path):  # served from a local mirror of the bucket (serving/remote.py)
            from .remote import Mirror
            self.mirror = Mirror(base_path, log=lambda msg: print(f"[tfpipe serve] {msg}", file=sys.stderr,
                                                                  flush=True)).start()
            base_path = self.mirror.local
        self.name, self.base_path = name, os.path.abspath(base_path)
        self._had_config = False

    def watch(self) -> tuple:
        return (_stat(os.path.join(self.base_path, CONFIG_FILE)), _stat(self.base_path))

    def wanted(self) -> list[Wanted]:
        cfg = os.path.join(self.base_path, CONFIG_FILE)
        if os.path.exists(cfg):
            try:
                entries = read_config(cfg)
            except ConfigError as err:
                return [Wanted(self.name, {}, {}, error=str(err))]
            mine = [e for e in entries if e.name == self.name]
            if not mine:
                return [Wanted(self.name, {}, {},
                               error=f"{CONFIG_FILE} does not name model {self.name} "
                                     f"({'it names no model' if not entries else 'it names other models'})")]
            self._had_config = True
            return [_wanted(mine[0])]
        if self._had_config:
            return [Wanted(self.name, {}, {}, error=f"{CONFIG_FILE} is gone from the model's base path")]
        return [_wanted(ModelEntry(self.name, self.base_path))]

    def names(self) -> list[str]:
        return [self.name]


class DirSource:
    def __init__(self, name: str, path: str, version: int = 1):
        self.name, self.path, self.version = name, os.path.abspath(path), int(version)

    def wanted(self) -> list[Wanted]:
        return [Wanted(self.name, {self.version: self.path})]

    def watch(self) -> tuple:
        return ()

    def names(self) -> list[str]:
        return [self.name]


def parse_version(text: str, name: str) -> int:
    """A version from a URL, exactly as TF Serving writes one (ASCII digits, no sign, no
    separator, no leading zero); NotFound otherwise."""
    if not is_version(text):
        raise NotFound(f"Malformed request: version {excerpt(text, 40)} of model {excerpt(name, 80)}: expected a "
                       f"version number (ASCII digits, no sign, no leading zero)")
    return int(text)


@dataclass
class _Model:
    versions: dict[int, Servable] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # version -> why it is not served
    source_error: str | None = None
    held: set = field(default_factory=set)  # versions no longer wanted, served until what replaces them loads


DEFAULT_KEEP_WARM = 2


class ModelManager:
    def __init__(self, sources: list, executor, poll_s: float = 2.0, default_label: str | None = DEFAULT_LABEL,
                 servable_opts: dict | None = None, log=None, watch_s: float = 0.1,
                 keep_warm: int = DEFAULT_KEEP_WARM):
        self.sources, self.executor, self.poll_s = sources, executor, float(poll_s)
        self.watch_s, self.keep_warm = float(watch_s), max(0, int(keep_warm))
        self.default_label = default_label or None
        self.servable_opts = servable_opts or {}
        self.models: dict[str, _Model] = {}
        self.loading: dict[str, set] = {}  # model -> versions being loaded
        # model -> versions out of the config, still loaded (oldest first)
        self.warm: dict[str, dict[int, Servable]] = {}
        self.retiring: list[Servable] = []
        self._tasks: list[asyncio.Task] = []
        self._lock = asyncio.Lock()
        self._seen: list | None = None
        self.log = log or (lambda msg: print(f"[tfpipe serve] {msg}", file=sys.stderr, flush=True))
        self.swaps = 0
        self.syncs = 0
        self._unsettled = False  # a version was loaded or unloaded since the last settle()
        self._freeze = FreezeHold()  # this server's share of the interpreter's gc freeze
        self.started = False  # after start(): errors are logged as they happen (before: the caller reports them)
        self.source_errors: dict[int, str] = {}  # source index -> why it could not be read (public)
        self._source_names: dict[int, list[str]] = {}  # source index -> the models its last good read named

    # -- keeping in step -------------------------------------------------------------------
    async def start(self) -> None:
        await self.sync()
        self.started = True
        loop = asyncio.get_running_loop()
        if self.poll_s > 0:
            self._tasks.append(loop.create_task(self._every(self.poll_s, self.sync)))
        if self.watch_s > 0 and any(src.watch() for src in self.sources):
            self._tasks.append(loop.create_task(self._every(self.watch_s, self._sync_if_changed)))

    async def _every(self, seconds: float, fn):
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception as e:  # noqa: BLE001 - a poll must never stop the server
                self.log(f"poll failed: {type(e).__name__}: {e}")

    def _watched(self) -> list:
        return [src.watch() for src in self.sources]

    async def _sync_if_changed(self) -> None:
        if self._watched() != self._seen and not self._lock.locked():
            await self.sync()

    def _say(self, msg: str) -> None:
        if self.started:
            self.log(msg)

    async def sync(self) -> None:
        """Read every source and apply what it wants. A source that cannot be read, or no
        longer names a model it named, leaves what it served serving, with the error on
        /healthz and in the model's status, logged once (not on every poll)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            seen = self._watched()  # before reading: a change during the read is seen next time
            for i, src in enumerate(self.sources):
                try:
                    wanted = await loop.run_in_executor(self.executor, src.wanted)
                except Exception as e:  # noqa: BLE001 - a bad source must never stop the server
                    msg = without_paths(str(e)) if isinstance(e, ConfigError) else \
                        f"cannot read the model source: {type(e).__name__}: {without_paths(str(e))[:200]}"
                    if self.source_errors.get(i) != msg and not self._source_names.get(i):
                        self._say(f"{msg} ({getattr(src, 'path', '')})")
                    self.source_errors[i] = msg
                    for name in self._source_names.get(i, []):
                        await self._apply(Wanted(name, {}, {}, error=msg))
                    continue
                self.source_errors.pop(i, None)
                names = [w.name for w in wanted]
                for name in self._source_names.get(i, []):
                    if name not in names:  # TF Serving would unload it; the stricter choice keeps it
                        wanted.append(Wanted(name, {}, {}, error=f"the model source no longer names model {name}"))
                self._source_names[i] = list(dict.fromkeys([*self._source_names.get(i, []), *names]))
                for w in wanted:
                    await self._apply(w)
            self._seen = seen  # also after an error: an unchanged bad file is not re-read every tick
            self.syncs += 1
        if self._unsettled:
            self.settle()

    def settle(self) -> None:
        """Collect garbage (what earlier freezes kept, too) and freeze what remains, so the
        collector's later passes skip the loaded models' objects."""
        self._unsettled = False
        self._freeze.collect_and_freeze(collect_frozen=True)

    def _reusable(self, name: str, cur: _Model, v: int, path: str) -> Servable | None:
        s = cur.versions.get(v) or self.warm.get(name, {}).get(v)
        return s if s is not None and os.path.abspath(s.path) == os.path.abspath(path) else None

    async def _apply(self, w: Wanted) -> None:
        loop = asyncio.get_running_loop()
        cur = self.models.get(w.name) or _Model()
        if w.error:
            if cur.source_error != w.error:
                self._say(f"model {w.name}: {w.error}; still serving versions {sorted(cur.versions)}")
            self.models[w.name] = _Model(cur.versions, cur.labels, cur.errors, w.error, cur.held)
            return
        if cur.source_error:
            self._say(f"model {w.name}: its source is readable again")
        if set(w.versions) == (set(cur.versions) - cur.held) | set(cur.errors) and w.labels == cur.labels \
                and not cur.source_error and all(v in cur.errors or cur.versions[v].path == os.path.abspath(p)
                                                 for v, p in w.versions.items()):
            return
        ready = {v: s for v, p in w.versions.items() if (s := self._reusable(w.name, cur, v, p)) is not None}
        errors = {v: e for v, e in cur.errors.items() if v in w.versions and v not in ready}
        missing = {v: p for v, p in sorted(w.versions.items()) if v not in ready and v not in errors}
        if missing:
            # first what needs no loading: labels moving between loaded versions move now;
            # one moving to a version still to load stays on its old version meanwhile
            self._swap(w.name, cur, ready, errors, w.labels, hold=True)
            cur = self.models[w.name]
            loading = self.loading.setdefault(w.name, set())
            for v, path in missing.items():
                loading.add(v)
                s = Servable(w.name, v, path, self.executor, **self.servable_opts)
                try:
                    await loop.run_in_executor(self.executor, s.load)
                    self._unsettled = True
                    ready[v] = s
                    self.log(f"model {w.name} version {v} loaded in {s.load_s:.2f}s from {path}")
                except LoadError as e:
                    errors[v] = e.public
                    self._say(str(e))
                finally:
                    loading.discard(v)
        self._swap(w.name, cur, ready, errors, w.labels, hold=any(v in errors for v in w.versions))

    def _swap(self, name: str, cur: _Model, ready: dict, errors: dict, wanted_labels: dict,
              hold: bool = False) -> None:
        """Serve ``ready`` with the labels wanted, a label whose version is not ready staying
        on the version it had; versions no longer served go warm. Availability first (TF
        Serving's availability-preserving policy): while a wanted version has failed to
        load or is still loading (``hold``), the versions it would replace keep serving
        (``held``)."""
        versions, labels = dict(ready), {}
        held = set()
        if hold:
            held = {v for v in cur.versions if v not in ready}
            versions.update({v: cur.versions[v] for v in held})
        for label, v in wanted_labels.items():
            if v in versions:
                labels[label] = v
            elif label in cur.labels:  # not loaded (yet, or it failed): keep the old one serving
                old = cur.labels[label]
                labels[label] = old
                versions[old] = cur.versions[old]
        new = _Model(versions, labels, dict(errors), None, held)
        self.models[name] = new  # the switch: one assignment on the event loop
        self.swaps += 1
        moved = {k: (cur.labels.get(k), labels.get(k)) for k in set(labels) | set(cur.labels)
                 if cur.labels.get(k) != labels.get(k)}
        if moved:
            self.log(f"model {name}: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(moved.items(),
                                                                                             key=str)))
        warm = self.warm.setdefault(name, {})
        for v in list(warm):
            if versions.get(v) is warm[v]:
                del warm[v]  # served again
        for v, s in cur.versions.items():
            if versions.get(v) is not s:
                warm.pop(v, None)
                warm[v] = s  # newest last
        while len(warm) > self.keep_warm:
            v = next(iter(warm))
            self._retire_soon(warm.pop(v))

    def _retire_soon(self, s: Servable) -> None:
        self.retiring.append(s)
        asyncio.get_running_loop().create_task(self._retire(s))

    async def _retire(self, s: Servable) -> None:
        await s.retire()
        if s in self.retiring:
            self.retiring.remove(s)
        self.log(f"model {s.name} version {s.version} unloaded")
        self.settle()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for name, m in self.models.items():
            for s in [*m.versions.values(), *self.warm.get(name, {}).values()]:
                await s.retire(grace_s=30)
        self._freeze.release()  # unfrozen unless another user (a run, another server) holds a freeze

    # -- answering ---------------------------------------------------------------------------
    def model(self, name: str) -> _Model:
        m = self.models.get(name)
        if m is None:  # other models' names are not the client's business
            raise NotFound(f"Servable not found for request: no model named {excerpt(name)}")
        return m

    def resolve(self, name: str, version: str | None = None, label: str | None = None) -> tuple[Servable, str | None]:
        """The servable a request addresses, and the label it was reached by."""
        m = self.model(name)
        if version is not None:
            v = parse_version(version, name)
            if v not in m.versions:
                why = m.errors.get(v)
                raise NotFound(f"Servable not found for request: version {v} of model {name} is not served"
                               + (f" ({why})" if why else f"; versions served: {sorted(m.versions)}"))
            return m.versions[v], None
        if label is not None:
            if label not in m.labels:
                raise NotFound(f"Servable not found for request: model {name} has no version labelled "
                               f"{excerpt(label, 40)}; labels: {sorted(m.labels)}")
            return m.versions[m.labels[label]], label
        if self.default_label and self.default_label in m.labels:
            return m.versions[m.labels[self.default_label]], self.default_label
        if not m.versions:
            raise NotFound(f"Servable not found for request: model {name} has no version available"
                           + (f" ({m.source_error})" if m.source_error else ""))
        return m.versions[max(m.versions)], None

    def status(self, name: str, version: str | None = None, label: str | None = None) -> list[dict]:
        """TF Serving's GetModelStatusResponse.model_version_status."""
        m = self.model(name)
        if version is not None or label is not None:
            s, _ = self.resolve(name, version, label)
            wanted = [s.version]
        else:
            wanted = sorted(set(m.versions) | set(m.errors) | self.loading.get(name, set())
                            | {s.version for s in self.retiring if s.name == name})
        out = []
        for v in wanted:
            if v in m.versions:
                state, code, msg = "AVAILABLE", "OK", ""
            elif v in self.loading.get(name, ()):
                state, code, msg = "LOADING", "OK", ""
            elif v in m.errors:
                state, code, msg = "END", "UNKNOWN", m.errors[v]
            else:
                state, code, msg = "UNLOADING", "OK", ""
            out.append({"version": str(v), "state": state, "status": {"error_code": code, "error_message": msg}})
        return out

    def summary(self) -> dict:
        return {name: {"versions": sorted(m.versions), "labels": dict(sorted(m.labels.items())),
                       "errors": {str(k): v for k, v in m.errors.items()},
                       "loading": sorted(self.loading.get(name, ())), "source_error": m.source_error,
                       "warm": sorted(self.warm.get(name, {})), "held": sorted(m.held),
                       "load_s": {str(v): s.load_s for v, s in m.versions.items()}}
                for name, m in sorted(self.models.items())}

    def ready(self) -> bool:
        return bool(self.models) and all(m.versions for m in self.models.values())

    def problems(self) -> list[str]:
        """What is wrong, for answers (no paths): versions that failed to load, sources that
        cannot be read or no longer name a model, models without a version to serve."""
        out = []
        for name, m in sorted(self.models.items()):
            out.extend(m.errors[v] for v in sorted(m.errors))
            if m.source_error:
                out.append(f"model {name}: {m.source_error}")
            if not m.versions and not m.errors and not m.source_error:
                out.append(f"model {name}: no version to serve (no version directory under its base path and no "
                           f"models.config naming one)")
        # a source's error shows on its models; one that never named a model shows it here
        out.extend(msg for i, msg in sorted(self.source_errors.items()) if not self._source_names.get(i))
        return out or ([] if self.models else ["no model to serve"])
