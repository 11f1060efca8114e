"""Tracking at scale: ``runs list`` and ``runs compare`` with 1,000 recorded runs in the
metadata store (target: under a second each).

The runs are written straight to ML Metadata (one ``put_lineage_subgraph`` per run: an
ExampleGen, StatisticsGen, Trainer, Evaluator and Pusher execution with their output
artifacts and events, a ``metrics.json`` per evaluation), shaped like the launcher's
record, so generating them takes seconds rather than 1,000 pipeline runs.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

N_RUNS = int(os.environ.get("BENCH_TRACKING_RUNS", "1000"))
NODES = [("ExampleGen", "examples", "Examples"), ("StatisticsGen", "statistics", "ExampleStatistics"),
         ("Trainer", "model", "Model"), ("Evaluator", "evaluation", "ModelEvaluation"),
         ("Pusher", "pushed_model", "PushedModel")]


def generate(store, root: str, n: int, pipeline: str = "bench") -> list[str]:
    """Write ``n`` runs of a five-node pipeline; returns their run ids."""
    from tfpipe.artifacts import artifact_class

    pb = store.pb
    rng = random.Random(7)
    pctx = store.context("pipeline", pipeline)
    t0 = time.time() - n * 60
    run_ids = []
    for i in range(n):
        run_id = f"bench-{i:05d}"
        run_ids.append(run_id)
        started = t0 + 60 * i
        rctx = pb.Context(type_id=store.context_type_id("pipeline_run"), name=f"{pipeline}.{run_id}")
        store.set_props(rctx.custom_properties, {
            "pipeline": pipeline, "run_id": run_id, "status": "COMPLETE", "started_at": started,
            "finished_at": started + 30, "duration_s": 30.0 + rng.random(), "orchestrator": "local",
            "git_commit": f"{i // 50:040x}", "git_dirty": i % 7 == 0,
            "nodes": ",".join(n for n, _, _ in NODES)})
        execs, arts, edges = [], [], []
        fp = f"{i // 10:064x}"
        for j, (node, key, type_name) in enumerate(NODES):
            params = {"epochs": 3 + i % 4, "learning_rate": 0.01} if node == "Trainer" else {}
            if node == "ExampleGen":
                params = {"input_base": "/data", "input_fingerprint": fp, "resolved_span": i // 10,
                          "input_files": {"*": ["/data/penguins.csv"]}}
            e = pb.Execution(type_id=store.execution_type_id(node), last_known_state=pb.Execution.COMPLETE)
            store.set_props(e.custom_properties, {
                "node_id": node, "run_id": run_id, "pipeline": pipeline, "parameters": json.dumps(params),
                "code_version": f"{j:016x}", "data_fingerprint": fp, "duration_s": rng.random() * 5,
                "cache_key": f"{i:032x}{j:032x}", "git_commit": f"{i // 50:040x}", "git_dirty": False})
            execs.append(e)
            uri = os.path.join(root, node, key, str(i))
            a = artifact_class(type_name)(uri=uri, state="LIVE")
            a.fingerprint = f"{(i * 10 + j) // (2 if j < 2 else 1):064x}"
            if type_name == "Examples":
                a.span, a.input_fingerprint = i // 10, fp
            if type_name == "PushedModel":
                a.pushed, a.destination, a.pushed_version = True, "/serving", str(1000 + i)
            if type_name == "ModelEvaluation":
                os.makedirs(uri, exist_ok=True)
                acc = 0.8 + 0.15 * rng.random()
                with open(os.path.join(uri, "metrics.json"), "w") as f:
                    json.dump({"blessed": True, "slices": [
                        {"slice": "Overall", "candidate": {"sparse_categorical_accuracy": acc,
                                                           "example_count": 120.0}},
                        {"slice": "island=Biscoe", "candidate": {"sparse_categorical_accuracy": acc - 0.02}}]}, f)
            arts.append(store.to_proto(a))
            if j:
                ev = pb.Event(type=pb.Event.INPUT)
                ev.path.steps.add().key = NODES[j - 1][1]
                ev.path.steps.add().index = 0
                edges.append((j, j - 1, ev))
            ev = pb.Event(type=pb.Event.OUTPUT)
            ev.path.steps.add().key = key
            ev.path.steps.add().index = 0
            edges.append((j, j, ev))
        store.store.put_lineage_subgraph(execs, arts, [pctx, rctx], edges, reuse_context_if_already_exist=True)
    return run_ids


def _cli_seconds(args: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tfpipe.cli", *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"tfpipe {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return time.perf_counter() - t, p.stdout


def run(report) -> None:
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.runs import (
        compare_runs,
        format_compare,
        format_runs,
        list_runs,
    )

    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="bench-tracking-", dir=shm) as d:  # tmpfs: generation is I/O bound
        db = os.path.join(d, "metadata.sqlite")
        store = MetadataStore(db)
        t = time.perf_counter()
        ids = generate(store, os.path.join(d, "artifacts"), N_RUNS)
        report("generate_runs", time.perf_counter() - t, "s", f"{N_RUNS} runs x 5 executions, direct MLMD writes")

        store = MetadataStore(db)  # a fresh connection, as a CLI call has
        t = time.perf_counter()
        rows = list_runs(store)
        format_runs(rows)
        report("runs_list_first", time.perf_counter() - t, "s",
               f"{N_RUNS} new runs: summaries computed in bulk and cached on the run contexts")
        store = MetadataStore(db)
        t = time.perf_counter()
        rows = list_runs(store)
        text = format_runs(rows)
        dt_list = time.perf_counter() - t
        assert len(rows) == N_RUNS and rows[-1]["metrics"], "runs list lost runs or metrics"
        report("runs_list", dt_list, "s", f"{N_RUNS} runs, with data fingerprints and metrics (target < 1 s)")

        t = time.perf_counter()
        cmp = compare_runs(store, [ids[0], ids[-1]])
        format_compare(cmp, color=False)
        dt_cmp = time.perf_counter() - t
        assert cmp["summary"]["parameters"] >= 1
        report("runs_compare", dt_cmp, "s", f"2 of {N_RUNS} runs (target < 1 s)")

        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cli_list, out = _cli_seconds(["runs", "list", "--metadata", db], env)
        assert out.count("\n") >= N_RUNS and len(text) > 0
        report("cli_runs_list", cli_list, "s", "tfpipe runs list end to end, incl. interpreter start-up")
        cli_cmp, _ = _cli_seconds(["runs", "compare", ids[0], ids[-1], "--metadata", db], env)
        report("cli_runs_compare", cli_cmp, "s", "tfpipe runs compare end to end, incl. interpreter start-up")
        report("list_vs_target", dt_list / 1.0, "x", "runs_list seconds / 1 s target (< 1 is within target)")


if __name__ == "__main__":
    run(lambda name, value, unit, note="": print(f"{name}: {value:,.3f} {unit} {note}"))
