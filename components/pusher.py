"""Pusher: copy a blessed model to a serving destination, atomically, in versioned
directories ``<push_destination>/<version>`` (TF Serving's layout).

A model is pushed only when its ModelBlessing says blessed and, when an InfraBlessing is
wired in, that says blessed too. The copy goes to a hidden directory in the same
filesystem first and is renamed into place, so a model server polling the base directory
never sees half a model. Versions are integers (seconds since the epoch, strictly larger
than any version already there). A model that is not pushed is not an error (as in
TFX): the run succeeds, the node log says why (metric, slice, threshold, value from the
blessing), and the PushedModel artifact records ``pushed=False`` and the ``reason``.
"""
from __future__ import annotations

import json
import os
import shutil
import time

from tfpipe import (
    InfraBlessing,
    Input,
    Model,
    ModelBlessing,
    Output,
    PushedModel,
    component,
    current,
    fileio,
)

__all__ = ["Pusher", "PushError", "versions", "RECORD"]

RECORD = "tfpipe_push.json"  # written inside each pushed version: which model, from where


class PushError(RuntimeError):
    pass


def versions(base: str) -> list[int]:
    """The integer version directories under ``base`` (a folder or an object-store
    prefix), ascending."""
    if fileio.is_remote(base):
        return sorted({int(top) for top, sep, _ in (r.partition("/") for r in fileio.list_files(base))
                       if sep and top.isdigit()})
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base) if d.isdigit() and os.path.isdir(os.path.join(base, d)))


def _why_not(model_blessing, infra_blessing) -> str | None:
    if model_blessing is not None and not model_blessing.blessed:
        return "not blessed by the Evaluator: " + "; ".join(model_blessing.reasons or ["no reason recorded"])
    if infra_blessing is not None and not infra_blessing.blessed:
        return "not blessed by the InfraValidator: " + "; ".join(infra_blessing.reasons or ["no reason recorded"])
    return None


def _already_pushed(base: str, model) -> int | None:
    vs = versions(base)
    if not vs or not model.fingerprint:
        return None
    try:
        rec = json.loads(fileio.read_text(fileio.join(base, str(vs[-1]), RECORD)))
    except (OSError, ValueError):
        return None
    return vs[-1] if rec.get("model_fingerprint") == model.fingerprint else None


def push_atomically(src: str, base: str, record: dict) -> int:
    """Copy ``src`` to ``<base>/<version>`` through a temporary sibling and one rename; on
    an object store (no rename), upload the model and then the push record last: a version
    is complete once its record is there, and that is what the model server waits for."""
    if fileio.is_remote(base):
        return _push_remote(src, base, record)
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".incoming-{os.getpid()}-{time.time_ns()}")
    shutil.copytree(src, tmp)
    with open(os.path.join(tmp, RECORD), "w") as f:
        json.dump(record, f, indent=2)
    try:
        for _ in range(100):
            existing = versions(base)
            version = max(int(time.time()), existing[-1] + 1 if existing else 0)
            try:
                os.rename(tmp, os.path.join(base, str(version)))  # atomic within a filesystem
                return version
            except OSError:  # another pusher took this version a moment ago: take the next
                if not os.path.exists(os.path.join(base, str(version))):
                    raise
        raise PushError(f"could not claim a new version directory under {base} after 100 attempts")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _push_remote(src: str, base: str, record: dict) -> int:
    existing = versions(base)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    while fileio.isdir(fileio.join(base, str(version))):  # another pusher took it a moment ago
        version += 1
    dest = fileio.join(base, str(version))
    fileio.upload_tree(src, dest)
    fileio.write_text(fileio.join(dest, RECORD), json.dumps(record, indent=2))
    return version


@component(name="Pusher")
def Pusher(model: Input[Model], pushed_model: Output[PushedModel], push_destination: str,
           model_blessing: Input[ModelBlessing] | None = None,
           infra_blessing: Input[InfraBlessing] | None = None) -> None:
    """Push ``model`` to ``push_destination`` (a base directory) when it is blessed."""
    ctx = current()
    base = fileio.abspath(os.path.expanduser(push_destination))
    pushed_model.destination = base
    os.makedirs(pushed_model.uri, exist_ok=True)
    why = _why_not(model_blessing, infra_blessing)
    if model_blessing is None:
        ctx.log("no model_blessing input: pushing without an evaluation gate")
    if why is not None:
        pushed_model.pushed = False
        pushed_model.reason = why
        ctx.log(f"NOT PUSHED: Model #{model.id} {why}")
    else:
        src = model.saved_model_dir()
        if not os.path.isdir(src):  # a local copy when the model is on an object store
            raise PushError(f"Model #{model.id}: no SavedModel directory at {src}; nothing to push")
        existing = _already_pushed(base, model)
        if existing is not None:
            version, reason = existing, f"already at {base}/{existing}; nothing copied"
            ctx.log(f"Model #{model.id} is already the newest version {existing} at {base}; nothing copied")
        else:
            version = push_atomically(src, base, {"model_id": model.id, "model_uri": model.stored_uri,
                                                  "model_fingerprint": model.fingerprint,
                                                  "pipeline": ctx.pipeline, "run_id": ctx.run_id,
                                                  "pushed_at": time.time()})
            reason = ""
            ctx.log(f"pushed Model #{model.id} to {base}/{version}")
        pushed_model.pushed = True
        pushed_model.pushed_version = str(version)
        pushed_model.reason = reason
    with open(os.path.join(pushed_model.uri, "push.json"), "w") as f:
        json.dump({"model_id": model.id, **pushed_model.properties}, f, indent=2)
