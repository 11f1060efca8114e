"""Publishing a registered model's recorded state to what serves it.

After each change the registry publishes the state, derived again from the records
(``aliases``): ``<destination>/models.config`` (TF Serving's ModelServerConfig: the aliased
versions and the rollback target as ``specific`` versions, aliases as ``version_labels``),
which TF Serving and ``tfpipe serve`` poll; the ``<destination>/serving`` symlink to
production (switched atomically); and, when an MLflow tracking URI is configured, the
registered model's aliases in MLflow. ``tfpipe models sync`` publishes again from the
records.

Every file read and write of publishing is in the small functions at the top
(``_version_dir_exists``, ``_write_models_config``, ``_point_link``), so another storage
can replace them without touching the rest.
"""
from __future__ import annotations

import os

from tfpipe import fileio
from tfpipe.files import replacing
from tfpipe.metadata import MetadataStore

from .aliases import RegistryError, held_aliases, pushed_versions, state, transitions

__all__ = ["SERVING_LINK", "switch_serving", "serving_entries", "publish", "check_on_disk"]

SERVING_LINK = "serving"


# -- the file-system I/O of publishing -------------------------------------------------
def _version_dir_exists(destination: str, version: str) -> bool:
    return fileio.isdir(fileio.join(destination, version))


def _write_models_config(destination: str, entries: list) -> str:
    from tfpipe.serving.config import CONFIG_FILE, write_config
    return write_config(fileio.join(destination, CONFIG_FILE), entries)


def _point_link(destination: str, link: str, version: str) -> str:
    """Replace the symlink ``<destination>/<link>`` by one to ``version`` (relative: the
    destination can move as a whole) with a rename, so a reader never finds it missing. An
    object store has no links: there ``<destination>/<link>`` is a small object holding the
    version, written in one upload."""
    path = fileio.join(destination, link)
    if fileio.is_remote(destination):
        return fileio.write_text(path, f"{version}\n")
    if os.path.exists(path) and not os.path.islink(path):
        raise RegistryError(f"{path} exists and is not a symlink; the registry switches serving by "
                            f"replacing a symlink and will not overwrite a real directory")
    with replacing(path) as tmp:
        os.symlink(version, tmp)
    return path


# -- what is published -----------------------------------------------------------------
def check_on_disk(v: dict) -> None:
    if not _version_dir_exists(v["destination"] or "", v["version"]):
        target = fileio.join(v["destination"] or "", v["version"])
        raise RegistryError(f"cannot serve version {v['version']}: {target} does not exist (the pushed model "
                            f"directory was removed); expected the Pusher's copy there")


def switch_serving(destination: str, version: str, link: str = SERVING_LINK) -> str:
    """Point ``<destination>/<link>`` at ``<destination>/<version>`` atomically."""
    check_on_disk({"destination": destination, "version": version})
    return _point_link(destination, link, version)


def serving_entries(store: MetadataStore, destination: str, pushed: list[dict] | None = None) -> list:
    """The ModelServerConfig entries of every registered model pushed to ``destination``:
    the aliased versions and the rollback target stay loaded; aliases are labels. A model
    without aliases gets TF Serving's default policy (its latest version)."""
    from tfpipe.serving.config import ModelEntry
    pushed = pushed if pushed is not None else pushed_versions(store)
    out = []
    for name in sorted({v["model"] for v in pushed if v["destination"] == destination}):
        held = held_aliases(store, name, pushed)
        labels = {a: int(v["version"]) for a, v in held.items() if v["destination"] == destination}
        if not labels:
            out.append(ModelEntry(name, destination))
            continue
        _, stack = state(transitions(store, name))
        by_id = {x["id"]: x for x in pushed}
        keep = set(labels.values())
        if len(stack) >= 2 and by_id[stack[-2]]["destination"] == destination:
            keep.add(int(by_id[stack[-2]]["version"]))  # rollback is instant: the target stays loaded
        out.append(ModelEntry(name, destination, versions=sorted(keep), labels=labels))
    return out


def publish(store: MetadataStore, model: str, mlflow_uri: str | None = None) -> dict:
    """Make servers see the recorded state: models.config and the serving symlink of
    every destination of ``model``; MLflow's aliases when a tracking URI is given."""
    out: dict = {"models_config": [], "serving": None}
    pushed = pushed_versions(store)
    held = held_aliases(store, model, pushed)
    for dest in sorted({v["destination"] for v in pushed if v["model"] == model and v["destination"]}):
        out["models_config"].append(_write_models_config(dest, serving_entries(store, dest, pushed)))
    if "production" in held:
        p = held["production"]
        out["serving"] = switch_serving(p["destination"], p["version"])
    if mlflow_uri:
        from .mlflow_export import mirror_aliases
        out["mlflow"] = mirror_aliases(mlflow_uri, model, held)
    return out
