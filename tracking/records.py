"""Reading the record back: runs, artifacts and lineage, for the CLI and for tests.

The rows are typed dicts (``RunInfo``, ``ExecutionRow``, ``ArtifactRow``, ``LineageNode``):
plain dicts at run time, so ``--json`` prints them as they are, with their keys and value
types declared here."""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, NotRequired, TypedDict

from tfpipe.metadata import MetadataStore
from tfpipe.state import ArtifactState, EventKind, State

__all__ = ["show_run", "list_artifacts", "lineage", "NotFound", "run_context",
           "format_run", "format_artifacts", "format_lineage", "format_time", "format_table",
           "RunInfo", "ExecutionRow", "OutputRow", "ArtifactRow", "LineageNode"]


class OutputRow(TypedDict):
    """One output artifact of an execution."""
    id: int
    type: str
    uri: str
    state: ArtifactState


class ExecutionRow(TypedDict):
    """One execution of a run, as ``runs show`` lists it."""
    execution_id: int
    node_id: str | None
    component: str
    state: State
    duration_s: float | None
    cached_from: int | None  # the execution whose outputs a cache hit reused
    error: str | None
    cache_key: str | None
    code_version: str | None
    git_commit: str | None
    git_dirty: bool | None
    data_fingerprint: str | None
    code_files: dict[str, str]  # path -> sha256
    environment_hash: str | None
    parameters: dict[str, Any]
    inputs: dict[str, list[int]]  # input key -> artifact ids
    outputs: dict[str, list[OutputRow]]


class RunInfo(TypedDict):
    """One run with its executions (``show_run``)."""
    run_id: str | None
    pipeline: str | None
    status: str | None
    started_at: float | None
    duration_s: float | None
    git_commit: str | None
    git_dirty: bool | None
    error: str | None
    params: dict[str, Any]
    sweep: str | None
    sweep_info: dict[str, Any] | None
    environment_hash: str | None
    executions: list[ExecutionRow]


class ArtifactRow(TypedDict):
    """One artifact (``list_artifacts``); its other properties follow under their own names."""
    id: int
    type: str
    state: ArtifactState
    uri: str
    fingerprint: str | None


class LineageArtifact(TypedDict):
    id: int
    type: str
    uri: str
    state: ArtifactState
    properties: dict[str, Any]


class LineageNode(TypedDict):
    """An artifact, the execution that produced it and, recursively, that execution's inputs."""
    artifact: LineageArtifact
    produced_by: NotRequired[dict[str, Any]]  # ExecutionRow's provenance fields and run_id
    inputs: NotRequired[dict[str, list["LineageNode"]]]


class NotFound(LookupError):
    pass


def format_time(t) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` when there is none."""
    if not t:
        return "-"
    return _dt.datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M:%S")


def run_context(store: MetadataStore, run: str):
    """The ``pipeline_run`` context of a run, by its run id or its context name."""
    if "'" not in run:  # indexed lookup first: stores hold thousands of runs
        q = (f"type = 'pipeline_run' AND (name = '{run}' OR "
             f"custom_properties.run_id.string_value = '{run}')")
        try:
            found = store.find_contexts(q)
        except Exception:  # a store without filter support: scan below
            found = []
        if found:
            return sorted(found, key=lambda c: c.id)[0]
    for c in store.contexts_of_type("pipeline_run"):
        p = store.props(c)
        if p.get("run_id") == run or c.name == run:
            return c
    raise NotFound(f"no run {run!r} in the metadata store {store.where}; see 'tfpipe runs list'")


def _exec_row(store: MetadataStore, e) -> ExecutionRow:
    p = store.props(e)
    ins, outs = store.io_of(e.id)
    return {"execution_id": e.id, "node_id": p.get("node_id"), "component": store.type_name(e.type_id, "e"),
            "state": store.state_name(e), "duration_s": p.get("duration_s"), "cached_from": p.get("cached_from"),
            "error": p.get("error"), "cache_key": p.get("cache_key"), "code_version": p.get("code_version"),
            "git_commit": p.get("git_commit"), "git_dirty": p.get("git_dirty"),
            "data_fingerprint": p.get("data_fingerprint"),
            "code_files": json.loads(p["code_files"]) if p.get("code_files") else {},
            "environment_hash": p.get("environment_hash"),
            "parameters": json.loads(p["parameters"]) if p.get("parameters") else {},
            "inputs": {k: [a.id for a in v] for k, v in ins.items()},
            "outputs": {k: [{"id": a.id, "type": a.type_name, "uri": a.uri, "state": a.state} for a in v]
                        for k, v in outs.items()}}


def show_run(store: MetadataStore, run: str) -> RunInfo:
    c = run_context(store, run)
    p = store.props(c)
    execs = sorted(store.executions_by_context(c), key=lambda e: e.id)
    return {"run_id": p.get("run_id"), "pipeline": p.get("pipeline"), "status": p.get("status"),
            "started_at": p.get("started_at"), "duration_s": p.get("duration_s"),
            "git_commit": p.get("git_commit"), "git_dirty": p.get("git_dirty"), "error": p.get("error"),
            "params": json.loads(p["params"]) if p.get("params") else {}, "sweep": p.get("sweep"),
            "sweep_info": json.loads(p["sweep_info"]) if p.get("sweep_info") else None,
            "environment_hash": p.get("environment_hash"),
            "executions": [_exec_row(store, e) for e in execs]}


def list_artifacts(store: MetadataStore, type_name: str | None = None) -> list[ArtifactRow]:
    try:
        arts = store.list_artifacts(type_name)
    except KeyError as e:
        raise NotFound(str(e).strip('"')) from None
    return [{"id": a.id, "type": a.type_name, "state": a.state, "uri": a.uri,
             "fingerprint": a.fingerprint, **{k: v for k, v in a.properties.items() if k != "fingerprint"}}
            for a in sorted(arts, key=lambda a: a.id)]


def lineage(store: MetadataStore, artifact_id: int, _seen=None) -> LineageNode:
    """The artifact, the execution that produced it, and recursively that execution's
    inputs, back to the raw data."""
    _seen = set() if _seen is None else _seen
    arts = store.get_artifacts([artifact_id])
    if not arts:
        raise NotFound(f"no artifact with id {artifact_id} in {store.where}; see 'tfpipe artifacts list'")
    a = arts[0]
    node: LineageNode = {"artifact": {"id": a.id, "type": a.type_name, "uri": a.uri, "state": a.state,
                         "properties": a.properties}}
    if artifact_id in _seen:
        return node
    _seen.add(artifact_id)
    evs = store.events_of_artifacts([artifact_id], EventKind.OUTPUT)
    if not evs:
        return node
    execs = store.executions([e.execution_id for e in evs])
    # the execution that really produced it (not a later cache hit that re-used it)
    producer = sorted(execs, key=lambda e: (store.state_name(e) != "COMPLETE", e.id))[0]
    row = _exec_row(store, producer)
    ins, _ = store.io_of(producer.id)
    node["produced_by"] = {k: row[k] for k in ("execution_id", "node_id", "component", "state", "code_version",
                                               "git_commit", "git_dirty", "data_fingerprint", "parameters",
                                               "code_files")}
    node["produced_by"]["run_id"] = store.props(producer).get("run_id")
    node["inputs"] = {k: [lineage(store, x.id, _seen) for x in v] for k, v in ins.items()}
    return node


def format_table(rows: list[list], header: list[str]) -> str:
    """Rows under a header in left-aligned columns, as the CLI prints them."""
    cols = [header] + [[("" if c is None else str(c)) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in cols)


def format_run(info: RunInfo) -> str:
    head = (f"run {info['run_id']} of {info['pipeline']}: {info['status']}"
            f" (started {format_time(info['started_at'])}, {info['duration_s'] or 0:.1f}s)")
    rows = []
    for e in info["executions"]:
        outs = ", ".join(f"{k}=#{v[0]['id']}" for k, v in e["outputs"].items() if v)
        rows.append([e["node_id"], e["component"], e["state"], f"{e['duration_s'] or 0:.2f}s",
                     f"#{e['cached_from']}" if e["cached_from"] else "", outs])
    if info.get("params"):
        head += "\nparameters: " + " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                                            for k, v in info["params"].items())
    if info.get("sweep"):
        si = info.get("sweep_info") or {}
        head += f"\nsweep: {info['sweep']}" + (f" (combination {si['index']} of {si['of']})" if si.get("index")
                                               else " (the nodes shared by every combination)")
    text = head + "\n" + format_table(rows, ["NODE", "COMPONENT", "STATE", "TIME", "CACHED FROM", "OUTPUTS"])
    errs = [f"  {e['node_id']}: {e['error']}" for e in info["executions"] if e["error"]]
    return text + ("\nerrors:\n" + "\n".join(errs) if errs else "")


def format_artifacts(rows: list[ArtifactRow]) -> str:
    if not rows:
        return "no artifacts"
    return format_table([[r["id"], r["type"], r["state"], (r["fingerprint"] or "")[:12], r["uri"]] for r in rows],
                  ["ID", "TYPE", "STATE", "FINGERPRINT", "URI"])


def format_lineage(tree: LineageNode, depth: int = 0) -> str:
    pad = "  " * depth
    a = tree["artifact"]
    fp = (a["properties"].get("fingerprint") or "")[:12]
    lines = [f"{pad}{a['type']} #{a['id']} [{a['state']}] fingerprint={fp} {a['uri']}"]
    pb = tree.get("produced_by")
    if pb:
        extra = ""
        if pb["parameters"].get("input_fingerprint"):
            extra = f" input_fingerprint={pb['parameters']['input_fingerprint'][:12]}"
            if pb["parameters"].get("input_files"):
                extra += f" files={pb['parameters']['input_files']}"
            if pb["parameters"].get("data_version"):
                extra += f" data_version={json.dumps(pb['parameters']['data_version'], sort_keys=True)}"
        lines.append(f"{pad}  <- {pb['component']} ({pb['node_id']}) execution #{pb['execution_id']} "
                     f"run {pb['run_id']} code={pb['code_version']} "
                     f"commit={(pb['git_commit'] or '-')[:10]}{'*' if pb['git_dirty'] else ''}{extra}")
        for path, sha in (pb.get("code_files") or {}).items():
            lines.append(f"{pad}     code file {path} sha256={sha[:12]}")
        for k, subs in tree.get("inputs", {}).items():
            for s in subs:
                lines.append(f"{pad}    {k}:")
                lines.append(format_lineage(s, depth + 3))
    return "\n".join(lines)
