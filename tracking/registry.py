"""The model registry: pushed model versions, their aliases (stages), promotion and
rollback, all recorded in ML Metadata and published to the model servers.

- A *version* is a ``PushedModel`` artifact that was pushed (``pushed=True``): the Pusher
  copied the model to ``<destination>/<pushed_version>``. Its *registered model* is the
  pipeline that pushed it.
- An *alias* names one version of a registered model (``penguin@production``), as MLflow's
  aliases do. ``production`` and ``staging`` are ordinary aliases; ``promote --stage`` is a
  synonym for setting them. A version's *stage* is derived: production or staging when it
  holds that alias, archived when it held one of them once, none otherwise.
- Every change is an execution of type ``ModelTransition`` (who, when, why; the alias, from
  and to stage) with an INPUT event on the version's artifact, attributed to a
  ``registered_model`` context; the current aliases are the replay of these records.
- Production is a stack: setting ``production`` pushes a version (the one it replaces is
  archived), ``rollback`` pops back to the previous production version.
- After each change the registry publishes the state, derived again from the records:
  ``<destination>/models.config`` (TF Serving's ModelServerConfig: the aliased versions and
  the rollback target as ``specific`` versions, aliases as ``version_labels``), which TF
  Serving and ``tfpipe serve`` poll; the ``<destination>/serving`` symlink to production
  (switched atomically); and, when an MLflow tracking URI is configured, the registered
  model's aliases in MLflow. ``tfpipe models sync`` publishes again from the records.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import time

from tfpipe.files import replacing
from tfpipe.metadata import MetadataStore

from . import inspect as insp
from .results import load_evaluation

__all__ = ["Registry", "RegistryError", "RegistryUsageError", "STAGES", "SERVING_LINK", "switch_serving", "format_models",
           "format_version", "current_user", "parse_model_alias", "check_alias"]

STAGES = ("none", "staging", "production", "archived")
STAGE_ALIASES = ("production", "staging")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
SERVING_LINK = "serving"
TRANSITION = "ModelTransition"
REGISTERED_MODEL = "registered_model"


class RegistryError(ValueError):
    pass


class RegistryUsageError(RegistryError):
    """A version, model or alias the command names does not exist, or a choice is ambiguous
    (several registered models, no --model): a usage error, exit 2."""


def check_alias(alias: str) -> str:
    """An alias MLflow and TF Serving both accept: a letter, then letters, digits, ``_`` or
    ``-``; not ``latest`` nor ``v<number>`` (MLflow reserves them)."""
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.lower() == "latest" or re.match(
            r"^[vV]\d+$", alias):
        raise RegistryUsageError(f"alias {alias!r}: expected a letter followed by letters, digits, '_' or '-' "
                            f"(at most 63), not 'latest' or 'v<number>' (reserved by MLflow)")
    return alias


def parse_model_alias(text: str) -> tuple[str, str]:
    """``NAME@ALIAS`` -> (NAME, ALIAS)."""
    name, sep, alias = str(text).rpartition("@")
    if not sep or not name:
        raise RegistryUsageError(f"{text!r}: expected NAME@ALIAS, e.g. penguin@production")
    return name, check_alias(alias)


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
    with replacing(path) as tmp:
        os.symlink(version, tmp)  # relative: the destination can move as a whole
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
        if not hit:  # an alias: production, staging, or any other (also written @alias)
            alias = str(version)[1:] if str(version).startswith("@") else str(version)
            for name in sorted({v["model"] for v in cands}):
                held = self.aliases(name)
                if alias in held:
                    hit.append(held[alias])
        models = sorted({v["model"] for v in hit})
        if len(models) > 1:
            raise RegistryUsageError(f"version {version} exists for several models {models}; pass --model")
        if not hit:
            raise RegistryUsageError(f"no model version {version!r}" + (f" of {model!r}" if model else "")
                                + f"; versions: {[v['version'] for v in cands]} (see 'tfpipe models list')")
        return hit[-1]

    def _models(self, model: str | None) -> list[str]:
        names = sorted({v["model"] for v in self._pushed()})
        if model:
            if model not in names:
                raise RegistryUsageError(f"no registered model {model!r}; models: {names}")
            return [model]
        return names

    @staticmethod
    def _alias_of(t: dict) -> str | None:
        """The alias a record changed (records made before aliases: the stage)."""
        return t.get("alias") or (t.get("to_stage") if t.get("to_stage") in STAGE_ALIASES else None)

    @classmethod
    def _replay(cls, transitions: list[dict]) -> tuple[dict[str, int], list[int], set[int]]:
        """The aliases (alias -> artifact id), the production stack, and the versions that
        ever held production or staging, from the records in order."""
        aliases: dict[str, int] = {}
        stack: list[int] = []
        held: set[int] = set()
        for t in transitions:
            aid, kind, alias = t["artifact_id"], t.get("kind"), cls._alias_of(t)
            if kind == "promote" and t.get("to_stage") == "archived" or kind == "archive":
                for a in [a for a, v in aliases.items() if v == aid and a != "production"]:
                    del aliases[a]
            elif kind in ("promote", "alias-set") and alias:
                aliases[alias] = aid
                if (kind == "promote" and alias == "production" and t.get("from_stage") == "staging"
                        and aliases.get("staging") == aid):
                    del aliases["staging"]  # a stage move: the version leaves staging for production
                if alias in STAGE_ALIASES:
                    held.add(aid)
                if alias == "production":
                    if aid in stack:
                        stack.remove(aid)
                    stack.append(aid)
            elif kind == "rolled-back":
                if stack and stack[-1] == aid:
                    stack.pop()
                if aliases.get("production") == aid:
                    del aliases["production"]
            elif kind == "rollback":
                while stack and stack[-1] != aid:
                    stack.pop()
                if not stack:
                    stack.append(aid)
                aliases["production"] = aid
                held.add(aid)
            elif kind == "alias-delete" and alias and aliases.get(alias) == aid:
                del aliases[alias]
        return aliases, stack, held

    @classmethod
    def _state(cls, transitions: list[dict]) -> tuple[dict[int, str], list[int]]:
        """Stage of every version (by artifact id) and the production stack."""
        aliases, stack, held = cls._replay(transitions)
        stage = {aid: "archived" for aid in held}
        for alias in ("staging", "production"):
            if alias in aliases:
                stage[aliases[alias]] = alias
        return stage, stack

    def aliases(self, model: str) -> dict[str, dict]:
        """The current aliases of a registered model: alias -> its version's row."""
        pushed = {v["id"]: v for v in self._pushed() if v["model"] == model}
        aliases, _, _ = self._replay(self.transitions(model))
        return {a: pushed[aid] for a, aid in sorted(aliases.items()) if aid in pushed}

    def list_versions(self, model: str | None = None, _pushed=None) -> list[dict]:
        pushed = _pushed if _pushed is not None else self._pushed()
        if model:
            pushed = [v for v in pushed if v["model"] == model]
        trans = self.transitions(model)
        rows = []
        for name in sorted({v["model"] for v in pushed}):
            ts = [t for t in trans if t.get("model") == name]
            stage, _ = self._state(ts)
            aliases, _, _ = self._replay(ts)
            for v in (v for v in pushed if v["model"] == name):
                last = [t for t in ts if t["artifact_id"] == v["id"]]
                rows.append({"model": name, "version": v["version"], "artifact_id": v["id"],
                             "stage": stage.get(v["id"], "none"),
                             "aliases": sorted(a for a, aid in aliases.items() if aid == v["id"]),
                             "destination": v["destination"], "run_id": v["run_id"], "pushed_at": v["pushed_at"],
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

    def _stage_after(self, model: str, aid: int, extra: list[dict]) -> str:
        stage, _ = self._state(self.transitions(model) + extra)
        return stage.get(aid, "none")

    @staticmethod
    def _check_on_disk(v: dict) -> None:
        target = os.path.join(v["destination"] or "", v["version"])
        if not os.path.isdir(target):
            raise RegistryError(f"cannot serve version {v['version']}: {target} does not exist (the pushed model "
                                f"directory was removed); expected the Pusher's copy there")

    def set_alias(self, model: str, alias: str, version: str, reason: str = "", mlflow_uri: str | None = None,
                  kind: str | None = None) -> dict:
        """Point ``model@alias`` at ``version``; recorded, then published. ``kind="promote"``
        (``promote --stage``) is a stage move: a staging version promoted to production
        leaves staging; ``alias set`` leaves other aliases alone."""
        check_alias(alias)
        self._models(model)
        v = self._resolve(version, model)
        rows = {r["artifact_id"]: r for r in self.list_versions(model)}
        cur = rows[v["id"]]["stage"]
        held = self.aliases(model)
        if alias in held and held[alias]["id"] == v["id"]:
            raise RegistryError(f"{model}@{alias} is already version {v['version']}"
                                + (f" (already in {alias})" if alias in STAGE_ALIASES else ""))
        self._check_on_disk(v)
        kind = kind or "alias-set"
        extra = {"alias": alias, "previous_version": held[alias]["version"] if alias in held else ""}
        if alias == "production":
            _, stack = self._state(self.transitions(model))
            prev = stack[-1] if stack else None
            if prev is not None and prev != v["id"]:
                p = next(x for x in self._pushed() if x["id"] == prev)
                self._record(p, "production", self._stage_after(model, prev, [
                    {"artifact_id": prev, "kind": "rolled-back", "to_stage": "archived"}]),
                    f"replaced by version {v['version']}", "replaced", {"alias": "production"})
                extra["previous_production"] = p["version"]
        to_stage = self._stage_after(model, v["id"], [{"artifact_id": v["id"], "kind": kind, "alias": alias,
                                                       "from_stage": cur}])
        t = self._record(v, cur, to_stage, reason, kind, extra)
        return {**t, **self.publish(model, mlflow_uri=mlflow_uri)}

    def delete_alias(self, model: str, alias: str, reason: str = "", mlflow_uri: str | None = None) -> dict:
        check_alias(alias)
        self._models(model)
        held = self.aliases(model)
        if alias not in held:
            raise RegistryUsageError(f"{model} has no alias {alias!r}; aliases: {sorted(held) or 'none'}")
        if alias == "production":
            raise RegistryError(f"{model}@production cannot be deleted: production is a stack; use "
                                f"'tfpipe models rollback' to return to the previous production version or set "
                                f"it to another version")
        v = held[alias]
        cur = next(r for r in self.list_versions(model) if r["artifact_id"] == v["id"])["stage"]
        to_stage = self._stage_after(model, v["id"], [{"artifact_id": v["id"], "kind": "alias-delete",
                                                       "alias": alias}])
        t = self._record(v, cur, to_stage, reason, "alias-delete", {"alias": alias, "previous_version": v["version"]})
        return {**t, **self.publish(model, mlflow_uri=mlflow_uri)}

    def promote(self, version: str, stage: str, reason: str = "", model: str | None = None,
                mlflow_uri: str | None = None) -> dict:
        """``--stage staging|production``: set that alias; ``archived``: drop the version's aliases."""
        if stage not in STAGES or stage == "none":
            raise RegistryUsageError(f"stage {stage!r}: expected one of staging, production, archived")
        v = self._resolve(version, model)
        if stage in STAGE_ALIASES:
            return self.set_alias(v["model"], stage, v["version"], reason=reason, mlflow_uri=mlflow_uri,
                                  kind="promote")
        rows = {r["artifact_id"]: r for r in self.list_versions(v["model"])}
        cur = rows[v["id"]]["stage"]
        if cur == "production":
            raise RegistryError(f"{v['model']} version {v['version']} is in production; promote another "
                                f"version to production or use 'tfpipe models rollback' instead of moving it "
                                f"to {stage}")
        if cur == stage:
            raise RegistryError(f"{v['model']} version {v['version']} is already in {stage}")
        t = self._record(v, cur, "archived", reason, "archive", {"removed_aliases": ",".join(rows[v["id"]]["aliases"])})
        return {**t, **self.publish(v["model"], mlflow_uri=mlflow_uri)}

    def rollback(self, reason: str = "", model: str | None = None, mlflow_uri: str | None = None) -> dict:
        names = self._models(model)
        if not names:
            raise RegistryError(f"no pushed model versions in the metadata store ({self.store.where}); nothing "
                                f"to roll back")
        if len(names) != 1:
            raise RegistryUsageError(f"several registered models {names}; pass --model")
        name = names[0]
        _, stack = self._state(self.transitions(name))
        if not stack:
            raise RegistryError(f"model {name} has no production version to roll back")
        pushed = {x["id"]: x for x in self._pushed()}
        if len(stack) < 2:
            raise RegistryError(f"model {name}: version {pushed[stack[-1]]['version']} is in production and no "
                                f"earlier production version remains to roll back to")
        cur, prev = pushed[stack[-1]], pushed[stack[-2]]
        self._check_on_disk(prev)
        self._record(cur, "production", self._stage_after(name, cur["id"], [
            {"artifact_id": cur["id"], "kind": "rolled-back"}]), reason or "rolled back", "rolled-back",
            {"alias": "production"})
        t = self._record(prev, "archived", "production", reason, "rollback",
                         {"alias": "production", "previous_production": cur["version"]})
        return {**t, **self.publish(name, mlflow_uri=mlflow_uri)}

    # -- publishing ----------------------------------------------------------------------
    def serving_entries(self, destination: str) -> list:
        """The ModelServerConfig entries of every registered model pushed to ``destination``:
        the aliased versions and the rollback target stay loaded; aliases are labels. A model
        without aliases gets TF Serving's default policy (its latest version)."""
        from tfpipe.serving.config import ModelEntry
        out = []
        for name in sorted({v["model"] for v in self._pushed() if v["destination"] == destination}):
            held = self.aliases(name)
            labels = {a: int(v["version"]) for a, v in held.items() if v["destination"] == destination}
            if not labels:
                out.append(ModelEntry(name, destination))
                continue
            _, stack = self._state(self.transitions(name))
            pushed = {x["id"]: x for x in self._pushed()}
            keep = set(labels.values())
            if len(stack) >= 2 and pushed[stack[-2]]["destination"] == destination:
                keep.add(int(pushed[stack[-2]]["version"]))  # rollback is instant: the target stays loaded
            out.append(ModelEntry(name, destination, versions=sorted(keep), labels=labels))
        return out

    def publish(self, model: str, mlflow_uri: str | None = None) -> dict:
        """Make servers see the recorded state: models.config and the serving symlink of
        every destination of ``model``; MLflow's aliases when a tracking URI is given."""
        from tfpipe.serving.config import CONFIG_FILE, write_config
        out: dict = {"models_config": [], "serving": None}
        held = self.aliases(model)
        for dest in sorted({v["destination"] for v in self._pushed() if v["model"] == model and v["destination"]}):
            out["models_config"].append(write_config(os.path.join(dest, CONFIG_FILE), self.serving_entries(dest)))
        if "production" in held:
            p = held["production"]
            out["serving"] = switch_serving(p["destination"], p["version"])
        if mlflow_uri:
            from .mlflow_export import mirror_aliases
            out["mlflow"] = mirror_aliases(mlflow_uri, model, held)
        return out

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
                      "production" else r["stage"], ",".join(r.get("aliases") or []) or "-", r["run_id"] or "-",
                      insp._ts(r["pushed_at"]),
                      f"{t.get('user', '')} {insp._ts(t.get('at'))} {t.get('reason', '')}".strip() if t else "-"])
    return insp._table(table, ["MODEL", "VERSION", "ARTIFACT", "STAGE", "ALIASES", "PUSHED BY RUN", "PUSHED AT",
                               "LAST TRANSITION (who, when, why)"])


def format_version(info: dict) -> str:
    lin = info["lineage"]
    lines = [f"{info['model']} version {info['version']} (artifact #{info['artifact_id']}): stage {info['stage']}"
             + (f", aliases {', '.join(info['aliases'])}" if info.get("aliases") else ""),
             f"  pushed by run {info['run_id']} to {info['destination']}"]
    lines.append("transitions:")
    for t in info["transitions"] or []:
        what = f"@{t['alias']} " if t.get("alias") else ""
        lines.append(f"  {insp._ts(t['at'])} {what}{t['from_stage']} -> {t['to_stage']} by {t['user']}"
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
