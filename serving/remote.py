"""Serving models kept on an object store (``s3://``, ``gs://``): a local mirror.

TensorFlow loads SavedModels from local files here (tfpipe never hands TensorFlow an
object-store URI: docs/object_storage.md), so a model base on a bucket is mirrored into a
local directory that the model manager serves as it serves any base path. A thread lists the
bucket every few seconds and brings the mirror in step:

- a version is copied once it is complete: its push record (``tfpipe_push.json``, which the
  Pusher writes last) is there, or, for a version pushed by something else, its
  ``saved_model.pb`` is there and the listing did not change between two polls; it appears
  in the mirror whole (downloaded beside it, then renamed);
- a version removed from the bucket is removed from the mirror (the server unloads it);
- ``models.config`` is copied as it is, its ``base_path`` naming the bucket rewritten to the
  mirror, so labels and specific versions apply unchanged.

An unreachable store leaves the mirror as it was (the server keeps serving what it has) and
is reported once, in the log and as ``error``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid

from tfpipe import fileio

from .config import CONFIG_FILE

__all__ = ["Mirror", "RECORD"]

RECORD = "tfpipe_push.json"


class Mirror:
    def __init__(self, uri: str, local: str | None = None, every_s: float = 2.0, log=None):
        self.uri = fileio.abspath(uri)
        self.local = local or os.path.join(fileio.cache_dir(), "serving",
                                           hashlib.sha256(self.uri.encode()).hexdigest()[:16])
        os.makedirs(self.local, exist_ok=True)
        self.every_s, self.log = float(every_s), log or (lambda msg: None)
        self.error: str | None = None
        self._previous: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ------------------------------------------------------------------------
    def sync(self) -> bool:
        """Bring the mirror in step with the bucket once; whether anything changed."""
        try:
            changed = self._sync()
        except OSError as e:
            msg = f"model base {self.uri}: {e}"
            if msg != self.error:
                self.log(f"{msg}; serving what was mirrored before")
            self.error = msg
            return False
        if self.error:
            self.log(f"model base {self.uri}: reachable again")
        self.error = None
        return changed

    def _sync(self) -> bool:
        files = fileio.list_files(self.uri)
        versions: dict[str, dict[str, int]] = {}
        for rel, size in files.items():
            top, sep, rest = rel.partition("/")
            if sep and top.isdigit():
                versions.setdefault(top, {})[rest] = size
        changed = False
        for v, content in sorted(versions.items()):
            complete = RECORD in content or ("saved_model.pb" in content and self._previous.get(v) == content)
            if complete and not os.path.isdir(os.path.join(self.local, v)):
                self._fetch(v, content)
                changed = True
        self._previous = versions
        for name in os.listdir(self.local):
            if name.isdigit() and name not in versions:
                shutil.rmtree(os.path.join(self.local, name), ignore_errors=True)
                changed = True
        return self._sync_config(CONFIG_FILE in files) or changed

    def _fetch(self, version: str, content: dict[str, int]) -> None:
        tmp = os.path.join(self.local, f".{version}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
        try:
            for rel in content:
                fileio.copy_file(fileio.join(self.uri, version, rel), os.path.join(tmp, rel))
            os.rename(tmp, os.path.join(self.local, version))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"model base {self.uri}: version {version} mirrored")

    def _sync_config(self, present: bool) -> bool:
        path = os.path.join(self.local, CONFIG_FILE)
        if not present:
            if os.path.exists(path):
                os.remove(path)
                return True
            return False
        data = fileio.read_bytes(fileio.join(self.uri, CONFIG_FILE))
        # the registry names the destination itself as the base path: here that is the mirror
        data = data.replace(f'"{self.uri}"'.encode(), b'"."').replace(f'"{self.uri}/"'.encode(), b'"."')
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return False
        except FileNotFoundError:
            pass
        fileio.write_bytes(path, data)
        return True

    # -- in the background ---------------------------------------------------------------
    def start(self) -> "Mirror":
        self.sync()
        self._thread = threading.Thread(target=self._loop, name=f"mirror {self.uri}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sync()

    def stop(self) -> None:
        self._stop.set()
