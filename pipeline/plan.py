"""The cache plan of a run, before running it: for each node, whether it will be taken from
the cache and, if not, exactly why (``tfpipe run --explain``, ``tfpipe plan``).

It is computed the way the launcher decides, from the IR and ML Metadata, without running
anything: each node's inputs are the outputs its upstream nodes would give (their cached
outputs, when they will be cache hits), its driver runs (ExampleGen fingerprints its input
files), its cache key is computed and looked up. A node that will run is compared with the
newest recorded execution of the same node: which parameter, input artifact, component code,
module file or helper module changed; or that its upstream will run, that it never ran, that
the cache is off, or that the outputs it would reuse are gone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .cache import cache_material, find_cached, latest_ok_execution, material_key
from .loader import load_component
from .metadata import MetadataStore
from .state import SUCCEEDED

__all__ = ["NodePlan", "plan_run", "format_plan", "DATA_KEYS"]

# driver outputs that describe the data a node reads: a change in them is a data change
DATA_KEYS = ("input_fingerprint", "resolved_span", "resolved_version", "input_files", "previous_span_files",
             "schema_fingerprint", "data_version", "source_snapshot")


@dataclass
class NodePlan:
    node_id: str
    component: str
    action: str  # "cached", "run" or "resolve" (a resolver picks artifacts anew every run)
    reasons: list[str] = field(default_factory=list)
    cached_from: int | None = None
    cache_key: str | None = None
    #: for a node to run: seconds its newest execution took, if that one completed
    last_duration_s: float | None = None

    def to_dict(self) -> dict:
        return {"node": self.node_id, "component": self.component, "action": self.action,
                "reasons": self.reasons, "cached_from": self.cached_from, "cache_key": self.cache_key}


def _short(v, n: int = 60) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    if len(s) == 64 and all(c in "0123456789abcdef" for c in s):
        return s[:12]
    return s if len(s) <= n else s[:n - 3] + "..."


def _previous(store: MetadataStore, pipeline: str, node_id: str):
    """The newest execution of this node that recorded its cache material."""
    execs = store.node_executions(pipeline, node_id)
    for e in execs:
        if store.props(e).get("cache_material"):
            return e
    return execs[0] if execs else None


def _duration(store: MetadataStore, execution) -> float | None:
    """Seconds ``execution`` took, if it completed; else None."""
    if store.state_name(execution) not in SUCCEEDED:
        return None
    d = store.props(execution).get("duration_s")
    return float(d) if isinstance(d, (int, float)) else None


def _data_version_change(old, new) -> str:
    """A source's data version change in words: ``delta version 1 -> 2``."""
    old, new = old if isinstance(old, dict) else {}, new if isinstance(new, dict) else {}
    if not old and not new:
        return ""
    parts = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            name = "delta version" if k == "delta_version" else k
            parts.append(f"{name} {_short(old.get(k)) if k in old else '(none)'} -> "
                         f"{_short(new.get(k)) if k in new else '(none)'}")
    return ", ".join(parts)


def _diff(old: dict, new: dict) -> list[str]:
    """Why two cache materials differ, in the words a user acts on."""
    out = []
    if old.get("component") != new.get("component"):
        out.append(f"component changed: {old.get('component')} -> {new.get('component')}")
    if old.get("code") != new.get("code"):
        out.append(f"the component's code changed (code version {_short(old.get('code'))} -> "
                   f"{_short(new.get('code'))})")
    if old.get("tfpipe") != new.get("tfpipe"):
        out.append(f"tfpipe changed: {old.get('tfpipe')} -> {new.get('tfpipe')}")
    op, np_ = old.get("parameters") or {}, new.get("parameters") or {}
    data = [k for k in DATA_KEYS if op.get(k) != np_.get(k) and (k in op or k in np_)]
    if "input_fingerprint" in data:
        files = np_.get("input_files")
        files = sorted({f for fs in files.values() for f in fs}) if isinstance(files, dict) else files
        versions = _data_version_change(op.get("data_version"), np_.get("data_version"))
        out.append("input data changed (" + (f"{versions}; " if versions else "")
                   + f"input_fingerprint {_short(op.get('input_fingerprint'))} -> "
                   f"{_short(np_.get('input_fingerprint'))}" + (f"; files {files}" if files else "") + ")")
    for k in data:
        if k not in ("input_fingerprint", "input_files", "source_snapshot") \
                and not (k == "data_version" and "input_fingerprint" in data):
            out.append(f"{k}: {_short(op.get(k))} -> {_short(np_.get(k))}")
    for k in sorted(set(op) | set(np_)):
        if k in DATA_KEYS or op.get(k) == np_.get(k):
            continue
        out.append(f"parameter {k}: {_short(op.get(k)) if k in op else '(unset)'} -> "
                   f"{_short(np_.get(k)) if k in np_ else '(unset)'}")
    oi, ni = old.get("inputs") or {}, new.get("inputs") or {}
    for k in sorted(set(oi) | set(ni)):
        if oi.get(k) != ni.get(k):
            out.append(f"input {k!r} changed (artifact {_short(','.join(map(str, oi.get(k) or ['none'])))} -> "
                       f"{_short(','.join(map(str, ni.get(k) or ['none'])))})")
    om, nm = old.get("modules") or {}, new.get("modules") or {}
    for param in sorted(set(om) | set(nm)):
        of, nf = om.get(param) or {}, nm.get(param) or {}
        if not isinstance(of, dict) or not isinstance(nf, dict):
            if of != nf:
                out.append(f"module file of {param} changed")
            continue
        main = nf.get("__main__") or of.get("__main__")
        for f in sorted(set(of) | set(nf)):
            if f == "__main__" or of.get(f) == nf.get(f):
                continue
            what = f"module file {f}" if f == main else f"helper module {f} (imported by {main})"
            if f not in of:
                out.append(f"{what} is new")
            elif f not in nf:
                out.append(f"{what} is no longer imported")
            else:
                out.append(f"{what} changed ({_short(of[f])} -> {_short(nf[f])})")
    if old.get("outputs") != new.get("outputs"):
        out.append(f"outputs changed: {old.get('outputs')} -> {new.get('outputs')}")
    return out


def _inputs(store, ir, node, selected, virtual) -> dict | None:
    """Each input as the launcher would resolve it: the upstream's (virtual) outputs in this
    run, or for an unselected producer its newest successful execution's outputs."""
    spec_optional = node.get("_optional", frozenset())
    out = {}
    for key, src in node["inputs"].items():
        producer = src["producer"]
        if producer in selected:
            found = virtual.get(producer)
        else:
            hit = latest_ok_execution(store, ir["pipeline"]["name"], producer)
            found = hit[1] if hit else None
        if found is None:
            return None
        if src["output"] not in found:
            if key in spec_optional:
                continue
            return None
        out[key] = found[src["output"]]
    return out


def plan_run(ir: dict, store: MetadataStore, nodes: list[dict], enable_cache: bool | None = None) -> list[NodePlan]:
    """The plan of running ``nodes`` (in topological order) of ``ir`` now."""
    from .resolver import ResolverQuery
    pl = ir["pipeline"]
    selected = {n["id"] for n in nodes}
    virtual: dict[str, dict] = {}
    will_run: set[str] = set()
    resolving: set[str] = set()  # resolvers whose upstream will run: what they pick is not known yet
    plans: list[NodePlan] = []
    last: dict = {}  # node id -> its last execution (or None)

    def previous(node_id: str):
        if node_id not in last:
            last[node_id] = _previous(store, pl["name"], node_id)
        return last[node_id]

    for n in nodes:
        spec = load_component(n["executor"], pl.get("source"))
        params = dict(n["parameters"])
        for k, ps in spec.parameters.items():
            if k not in params and not ps.required:
                params[k] = ps.default
        plan = NodePlan(n["id"], n["component"], "run")
        plans.append(plan)
        upstream = [u for u in n["upstream"] if u in will_run]
        if upstream and spec.resolver is not None:
            # What it picks depends on what the upstream run records: counted as a resolve,
            # and its downstream as running.
            plan.action = "resolve"
            plan.reasons.append(f"a resolver picks artifacts anew every run, here after upstream "
                                f"{', '.join(upstream)} runs")
            will_run.add(n["id"])
            resolving.add(n["id"])
            continue
        if upstream:
            running = [u for u in upstream if u not in resolving]
            said = [f"upstream {', '.join(running)} will run"] if running else []
            said += [f"upstream resolver {', '.join(u for u in upstream if u in resolving)} resolves anew"
                     ] if len(running) < len(upstream) else []
            plan.reasons.append("; ".join(said))
            will_run.add(n["id"])
            continue
        node = {**n, "_optional": frozenset(k for k, s in spec.inputs.items() if s.optional)}
        inputs = _inputs(store, ir, node, selected, virtual)
        if inputs is None:
            plan.reasons.append("an upstream node has no successful execution to take its input from")
            will_run.add(n["id"])
            continue
        if spec.resolver is not None:
            got = spec.resolver(ResolverQuery(store, pl["name"], None), pl["name"], dict(params),
                                {k: list(v) for k, v in inputs.items()}) or {}
            virtual[n["id"]] = {k: ([v] if not isinstance(v, list) else v) for k, v in got.items() if v}
            plan.action = "resolve"
            picked = ", ".join(f"{k} #{a.id}" for k, arts in virtual[n["id"]].items() for a in arts) or "nothing"
            plan.reasons.append(f"a resolver picks artifacts anew every run (now: {picked})")
            continue
        if spec.driver is not None:
            params.update(spec.driver(dict(params)) or {})
        material = cache_material(spec, n, params, inputs)
        plan.cache_key = material_key(material)
        use = pl.get("enable_cache", True) and n.get("enable_cache", True) and enable_cache is not False
        if not use:
            plan.reasons.append("the cache is off for this node (" + ("--no-cache" if enable_cache is False else
                                                                      "enable_cache=False") + ")")
            will_run.add(n["id"])
            continue
        hit = find_cached(store, plan.cache_key)
        if hit is not None:
            plan.action, plan.cached_from = "cached", hit[0].id
            virtual[n["id"]] = hit[1]
            continue
        will_run.add(n["id"])
        prev = previous(n["id"])
        if prev is None:
            plan.reasons.append("it never ran before")
            continue
        old = store.props(prev).get("cache_material")
        if not old:
            plan.reasons.append(f"its last execution ({prev.id}) recorded no cache material (an older tfpipe)")
            continue
        reasons = _diff(json.loads(old), material)
        if not reasons:
            state = store.state_name(prev)
            if state not in SUCCEEDED:
                reasons = [f"its last execution ({prev.id}) is {state}"]
            else:
                reasons = [f"the outputs of its last execution ({prev.id}) are gone (removed, or not LIVE)"]
        plan.reasons.extend(reasons)
    for plan in plans:  # what a node to run took last time (the default mode's forecast)
        if plan.action == "run" and (prev := previous(plan.node_id)) is not None:
            plan.last_duration_s = _duration(store, prev)
    return plans


def format_plan(plans: list[NodePlan], pipeline: str, where: str) -> str:
    w = max((len(p.node_id) for p in plans), default=4)
    lines = [f"plan of pipeline {pipeline} against {where}: "
             f"{sum(p.action == 'cached' for p in plans)} cached, {sum(p.action == 'run' for p in plans)} to run, "
             f"{sum(p.action == 'resolve' for p in plans)} to resolve"]
    for p in plans:
        head = f"  {p.node_id:<{w}}  {p.action.upper() if p.action == 'run' else p.action:<8}"
        if p.action == "cached":
            lines.append(f"{head} from execution {p.cached_from}")
        else:
            lines.append(f"{head} " + ("; ".join(p.reasons) if p.reasons else ""))
    return "\n".join(lines)
