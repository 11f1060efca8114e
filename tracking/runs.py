"""Experiment tracking over ML Metadata: runs listed with their data, code and headline
metrics, and runs compared side by side. Reads the metadata store only (and the small
result files artifacts point at); never imports components or orchestrators.

``list_runs`` reads the whole store in a handful of bulk queries, so listing stays fast
with thousands of runs; ``compare_runs`` reads only the runs it is asked about.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, TypedDict

from tfpipe.metadata import MetadataStore
from tfpipe.state import EventKind, State

from . import records
from .codefiles import display_paths
from .results import (
    HEADLINE_ORDER,
    headline_metrics,
    load_evaluation,
    load_history,
    load_trials,
    thresholds_from_eval_config,
)

__all__ = ["RunRow", "list_runs", "format_runs", "compare_runs", "format_compare", "run_details", "DATA_KEYS",
           "select_runs", "ordered_metrics"]

# driver outputs that describe the data a run read: shown under "data", not "parameters"
DATA_KEYS = ("input_fingerprint", "resolved_span", "resolved_version", "input_files", "previous_span_files",
             "schema_fingerprint", "data_version", "source_snapshot")


def _s(e, key: str):
    v = e.custom_properties.get(key)
    if v is None:
        return None
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _short(v, n: int = 12) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s[:n] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


# -- runs list --------------------------------------------------------------------------
def _evaluations_by_run(store: MetadataStore, exec_run: dict[int, tuple]) -> dict[tuple, dict]:
    """(pipeline, run_id) -> {"metrics": headline, "blessed": bool|None}, in bulk."""
    out: dict[tuple, dict] = {}
    arts = store.artifact_protos_of_type("ModelEvaluation")
    blessings = store.artifact_protos_of_type("ModelBlessing")
    by_id = {a.id: a for a in arts + blessings}
    blessing_ids = {a.id for a in blessings}
    if not by_id:
        return out
    evs = store.events_of_artifacts(by_id, EventKind.OUTPUT)
    cache: dict[int, dict] = {}
    for ev in evs:
        if ev.execution_id not in exec_run:
            continue
        a = by_id[ev.artifact_id]
        row = out.setdefault(exec_run[ev.execution_id], {"metrics": {}, "blessed": None})
        if a.id in blessing_ids:
            row["blessed"] = a.properties["blessed"].bool_value if "blessed" in a.properties else None
        else:
            if a.id not in cache:
                try:
                    cache[a.id] = headline_metrics(load_evaluation(a.uri)["slices"])
                except ValueError:
                    cache[a.id] = {}
            row["metrics"] = cache[a.id]
    return out


SUMMARY = "tracking_summary"  # a finished run's summary, cached on its run context
SUMMARY_VERSION = 1
_FINAL = (State.COMPLETE, State.FAILED)  # a run whose summary no longer changes


def _summarise(store: MetadataStore, execs: list, exec_run: dict[int, tuple]) -> dict[tuple, dict]:
    """Data span/fingerprint, node counts and headline metrics of the runs ``execs`` belong to."""
    data: dict[tuple, dict] = {}
    for e in execs:
        key = exec_run[e.id]
        st = store.pb.Execution.State.Name(e.last_known_state)
        d = data.setdefault(key, {"v": SUMMARY_VERSION, "spans": [], "fingerprints": [], "nodes": 0,
                                  "cached": 0, "failed": 0, "metrics": {}, "blessed": None})
        d["nodes"] += 1
        d["cached"] += st == "CACHED"
        d["failed"] += st == "FAILED"
        params = _s(e, "parameters")
        if params and "input_fingerprint" in params:
            p = json.loads(params)
            if p.get("resolved_span") is not None and p["resolved_span"] not in d["spans"]:
                d["spans"].append(p["resolved_span"])
            if p["input_fingerprint"] not in d["fingerprints"]:
                d["fingerprints"].append(p["input_fingerprint"])
    for key, ev in _evaluations_by_run(store, exec_run).items():
        data.setdefault(key, {"v": SUMMARY_VERSION, "spans": [], "fingerprints": [], "nodes": 0, "cached": 0,
                              "failed": 0}).update(ev)
    return data


class RunRow(TypedDict):
    """One run as ``runs list`` shows it (``list_runs``)."""
    run_id: str | None
    pipeline: str | None
    status: str
    started_at: float | None
    duration_s: float | None
    git_commit: str | None
    git_dirty: bool | None
    orchestrator: str | None
    context_id: int
    params: dict[str, Any]
    sweep: str | None
    sweep_role: str | None
    data_span: str | None  # the spans the run read, comma-separated
    data_fingerprint: str | None
    metrics: dict[str, Any]  # headline evaluation metrics
    blessed: bool | None
    nodes: int
    cached: int
    failed: int


def list_runs(store: MetadataStore, pipeline: str | None = None, limit: int | None = None) -> list[RunRow]:
    """Every run (oldest first) with status, time, duration, git commit and dirty flag, the
    data it read (span, fingerprint), node/cache counts and headline evaluation metrics.

    A finished run's summary is computed once (in bulk) and cached on its run context, so
    listing thousands of runs reads little more than the run contexts."""
    rows, ctxs = [], {}
    for c in store.contexts_of_type("pipeline_run"):
        p = store.props(c)
        if pipeline and p.get("pipeline") != pipeline:
            continue
        rows.append({"run_id": p.get("run_id"), "pipeline": p.get("pipeline"), "status": p.get("status", "?"),
                     "started_at": p.get("started_at"), "duration_s": p.get("duration_s"),
                     "git_commit": p.get("git_commit"), "git_dirty": p.get("git_dirty"),
                     "orchestrator": p.get("orchestrator"), "context_id": c.id, "_summary": p.get(SUMMARY),
                     "_finished": p.get("finished_at"), "params": json.loads(p.get("params") or "{}"),
                     "sweep": p.get("sweep"),
                     "sweep_role": json.loads(p.get("sweep_info") or "{}").get("role") if p.get("sweep") else None})
        ctxs[c.id] = c
    rows.sort(key=lambda r: (r["started_at"] or 0, r["context_id"]))
    if limit:
        rows = rows[-limit:]
    todo = {}
    for r in rows:
        summ = json.loads(r["_summary"]) if r["_summary"] else None
        if not summ or summ.get("v") != SUMMARY_VERSION or summ.get("finished_at") != r["_finished"]:
            todo[(r["pipeline"], r["run_id"])] = r
        else:
            r["_summary"] = summ
    if todo:
        if len(todo) <= 20:  # a few new runs: their own executions only
            execs = [e for r in todo.values() for e in store.executions_by_context(ctxs[r["context_id"]])]
        else:
            execs = store.all_executions()
        exec_run = {}
        for e in execs:
            key = (_s(e, "pipeline"), _s(e, "run_id"))
            if key in todo:
                exec_run[e.id] = key
        computed = _summarise(store, [e for e in execs if e.id in exec_run], exec_run)
        cache = []
        for key, r in todo.items():
            r["_summary"] = computed.get(key) or {"v": SUMMARY_VERSION, "spans": [], "fingerprints": [], "nodes": 0,
                                                  "cached": 0, "failed": 0, "metrics": {}, "blessed": None}
            r["_summary"]["finished_at"] = r["_finished"]  # a run resumed under its id is summarised anew
            if r["status"] in _FINAL:
                c = ctxs[r["context_id"]]
                store.set_props(c.custom_properties, {SUMMARY: json.dumps(r["_summary"], sort_keys=True)})
                cache.append(c)
        if cache:
            try:
                store.put_contexts(cache)
            except Exception:  # a cache: listing must not fail because it could not be written
                pass
    for r in rows:
        d = r.pop("_summary")
        r.pop("_finished")
        r["data_span"] = ",".join(str(x) for x in sorted(d.get("spans", []))) or None
        fps = sorted(d.get("fingerprints", []))
        r["data_fingerprint"] = fps[0] if len(fps) == 1 else (",".join(fps) or None)
        r["metrics"] = ordered_metrics(d.get("metrics") or {})
        r["blessed"] = d.get("blessed")
        r.update({k: d.get(k, 0) for k in ("nodes", "cached", "failed")})
    return rows


def ordered_metrics(metrics: dict) -> dict:
    """Metrics in one stable order: the most telling first (as ``headline_metrics``), then
    by name; whatever order they were stored in."""
    rank = {h: i for i, h in enumerate(HEADLINE_ORDER)}
    return {k: metrics[k] for k in sorted(metrics, key=lambda k: (rank.get(k.lower(), len(rank)), k))}


def _params_text(params: dict, n: int = 60) -> str:
    s = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
    return s if len(s) <= n else s[:n - 3] + "..."


LIST_WIDTH = 120  # runs list fits a terminal this wide; runs show and --json have everything


def _fit(table: list[list], header: list[str], first_flex: int, width: int = LIST_WIDTH) -> list[list]:
    """Cut the cells of the columns from ``first_flex`` on (metrics, sweep, parameters) so
    that every line fits ``width``: a column that needs less than an equal share of what the
    others leave keeps it all, the rest share the remainder; a cell is cut after a whole word
    (a metric, a parameter) where it can be, ending in '...'."""
    cells = [[("" if c is None else str(c)) for c in r] for r in table]
    fixed = sum(max(len(r[i]) for r in [header] + cells) for i in range(first_flex)) + 2 * (len(header) - 1)
    need = {i: max(len(r[i]) for r in [header] + cells) for i in range(first_flex, len(header))}
    room, share = width - fixed, {}
    for k, i in enumerate(sorted(need, key=need.get)):
        share[i] = max(4, min(need[i], room // (len(need) - k)))
        room -= share[i]

    def cut(c: str, n: int) -> str:
        if len(c) <= n:
            return c
        head = c[:n - 4]
        return head[:head.rindex(" ")] + " ..." if " " in head else c[:max(0, n - 3)] + "..."
    return [r[:first_flex] + [cut(c, share[i]) for i, c in enumerate(r) if i >= first_flex] for r in cells]


def _abbrev(name: str, n: int = 14) -> str:
    """A metric's name in a list: ``sparse_categorical_accuracy`` -> ``sparse_c..uracy``."""
    return name if len(name) <= n else name[:8] + ".." + name[-(n - 10):]


def format_runs(rows: list[dict]) -> str:
    if not rows:
        return "no runs recorded"
    table = []
    with_params = any(r.get("params") for r in rows)
    for r in rows:
        metrics = " ".join(f"{_abbrev(k)}={v:.4g}" for k, v in ordered_metrics(r.get("metrics", {})).items())
        blessed = "-" if r.get("blessed") is None else "yes" if r["blessed"] else "NO"
        table.append([r["run_id"], r["pipeline"] if len(r["pipeline"]) <= 12 else r["pipeline"][:9] + "...",
                      r["status"], records.format_time(r["started_at"])[5:16],
                      f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-",
                      (r["git_commit"] or "-")[:7] + ("*" if r["git_dirty"] else ""),
                      (_short(r.get("data_fingerprint")) or "-")[:6], f"{r.get('cached', 0)}/{r.get('nodes', 0)}",
                      blessed, metrics or "-"]
                     + ([_params_text(r.get("params") or {}) or "-"] if with_params else []))
    header = (["RUN", "PIPELINE", "STATUS", "STARTED", "TIME", "COMMIT", "DATA", "CACHED", "BLESSED", "METRICS"]
              + (["PARAMS"] if with_params else []))
    pipelines = {r["pipeline"] for r in rows}
    if len(pipelines) == 1:  # said once above the table instead of on every line
        header.pop(1)
        table = [t[:1] + t[2:] for t in table]
    text = records.format_table(_fit(table, header, first_flex=len(header) - 1 - with_params), header)
    if len(pipelines) == 1:
        text = f"pipeline {next(iter(pipelines))}\n" + text
    if any(r["git_dirty"] for r in rows):
        text += "\n(* after a commit: the work tree had uncommitted changes)"
    return text


# -- one run in detail ------------------------------------------------------------------
def run_details(store: MetadataStore, run: str) -> dict:
    """One run's executions with parameters, data, code and outputs, plus its evaluation
    (metrics per slice) and training history: what ``compare`` and the report read."""
    info = records.show_run(store, run)
    info["evaluation"] = {"slices": {}, "thresholds": {}, "file": None}
    info["history"], info["trials"], info["blessing"], info["pushed"] = {}, [], None, None
    for e in info["executions"]:
        for _key, outs in e["outputs"].items():
            for o in outs:
                t = o["type"]
                if t == "ModelEvaluation" and not info["evaluation"]["slices"]:
                    info["evaluation"] = load_evaluation(o["uri"])
                    if not info["evaluation"]["thresholds"] and e["parameters"].get("eval_config"):
                        info["evaluation"]["thresholds"] = thresholds_from_eval_config(
                            e["parameters"]["eval_config"])
                elif t == "ModelRun" and not info["history"]:
                    info["history"] = load_history(o["uri"])
                elif t == "Model" and not info["history"]:
                    info["history"] = load_history(o["uri"])
                elif t == "HyperParameters" and not info["trials"]:
                    info["trials"] = load_trials(o["uri"])
                elif t in ("ModelBlessing", "PushedModel"):
                    [a] = store.get_artifacts([o["id"]]) or [None]
                    if a is not None:
                        info["blessing" if t == "ModelBlessing" else "pushed"] = {"id": a.id, "uri": a.uri,
                                                                                   **a.properties}
    return info


def _differs(values: list) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def select_runs(store: MetadataStore, last: int | None = None, sweep: str | None = None,
                pipeline: str | None = None) -> list[str]:
    """Run ids to compare: the ``last`` N runs (of ``pipeline``), or the runs of a sweep
    (its combinations, not the shared run), oldest first."""
    if sweep:
        ids = []
        for c in store.contexts_of_type("pipeline_run"):
            p = store.props(c)
            if p.get("sweep") == sweep and json.loads(p.get("sweep_info") or "{}").get("role") != "shared":
                ids.append((json.loads(p.get("sweep_info") or "{}").get("index") or 0, p.get("run_id")))
        if not ids:
            raise records.NotFound(f"no runs of sweep {sweep!r} in {store.where}; sweeps are listed by "
                                f"'tfpipe runs list' (column SWEEP)")
        return [r for _, r in sorted(ids)]
    # a sweep's shared run holds no model to compare; at most one in three runs is one
    rows = [r for r in list_runs(store, pipeline, limit=2 * last if last else None) if r.get("sweep_role") != "shared"]
    return [r["run_id"] for r in (rows[-last:] if last else rows)]


def compare_runs(store: MetadataStore, runs: list[str], diff: bool = False) -> dict:
    """Side by side: run headers (with the parameters given), differing parameters, user
    code files, data fingerprints, code versions, metrics per slice and which artifacts
    changed. Each row has ``values`` (one per run) and ``differs``. With ``diff``, each
    changed text file gets a short unified diff from git (against the first run)."""
    from .codefiles import code_diff, code_file_rows
    if len(runs) < 2:
        raise records.NotFound(f"runs compare needs at least two runs, found {len(runs)}: {runs}")
    infos = [run_details(store, r) for r in runs]
    n = len(infos)
    nodes: list[str] = []
    by_node = []
    for info in infos:
        m = {}
        for e in info["executions"]:
            m[e["node_id"]] = e  # the latest execution of a node in the run wins
            if e["node_id"] not in nodes:
                nodes.append(e["node_id"])
        by_node.append(m)

    def row(**kw):
        kw["differs"] = _differs(kw["values"])
        return kw

    out = {"runs": [{k: i.get(k) for k in ("run_id", "pipeline", "status", "started_at", "duration_s",
                                             "git_commit", "git_dirty", "params", "sweep", "environment_hash")}
                    for i in infos],
           "code": [], "code_files": [], "parameters": [], "data": [], "metrics": [], "artifacts": []}
    given = sorted({k for i in infos for k in i["params"]}, key=lambda k: ("." in k, k))
    out["given"] = [row(parameter=k, values=[i["params"].get(k) for i in infos]) for k in given]
    out["code_files"] = code_file_rows(by_node, nodes)
    if diff:
        labels = [i["run_id"] for i in infos]
        for r in out["code_files"]:
            if not r["differs"]:
                continue
            base = next(j for j, v in enumerate(r["values"]) if v is not None)
            r["diffs"] = {}
            for j, v in enumerate(r["values"]):
                if j != base and v is not None and v != r["values"][base]:
                    r["diffs"][labels[j]] = code_diff(r["file"], (r["commits"][base], r["values"][base]),
                                                      (r["commits"][j], v), labels[base], labels[j])
    ids = sorted({o["id"] for i in infos for e in i["executions"] for outs in e["outputs"].values() for o in outs})
    arts_by_id = {a.id: a for a in store.get_artifacts(ids)}
    out["code"].append(row(node="(run)", field="git_commit",
                           values=[(i["git_commit"] or "-") + ("*" if i["git_dirty"] else "") for i in infos]))
    for node in nodes:
        es = [m.get(node) for m in by_node]
        out["code"].append(row(node=node, field="code_version", values=[e and e["code_version"] for e in es]))
        keys = sorted({k for e in es if e for k in e["parameters"]})
        for k in keys:
            if k == "source_snapshot":  # its fingerprint and data version have rows of their own
                continue
            vals = [e["parameters"].get(k) if e else None for e in es]
            (out["data"] if k in DATA_KEYS else out["parameters"]).append(row(node=node, parameter=k, values=vals))
        out["data"].append(row(node=node, parameter="data_fingerprint",
                               values=[e and e["data_fingerprint"] for e in es]))
        okeys = sorted({k for e in es if e for k in e["outputs"]})
        for k in okeys:
            arts = [(e["outputs"].get(k) or [None])[0] if e else None for e in es]
            full = [arts_by_id.get(a["id"]) if a else None for a in arts]
            fps = [a.fingerprint if a else None for a in full]
            out["artifacts"].append({"node": node, "output": k, "type": next((a.type_name for a in full if a), "?"),
                                     "ids": [a.id if a else None for a in full], "values": fps,
                                     "cached": [bool(e and e["cached_from"]) for e in es],
                                     "differs": _differs(fps), "changed": _differs(fps)})
    slices = []
    for i in infos:
        for s in i["evaluation"]["slices"]:
            if s not in slices:
                slices.append(s)
    for s in slices:
        names = sorted({k for i in infos for k in i["evaluation"]["slices"].get(s, {})})
        for k in names:
            out["metrics"].append(row(slice=s, metric=k, values=[i["evaluation"]["slices"].get(s, {}).get(k)
                                                                for i in infos]))
    for i, info in enumerate(infos):
        out["runs"][i]["blessed"] = (info["blessing"] or {}).get("blessed")
        out["runs"][i]["final_history"] = {k: v[-1] for k, v in info["history"].items() if v}
    out["training"] = [row(metric=k, values=[r["final_history"].get(k) for r in out["runs"]])
                       for k in sorted({k for r in out["runs"] for k in r["final_history"]})]
    out["training"].append(row(metric="epochs", values=[max((len(v) for v in i["history"].values()), default=None)
                                                         for i in infos]))
    out["summary"] = {sec: sum(1 for r in out[sec] if r["differs"]) for sec in
                      ("code", "code_files", "parameters", "data", "metrics", "artifacts")}
    out["summary"]["runs"] = n
    return out


# -- text ---------------------------------------------------------------------------------
class _Style:
    def __init__(self, color: bool):
        self.color = color

    def diff(self, s: str) -> str:
        return f"\x1b[1;33m{s}\x1b[0m" if self.color else s

    def head(self, s: str) -> str:
        return f"\x1b[1m{s}\x1b[0m" if self.color else s

    def mark(self, differs: bool) -> str:
        if self.color:
            return "\x1b[1;31m≠\x1b[0m " if differs else "  "
        return "* " if differs else "  "


def _fmt_val(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = _short(v, 12)
    if isinstance(v, str) and len(v.rstrip("*")) == 40 and all(c in "0123456789abcdef" for c in v.rstrip("*")):
        s = v[:10] + ("*" if v.endswith("*") else "")  # a git commit
    return s if len(s) <= 60 else s[:57] + "..."


def _section(style: _Style, title: str, rows: list[dict], label, only_diff: bool, runs: list[str]) -> list[str]:
    shown = [r for r in rows if r["differs"] or not only_diff]
    same = len(rows) - len([r for r in rows if r["differs"]])
    lines = [style.head(f"{title}" + (f" ({same} identical, not shown)" if only_diff and same else ""))]
    if not shown:
        lines.append("  (no differences)" if rows else "  (none recorded)")
        return lines
    table = [[label(r)] + [_fmt_val(v) for v in r["values"]] for r in shown]
    header = [""] + runs
    w = [max(len(str(x[i])) for x in table + [header]) for i in range(len(header))]
    lines.append("  " + "  ".join(str(h).ljust(w[i]) for i, h in enumerate(header)).rstrip())
    for r, cells in zip(shown, table):
        txt = "  ".join(c.ljust(w[i]) for i, c in enumerate(cells)).rstrip()
        lines.append(style.mark(r["differs"]) + (style.diff(txt) if r["differs"] else txt))
    return lines


def format_compare(cmp: dict, color: bool | None = None, all_rows: bool = False) -> str:
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    st = _Style(color)
    ids = [r["run_id"] for r in cmp["runs"]]
    lines = [st.head("runs")]
    for r in cmp["runs"]:
        dur = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
        bl = {True: " blessed", False: " NOT blessed", None: ""}[r.get("blessed")]
        lines.append(f"  {r['run_id']}: {r['pipeline']} {r['status']} started {records.format_time(r['started_at'])} "
                     f"({dur}) commit {(r['git_commit'] or '-')[:10]}{'*' if r['git_dirty'] else ''}{bl}")
    if cmp.get("given"):
        lines += _section(st, "parameters given (-P)", cmp["given"], lambda r: r["parameter"], False, ids)
    lines += _section(st, "code versions", cmp["code"], lambda r: f"{r['node']}.{r['field']}", not all_rows, ids)
    if cmp.get("code_files") is not None:
        shown = display_paths(sorted({r["file"] for r in cmp["code_files"]}))
        lines += _section(st, "user code files (sha256)", cmp["code_files"],
                          lambda r: f"{r['node']}: {shown[r['file']]}", False, ids)
        for r in cmp["code_files"]:
            for other, d in (r.get("diffs") or {}).items():
                lines.append(f"  diff of {shown[r['file']]} ({r['node']}), to {other}:")
                if d.get("unavailable"):
                    lines.append(f"    (no diff: {d['unavailable']})")
                    continue
                lines += ["    " + (st.diff(x) if x[:1] in "+-" and x[:3] not in ("+++", "---") else x)
                          for x in d["diff"]]
                if d["truncated"]:
                    lines.append(f"    ... {d['truncated']} more line(s)")
    lines += _section(st, "parameters that differ", cmp["parameters"], lambda r: f"{r['node']}.{r['parameter']}",
                      not all_rows, ids)
    lines += _section(st, "data", cmp["data"], lambda r: f"{r['node']}.{r['parameter']}", False, ids)
    lines += _section(st, "metrics per slice", cmp["metrics"], lambda r: f"{r['slice']} / {r['metric']}",
                      False, ids)
    if any(v is not None for r in cmp.get("training", []) for v in r["values"]):
        lines += _section(st, "training (last epoch)", cmp["training"], lambda r: r["metric"], False, ids)
    lines += _section(st, "artifacts (fingerprints)", cmp["artifacts"],
                      lambda r: f"{r['node']}.{r['output']} ({r['type']})", False, ids)
    s = cmp["summary"]
    lines.append(st.head("summary") + ": " + ", ".join(f"{s[k]} {k.replace('_', ' ')} differ" for k in
                                                        ("code", "code_files", "parameters", "data", "metrics",
                                                         "artifacts") if k in s))
    if not color:
        lines.append("(rows marked * differ between the runs)")
    return "\n".join(lines)
