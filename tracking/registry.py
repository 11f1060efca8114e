"""The model registry: pushed model versions, their aliases (stages), promotion and
rollback, all recorded in ML Metadata and published to the model servers.

- An *alias* names one version of a registered model (``penguin@production``), as MLflow's
  aliases do. ``production`` and ``staging`` are ordinary aliases; ``promote --stage`` is a
  synonym for setting them. A version's *stage* is derived: production or staging when it
  holds that alias, archived when it held one of them once, none otherwise.
- Production is a stack: setting ``production`` pushes a version (the one it replaces is
  archived), ``rollback`` pops back to the previous production version.

The registry is three modules: ``aliases`` (the record: versions and transitions in ML
Metadata, their replay), ``publishing`` (models.config, the serving link, MLflow) and
``lineage_summary`` (what a version came from). This module holds the commands and
formatting, and re-exports the public names of the other two.
"""
from __future__ import annotations

import json

from . import aliases as rec
from . import publishing as pub
from . import records
from .aliases import (
    REGISTERED_MODEL,
    STAGE_ALIASES,
    STAGES,
    TRANSITION,
    RegistryError,
    RegistryUsageError,
    check_alias,
    current_user,
    parse_model_alias,
)
from .lineage_summary import summarize_lineage
from .publishing import SERVING_LINK, switch_serving

__all__ = ["Registry", "RegistryError", "RegistryUsageError", "STAGES", "SERVING_LINK", "switch_serving",
           "format_models", "format_version", "current_user", "parse_model_alias", "check_alias", "summarize_lineage",
           "STAGE_ALIASES", "TRANSITION", "REGISTERED_MODEL"]


class Registry:
    def __init__(self, store):
        self.store = store

    # -- reading -----------------------------------------------------------------------
    def pushed_versions(self) -> list[dict]:
        """Every pushed version of every model (``aliases.pushed_versions``)."""
        return rec.pushed_versions(self.store)

    def transitions(self, model: str | None = None) -> list[dict]:
        return rec.transitions(self.store, model)

    def resolve(self, version: str, model: str | None) -> dict:
        """The pushed version a user named: a version, ``#artifact_id`` or an alias."""
        cands = [v for v in self.pushed_versions() if (model is None or v["model"] == model)]
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

    def model_names(self, model: str | None) -> list[str]:
        """``[model]`` when it is registered (else a usage error), or every model's name."""
        names = sorted({v["model"] for v in self.pushed_versions()})
        if model:
            if model not in names:
                raise RegistryUsageError(f"no registered model {model!r}; models: {names}")
            return [model]
        return names

    def list_versions(self, model: str | None = None, _pushed=None) -> list[dict]:
        pushed = _pushed if _pushed is not None else self.pushed_versions()
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

    _replay = staticmethod(rec.replay)
    _state = staticmethod(rec.state)

    def aliases(self, model: str) -> dict[str, dict]:
        """The current aliases of a registered model: alias -> its version's row."""
        return rec.held_aliases(self.store, model)

    # -- writing -----------------------------------------------------------------------
    # Every change runs whole under the registry lock (see ``aliases``): read, decide,
    # record, publish. Publishing under the lock too keeps the files and MLflow in the
    # order of the records.
    def _record(self, v: dict, from_stage: str, to_stage: str, reason: str, kind: str, extra=None) -> dict:
        return rec.record(self.store, v, from_stage, to_stage, reason, kind, extra)

    def _stage_after(self, model: str, aid: int, extra: list[dict]) -> str:
        stage, _ = self._state(self.transitions(model) + extra)
        return stage.get(aid, "none")

    _check_on_disk = staticmethod(pub.check_on_disk)

    def set_alias(self, model: str, alias: str, version: str, reason: str = "", mlflow_uri: str | None = None,
                  kind: str | None = None) -> dict:
        """Point ``model@alias`` at ``version``; recorded, then published. ``kind="promote"``
        (``promote --stage``) is a stage move: a staging version promoted to production
        leaves staging; ``alias set`` leaves other aliases alone. When the alias already
        names that version nothing is recorded or published: ``changed`` is False."""
        check_alias(alias)
        with rec.registry_lock(self.store):
            self.model_names(model)
            v = self.resolve(version, model)
            held = self.aliases(model)
            if alias in held and held[alias]["id"] == v["id"]:
                return {"changed": False, "model": model, "alias": alias, "version": v["version"],
                        "previous_version": v["version"], "kind": kind or "alias-set",
                        "message": f"{model}@{alias} is already version {v['version']}: nothing recorded"}
            rows = {r["artifact_id"]: r for r in self.list_versions(model)}
            cur = rows[v["id"]]["stage"]
            self._check_on_disk(v)
            kind = kind or "alias-set"
            extra = {"alias": alias, "previous_version": held[alias]["version"] if alias in held else ""}
            if alias == "production":
                _, stack = self._state(self.transitions(model))
                prev = stack[-1] if stack else None
                if prev is not None and prev != v["id"]:
                    p = next(x for x in self.pushed_versions() if x["id"] == prev)
                    self._record(p, "production", self._stage_after(model, prev, [
                        {"artifact_id": prev, "kind": "rolled-back", "to_stage": "archived"}]),
                        f"replaced by version {v['version']}", "replaced", {"alias": "production"})
                    extra["previous_production"] = p["version"]
            to_stage = self._stage_after(model, v["id"], [{"artifact_id": v["id"], "kind": kind, "alias": alias,
                                                           "from_stage": cur}])
            t = self._record(v, cur, to_stage, reason, kind, extra)
            return {"changed": True, **t, **self._publish(model, mlflow_uri=mlflow_uri)}

    def delete_alias(self, model: str, alias: str, reason: str = "", mlflow_uri: str | None = None) -> dict:
        check_alias(alias)
        with rec.registry_lock(self.store):
            self.model_names(model)
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
            t = self._record(v, cur, to_stage, reason, "alias-delete",
                             {"alias": alias, "previous_version": v["version"]})
            return {"changed": True, **t, **self._publish(model, mlflow_uri=mlflow_uri)}

    def promote(self, version: str, stage: str, reason: str = "", model: str | None = None,
                mlflow_uri: str | None = None) -> dict:
        """``--stage staging|production``: set that alias; ``archived``: drop the version's aliases."""
        if stage not in STAGES or stage == "none":
            raise RegistryUsageError(f"stage {stage!r}: expected one of staging, production, archived")
        v = self.resolve(version, model)
        if stage in STAGE_ALIASES:
            return self.set_alias(v["model"], stage, v["version"], reason=reason, mlflow_uri=mlflow_uri,
                                  kind="promote")
        with rec.registry_lock(self.store):
            rows = {r["artifact_id"]: r for r in self.list_versions(v["model"])}
            cur = rows[v["id"]]["stage"]
            if cur == "production":
                raise RegistryError(f"{v['model']} version {v['version']} is in production; promote another "
                                    f"version to production or use 'tfpipe models rollback' instead of moving it "
                                    f"to {stage}")
            if cur == stage:
                raise RegistryError(f"{v['model']} version {v['version']} is already in {stage}")
            t = self._record(v, cur, "archived", reason, "archive",
                             {"removed_aliases": ",".join(rows[v["id"]]["aliases"])})
            return {"changed": True, **t, **self._publish(v["model"], mlflow_uri=mlflow_uri)}

    def rollback(self, reason: str = "", model: str | None = None, mlflow_uri: str | None = None) -> dict:
        with rec.registry_lock(self.store):
            names = self.model_names(model)
            if not names:
                raise RegistryError(f"no pushed model versions in the metadata store ({self.store.where}); nothing "
                                    f"to roll back")
            if len(names) != 1:
                raise RegistryUsageError(f"several registered models {names}; pass --model")
            name = names[0]
            _, stack = self._state(self.transitions(name))
            if not stack:
                raise RegistryError(f"model {name} has no production version to roll back")
            pushed = {x["id"]: x for x in self.pushed_versions()}
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
            return {"changed": True, **t, **self._publish(name, mlflow_uri=mlflow_uri)}

    # -- publishing ----------------------------------------------------------------------
    def serving_entries(self, destination: str) -> list:
        return pub.serving_entries(self.store, destination)

    def _publish(self, model: str, mlflow_uri: str | None = None) -> dict:
        return pub.publish(self.store, model, mlflow_uri=mlflow_uri)

    def publish(self, model: str, mlflow_uri: str | None = None) -> dict:
        """Publish ``model``'s recorded state again (``tfpipe models sync``), under the lock."""
        with rec.registry_lock(self.store):
            return {"aliases": {a: v["version"] for a, v in self.aliases(model).items()},
                    **self._publish(model, mlflow_uri=mlflow_uri)}

    # -- lineage -----------------------------------------------------------------------
    def show(self, version: str, model: str | None = None) -> dict:
        v = self.resolve(version, model)
        row = next(r for r in self.list_versions(v["model"]) if r["artifact_id"] == v["id"])
        tree = records.lineage(self.store, v["id"])
        return {**row, "transitions": [t for t in self.transitions(v["model"]) if t["artifact_id"] == v["id"]],
                "lineage": summarize_lineage(tree, self.store), "tree": tree}



def format_models(rows: list[dict]) -> str:
    if not rows:
        return "no pushed model versions"
    table = []
    for r in rows:
        t = r["last_transition"] or {}
        table.append([r["model"], r["version"], f"#{r['artifact_id']}", r["stage"].upper() if r["stage"] ==
                      "production" else r["stage"], ",".join(r.get("aliases") or []) or "-", r["run_id"] or "-",
                      records.format_time(r["pushed_at"]),
                      f"{t.get('user', '')} {records.format_time(t.get('at'))} {t.get('reason', '')}".strip()
                      if t else "-"])
    return records.format_table(table, ["MODEL", "VERSION", "ARTIFACT", "STAGE", "ALIASES", "PUSHED BY RUN",
                                        "PUSHED AT", "LAST TRANSITION (who, when, why)"])


def format_version(info: dict) -> str:
    lin = info["lineage"]
    lines = [f"{info['model']} version {info['version']} (artifact #{info['artifact_id']}): stage {info['stage']}"
             + (f", aliases {', '.join(info['aliases'])}" if info.get("aliases") else ""),
             f"  pushed by run {info['run_id']} to {info['destination']}"]
    lines.append("transitions:")
    for t in info["transitions"] or []:
        what = f"@{t['alias']} " if t.get("alias") else ""
        lines.append(f"  {records.format_time(t['at'])} {what}{t['from_stage']} -> {t['to_stage']} by {t['user']}"
                     f" ({t['kind']}){': ' + t['reason'] if t.get('reason') else ''}")
    if not info["transitions"]:
        lines.append("  (none)")
    lines.append("lineage:")
    for d in lin["data"]:
        lines.append(f"  data: Examples #{d['id']} span {d['span']} input fingerprint "
                     f"{(d['input_fingerprint'] or '-')[:12]} rows {d['row_counts']}")
    for k in ("schema", "transform", "model", "hyperparameters"):
        for a in lin[k]:
            what = f"{k} ({a['role']})" if a.get("role") else k
            lines.append(f"  {what}: #{a['id']} fingerprint {(a['fingerprint'] or '-')[:12]} {a['uri']}")
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
