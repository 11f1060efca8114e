"""Sweeps: one pipeline run per combination of parameter values (the grid), as
``tfpipe run PIPELINE.py -P lr=0.001,0.01 -P units=8,16`` runs them.

The nodes whose IR is the same in every combination (same component, code reference,
parameters and inputs, all of their upstream shared too: typically the data half) run
once, first, as the sweep's *shared* run. Then each combination runs as its own run, in
a process of its own (``python -m tfpipe.orchestrators.local``), up to ``parallel`` at a
time, taking the shared nodes from the cache. Every run of a sweep records the sweep id
(``sweep`` on its run context) and its values (``params``), so ``tfpipe runs compare
--sweep ID`` finds them. The end is one table: each combination's values, headline
metrics and blessing, sorted by a chosen metric.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time

from tfpipe.metadata import MetadataStore
from tfpipe.runner import new_run_id

from . import records

__all__ = ["grid", "shared_nodes", "run_sweep", "format_sweep", "SweepError", "lower_is_better", "sort_rows"]


class SweepError(ValueError):
    """A sweep cannot be run as asked (e.g. a metric to sort by that no run has)."""


def grid(axes: dict[str, list]) -> list[dict]:
    """Every combination of the axes' values, the first axis varying slowest."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def _node_key(n: dict) -> str:
    return json.dumps({k: n.get(k) for k in ("component", "executor", "parameters", "inputs", "outputs",
                                              "enable_cache")}, sort_keys=True, default=str)


def shared_nodes(irs: list[dict]) -> list[str]:
    """Ids of the nodes identical in every IR whose upstream nodes are all shared too, in
    topological order: what one run can compute for every combination."""
    first = irs[0]
    shared: list[str] = []
    for n in first["nodes"]:
        others = [next((m for m in ir["nodes"] if m["id"] == n["id"]), None) for ir in irs[1:]]
        if any(m is None or _node_key(m) != _node_key(n) for m in others):
            continue
        if all(u in shared for u in n["upstream"]):
            shared.append(n["id"])
    return shared


def _subset(ir: dict, ids: list[str]) -> dict:
    out = copy.deepcopy(ir)
    out["nodes"] = [n for n in out["nodes"] if n["id"] in ids]
    return out


LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "mape")


def lower_is_better(metric: str) -> bool:
    m = metric.lower()
    return any(w in m for w in LOWER_IS_BETTER)


def sort_rows(rows: list[dict], metric: str | None) -> list[dict]:
    """Best first by ``metric`` (ascending for losses and errors, descending otherwise);
    runs without the metric last."""
    if not metric:
        return rows
    low = lower_is_better(metric)

    def key(r):
        v = r["metrics"].get(metric)
        return (v is None, (v if low else -v) if v is not None else 0.0)

    return sorted(rows, key=key)


def _say(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def _label(values: dict) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items())


def run_sweep(irs: list[dict], values: list[dict], *, parallel: int | None = None, enable_cache: bool | None = None,
              sweep_id: str | None = None, work_dir: str | None = None, verbose: bool = True,
              sort_by: str | None = None, python: str | None = None) -> dict:
    """Run each IR of ``irs`` (one per combination ``values[i]``, already given its
    parameters) as one run of a new sweep; the shared nodes first, once. Returns
    ``{"sweep": id, "shared_run": id|None, "shared_nodes": [...], "runs": [row, ...],
    "axes": [...], "failed": n}`` with one row per combination (run id, values, status,
    duration, metrics of the overall slice, blessed), sorted by ``sort_by``."""
    from tfpipe.orchestrators.local import LocalRunner

    if len(irs) != len(values) or not irs:
        raise SweepError(f"a sweep needs one IR per combination, found {len(irs)} IRs for {len(values)} combinations")
    sweep_id = sweep_id or "sweep-" + new_run_id()
    n = len(irs)
    parallel = max(1, min(n, parallel or os.cpu_count() or 1))
    work_dir = os.path.abspath(work_dir or os.path.join(os.path.dirname(os.path.abspath(
        irs[0]["pipeline"]["metadata"])), "sweeps", sweep_id))
    os.makedirs(work_dir, exist_ok=True)
    axes = list(values[0])
    t0 = time.monotonic()
    shared = shared_nodes(irs)
    _say(verbose, f"sweep {sweep_id}: {n} run(s) over {', '.join(axes)}; {parallel} at a time; logs in {work_dir}")
    shared_run = None
    if shared:
        sub = _subset(irs[0], shared)
        common = {k: v for k, v in (sub["pipeline"].get("parameters") or {}).items() if k not in axes}
        sub["pipeline"]["parameters"] = common
        sub["pipeline"]["sweep"] = {"id": sweep_id, "role": "shared", "of": n}
        shared_run = f"{sweep_id}-shared"
        _say(verbose, f"[sweep] shared by every combination, run once as {shared_run}: {', '.join(shared)}")
        res = LocalRunner(verbose=verbose).run(sub, run_id=shared_run, enable_cache=enable_cache)
        if not res.ok:
            raise SweepError(f"sweep {sweep_id}: the shared nodes failed, no combination was run: {res.error}")
    procs: dict[int, tuple] = {}
    todo = list(range(n))
    done: dict[int, dict] = {}
    py = python or sys.executable
    try:
        while todo or procs:
            while todo and len(procs) < parallel:
                i = todo.pop(0)
                ir = copy.deepcopy(irs[i])
                ir["pipeline"]["sweep"] = {"id": sweep_id, "role": "trial", "index": i + 1, "of": n,
                                           "values": values[i]}
                if enable_cache is False:  # the shared nodes come from the shared run just made
                    for node in ir["nodes"]:
                        if node["id"] not in shared:
                            node["enable_cache"] = False
                run_id = f"{sweep_id}-{i + 1}"
                path = os.path.join(work_dir, f"{run_id}.ir.json")
                with open(path, "w") as f:
                    json.dump(ir, f, indent=1)
                log_path = os.path.join(work_dir, f"{run_id}.log")
                log = open(log_path, "w")
                p = subprocess.Popen([py, "-m", "tfpipe.orchestrators.local", "--ir", path, "--run-id", run_id],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                procs[i] = (p, log, log_path, run_id, time.monotonic())
                _say(verbose, f"[{i + 1}/{n}] {_label(values[i])}: started as run {run_id}")
            time.sleep(0.2)
            for i, (p, log, log_path, run_id, started) in list(procs.items()):
                if p.poll() is None:
                    continue
                log.close()
                del procs[i]
                took = time.monotonic() - started
                done[i] = {"rc": p.returncode, "log": log_path, "run_id": run_id, "wall_s": took}
                status = "COMPLETE" if p.returncode == 0 else f"FAILED (exit {p.returncode}; see {log_path})"
                _say(verbose, f"[{i + 1}/{n}] {_label(values[i])}: {status} in {took:.1f}s")
    except BaseException:
        for p, _log, *_ in procs.values():  # an interrupt: each run records itself FAILED ("interrupted")
            p.send_signal(2)
        for p, log, *_ in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()
        raise
    store = MetadataStore(irs[0]["pipeline"]["metadata"])
    rows = [sweep_row(store, done[i]["run_id"], values[i], done[i]) for i in range(n)]
    metrics = sorted({m for r in rows for m in r["metrics"]})
    note = None
    if sort_by and sort_by not in metrics:  # the runs are done: say so, keep the table
        note = (f"not sorted: no run of sweep {sweep_id} has the metric {sort_by!r} "
                f"(metrics: {', '.join(metrics) or 'none'})")
        sort_by = None
    return {"sweep": sweep_id, "shared_run": shared_run, "shared_nodes": shared, "axes": axes, "note": note,
            "runs": sort_rows(rows, sort_by), "sort_by": sort_by, "parallel": parallel,
            "wall_s": time.monotonic() - t0, "failed": sum(r["status"] != "COMPLETE" for r in rows),
            "work_dir": work_dir}


def sweep_row(store: MetadataStore, run_id: str, values: dict, extra: dict | None = None) -> dict:
    """One run of a sweep: values, status, duration, overall metrics and blessing."""
    from .runs import run_details
    try:
        info = run_details(store, run_id)
    except records.NotFound:
        return {"run_id": run_id, "values": values, "status": "FAILED", "duration_s": None, "metrics": {},
                "blessed": None, **(extra or {})}
    overall = next(iter(info["evaluation"]["slices"].values()), {}) if info["evaluation"]["slices"] else {}
    return {"run_id": run_id, "values": values, "status": info["status"], "duration_s": info["duration_s"],
            "metrics": dict(sorted(overall.items())), "blessed": (info["blessing"] or {}).get("blessed"),
            **(extra or {})}


def format_sweep(res: dict, max_metrics: int = 4) -> str:
    from .results import HEADLINE_ORDER
    rows = res["runs"]
    names = sorted({m for r in rows for m in r["metrics"]},
                   key=lambda k: (k != res.get("sort_by"), next((i for i, h in enumerate(HEADLINE_ORDER)
                                                                  if k.lower() == h), len(HEADLINE_ORDER)), k))
    names = names[:max_metrics]
    header = ["RUN", *res["axes"], *names, "BLESSED", "STATUS", "DURATION"]
    table = []
    for r in rows:
        table.append([r["run_id"], *[_cell(r["values"].get(a)) for a in res["axes"]],
                      *[_cell(r["metrics"].get(m)) for m in names],
                      {True: "yes", False: "no", None: "-"}[r["blessed"]], r["status"],
                      f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"])
    head = (f"sweep {res['sweep']}: {len(rows)} run(s), {res['failed']} failed, in {res['wall_s']:.1f}s"
            + (f"; shared nodes ran once as {res['shared_run']}" if res.get("shared_run") else "")
            + (f"; sorted by {res['sort_by']} ({'lower' if lower_is_better(res['sort_by']) else 'higher'} "
               f"is better)" if res.get("sort_by") else ""))
    return head + "\n" + records.format_table(table, header) + (f"\n({res['note']})" if res.get("note") else "")


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)
