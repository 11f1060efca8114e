"""Which versions are served, kept in step with their sources by polling.

A *source* says, each time it is asked, which versions of which models should be loaded
and which labels point where:

- ``ConfigSource(path)``: a TF Serving ``models.config`` (every model in it);
- ``BasePathSource(name, base_path)``: a registry destination: its ``models.config`` when
  the registry has written one (the specific versions and labels for ``name``), else the
  latest integer version directory, as TF Serving does without a config;
- ``DirSource(name, path, version)``: one SavedModel directory (the InfraValidator's
  candidate).

The manager polls the sources every ``poll_s`` seconds (TF Serving's
``--model_config_file_poll_wait_seconds``). A new version is loaded on a worker thread
while the old table keeps serving; then the routing table is swapped in one assignment on
the event loop; versions no longer wanted are retired (unloaded when their in-flight
requests finish). A version that fails to load keeps its label on the version it had, and
the failure shows in the model's status.
"""
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field

from .config import CONFIG_FILE, ConfigError, ModelEntry, read_config, resolve_versions
from .servable import LoadError, Servable

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


class ConfigSource:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def wanted(self) -> list[Wanted]:
        out = []
        for e in read_config(self.path):
            out.append(_wanted(e))
        return out

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
    def __init__(self, name: str, base_path: str):
        self.name, self.base_path = name, os.path.abspath(base_path)

    def wanted(self) -> list[Wanted]:
        cfg = os.path.join(self.base_path, CONFIG_FILE)
        if os.path.exists(cfg):
            try:
                mine = [e for e in read_config(cfg) if e.name == self.name]
            except ConfigError as err:
                return [Wanted(self.name, {}, {}, error=str(err))]
            if mine:
                return [_wanted(mine[0])]
        return [_wanted(ModelEntry(self.name, self.base_path))]

    def names(self) -> list[str]:
        return [self.name]


class DirSource:
    def __init__(self, name: str, path: str, version: int = 1):
        self.name, self.path, self.version = name, os.path.abspath(path), int(version)

    def wanted(self) -> list[Wanted]:
        return [Wanted(self.name, {self.version: self.path})]

    def names(self) -> list[str]:
        return [self.name]


@dataclass
class _Model:
    versions: dict[int, Servable] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # version -> why it is not served
    loading: set = field(default_factory=set)
    source_error: str | None = None


class ModelManager:
    def __init__(self, sources: list, executor, poll_s: float = 0.5, default_label: str | None = DEFAULT_LABEL,
                 servable_opts: dict | None = None, log=None):
        self.sources, self.executor, self.poll_s = sources, executor, float(poll_s)
        self.default_label = default_label or None
        self.servable_opts = servable_opts or {}
        self.models: dict[str, _Model] = {}
        self.retiring: list[Servable] = []
        self._poller: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.log = log or (lambda msg: print(f"[tfpipe serve] {msg}", file=sys.stderr, flush=True))
        self.swaps = 0

    # -- keeping in step -------------------------------------------------------------------
    async def start(self) -> None:
        await self.sync()
        if self.poll_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self):
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except Exception as e:  # noqa: BLE001 - a poll must never stop the server
                self.log(f"poll failed: {type(e).__name__}: {e}")

    async def sync(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            for src in self.sources:
                for w in await loop.run_in_executor(self.executor, src.wanted):
                    await self._apply(w)

    async def _apply(self, w: Wanted) -> None:
        loop = asyncio.get_running_loop()
        cur = self.models.get(w.name) or _Model()
        if w.error:
            if cur.source_error != w.error:
                self.log(f"model {w.name}: {w.error}; still serving versions {sorted(cur.versions)}")
            self.models[w.name] = _Model(cur.versions, cur.labels, cur.errors, set(), w.error)
            return
        if set(w.versions) == set(cur.versions) | set(cur.errors) and w.labels == cur.labels and not cur.source_error and all(
                v in cur.errors or cur.versions[v].path == os.path.abspath(p) for v, p in w.versions.items()):
            return
        versions = {v: s for v, s in cur.versions.items() if v in w.versions}
        errors = {v: e for v, e in cur.errors.items() if v in w.versions and v not in versions}
        for v, path in sorted(w.versions.items()):
            if v in versions or v in errors:
                continue
            cur.loading.add(v)
            self.models[w.name] = cur
            s = Servable(w.name, v, path, self.executor, **self.servable_opts)
            try:
                await loop.run_in_executor(self.executor, s.load)
                versions[v] = s
                self.log(f"model {w.name} version {v} loaded in {s.load_s:.2f}s from {path}")
            except LoadError as e:
                errors[v] = str(e)
                self.log(str(e))
            finally:
                cur.loading.discard(v)
        labels = {}
        for label, v in w.labels.items():
            if v in versions:
                labels[label] = v
            elif label in cur.labels and cur.labels[label] in versions:
                labels[label] = cur.labels[label]  # the new target failed to load: keep the old one
        new = _Model(versions, labels, errors)
        self.models[w.name] = new  # the switch: one assignment on the event loop
        self.swaps += 1
        moved = {k: (cur.labels.get(k), labels.get(k)) for k in set(labels) | set(cur.labels)
                 if cur.labels.get(k) != labels.get(k)}
        if moved:
            self.log(f"model {w.name}: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(moved.items(),
                                                                                                key=str)))
        for v, s in cur.versions.items():
            if versions.get(v) is not s:
                self.retiring.append(s)
                loop.create_task(self._retire(s))

    async def _retire(self, s: Servable) -> None:
        await s.retire()
        if s in self.retiring:
            self.retiring.remove(s)
        self.log(f"model {s.name} version {s.version} unloaded")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for m in self.models.values():
            for s in m.versions.values():
                await s.retire(grace_s=30)

    # -- answering ---------------------------------------------------------------------------
    def model(self, name: str) -> _Model:
        m = self.models.get(name)
        if m is None:
            raise NotFound(f"Servable not found for request: no model named {name!r}; models: "
                           f"{sorted(self.models)}")
        return m

    def resolve(self, name: str, version: str | None = None, label: str | None = None) -> tuple[Servable, str | None]:
        """The servable a request addresses, and the label it was reached by."""
        m = self.model(name)
        if version is not None:
            try:
                v = int(version)
            except ValueError:
                raise NotFound(f"version {version!r} of model {name}: expected an integer version") from None
            if v not in m.versions:
                why = m.errors.get(v)
                raise NotFound(f"Servable not found for request: version {v} of model {name} is not served"
                               + (f" ({why})" if why else f"; versions served: {sorted(m.versions)}"))
            return m.versions[v], None
        if label is not None:
            if label not in m.labels:
                raise NotFound(f"Servable not found for request: model {name} has no version labelled "
                               f"{label!r}; labels: {sorted(m.labels)}")
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
            wanted = sorted(set(m.versions) | set(m.errors) | set(m.loading)
                            | {s.version for s in self.retiring if s.name == name})
        out = []
        for v in wanted:
            if v in m.versions:
                state, code, msg = "AVAILABLE", "OK", ""
            elif v in m.loading:
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
                       "loading": sorted(m.loading), "source_error": m.source_error,
                       "load_s": {str(v): s.load_s for v, s in m.versions.items()}}
                for name, m in sorted(self.models.items())}

    def ready(self) -> bool:
        return bool(self.models) and all(m.versions for m in self.models.values())
