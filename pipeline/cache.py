"""The cache: a node's cache key, and the earlier execution whose outputs it may reuse.

The key covers what decides a node's outputs: the component and its code version, tfpipe's
version, the parameters (after the driver, so ExampleGen's input fingerprint is in it),
the fingerprints of the input artifacts, the user module files with the local modules they
import, and the output keys. An execution is reused only if it COMPLETEd and its outputs
are LIVE and still on disk."""
from __future__ import annotations

import hashlib
import json
import os

from . import fileio
from .artifacts import Artifact
from .component import ComponentSpec
from .fingerprint import fingerprint_files, module_file_fingerprints
from .metadata import MetadataStore
from .state import SUCCEEDED, ArtifactState, State
from .version import __version__

__all__ = ["cache_key", "cache_material", "material_key", "find_cached", "latest_ok_execution", "outputs_exist"]


def cache_material(spec: ComponentSpec, node: dict, params: dict, inputs: dict[str, list[Artifact]]) -> dict:
    """What decides a node's outputs, as JSON data: recorded on every execution, so that a
    plan can say which part changed (``tfpipe.plan``). Module files are listed file by
    file (the module and each local module it imports, with fingerprints)."""
    mods = {}
    for k, ps in spec.parameters.items():
        if ps.is_module_file and params.get(k):
            mods[k] = module_file_fingerprints(params[k])
    return json.loads(json.dumps({
        "component": spec.name,
        "code": spec.code_version(),
        "tfpipe": __version__,
        "parameters": params,
        "inputs": {k: [a.fingerprint or a.uri for a in arts] for k, arts in sorted(inputs.items())},
        "modules": mods,
        "outputs": sorted(node["outputs"]),
    }, sort_keys=True, default=str))


def material_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(spec: ComponentSpec, node: dict, params: dict, inputs: dict[str, list[Artifact]]) -> str:
    return material_key(cache_material(spec, node, params, inputs))


def outputs_exist(outs: dict[str, list[Artifact]]) -> bool:
    return all(a.state == ArtifactState.LIVE and _exists(a) for arts in outs.values() for a in arts)


def _exists(a: Artifact) -> bool:
    """On an object store an artifact that holds no file has no object to find: its
    recorded fingerprint (of nothing) says it is complete."""
    if not fileio.is_remote(a.uri):
        return os.path.exists(a.uri)
    return fileio.isdir(a.uri) or fileio.isfile(a.uri) or a.fingerprint == fingerprint_files([])


def find_cached(store: MetadataStore, key: str):
    """``(execution, outputs)`` of the newest COMPLETE execution with this cache key whose
    outputs still exist, or None."""
    try:
        cands = store.find_executions(f"custom_properties.cache_key.string_value = '{key}'")
    except Exception:  # an older store without filter support: scan
        cands = [e for e in store.all_executions() if store.props(e).get("cache_key") == key]
    cands = [e for e in cands if store.state_name(e) == State.COMPLETE]
    for e in sorted(cands, key=lambda e: e.id, reverse=True):
        _, outs = store.io_of(e.id)
        if outputs_exist(outs):
            return e, outs
    return None


def latest_ok_execution(store: MetadataStore, pipeline: str, node_id: str):
    """``(execution, outputs)`` of the node's newest successful execution (by creation time)
    whose outputs still exist, or None."""
    for e in store.node_executions(pipeline, node_id, where=lambda e: store.state_name(e) in SUCCEEDED,
                                   newest_by=lambda e: (e.create_time_since_epoch, e.id)):
        _, outs = store.io_of(e.id)
        if outputs_exist(outs):
            return e, outs
    return None
