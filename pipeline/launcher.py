"""The launcher: one node, one execution, the same wherever the node runs.

resolve inputs from ML Metadata -> driver (if any) -> cache decision -> PENDING outputs
in a staging directory -> executor -> publish outputs LIVE and the execution COMPLETE,
or FAILED with the error recorded, outputs ABANDONED and nothing left where a later run
could mistake it for good output.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .artifacts import Artifact, artifact_class
from .component import ComponentSpec
from .fingerprint import fingerprint_path, module_fingerprint
from .metadata import MetadataStore
from .provenance import environment, git_info
from .runtime import ExecutionContext
from .version import __version__

__all__ = ["run_node", "NodeFailed", "NodeResult", "load_component"]


class NodeFailed(RuntimeError):
    """A node's execution failed; ``str()`` is the one-paragraph error."""

    def __init__(self, node_id: str, message: str, execution_id: int | None = None):
        super().__init__(f"node {node_id} failed: {message}")
        self.node_id, self.message, self.execution_id = node_id, message, execution_id


class InputResolutionError(RuntimeError):
    pass


@dataclass
class NodeResult:
    node_id: str
    execution_id: int
    state: str  # COMPLETE or CACHED
    duration_s: float
    outputs: dict[str, list[Artifact]] = field(default_factory=dict)
    cached_from: int | None = None


def load_component(executor: dict) -> ComponentSpec:
    """Import a component by its IR reference ``{"ref": "module:attr", "file": ...}``."""
    mod_name, attr = executor["ref"].split(":")
    mod = None
    path = executor.get("file")
    if path is None or mod_name in sys.modules:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            if path is None:
                raise
    if mod is None or not hasattr(mod, attr):
        if not path or not os.path.isfile(path):
            raise ImportError(f"cannot import component {executor['ref']} (file {path!r})")
        mod = load_module_from_file(path, mod_name)
    spec = getattr(mod, attr)
    if not isinstance(spec, ComponentSpec):
        raise TypeError(f"{executor['ref']} is a {type(spec).__name__}, expected a @component")
    return spec


def load_module_from_file(path: str, name: str | None = None):
    path = os.path.abspath(path)
    name = name or "tfpipe_user_" + hashlib.sha1(path.encode()).hexdigest()[:10]
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    mod.__tfpipe_loaded_from_file__ = True
    sys.modules[name] = mod
    d = os.path.dirname(path)
    if d not in sys.path:
        sys.path.insert(0, d)
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _node(ir: dict, node_id: str) -> dict:
    for n in ir["nodes"]:
        if n["id"] == node_id:
            return n
    raise KeyError(f"no node {node_id!r} in the IR; nodes: {[n['id'] for n in ir['nodes']]}")


_OK = ("COMPLETE", "CACHED")


def _outputs_exist(outs: dict[str, list[Artifact]]) -> bool:
    return all(a.state == "LIVE" and os.path.exists(a.uri) for arts in outs.values() for a in arts)


def _latest_ok_execution(store: MetadataStore, ctx) -> tuple[Any, dict] | None:
    """Newest COMPLETE/CACHED execution in ``ctx`` whose outputs still exist."""
    if ctx is None:
        return None
    execs = [e for e in store.executions_by_context(ctx) if store.state_name(e) in _OK]
    for e in sorted(execs, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True):
        _, outs = store.io_of(e.id)
        if _outputs_exist(outs):
            return e, outs
    return None


def resolve_inputs(store: MetadataStore, ir: dict, node: dict, run_ctx,
                   optional: frozenset = frozenset()) -> dict[str, list[Artifact]]:
    """Each input is the output of its producer in this run, or (for partial runs) of the
    producer's newest successful execution in the pipeline. An ``optional`` input whose
    producer succeeded without producing it (a resolver that found nothing) is left out."""
    pname = ir["pipeline"]["name"]
    run_execs = None
    resolved: dict[str, list[Artifact]] = {}
    for key, src in node["inputs"].items():
        if run_execs is None:
            run_execs = store.executions_by_context(run_ctx)
        producer = src["producer"]
        found = None
        mine = [e for e in run_execs if store.props(e).get("node_id") == producer
                and store.state_name(e) in _OK]
        if mine:
            e = max(mine, key=lambda e: e.id)
            found = store.io_of(e.id)[1]
        else:
            hit = _latest_ok_execution(store, store.context("node", f"{pname}.{producer}", create=False))
            if hit:
                found = hit[1]
        if found is not None and src["output"] not in found and key in optional:
            continue
        if found is None or src["output"] not in found:
            raise InputResolutionError(
                f"input {key!r} of node {node['id']}: node {producer} has no successful execution "
                f"producing {src['output']!r} in this run or an earlier one; run {producer} first")
        resolved[key] = found[src["output"]]
    return resolved


def _cache_key(spec: ComponentSpec, node: dict, params: dict, inputs: dict[str, list[Artifact]]) -> str:
    mods = {}
    for k, ps in spec.parameters.items():
        if ps.is_module_file and params.get(k):
            mods[k] = module_fingerprint(params[k])
    material = {
        "component": spec.name,
        "code": spec.code_version(),
        "tfpipe": __version__,
        "parameters": params,
        "inputs": {k: [a.fingerprint or a.uri for a in arts] for k, arts in sorted(inputs.items())},
        "modules": mods,
        "outputs": sorted(node["outputs"]),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _find_cached(store: MetadataStore, cache_key: str):
    try:
        cands = store.find_executions(f"custom_properties.cache_key.string_value = '{cache_key}'")
    except Exception:  # an older store without filter support: scan
        cands = [e for e in store.store.get_executions() if store.props(e).get("cache_key") == cache_key]
    cands = [e for e in cands if store.state_name(e) == "COMPLETE"]
    for e in sorted(cands, key=lambda e: e.id, reverse=True):
        _, outs = store.io_of(e.id)
        if _outputs_exist(outs):
            return e, outs
    return None


def _run_resolver(store: MetadataStore, spec: ComponentSpec, node: dict, pipeline_name: str, run_id: str,
                  params: dict, inputs: dict, execution, contexts, t0: float, verbose: bool) -> NodeResult:
    """Call the resolver; record COMPLETE with OUTPUT events on the existing artifacts."""
    from .resolver import ResolverError, ResolverQuery
    got = spec.resolver(ResolverQuery(store, pipeline_name, run_id), pipeline_name, dict(params),
                        {k: list(v) for k, v in inputs.items()}) or {}
    outs: dict[str, list[Artifact]] = {}
    for key, arts in got.items():
        if key not in node["outputs"]:
            raise ResolverError(f"resolver {spec.name} (node {node['id']}) returned output {key!r}; "
                                f"the node declares {sorted(node['outputs'])}")
        want = artifact_class(node["outputs"][key]["type"])
        arts = [arts] if isinstance(arts, Artifact) else list(arts or [])
        for a in arts:
            if not isinstance(a, want) or a.id is None or a.state != "LIVE":
                raise ResolverError(f"resolver {spec.name} (node {node['id']}) output {key!r}: expected "
                                    f"LIVE {want.TYPE_NAME} artifacts already in ML Metadata, found {a!r}")
        if arts:
            outs[key] = arts
    summary = {k: [a.id for a in v] for k, v in outs.items()}
    if verbose:
        for k in node["outputs"]:
            found = ", ".join(f"#{a.id} {a.uri}" for a in outs.get(k, [])) or "nothing (downstream gets None)"
            print(f"  [{node['id']}] resolved {k}: {found}", file=sys.stderr, flush=True)
    dur = time.monotonic() - t0
    store.publish_execution(execution, "COMPLETE", {
        "parameters": json.dumps(params, sort_keys=True, default=str), "resolved": json.dumps(summary),
        "duration_s": dur}, contexts, outs)
    return NodeResult(node["id"], execution.id, "COMPLETE", dur, outs)


def _one_paragraph(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    name = type(e).__name__
    return msg if msg.startswith(name) else f"{name}: {msg}"


def run_node(ir: dict, node_id: str, run_id: str, store: MetadataStore | None = None,
             enable_cache: bool | None = None, verbose: bool = True) -> NodeResult:
    node = _node(ir, node_id)
    pl = ir["pipeline"]
    store = store or MetadataStore(pl["metadata"])
    pctx, rctx, nctx = store.pipeline_contexts(pl["name"], run_id, node_id)
    if "ir" not in rctx.custom_properties:  # what `tfpipe reproduce` re-runs
        store.update_context(rctx, {"ir": json.dumps(ir, sort_keys=True),
                                    "workdir": os.path.dirname(pl["source"]) if pl.get("source") else os.getcwd()})
    contexts = [pctx, rctx, nctx]
    started = time.time()
    t0 = time.monotonic()
    params = dict(node["parameters"])
    base_props = {"node_id": node_id, "run_id": run_id, "pipeline": pl["name"],
                  "started_at": started, **environment(),
                  **git_info(pl.get("source") or os.getcwd())}
    execution = None
    try:
        spec = load_component(node["executor"])
        # defaults of parameters not given, so the record and the cache key are complete
        for k, ps in spec.parameters.items():
            if k not in params and not ps.required:
                params[k] = ps.default
        inputs = resolve_inputs(store, ir, node, rctx,
                                frozenset(k for k, s in spec.inputs.items() if s.optional))
        execution = store.new_execution(spec.name, {**base_props, "code_version": spec.code_version()},
                                        contexts, inputs)
        if spec.resolver is not None:  # no executor, no cache: pick existing artifacts
            return _run_resolver(store, spec, node, pl["name"], run_id, params, inputs, execution,
                                 contexts, t0, verbose)
        if spec.driver is not None:
            params.update(spec.driver(dict(params)) or {})
        cache_key = _cache_key(spec, node, params, inputs)
        data_fp = params.get("input_fingerprint") or hashlib.sha256(json.dumps(
            {k: [a.fingerprint for a in v] for k, v in sorted(inputs.items())}).encode()).hexdigest()
        props = {"cache_key": cache_key, "parameters": json.dumps(params, sort_keys=True, default=str),
                 "data_fingerprint": data_fp}
        use_cache = pl.get("enable_cache", True) and node.get("enable_cache", True)
        if enable_cache is not None:
            use_cache = use_cache and enable_cache
        if use_cache:
            hit = _find_cached(store, cache_key)
            if hit is not None:
                src, outs = hit
                dur = time.monotonic() - t0
                store.publish_execution(execution, "CACHED", {**props, "cached_from": src.id,
                                                              "duration_s": dur}, contexts, outs)
                return NodeResult(node_id, execution.id, "CACHED", dur, outs, src.id)
        outputs: dict[str, list[Artifact]] = {}
        for key, o in node["outputs"].items():
            uri = os.path.join(os.path.abspath(pl["root"]), node_id, key, str(execution.id))
            outputs[key] = [artifact_class(o["type"])(uri=uri, state="PENDING")]
        store.publish_execution(execution, "RUNNING", props, contexts, outputs)
    except BaseException as e:
        if execution is not None:
            store.publish_execution(execution, "FAILED", {"error": _one_paragraph(e),
                                                          "duration_s": time.monotonic() - t0}, contexts, {})
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise NodeFailed(node_id, _one_paragraph(e), execution.id if execution else None) from e

    # -- execute in staging directories -------------------------------------------------
    staged: dict[str, str] = {}
    final_uris = {}
    for key, arts in outputs.items():
        a = arts[0]
        final_uris[key] = a.uri
        staging = os.path.join(os.path.dirname(a.uri), f".staging-{execution.id}")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        staged[key] = staging
        a.uri = staging
    tmp_dir = os.path.join(os.path.abspath(pl["root"]), node_id, f".tmp-{execution.id}")
    os.makedirs(tmp_dir, exist_ok=True)
    ctx = ExecutionContext(pl["name"], run_id, node_id, execution.id,
                           list(pl.get("beam_pipeline_args") or []), tmp_dir, verbose)
    kwargs: dict[str, Any] = {}
    for k, ins in spec.inputs.items():
        arts = inputs.get(k)
        kwargs[k] = (arts[0] if len(arts) == 1 else arts) if arts else None
    for k in spec.outputs:
        kwargs[k] = outputs[k][0]
    exec_params = {k: v for k, v in params.items() if k in spec.parameters}
    kwargs.update(exec_params)
    extra = {k: v for k, v in params.items() if k not in spec.parameters}
    try:
        with ctx:
            if extra:
                ctx.driver_output = extra
            spec.fn(**kwargs)
        for key, arts in outputs.items():
            a = arts[0]
            a.fingerprint = fingerprint_path(staged[key])
            os.makedirs(os.path.dirname(final_uris[key]), exist_ok=True)
            os.replace(staged[key], final_uris[key])
            a.uri = final_uris[key]
            a.state = "LIVE"
    except BaseException as e:
        for key, arts in outputs.items():
            shutil.rmtree(staged[key], ignore_errors=True)
            shutil.rmtree(final_uris[key], ignore_errors=True)
            arts[0].uri = final_uris[key]
            arts[0].state = "ABANDONED"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        msg = _one_paragraph(e)
        store.publish_execution(execution, "FAILED", {"error": msg, "traceback": traceback.format_exc()[-4000:],
                                                      "duration_s": time.monotonic() - t0}, contexts, outputs,
                                new_events=False)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise NodeFailed(node_id, msg, execution.id) from e
    shutil.rmtree(tmp_dir, ignore_errors=True)
    dur = time.monotonic() - t0
    store.publish_execution(execution, "COMPLETE", {"duration_s": dur}, contexts, outputs, new_events=False)
    return NodeResult(node_id, execution.id, "COMPLETE", dur, outputs)
