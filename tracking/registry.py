"""The model registry: pushed model versions, their stages, promotion and rollback, all
recorded in ML Metadata.

- A *version* is a ``PushedModel`` artifact that was pushed (``pushed=True``): the Pusher
  copied the model to ``<destination>/<pushed_version>``. Its *registered model* is the
  pipeline that pushed it.
- Every stage change is an execution of type ``ModelTransition`` (who, when, why, from and
  to stage) with an INPUT event on the version's artifact, attributed to a
  ``registered_model`` context; the stage of a version is its latest transition.
- Production is a stack: ``promote --stage production`` pushes a version (the one it
  replaces is archived), ``rollback`` pops back to the previous production version. Each
  production change switches ``<destination>/serving`` atomically: a new symlink is made
  beside it and renamed over the old one (``os.replace``), so a server never sees a
  missing or half-switched directory.
"""
from __future__ import annotations

import getpass
import json
import os
import time
import uuid

from tfpipe.metadata import MetadataStore

from . import inspect as insp
from .results import load_evaluation

__all__ = ["Registry", "RegistryError", "STAGES", "SERVING_LINK", "switch_serving", "format_models",
           "format_version", "current_user"]

STAGES = ("none", "staging", "production", "archived")
SERVING_LINK = "serving"
TRANSITION = "ModelTransition"
REGISTERED_MODEL = "registered_model"


class RegistryError(ValueError):
    pass


def current_user() -> str:
    """Who made a transition: ``$TFPIPE_USER``, else the login name."""
    try:
        return os.environ.get("TFPIPE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


def switch_serving(destination: str, version: str, link: str = SERVING_LINK) -> str:
    """Point ``<destination>/<link>`` at ``<destination>/<version>`` atomically."""
    target = os.path.join(destination, version)
    if not os.path.isdir(target):
        raise RegistryError(f"cannot serve version {version}: {target} does not exist (the pushed model "
                            f"directory was removed); expected the Pusher's copy there")
    path = os.path.join(destination, link)
    if os.path.exists(path) and not os.path.islink(path):
        raise RegistryError(f"{path} exists and is not a symlink; the registry switches serving by "
                            f"replacing a symlink and will not overwrite a real directory")
    tmp = os.path.join(destination, f".{link}.{uuid.uuid4().hex[:8]}")
    os.symlink(version, tmp)  # relative: the destination can move as a whole
    os.replace(tmp, path)
    return path


class Registry:
    def __init__(self, store: MetadataStore):
        self.store = store

    # -- reading -----------------------------------------------------------------------
    def _pushed(self) -> list[dict]:
        """Every pushed version: artifact, model name, destination, version, push run."""
        st = self.store
        arts = [a for a in st.list_artifacts("PushedModel") if a.properties.get("pushed")
                and a.state == "LIVE"] if self._has_type("PushedModel") else []
        if not arts:
            return []
        evs = [e for e in st.events_of_artifacts([a.id for a in arts]) if e.type == st.pb.Event.OUTPUT]
        first: dict[int, int] = {}
        for e in evs:
            first[e.artifact_id] = min(first.get(e.artifact_id, e.execution_id), e.execution_id)
        execs = {e.id: e for e in st.executions(sorted(set(first.values())))}
        out, seen = [], {}
        for a in sorted(arts, key=lambda a: a.id):
            ex = execs.get(first.get(a.id))
            p = st.props(ex) if ex is not None else {}
            row = {"artifact": a, "id": a.id, "model": p.get("pipeline") or
                   os.path.basename(str(a.properties.get("destination", "")).rstrip("/")),
                   "version": str(a.properties.get("pushed_version")),
                   "destination": a.properties.get("destination"), "run_id": p.get("run_id"),
                   "pushed_at": (ex.create_time_since_epoch / 1000.0) if ex is not None else None,
                   "artifact_ids": [a.id]}
            key = (row["model"], row["destination"], row["version"])
            if key in seen:  # the Pusher found the same model already there: one version, several records
                seen[key]["artifact_ids"].append(a.id)
                continue
            seen[key] = row
            out.append(row)
        return out

    def _has_type(self, name: str) -> bool:
        try:
            self.store.store.get_artifact_type(name)
            return True
        except Exception:
            return False

    def transitions(self, model: str | None = None) -> list[dict]:
        st = self.store
        try:
            execs = st._retry(lambda: st.store.get_executions_by_type(TRANSITION))
        except Exception:
            return []
        rows = []
        for e in sorted(execs, key=lambda e: e.id):
            p = st.props(e)
            if model and p.get("model") != model:
                continue
            rows.append({"execution_id": e.id, **p})
        return rows

    def _resolve(self, version: str, model: str | None) -> dict:
        cands = [v for v in self._pushed() if (model is None or v["model"] == model)]
        if not cands:
            raise RegistryError("no pushed model versions in the metadata store"
                                + (f" for model {model!r}" if model else "")
                                + f" ({self.store.where}); a run's Pusher must push a blessed model first")
        hit = [v for v in cands if v["version"] == str(version)]
        if not hit and str(version).startswith("#") and str(version)[1:].isdigit():
            hit = [v for v in cands if int(str(version)[1:]) in v["artifact_ids"]]
        if str(version) in ("production", "staging") and not hit:
            stage = str(version)
            hit = [v for v in self.list_versions(model, _pushed=cands) if v["stage"] == stage]
            hit = [c for c in cands if any(h["artifact_id"] == c["id"] for h in hit)]
        models = sorted({v["model"] for v in hit})
        if len(models) > 1:
            raise RegistryError(f"version {version} exists for several models {models}; pass --model")
        if not hit:
            raise RegistryError(f"no model version {version!r}" + (f" of {model!r}" if model else "")
                                + f"; versions: {[v['version'] for v in cands]} (see 'tfpipe models list')")
        return hit[-1]

    def _models(self, model: str | None) -> list[str]:
        names = sorted({v["model"] for v in self._pushed()})
        if model:
            if model not in names:
                raise RegistryError(f"no registered model {model!r}; models: {names}")
            return [model]
        return names

    @staticmethod
    def _state(transitions: list[dict]) -> tuple[dict[int, str], list[int]]:
        """Stage of every version (by artifact id) and the production stack."""
        stage: dict[int, str] = {}
        stack: list[int] = []
        for t in transitions:
            aid = t["artifact_id"]
            stage[aid] = t["to_stage"]
            if t["to_stage"] == "production":
                if t.get("kind") == "rollback":
                    while stack and stack[-1] != aid:
                        stack.pop()
                    if not stack:
                        stack.append(aid)
                else:
                    if aid in stack:
                        stack.remove(aid)
                    stack.append(aid)
            elif aid in stack and t.get("kind") != "replaced":
                stack.remove(aid)
        return stage, stack

    def list_versions(self, model: str | None = None, _pushed=None) -> list[dict]:
        pushed = _pushed if _pushed is not None else self._pushed()
        if model:
            pushed = [v for v in pushed if v["model"] == model]
        trans = self.transitions(model)
        rows = []
        for name in sorted({v["model"] for v in pushed}):
            ts = [t for t in trans if t.get("model") == name]
            stage, _ = self._state(ts)
            for v in (v for v in pushed if v["model"] == name):
                last = [t for t in ts if t["artifact_id"] == v["id"]]
                rows.append({"model": name, "version": v["version"], "artifact_id": v["id"],
                             "stage": stage.get(v["id"], "none"), "destination": v["destination"],
                             "run_id": v["run_id"], "pushed_at": v["pushed_at"],
                             "last_transition": last[-1] if last else None})
        return rows

    # -- writing -----------------------------------------------------------------------
    def _record(self, v: dict, from_stage: str, to_stage: str, reason: str, kind: str, extra=None) -> dict:
        st = self.store
        props = {"model": v["model"], "version": v["version"], "artifact_id": v["id"], "from_stage": from_stage,
                 "to_stage": to_stage, "user": current_user(), "reason": reason or "", "at": time.time(),
                 "kind": kind, **(extra or {})}
        ctx = st.context(REGISTERED_MODEL, v["model"], {"model": v["model"]})
        e = st.new_execution(TRANSITION, props, [ctx], {"model": [v["artifact"]]})
        st.publish_execution(e, "COMPLETE", {}, [ctx], {})
        return {"execution_id": e.id, **props}

    def promote(self, version: str, stage: str, reason: str = "", model: str | None = None) -> dict:
        if stage not in STAGES or stage == "none":
            raise RegistryError(f"stage {stage!r}: expected one of staging, production, archived")
        v = self._resolve(version, model)
        rows = {r["artifact_id"]: r for r in self.list_versions(v["model"])}
        cur = rows[v["id"]]["stage"]
        if cur == stage:
            raise RegistryError(f"{v['model']} version {v['version']} is already in {stage}")
        extra = {}
        if stage == "production":
            _, stack = self._state(self.transitions(v["model"]))
            prev = stack[-1] if stack else None
            serving = switch_serving(v["destination"], v["version"])
            if prev is not None and prev != v["id"]:
                p = next(x for x in self._pushed() if x["id"] == prev)
                self._record(p, "production", "archived", f"replaced by version {v['version']}", "replaced")
                extra["previous_production"] = p["version"]
            extra["serving"] = serving
        elif cur == "production":
            raise RegistryError(f"{v['model']} version {v['version']} is in production; promote another "
                                f"version to production or use 'tfpipe models rollback' instead of moving it "
                                f"to {stage}")
        return self._record(v, cur, stage, reason, "promote", extra)

    def rollback(self, reason: str = "", model: str | None = None) -> dict:
        names = self._models(model)
        if not names:
            raise RegistryError(f"no pushed model versions in the metadata store ({self.store.where}); nothing "
                                f"to roll back")
        if len(names) != 1:
            raise RegistryError(f"several registered models {names}; pass --model")
        name = names[0]
        _, stack = self._state(self.transitions(name))
        if not stack:
            raise RegistryError(f"model {name} has no production version to roll back")
        pushed = {x["id"]: x for x in self._pushed()}
        if len(stack) < 2:
            raise RegistryError(f"model {name}: version {pushed[stack[-1]]['version']} is in production and no "
                                f"earlier production version remains to roll back to")
        cur, prev = pushed[stack[-1]], pushed[stack[-2]]
        serving = switch_serving(prev["destination"], prev["version"])
        self._record(cur, "production", "archived", reason or "rolled back", "rolled-back")
        return self._record(prev, "archived", "production", reason, "rollback",
                            {"previous_production": cur["version"], "serving": serving})

    # -- lineage -----------------------------------------------------------------------
    def show(self, version: str, model: str | None = None) -> dict:
        v = self._resolve(version, model)
        row = next(r for r in self.list_versions(v["model"]) if r["artifact_id"] == v["id"])
        tree = insp.lineage(self.store, v["id"])
        return {**row, "transitions": [t for t in self.transitions(v["model"]) if t["artifact_id"] == v["id"]],
                "lineage": summarize_lineage(tree, self.store), "tree": tree}


def summarize_lineage(tree: dict, store: MetadataStore | None = None) -> dict:
    """Which data (span, fingerprint), schema, transform, code commit, parameters and
    evaluation a model version came from, flattened from its lineage tree. The evaluation
    is not upstream of a pushed model (its blessing is): with ``store`` it is found beside
    the blessing, as an output of the same Evaluator execution."""
    out = {"data": [], "derived_examples": [], "infra_blessing": [], "schema": [], "transform": [], "model": [], "evaluation": [], "blessing": [],
           "hyperparameters": [], "executions": []}
    seen_a, seen_e = set(), set()

    def walk(node):
        a = node["artifact"]
        if a["id"] not in seen_a:
            seen_a.add(a["id"])
            t, props = a["type"], a["properties"]
            base = {"id": a["id"], "uri": a["uri"], "fingerprint": props.get("fingerprint")}
            if t == "Examples" and not props.get("input_fingerprint"):  # derived (e.g. transformed) examples
                out["derived_examples"].append({**base, "split_names": props.get("split_names")})
            elif t == "Examples":
                out["data"].append({**base, "span": props.get("span"), "version": props.get("version"),
                                    "input_fingerprint": props.get("input_fingerprint"),
                                    "row_counts": props.get("row_counts")})
            elif t == "Schema":
                out["schema"].append(base)
            elif t == "TransformGraph":
                out["transform"].append(base)
            elif t == "Model":
                out["model"].append(base)
            elif t == "ModelEvaluation":
                ev = load_evaluation(a["uri"])
                out["evaluation"].append({**base, "slices": ev["slices"], "thresholds": ev["thresholds"]})
            elif t == "ModelBlessing":
                out["blessing"].append({**base, "blessed": props.get("blessed"), "reasons": props.get("reasons")})
                pb = node.get("produced_by")
                if store is not None and pb:
                    for outs in store.io_of(pb["execution_id"])[1].values():
                        for x in outs:
                            if x.type_name == "ModelEvaluation" and x.id not in seen_a:
                                walk({"artifact": {"id": x.id, "type": x.type_name, "uri": x.uri,
                                                   "state": x.state, "properties": x.properties}})
            elif t == "InfraBlessing":
                out["infra_blessing"].append({**base, "blessed": props.get("blessed"), "reasons": props.get("reasons")})
            elif t == "HyperParameters":
                out["hyperparameters"].append(base)
        pb = node.get("produced_by")
        if pb and pb["execution_id"] not in seen_e:
            seen_e.add(pb["execution_id"])
            out["executions"].append({k: pb.get(k) for k in ("execution_id", "node_id", "component", "run_id",
                                                             "git_commit", "git_dirty", "code_version",
                                                             "data_fingerprint", "parameters")})
        for subs in node.get("inputs", {}).values():
            for s in subs:
                walk(s)

    walk(tree)
    commits = sorted({(e["git_commit"] or "-") + ("*" if e["git_dirty"] else "") for e in out["executions"]})
    out["code_commits"] = commits
    return out


def format_models(rows: list[dict]) -> str:
    if not rows:
        return "no pushed model versions"
    table = []
    for r in rows:
        t = r["last_transition"] or {}
        table.append([r["model"], r["version"], f"#{r['artifact_id']}", r["stage"].upper() if r["stage"] ==
                      "production" else r["stage"], r["run_id"] or "-", insp._ts(r["pushed_at"]),
                      f"{t.get('user', '')} {insp._ts(t.get('at'))} {t.get('reason', '')}".strip() if t else "-"])
    return insp._table(table, ["MODEL", "VERSION", "ARTIFACT", "STAGE", "PUSHED BY RUN", "PUSHED AT",
                               "LAST TRANSITION (who, when, why)"])


def format_version(info: dict) -> str:
    lin = info["lineage"]
    lines = [f"{info['model']} version {info['version']} (artifact #{info['artifact_id']}): stage {info['stage']}",
             f"  pushed by run {info['run_id']} to {info['destination']}"]
    lines.append("transitions:")
    for t in info["transitions"] or []:
        lines.append(f"  {insp._ts(t['at'])} {t['from_stage']} -> {t['to_stage']} by {t['user']}"
                     f" ({t['kind']}){': ' + t['reason'] if t.get('reason') else ''}")
    if not info["transitions"]:
        lines.append("  (none)")
    lines.append("lineage:")
    for d in lin["data"]:
        lines.append(f"  data: Examples #{d['id']} span {d['span']} input fingerprint "
                     f"{(d['input_fingerprint'] or '-')[:12]} rows {d['row_counts']}")
    for k in ("schema", "transform", "model", "hyperparameters"):
        for a in lin[k]:
            lines.append(f"  {k}: #{a['id']} fingerprint {(a['fingerprint'] or '-')[:12]} {a['uri']}")
    for ev in lin["evaluation"]:
        overall = next(iter(ev["slices"].values()), {}) if ev["slices"] else {}
        lines.append(f"  evaluation: #{ev['id']} " + " ".join(f"{k}={v:.4g}" for k, v in list(overall.items())[:6])
                     + f" ({len(ev['slices'])} slices)")
    for b in lin["blessing"]:
        lines.append(f"  blessing: #{b['id']} blessed={b['blessed']} {b['reasons'] or ''}")
    for b in lin["infra_blessing"]:
        lines.append(f"  infra blessing: #{b['id']} blessed={b['blessed']} {b['reasons'] or ''}")
    lines.append(f"  code commits: {', '.join(lin['code_commits']) or '-'}")
    for e in lin["executions"]:
        params = {k: v for k, v in (e["parameters"] or {}).items() if k not in ("input_files", "previous_span_files")}
        lines.append(f"  {e['node_id']} ({e['component']}) execution #{e['execution_id']} run {e['run_id']} "
                     f"code {e['code_version']}: {json.dumps(params, sort_keys=True, default=str)[:300]}")
    return "\n".join(lines)
