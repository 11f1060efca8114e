"""TFX 1.16 itself and tfpipe, side by side, on the same pipeline: TFX's penguin pipeline
with module files in TFX's idiom (examples/penguin_tfx: ``tfx_modules/`` under TFX's
``LocalDagRunner``, ``tfpipe_modules/``, the same files with their import lines changed,
under ``tfpipe run``), the same data and steps (ExampleGen, StatisticsGen, SchemaGen,
ExampleValidator, Transform, Trainer 100/5 steps, Resolver, Evaluator, Pusher), one Beam
worker, SQLite ML Metadata.

Alternating (TFX then tfpipe, then tfpipe then TFX, ...; ``$TFPIPE_BENCH_TFX_PAIRS`` pairs,
default 2), each side does a first run in a fresh directory and an immediate re-run;
reported as medians: wall time from process start to exit, the process's peak RSS, and
per-node times (an execution's last update minus its creation in ML Metadata, the same
clock for both), with the ratios tfpipe / TFX against the goals (first run <= 0.33, re-run
<= 0.05, peak RSS <= 0.8). TFX runs in its own Python 3.10 virtualenv, built once from
``benchmarks/tfx-lock.txt`` (``benchmarks/tfx_env.py``).
"""
from __future__ import annotations

import os
import statistics
import time

from .common import REPO, fresh_workdir, measure_process, tfpipe_cli
from .tfx_env import ensure_venv

EXAMPLE = os.path.join(REPO, "examples", "penguin_tfx")
GOALS = {"first_run": 0.33, "rerun": 0.05, "peak_rss": 0.8}
SAME_NODE = {"CsvExampleGen": "ExampleGen"}  # TFX's node id -> tfpipe's


def node_times(metadata: str, since_ms: int) -> dict:
    """``{node id: (state, seconds)}`` of the executions created since ``since_ms`` in an ML
    Metadata SQLite store, TFX's or tfpipe's (both name a node context ``<pipeline>.<node>``)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    out = {}
    for e in store.get_executions():
        if e.create_time_since_epoch < since_ms:
            continue
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(e.id) if c.type == "node"), "?")
        out[SAME_NODE.get(node, node)] = (pb.Execution.State.Name(e.last_known_state),
                                          (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000)
    return out


def node_at(metadata: str, t: float | None) -> str | None:
    """The node whose execution (created .. last updated) spans epoch second ``t`` in an ML
    Metadata SQLite store, TFX's or tfpipe's; None if none does (start-up, shut-down)."""
    if t is None:
        return None
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    ms = t * 1000
    for e in store.get_executions():
        if e.create_time_since_epoch <= ms <= e.last_update_time_since_epoch:
            node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(e.id) if c.type == "node"),
                        "?")
            return SAME_NODE.get(node, node)
    return None


def _pushed(serving: str) -> list[str]:
    return sorted(d for d in os.listdir(serving) if d.isdigit()) if os.path.isdir(serving) else []


def _run_tfx(python: str, root: str) -> dict:
    cmd = [python, os.path.join(EXAMPLE, "tfx_pipeline.py"), "--root", root]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TFPIPE_HOME")}
    out = {}
    for kind in ("first", "rerun"):
        since = int(time.time() * 1000)
        out[kind] = measure_process(cmd, env=env, cwd=root, what=f"TFX {kind} run")
        out[kind]["nodes"] = node_times(os.path.join(root, "metadata.sqlite"), since)
    out["pushed"] = _pushed(os.path.join(root, "serving_model", "penguin_tfx"))
    return out


def _run_tfpipe(root: str) -> dict:
    env = {"TFPIPE_HOME": root}
    out = {}
    for kind in ("first", "rerun"):
        since = int(time.time() * 1000)
        # one process, as TFX's LocalDagRunner: the peak RSS is the whole run's (nodes forked
        # from the warm task host would not be counted)
        out[kind] = tfpipe_cli("run", "-q", "--parallel", "1", os.path.join(EXAMPLE, "pipeline.py"), env=env, cwd=root)
        out[kind]["nodes"] = node_times(os.path.join(root, "metadata.sqlite"), since)
    out["pushed"] = _pushed(os.path.join(root, "serving_model", "penguin_tfx"))
    return out


def _median(runs: list[dict], kind: str, key: str) -> float:
    return statistics.median(r[kind][key] for r in runs)


def _node_medians(runs: list[dict], kind: str) -> dict:
    names = {n for r in runs for n in r[kind]["nodes"]}
    return {n: statistics.median(r[kind]["nodes"][n][1] for r in runs if n in r[kind]["nodes"]) for n in names}


def _executed(runs: list[dict], kind: str) -> list[str]:
    """Nodes that executed (not CACHED) in every run of ``kind``."""
    sets = [{n for n, (state, _) in r[kind]["nodes"].items() if state == "COMPLETE"} for r in runs]
    return sorted(set.intersection(*sets)) if sets else []


def run(report, pairs: int | None = None):
    pairs = pairs or int(os.environ.get("TFPIPE_BENCH_TFX_PAIRS", "2"))
    python = ensure_venv(log=lambda m: print(f"   {m}", flush=True))
    work = fresh_workdir("tfx")
    results: dict[str, list] = {"tfx": [], "tfpipe": []}
    for i in range(pairs):
        for side in (("tfx", "tfpipe") if i % 2 == 0 else ("tfpipe", "tfx")):
            root = os.path.join(work, f"pair{i}-{side}")
            os.makedirs(root)
            r = _run_tfx(python, root) if side == "tfx" else _run_tfpipe(root)
            if len(r["pushed"]) < 1:
                raise RuntimeError(f"{side} pushed no model in {root}: the two runs did not do the same work")
            results[side].append(r)
            print(f"   pair {i + 1}/{pairs} {side}: first run {r['first']['process_wall_s']:.1f} s, "
                  f"re-run {r['rerun']['process_wall_s']:.1f} s, peak RSS {r['first']['peak_rss_mb']:.0f} MB",
                  flush=True)
    tfx, ours = results["tfx"], results["tfpipe"]
    figures: list[tuple] = []  # reported after the table, which they would otherwise interleave
    rows = [("first_run", "first run, process start to exit", "first", "process_wall_s", "s"),
            ("rerun", "immediate re-run, process start to exit", "rerun", "process_wall_s", "s"),
            ("peak_rss", "peak RSS, first run", "first", "peak_rss_mb", "MB")]
    print(f"\n   TFX 1.16 vs tfpipe, penguin pipeline in TFX's idiom, medians of {pairs} pair(s)")
    print(f"   {'':44} {'TFX 1.16':>10} {'tfpipe':>10} {'ratio':>7} {'goal':>8}")
    for key, label, kind, field, unit in rows:
        a, b = _median(tfx, kind, field), _median(ours, kind, field)
        print(f"   {label:44} {a:>9.1f}{unit[0]} {b:>9.1f}{unit[0]} {b / a:>7.2f} {'<= ' + str(GOALS[key]):>8}")
        figures += [(f"tfx_{key}", a, unit, "TFX 1.16 LocalDagRunner"), (f"tfpipe_{key}", b, unit, "tfpipe run"),
                    (f"{key}_ratio", b / a, "x", f"tfpipe / TFX, goal <= {GOALS[key]}")]
    for kind, label in (("first", "first run"), ("rerun", "re-run")):
        nt, no = _node_medians(tfx, kind), _node_medians(ours, kind)
        print(f"   per node, {label}, seconds (executed, not from cache: TFX {_executed(tfx, kind) or 'none'}; "
              f"tfpipe {_executed(ours, kind) or 'none'})")
        for n in sorted(set(nt) | set(no), key=lambda n: -max(nt.get(n, 0), no.get(n, 0))):
            a, b = nt.get(n), no.get(n)
            ratio = f"{b / a:7.2f}" if a and b is not None and a > 0.05 else "      -"
            print(f"     {n:42} {a if a is not None else float('nan'):>10.2f} "
                  f"{b if b is not None else float('nan'):>10.2f} {ratio}")
            if kind == "first":
                figures += [(f"tfx_node_{n}", a, "s", "")] if a is not None else []
                figures += [(f"tfpipe_node_{n}", b, "s", "")] if b is not None else []
    print(flush=True)
    for name, value, unit, note in figures:
        report(name, value, unit, note)
