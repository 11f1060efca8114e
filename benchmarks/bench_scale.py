"""The whole penguin pipeline at real sizes, TFX 1.16 and tfpipe side by side (issue 25).

TFX's penguin example in its own idiom (examples/penguin_tfx: ``tfx_modules/`` under TFX's
``LocalDagRunner`` in its Python 3.10 virtualenv, ``tfpipe_modules/``, the same files with
their import lines changed, under ``tfpipe run --parallel 1``), on generated data of the
same shape: the 342 rows of ``examples/penguin_tfx/data`` (integer label ``species``, four
measurements) resampled with small Gaussian noise (5% of each column's standard deviation,
so the label stays learnable) to each size of ``$TFPIPE_BENCH_SCALE_ROWS`` (default
``100000,1000000,10000000``), written as one CSV file. Both sides train the same fixed
number of steps (``$TFPIPE_BENCH_SCALE_TRAIN_STEPS``, default 100; 5 eval steps), one Beam
worker, SQLite ML Metadata, each run a fresh process in an empty root.

Per size and side: wall time from process start to exit; per node, the time ML Metadata
records (an execution's last update minus its creation, the same clock for both) and
examples per second (rows the node reads: the whole dataset for ExampleGen, StatisticsGen
and Transform, the eval split for the Evaluator, steps x batch for the Trainer); the peak
over samples (every 0.5 s) of the memory of the whole process tree, as the sum of PSS
(``/proc/PID/smaps_rollup``: a forked child is not counted twice, and cannot hide either)
and the sum of RSS. PSS also splits pages shared with processes outside the tree (another
program mapping the same TensorFlow libraries lowers it): take it on a quiet machine; the
RSS sum is the upper bound. Ratios tfpipe / TFX against the goals at 1M rows, and tfpipe's largest
size over 1M rows.

TFX runs only at sizes it finishes within ``$TFPIPE_BENCH_TFX_LIMIT_S`` (default 1800 s):
past that it is stopped, the size is reported as not finished, and larger sizes are not
tried. Without a TFX virtualenv (``benchmarks/tfx_env.py`` cannot build one here) TFX is
skipped with the reason printed (``$TFPIPE_BENCH_SCALE_TFX=0`` skips it). At the largest
size (``$TFPIPE_BENCH_SCALE_CLUSTER_ROWS`` to choose another; ``0`` skips it) tfpipe also
runs with its Beam work on a local Beam cluster of 2 SDK worker processes; the Beam nodes'
times are compared with the in-process run and their row counts printed (each node also
checks its own count against its input).
"""
from __future__ import annotations

import json
import os
import sys

from .common import OUT, REPO, env_sizes, fresh_workdir, measure_tree

EXAMPLE = os.path.join(REPO, "examples", "penguin_tfx")
GOALS_1M = {"total": 0.15, "Evaluator": 0.25, "Transform": 0.2, "peak_pss": 0.5}
GOALS_10X = {"total": 12.0, "peak_pss": 1.5}
BEAM_NODES = ("StatisticsGen", "Transform", "Evaluator")
NODE_ORDER = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "latest_blessed_model_resolver", "Evaluator", "Pusher")
TRAIN_BATCH = 20  # examples/penguin_tfx/*_modules/penguin_common.py


def penguin_rows(rows: int, path: str, seed: int = 0, noise: float = 0.05, chunk: int = 1_000_000) -> str:
    """A CSV of ``rows`` rows shaped as TFX's penguin data (``species`` 0-2, four
    measurements): the example's rows resampled, each measurement plus Gaussian noise of
    ``noise`` x the column's standard deviation, rounded to 2 decimals (always written with
    a decimal point, so TFX's CSV type inference reads floats as in the original). Written
    ``chunk`` rows at a time; an existing file is reused."""
    if os.path.exists(path):
        return path
    import numpy as np
    sys.path.insert(0, EXAMPLE)
    try:
        import data as penguin_data  # examples/penguin_tfx/data.py (standard library only)
    finally:
        sys.path.remove(EXAMPLE)
    base = np.array(penguin_data.rows(), dtype="float64")
    label, feats = base[:, 0].astype("int64"), base[:, 1:]
    sd = feats.std(axis=0) * noise
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(",".join(["species", *penguin_data.COLUMNS]) + "\n")
        for i, start in enumerate(range(0, rows, chunk)):
            n = min(chunk, rows - start)
            rng = np.random.default_rng([seed, i])
            idx = rng.integers(0, len(base), n)
            x = feats[idx] + rng.normal(0.0, 1.0, (n, feats.shape[1])) * sd
            table = np.column_stack([label[idx].astype("float64"), x])
            np.savetxt(f, table, fmt=["%d", "%.2f", "%.2f", "%.2f", "%.2f"], delimiter=",")
    os.replace(path + ".tmp", path)
    return path


def _eval_rows(md: str) -> int | None:
    """The eval split's rows, from tfpipe's ExampleGen output (TFX splits the same 2:1 way)."""
    try:
        from tfpipe.metadata import MetadataStore
        gen = [a for a in MetadataStore(md).list_artifacts("Examples") if (a.row_counts or {}).get("train")]
        return int(gen[0].row_counts["eval"]) if gen else None
    except Exception:  # noqa: BLE001 - a figure we can do without
        return None


def _rows_per_node(rows: int, eval_rows: int | None, steps: int) -> dict:
    return {"ExampleGen": rows, "StatisticsGen": rows, "Transform": rows, "Trainer": steps * TRAIN_BATCH,
            "Evaluator": eval_rows}


def _run_tfx(python: str, data_dir: str, root: str, steps: int, limit: float) -> dict:
    from .bench_tfx import node_at, node_times
    os.makedirs(root)
    cmd = [python, os.path.join(EXAMPLE, "tfx_pipeline.py"), "--root", root, "--data", data_dir,
           "--train-steps", str(steps), "--eval-steps", "5"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TFPIPE_HOME")}
    r = measure_tree(cmd, env=env, cwd=root, what="TFX run", timeout=limit, log_path=os.path.join(root, "stderr.log"))
    md = os.path.join(root, "metadata.sqlite")
    r["nodes"] = node_times(md, 0) if os.path.exists(md) else {}
    r["peak_node"] = node_at(md, r["peak_pss_at"]) if os.path.exists(md) else None
    return r


def _run_tfpipe(data_dir: str, root: str, steps: int, beam_args: list[str] | None = None,
                siblings: bool = False) -> dict:
    from .bench_tfx import node_at, node_times
    os.makedirs(root)
    exe = os.path.join(os.path.dirname(sys.executable), "tfpipe")
    cmd = [exe, "run", "-q", "--parallel", "1", os.path.join(EXAMPLE, "pipeline.py"), "-P", f"data_root={data_dir}",
           "-P", f"train_steps={steps}", "-P", "eval_steps=5"]
    if beam_args:
        cmd += ["-P", f"beam_pipeline_args={json.dumps(beam_args)}"]
    r = measure_tree(cmd, env={"TFPIPE_HOME": root}, cwd=root, what="tfpipe run", siblings=siblings,
                     log_path=os.path.join(root, "stderr.log"))
    md = os.path.join(root, "metadata.sqlite")
    r["nodes"] = node_times(md, 0)
    r["peak_node"] = node_at(md, r["peak_pss_at"])
    r["eval_rows"] = _eval_rows(md)
    return r


def _tfx_python(log) -> tuple[str | None, str]:
    try:
        from .tfx_env import TfxEnvError, ensure_venv
        return ensure_venv(log=log), ""
    except (TfxEnvError, OSError, Exception) as e:  # noqa: BLE001 - any failure to build: skip TFX, say why
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"no TFX 1.16 virtualenv: {type(e).__name__}: {first}"


def _fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def _print_size(rows: int, tfx: dict | None, ours: dict, steps: int) -> None:
    per = _rows_per_node(rows, ours.get("eval_rows"), steps)
    print(f"\n   {rows:,} rows, seconds per node (examples/s), TFX 1.16 vs tfpipe")
    print(f"   {'node':32} {'TFX s':>9} {'TFX ex/s':>11} {'tfpipe s':>9} {'tfpipe ex/s':>12} {'ratio':>6}")
    names = [n for n in NODE_ORDER if n in ours["nodes"] or (tfx and n in tfx["nodes"])]
    names += sorted({*ours["nodes"], *(tfx["nodes"] if tfx else {})} - set(names))
    for n in names:
        a = tfx["nodes"].get(n, (None, None))[1] if tfx else None
        b = ours["nodes"].get(n, (None, None))[1]
        k = per.get(n)
        print(f"   {n:32} {_fmt(a, '.2f'):>9} {_fmt(k / a if k and a else None, ',.0f'):>11} "
              f"{_fmt(b, '.2f'):>9} {_fmt(k / b if k and b else None, ',.0f'):>12} "
              f"{_fmt(b / a if a and b is not None and a > 0.05 else None, '.2f'):>6}")
    for label, key, unit in (("total, process start to exit", "process_wall_s", "s"),
                             ("peak memory, process tree, sum of PSS", "peak_pss_mb", "MB"),
                             ("peak memory, process tree, sum of RSS", "peak_rss_mb", "MB")):
        a, b = (tfx[key] if tfx else None), ours[key]
        print(f"   {label:44} {_fmt(a):>9} {_fmt(b):>9} {unit:3} "
              f"{_fmt(b / a if a else None, '.2f'):>6}")
    print(f"   {'peak PSS sampled while this node ran':44} {(tfx or {}).get('peak_node') or '-':>9} "
          f"{ours.get('peak_node') or '-':>9}")


def run(report):
    sizes = env_sizes("TFPIPE_BENCH_SCALE_ROWS", "100000,1000000,10000000")
    steps = int(os.environ.get("TFPIPE_BENCH_SCALE_TRAIN_STEPS", "100"))
    limit = float(os.environ.get("TFPIPE_BENCH_TFX_LIMIT_S", "1800"))
    cluster_rows = int(float(os.environ.get("TFPIPE_BENCH_SCALE_CLUSTER_ROWS", str(sizes[-1]))))
    work = fresh_workdir("scale")
    if os.environ.get("TFPIPE_BENCH_SCALE_TFX", "1") == "0":
        python, why = None, "TFPIPE_BENCH_SCALE_TFX=0 says not to run it"
    else:
        python, why = _tfx_python(lambda m: print(f"   {m}", flush=True))
    if python is None:
        print(f"   TFX skipped ({why})", flush=True)
    results: dict[int, dict] = {}
    tfx_stopped_at = None
    for rows in sizes:
        data_dir = os.path.dirname(penguin_rows(rows, os.path.join(OUT, "data", f"penguin-tfx-{rows}", "penguins.csv")))
        res: dict = {"tfx": None}
        if python and tfx_stopped_at is None:
            t = _run_tfx(python, data_dir, os.path.join(work, f"{rows}-tfx"), steps, limit)
            if t["timed_out"]:
                tfx_stopped_at = rows
                print(f"   {rows:,} rows: TFX did not finish within {limit:.0f} s (stopped; nodes done: "
                      f"{sorted(n for n, (s, _) in t['nodes'].items() if s == 'COMPLETE')}); "
                      f"larger sizes not tried", flush=True)
                report(f"tfx_{rows}_unfinished", limit, "s", "TFX 1.16 did not finish within this limit")
            else:
                res["tfx"] = t
                print(f"   {rows:,} rows TFX: {t['process_wall_s']:.1f} s, peak PSS {t['peak_pss_mb']:.0f} MB",
                      flush=True)
        elif python:
            print(f"   {rows:,} rows: TFX not run (it did not finish {tfx_stopped_at:,} rows within {limit:.0f} s)",
                  flush=True)
        res["tfpipe"] = _run_tfpipe(data_dir, os.path.join(work, f"{rows}-tfpipe"), steps)
        o = res["tfpipe"]
        print(f"   {rows:,} rows tfpipe: {o['process_wall_s']:.1f} s, peak PSS {o['peak_pss_mb']:.0f} MB", flush=True)
        results[rows] = res
        _print_size(rows, res["tfx"], o, steps)
        for side in ("tfx", "tfpipe"):
            r = res[side]
            if r is None:
                continue
            report(f"{side}_{rows}_total", r["process_wall_s"], "s", "process start to exit")
            report(f"{side}_{rows}_peak_pss", r["peak_pss_mb"], "MB", "process tree, sum of PSS")
            report(f"{side}_{rows}_peak_rss", r["peak_rss_mb"], "MB", "process tree, sum of RSS")
            for n in ("ExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"):
                if n in r["nodes"]:
                    report(f"{side}_{rows}_{n}", r["nodes"][n][1], "s")
    print()
    one_m = results.get(1_000_000)
    if one_m and one_m["tfx"]:
        a, b = one_m["tfx"], one_m["tfpipe"]
        pairs = [("total", a["process_wall_s"], b["process_wall_s"]), ("peak_pss", a["peak_pss_mb"], b["peak_pss_mb"])]
        pairs += [(n, a["nodes"][n][1], b["nodes"][n][1]) for n in ("Transform", "Evaluator")
                  if n in a["nodes"] and n in b["nodes"]]
        for name, x, y in pairs:
            report(f"ratio_1M_{name}", y / x, "x", f"tfpipe / TFX at 1M rows, goal <= {GOALS_1M[name]}")
    elif 1_000_000 in sizes:
        print("   no tfpipe / TFX ratio at 1M rows: TFX did not run or finish there")
    big = max(sizes)
    if one_m and big > 1_000_000:
        a, b = one_m["tfpipe"], results[big]["tfpipe"]
        report(f"tfpipe_{big // 1_000_000}M_over_1M_total", b["process_wall_s"] / a["process_wall_s"], "x",
               f"goal <= {GOALS_10X['total']} at 10M")
        report(f"tfpipe_{big // 1_000_000}M_over_1M_peak_pss", b["peak_pss_mb"] / a["peak_pss_mb"], "x",
               f"goal <= {GOALS_10X['peak_pss']} at 10M")
    if cluster_rows:
        _cluster(report, cluster_rows, results.get(cluster_rows), work, steps)


def _cluster_counts(md: str) -> dict:
    """Rows each Beam node handled, as its outputs record them."""
    from tfpipe.components.statistics_gen import load_statistics
    from tfpipe.metadata import MetadataStore
    store = MetadataStore(md)
    out = {}
    stats = [a for a in store.list_artifacts("ExampleStatistics") if a.split_names]
    if stats:
        s = stats[0]
        out["StatisticsGen"] = sum(load_statistics(s, n).datasets[0].num_examples for n in s.split_names)
    xf = [a for a in store.list_artifacts("Examples") if a.payload_format == "FORMAT_TF_EXAMPLE"]
    if xf:
        out["Transform"] = sum((xf[-1].row_counts or {}).values())
    ev = store.list_artifacts("ModelEvaluation")
    if ev:
        with open(ev[-1].metrics_path()) as f:
            out["Evaluator"] = json.load(f)["examples"]
    return out


def _cluster(report, rows: int, direct: dict | None, work: str, steps: int) -> None:
    from tfpipe.orchestrators.beam.cluster import LocalBeamCluster
    data_dir = os.path.dirname(penguin_rows(rows, os.path.join(OUT, "data", f"penguin-tfx-{rows}", "penguins.csv")))
    if direct is None:
        direct = {"tfpipe": _run_tfpipe(data_dir, os.path.join(work, f"{rows}-tfpipe"), steps)}
    root = os.path.join(work, f"{rows}-tfpipe-cluster")
    with LocalBeamCluster(workers=2, log_dir=os.path.join(work, "cluster-logs")) as cluster:
        c = _run_tfpipe(data_dir, root, steps, beam_args=cluster.pipeline_args, siblings=True)
        jobs = cluster.bundles_by_job()
        workers = {pid for job in jobs.values() for pid in job}
    d = direct["tfpipe"]
    counts = {"direct": _cluster_counts(os.path.join(work, f"{rows}-tfpipe", "metadata.sqlite")),
              "cluster": _cluster_counts(os.path.join(root, "metadata.sqlite"))}
    print(f"\n   {rows:,} rows, Beam nodes: in-process (1 worker) vs local Beam cluster of 2 SDK workers "
          f"({len(jobs)} Beam jobs; {len(workers)} SDK worker processes in all ran bundles)")
    print(f"   {'node':20} {'direct s':>9} {'cluster s':>10} {'ratio':>6} {'rows direct':>13} {'rows cluster':>13}")
    for n in BEAM_NODES:
        a, b = d["nodes"].get(n, (None, None))[1], c["nodes"].get(n, (None, None))[1]
        print(f"   {n:20} {_fmt(a, '.2f'):>9} {_fmt(b, '.2f'):>10} {_fmt(b / a if a and b else None, '.2f'):>6} "
              f"{_fmt(counts['direct'].get(n), ',d'):>13} {_fmt(counts['cluster'].get(n), ',d'):>13}")
        if a and b:
            report(f"cluster_{rows}_{n}_ratio", b / a, "x", "cluster (2 SDK workers) / in-process")
        if counts["cluster"].get(n) is not None:
            report(f"cluster_{rows}_{n}_rows", counts["cluster"][n], "rows",
                   "conserved" if counts["cluster"][n] == counts["direct"].get(n) else
                   f"NOT conserved: in-process {counts['direct'].get(n)}")
    report(f"cluster_{rows}_total", c["process_wall_s"], "s", f"vs in-process {d['process_wall_s']:.1f} s")
    report(f"cluster_{rows}_peak_pss", c["peak_pss_mb"], "MB", "tfpipe + job server + SDK workers, sum of PSS")
