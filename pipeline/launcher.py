"""The launcher: one node, one execution, the same wherever the node runs.

``run_node`` takes a node through its phases, each a method of :class:`Job`:

    prepare -> resolve inputs -> record the execution (RUNNING) -> driver -> cache decision
    -> staged outputs (PENDING) -> execute -> publish (outputs LIVE, execution COMPLETE)

A resolver node stops after its inputs (it picks existing artifacts); a cache hit
publishes the earlier outputs as CACHED. Any failure, wherever it happens (an import, a
driver, an unwritable artifact root, the executor), ends in ``Job.fail``: the execution
FAILED with its error, its outputs ABANDONED, staging removed, nothing left where a later
run could mistake it for good output.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from . import fileio
from .artifacts import Artifact, artifact_class
from .cache import cache_material, find_cached, latest_ok_execution, material_key
from .component import ComponentSpec
from .fingerprint import ModuleFileError, file_sha256, fingerprint_path, module_files
from .loader import load_component
from .metadata import MetadataError, MetadataStore
from .provenance import environment, environment_record, git_info, owner
from .runtime import ExecutionContext, Interrupted, pin_keras, raise_if_interrupted, take_interrupt
from .state import SUCCEEDED, ArtifactState, State

__all__ = ["run_node", "NodeFailed", "NodeResult", "InputResolutionError", "NotCached", "resolve_inputs"]


class NodeFailed(RuntimeError):
    """A node's execution failed; ``str()`` is the one-paragraph error."""

    def __init__(self, node_id: str, message: str, execution_id: int | None = None):
        super().__init__(f"node {node_id} failed: {message}")
        self.node_id, self.message, self.execution_id = node_id, message, execution_id


class InputResolutionError(RuntimeError):
    pass


class NotCached(RuntimeError):
    """``run_node(..., cache_only=True)`` found no cache hit for the node: it records the
    execution FAILED with this error instead of running the executor."""


@dataclass
class NodeResult:
    node_id: str
    execution_id: int
    state: str  # State.COMPLETE or State.CACHED
    duration_s: float
    outputs: dict[str, list[Artifact]] = field(default_factory=dict)
    cached_from: int | None = None


def _node(ir: dict, node_id: str) -> dict:
    for n in ir["nodes"]:
        if n["id"] == node_id:
            return n
    raise KeyError(f"no node {node_id!r} in the IR; nodes: {[n['id'] for n in ir['nodes']]}")


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
            run_execs = store.executions_by_context(run_ctx) if run_ctx is not None else []
        producer = src["producer"]
        found = None
        mine = [e for e in run_execs if store.props(e).get("node_id") == producer
                and store.state_name(e) in SUCCEEDED]
        if mine:
            e = max(mine, key=lambda e: e.id)
            found = store.io_of(e.id)[1]
        else:
            hit = latest_ok_execution(store, pname, producer)
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


def staging_dir(final_uri: str, execution_id: int) -> str:
    """The local directory an output is written into before it is published: beside its
    final place on local disk (so publishing is a rename), in the local cache for an
    object-store URI (publishing uploads it)."""
    if fileio.is_remote(final_uri):
        h = hashlib.sha256(fileio.dirname(final_uri).encode()).hexdigest()[:16]
        return os.path.join(fileio.cache_dir(), "staging", h, f".staging-{execution_id}")
    return os.path.join(os.path.dirname(final_uri), f".staging-{execution_id}")


def scratch_dir(root: str, node_id: str, execution_id: int) -> str:
    """An execution's local scratch directory (removed when it ends)."""
    if fileio.is_remote(root):
        h = hashlib.sha256(fileio.join(root, node_id).encode()).hexdigest()[:16]
        return os.path.join(fileio.cache_dir(), "staging", h, f".tmp-{execution_id}")
    return os.path.join(root, node_id, f".tmp-{execution_id}")


def _readable(a: Artifact) -> Artifact:
    """An input as the executor reads it: a LIVE artifact on an object store is copied to
    the local cache once (by URI and fingerprint) and handed over at that path, so
    TensorFlow, TFDV, TFT and TFMA read local files in every mode."""
    if not fileio.is_remote(a.uri):
        return a
    return a.at(fileio.local_copy(a.uri, a.fingerprint or ""))


def _one_paragraph(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return str(e) if isinstance(e, Interrupted) else "interrupted (KeyboardInterrupt)"
    msg = str(e).strip() or type(e).__name__
    name = type(e).__name__
    return msg if msg.startswith(name) else f"{name}: {msg}"


@dataclass
class Job:
    """One node's execution as it goes through the launcher's phases."""
    ir: dict
    node: dict
    run_id: str
    store: MetadataStore
    enable_cache: bool | None = None
    verbose: bool = True
    t0: float = field(default_factory=time.monotonic)
    contexts: list = field(default_factory=list)
    spec: ComponentSpec | None = None
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    execution: Any = None
    props: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    final_uris: dict = field(default_factory=dict)
    staged: dict = field(default_factory=dict)
    tmp_dir: str = ""
    executing: bool = False

    @property
    def node_id(self) -> str:
        return self.node["id"]

    @property
    def pipeline(self) -> dict:
        return self.ir["pipeline"]

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- phases ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """The run's contexts; the first node of a run records the IR on it (what
        ``tfpipe reproduce`` re-runs); the component and its parameters with defaults."""
        pl = self.pipeline
        p, r, n = self.store.pipeline_contexts(pl["name"], self.run_id, self.node_id)
        self.contexts = [p, r, n]
        if "ir" not in r.custom_properties:
            self.store.update_context(r, {"ir": json.dumps(self.ir, sort_keys=True),
                                          "workdir": (os.path.dirname(pl["source"]) if pl.get("source")
                                                      else os.getcwd())})
        self.spec = load_component(self.node["executor"], pl.get("source"))
        self.params = dict(self.node["parameters"])
        for k, ps in self.spec.parameters.items():  # the record and the cache key are complete
            if k not in self.params and not ps.required:
                self.params[k] = ps.default

    def resolve_inputs(self) -> None:
        optional = frozenset(k for k, s in self.spec.inputs.items() if s.optional)
        self.inputs = resolve_inputs(self.store, self.ir, self.node, self.contexts[1], optional)

    def code_files(self) -> dict[str, str]:
        """The user code this execution runs, file by file (``{absolute path: sha256}``):
        each module file with the local modules it imports, and the file of a component
        defined in the user's pipeline file. A missing module file is left to the cache
        key, which fails the node naming it."""
        paths = []
        for k, ps in self.spec.parameters.items():
            if ps.is_module_file and self.params.get(k):
                try:
                    paths += module_files(str(self.params[k]))
                except ModuleFileError:
                    pass
        if self.node["executor"].get("file"):
            try:
                paths += module_files(self.node["executor"]["file"])
            except ModuleFileError:
                pass
        return {p: file_sha256(p) for p in sorted(set(paths))}

    def record_start(self) -> None:
        pl = self.pipeline
        props = {"node_id": self.node_id, "run_id": self.run_id, "pipeline": pl["name"],
                 "started_at": time.time(), "code_version": self.spec.code_version(), "owner": owner(),
                 "code_files": json.dumps(self.code_files(), sort_keys=True),
                 **environment(), **git_info(pl.get("source") or os.getcwd()),
                 **environment_record(self.store, pl["root"])}
        self.execution = self.store.new_execution(self.spec.name, props, self.contexts, self.inputs)

    def resolve(self) -> NodeResult:
        """A resolver node: call the resolver; COMPLETE with OUTPUT events on the
        existing artifacts it picked (nothing is created or copied)."""
        from .resolver import ResolverError, ResolverQuery
        node, spec = self.node, self.spec
        if node.get("pinned") is not None:  # a re-run of a recorded run: what the resolver picked then
            got = {k: [self._pinned(d) for d in descs] for k, descs in node["pinned"].items()}
        else:
            got = spec.resolver(ResolverQuery(self.store, self.pipeline["name"], self.run_id), self.pipeline["name"],
                                dict(self.params), {k: list(v) for k, v in self.inputs.items()}) or {}
        outs: dict[str, list[Artifact]] = {}
        for key, arts in got.items():
            if key not in node["outputs"]:
                raise ResolverError(f"resolver {spec.name} (node {self.node_id}) returned output {key!r}; "
                                    f"the node declares {sorted(node['outputs'])}")
            want = artifact_class(node["outputs"][key]["type"])
            arts = [arts] if isinstance(arts, Artifact) else list(arts or [])
            for a in arts:
                if not isinstance(a, want) or a.id is None or a.state != ArtifactState.LIVE:
                    raise ResolverError(f"resolver {spec.name} (node {self.node_id}) output {key!r}: expected "
                                        f"LIVE {want.TYPE_NAME} artifacts already in ML Metadata, found {a!r}")
            if arts:
                outs[key] = arts
        if self.verbose:
            for k in node["outputs"]:
                found = ", ".join(f"#{a.id} {a.uri}" for a in outs.get(k, [])) or "nothing (downstream gets None)"
                print(f"  [{self.node_id}] resolved {k}: {found}", file=sys.stderr, flush=True)
        dur = self.elapsed()
        self.store.publish_execution(self.execution, State.COMPLETE, {
            "parameters": json.dumps(self.params, sort_keys=True, default=str),
            "resolved": json.dumps({k: [a.id for a in v] for k, v in outs.items()}), "duration_s": dur},
            self.contexts, outs)
        return NodeResult(self.node_id, self.execution.id, State.COMPLETE, dur, outs)

    def _pinned(self, d: dict) -> Artifact:
        """An artifact of another store (``{"type", "uri", "fingerprint", "properties"}``),
        recorded in this one LIVE at its own URI (read, never copied or written)."""
        cls = artifact_class(d["type"])
        for a in self.store.artifacts_by_uri(d["uri"]):
            if isinstance(a, cls) and a.state == ArtifactState.LIVE:
                return a
        a = cls(uri=d["uri"], state=ArtifactState.LIVE, properties={k: v for k, v in (d.get("properties") or {}).items()
                                                        if k in cls.property_types()})
        a.fingerprint = d.get("fingerprint")
        self.store.put_artifacts([a])
        return a

    def run_driver(self) -> None:
        """The component's driver (e.g. ExampleGen picking a span and fingerprinting its
        files): what it returns joins the parameters, so the cache key."""
        if self.spec.driver is not None:
            self.params.update(self.spec.driver(dict(self.params)) or {})
        if self.spec.check_previous is not None:
            previous = self._previous_parameters()
            if previous is not None:
                self.spec.check_previous(dict(self.params), previous)
        data_fp = self.params.get("input_fingerprint") or hashlib.sha256(json.dumps(
            {k: [a.fingerprint for a in v] for k, v in sorted(self.inputs.items())}).encode()).hexdigest()
        material = cache_material(self.spec, self.node, self.params, self.inputs)
        self.props = {"cache_key": material_key(material), "cache_material": json.dumps(material, sort_keys=True),
                      "parameters": json.dumps(self.params, sort_keys=True, default=str),
                      "data_fingerprint": data_fp}

    def _previous_parameters(self) -> dict | None:
        """The parameters of this node's newest COMPLETE execution in the pipeline (not this one)."""
        for e in self.store.node_executions(self.pipeline["name"], self.node["id"],
                                            where=lambda e: self.store.state_name(e) == State.COMPLETE):
            text = self.store.props(e).get("parameters")
            return json.loads(text) if text else None
        return None

    def cache_lookup(self):
        use = self.pipeline.get("enable_cache", True) and self.node.get("enable_cache", True)
        if self.enable_cache is not None:
            use = use and self.enable_cache
        return find_cached(self.store, self.props["cache_key"]) if use else None

    def publish_cached(self, hit) -> NodeResult:
        src, outs = hit
        dur = self.elapsed()
        self.store.publish_execution(self.execution, State.CACHED, {**self.props, "cached_from": src.id,
                                                                    "duration_s": dur}, self.contexts, outs)
        return NodeResult(self.node_id, self.execution.id, State.CACHED, dur, outs, src.id)

    def stage_outputs(self) -> None:
        """PENDING output artifacts at their final URIs (recorded with OUTPUT events), the
        executor writing into a local staging directory (beside each on local disk, in the
        local cache for an object-store root), and a local scratch directory."""
        root = fileio.abspath(self.pipeline["root"])
        eid = self.execution.id
        for key, o in self.node["outputs"].items():
            uri = fileio.join(root, self.node_id, key, str(eid))
            if not fileio.is_remote(root) and os.path.commonpath([root, os.path.abspath(uri)]) != root:
                raise ValueError(f"output {key!r} of node {self.node_id!r} would be written outside the "
                                 f"artifact root {root}")  # names are checked; never trust it
            self.outputs[key] = [artifact_class(o["type"])(uri=uri, state=ArtifactState.PENDING)]
            self.final_uris[key] = uri
        self.store.publish_execution(self.execution, State.RUNNING, self.props, self.contexts, self.outputs)
        for key, arts in self.outputs.items():
            staging = staging_dir(self.final_uris[key], eid)
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
            self.staged[key] = staging
            arts[0].uri = staging
        self.tmp_dir = scratch_dir(root, self.node_id, eid)
        os.makedirs(self.tmp_dir, exist_ok=True)

    def execute(self) -> None:
        spec, pl = self.spec, self.pipeline
        ctx = ExecutionContext(pl["name"], self.run_id, self.node_id, self.execution.id,
                               list(pl.get("beam_pipeline_args") or []), self.tmp_dir, self.verbose)
        kwargs: dict[str, Any] = {}
        for k in spec.inputs:
            arts = [_readable(a) for a in self.inputs.get(k) or []]
            kwargs[k] = (arts[0] if len(arts) == 1 else arts) if arts else None
        for k in spec.outputs:
            kwargs[k] = self.outputs[k][0]
        kwargs.update({k: v for k, v in self.params.items() if k in spec.parameters})
        extra = {k: v for k, v in self.params.items() if k not in spec.parameters}
        self.executing = True
        with ctx:
            if extra:
                ctx.driver_output = extra
            spec.fn(**kwargs)
        self.executing = False

    def publish(self) -> NodeResult:
        """Fingerprint each staged output, move it to its final URI, then record the
        outputs LIVE and the execution COMPLETE."""
        for key, arts in self.outputs.items():
            a = arts[0]
            a.fingerprint = fingerprint_path(self.staged[key])
            final = self.final_uris[key]
            if fileio.is_remote(final):  # no rename: upload, list back, and only then LIVE
                fileio.upload_tree(self.staged[key], final)
                shutil.rmtree(self.staged[key], ignore_errors=True)
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(self.staged[key], final)
            a.uri = final
            a.state = ArtifactState.LIVE
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        dur = self.elapsed()
        self.store.publish_execution(self.execution, State.COMPLETE, {"duration_s": dur}, self.contexts,
                                     self.outputs, new_events=False)
        return NodeResult(self.node_id, self.execution.id, State.COMPLETE, dur, self.outputs)

    def fail(self, e: BaseException) -> NodeFailed:
        """Record the failure and clean up; the NodeFailed to raise (an interrupt or exit
        is re-raised as it is, after the record)."""
        take_interrupt(e)
        msg = _one_paragraph(e)
        for key, arts in self.outputs.items():
            if key in self.staged:
                shutil.rmtree(self.staged[key], ignore_errors=True)
            try:
                fileio.rmtree(self.final_uris[key])
            except OSError:  # the store is unreachable: recovery removes what is left
                pass
            arts[0].uri = self.final_uris[key]
            arts[0].state = ArtifactState.ABANDONED
        if self.tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if isinstance(e, MetadataError):  # the store is gone: nothing more can be recorded now
            raise e
        if self.execution is not None:
            props = {"error": msg, "duration_s": self.elapsed()}
            if self.executing:
                props["traceback"] = traceback.format_exc()[-4000:]
            self.store.publish_execution(self.execution, State.FAILED, props, self.contexts, self.outputs,
                                         new_events=False)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise e
        return NodeFailed(self.node_id, msg, self.execution.id if self.execution is not None else None)


def run_node(ir: dict, node_id: str, run_id: str, store: MetadataStore | None = None,
             enable_cache: bool | None = None, verbose: bool = True, cache_only: bool = False) -> NodeResult:
    """Run one node of a compiled pipeline through every phase; raises NodeFailed.
    ``cache_only``: a node that is not a cache hit fails (NotCached) instead of executing
    (a resolver node still resolves: it creates nothing)."""
    pin_keras()  # a no-op where an entry point did it (before anything imported TensorFlow)
    raise_if_interrupted()
    job = Job(ir, _node(ir, node_id), run_id, store or MetadataStore(ir["pipeline"]["metadata"]),
              enable_cache, verbose)
    try:
        job.prepare()
        job.resolve_inputs()
        job.record_start()
        if job.spec.resolver is not None:
            return job.resolve()
        job.run_driver()
        hit = job.cache_lookup()
        if hit is not None:
            return job.publish_cached(hit)
        if cache_only:
            raise NotCached(f"no cache hit for cache key {job.props['cache_key'][:12]} (asked to take the node "
                            f"from the cache only)")
        job.stage_outputs()
        job.execute()
        raise_if_interrupted()  # a signal some library swallowed: not COMPLETE
        return job.publish()
    except BaseException as e:
        raise job.fail(e) from e
