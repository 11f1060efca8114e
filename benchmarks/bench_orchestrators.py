"""The penguin pipeline's wall time under each orchestrator that runs here, as a ratio to
the local runner (targets: Beam DAG runner <= 1.2x, Airflow <= 1.5x, kfp.local <= 2x).

Each orchestrator runs the whole pipeline from an empty TFPIPE_HOME (nothing cached), then
once more (everything cached: the orchestration overhead alone), in a fresh Python process
of its own. Airflow's one-off setup
(`airflow db migrate`, starting its execution API server and the warm Airflow process that
forks each `airflow dags test`) is not timed; the warm task host
that Airflow and kfp.local tasks fork from is stopped before each orchestrator, so its
start-up (the imports of TensorFlow & co.) is part of each cold run. Environment knobs:
``TFPIPE_BENCH_TRAIN_STEPS`` (default 100), ``TFPIPE_BENCH_ORCHESTRATORS`` (default
``local,local-parallel,beam,kfp-local,airflow``; ``local`` runs one node at a time in
its process, ``local-parallel`` is ``tfpipe run``'s default: ready nodes at once, forked
from the task host), ``TFPIPE_BENCH_PENGUIN=data`` for the data half only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ir(home: str) -> dict:
    from examples.penguin.pipeline import create_pipeline
    from tfpipe.compiler import compile_pipeline
    from tfpipe.runner import select_nodes
    p = create_pipeline(root=os.path.join(home, "artifacts", "penguin"), metadata=os.path.join(home, "m.sqlite"),
                        train_steps=int(os.environ.get("TFPIPE_BENCH_TRAIN_STEPS", "100")))
    ir = compile_pipeline(p)
    ir["pipeline"]["source"] = os.path.join(REPO, "examples", "penguin", "pipeline.py")
    if os.environ.get("TFPIPE_BENCH_PENGUIN") == "data":
        keep = select_nodes(ir, to_node="ExampleValidator")
        ids = {n["id"] for n in keep}
        ir["nodes"] = [{**n, "upstream": [u for u in n["upstream"] if u in ids]} for n in keep]
    return ir


def _runner(name: str, tmp: str):
    if name == "local":
        from tfpipe.orchestrators.local import LocalRunner
        return LocalRunner(verbose=False)
    if name == "local-parallel":
        from tfpipe.orchestrators.local.runner import LocalRunner, default_parallel
        return LocalRunner(verbose=False, parallel=default_parallel())
    if name == "beam":
        from tfpipe.orchestrators.beam import BeamDagRunner
        return BeamDagRunner(verbose=False)
    if name == "kfp-local":
        from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner
        return KfpLocalRunner(verbose=False, workdir=os.path.join(tmp, "kfp"))
    if name == "airflow":
        from tfpipe.orchestrators.airflow.local import AirflowLocalRunner
        r = AirflowLocalRunner(os.path.join(tmp, "airflow"), python=sys.executable, verbose=False,
                               airflow_bin=os.path.join(REPO, ".venv-airflow", "bin", "airflow"))
        r.setup()
        return r
    raise KeyError(name)


def _blessed(ir: dict, run_id: str) -> float:
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking import records
    info = records.show_run(MetadataStore(ir["pipeline"]["metadata"]), run_id)
    pushed = [e for e in info["executions"] if e["node_id"] == "Pusher" and e["state"] in ("COMPLETE", "CACHED")]
    for e in pushed:
        for arts in e["outputs"].values():
            for a in arts:
                if a["type"] == "PushedModel" and os.path.exists(a["uri"]) and os.listdir(a["uri"]):
                    return 1.0
    return 0.0


def measure(name: str, tmp: str) -> dict:
    """Cold and cached wall time of the penguin pipeline under ``name`` (in this process)."""
    runner = _runner(name, tmp)
    ir = _ir(os.path.join(tmp, "home"))
    t0 = time.monotonic()
    r = runner.run(ir, run_id="bench-1")
    cold = time.monotonic() - t0
    t0 = time.monotonic()
    r2 = runner.run(ir, run_id="bench-2")
    warm = time.monotonic() - t0
    rerun = None
    if name == "local-parallel":  # the task host is warm now: a run with nothing cached again
        t0 = time.monotonic()
        r3 = runner.run(ir, run_id="bench-3", enable_cache=False)
        rerun = time.monotonic() - t0 if r3.ok else None
    if hasattr(runner, "close"):
        runner.close()
    return {"ok": r.ok and r2.ok, "error": str(r.error or r2.error or ""), "cold": cold, "warm": warm, "rerun": rerun,
            "nodes": len(ir["nodes"]), "pushed": _blessed(ir, "bench-1") if r.ok else 0.0,
            "has_pusher": any(n["id"] == "Pusher" for n in ir["nodes"])}


def run(report) -> None:
    """Each orchestrator in a fresh Python process (as `tfpipe run` would be), so every one
    pays its own imports of TensorFlow/TFDV/Beam."""
    from tfpipe.orchestrators import taskhost
    names = os.environ.get("TFPIPE_BENCH_ORCHESTRATORS", "local,local-parallel,beam,kfp-local,airflow").split(",")
    base = base_cached = None
    for name in names:
        taskhost.stop_host(wait_s=60)  # each orchestrator that uses the warm task host pays its start
        tmp = tempfile.mkdtemp(prefix=f"bench-orch-{name}-")
        p = subprocess.run([sys.executable, "-m", "benchmarks.bench_orchestrators", name, tmp], cwd=REPO,
                           capture_output=True, text=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("@@BENCH ")]
        if p.returncode != 0 or not lines:
            report(f"{name}_failed", 1, "flag", (p.stderr or p.stdout)[-300:].replace("\n", " "))
            continue
        m = json.loads(lines[-1][len("@@BENCH "):])
        if not m["ok"]:
            report(f"{name}_failed", 1, "flag", m["error"][:300])
            continue
        base = m["cold"] if name == "local" else base
        base_cached = m["warm"] if name == "local" else base_cached
        report(f"{name}_wall", m["cold"], "s", f"{m['nodes']} nodes, nothing cached")
        report(f"{name}_cached_wall", m["warm"], "s", "second run, all cached"
               + (" (goal <= 5 s: the DAG's cache check records it, the node tasks are skipped)"
                  if name == "airflow" else ""))
        if base:
            report(f"{name}_ratio", m["cold"] / base, "x", "wall time / local runner's (one node at a time)")
        if base_cached and name != "local":
            report(f"{name}_cached_ratio", m["warm"] / base_cached, "x",
                   "all-cached re-run / local runner's (one node at a time)")
        if m.get("rerun") and base:
            report(f"{name}_warm_host_wall", m["rerun"], "s", "again with nothing cached, the task host warm")
            report(f"{name}_warm_host_ratio", m["rerun"] / base, "x", "wall time / local runner's (one node at a time)")
        if m["has_pusher"]:
            report(f"{name}_model_pushed", m["pushed"], "flag", "1 = blessed and pushed")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print("@@BENCH " + json.dumps(measure(sys.argv[1], sys.argv[2])), flush=True)
