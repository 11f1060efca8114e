"""Shared helpers for benchmarks: synthetic data and measured child processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")
OUT = os.environ.get("TFPIPE_BENCH_DIR") or os.path.join(REPO, "bench_out")

_MEASURE = r"""
import json, resource, sys, time, runpy
t0 = time.monotonic()
sys.argv = {argv!r}
rc = 0
try:
    {body}
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
print("\n@@MEASURE " + json.dumps({{"rc": rc, "wall_s": time.monotonic() - t0,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure_python(body: str, argv: list[str] | None = None, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``body`` in a fresh Python process; wall time (process start to end, including
    imports) and peak RSS of that process (see ``_SPAWN``)."""
    code = _MEASURE.format(argv=argv or ["bench"], body=body.replace("\n", "\n    "))
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    e.update(env or {})
    p, wall, rss_kb = _spawn_measured([sys.executable, "-c", code], e, cwd, subprocess.PIPE)
    out = p.out.decode(errors="replace")
    line = [ln for ln in out.splitlines() if ln.startswith("@@MEASURE ")]
    if not line:
        raise RuntimeError(f"benchmark child failed ({p.returncode}):\n{p.err.decode(errors='replace')[-4000:]}")
    m = json.loads(line[-1][len("@@MEASURE "):])
    m["process_wall_s"] = wall
    m["peak_rss_mb"] = rss_kb / 1024
    if m["rc"]:
        raise RuntimeError(f"benchmark child exited {m['rc']}:\n{p.err.decode(errors='replace')[-4000:]}")
    return m


# A measured command runs as the child of this small Python process, not of the bench's own:
# Linux carries a process's peak RSS across fork and exec (the peak of the memory it was
# forked with counts), so a command started straight from the bench process, which holds
# TensorFlow & co., would report at least the bench's own RSS.
_SPAWN = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(int(os.environ["TFPIPE_BENCH_RSS_FD"]), f"{usage.ru_maxrss}\n".encode())
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _spawn_measured(cmd: list[str], env: dict, cwd: str | None, stdout) -> tuple[subprocess.Popen, float, int]:
    """Run ``cmd`` through the small spawner; (process, wall seconds, its peak RSS in KB)."""
    r, w = os.pipe()
    env = dict(env, TFPIPE_BENCH_RSS_FD=str(w))
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-S", "-c", _SPAWN, *cmd], stdout=stdout, stderr=subprocess.PIPE, env=env,
                         cwd=cwd, pass_fds=(w,))
    os.close(w)
    out, err = p.communicate()
    wall = time.monotonic() - t0
    with os.fdopen(r) as f:
        rss = f.read().strip()
    p.out, p.err = out, err
    return p, wall, int(rss) if rss else 0


def measure_process(cmd: list[str], env: dict | None = None, cwd: str | None = None, what: str = "") -> dict:
    """Run ``cmd`` (stdout discarded, stderr kept for the error); wall time from process start
    to exit and the process's own peak RSS (wait4 on it, from a small parent). Raises when
    it exits non-zero."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    e.update(env or {})
    p, wall, rss_kb = _spawn_measured(cmd, e, cwd, subprocess.DEVNULL)
    if p.returncode:
        raise RuntimeError(f"{what or ' '.join(cmd)} exited {p.returncode}:\n{p.err.decode(errors='replace')[-4000:]}")
    return {"process_wall_s": wall, "peak_rss_mb": rss_kb / 1024}


def tfpipe_cli(*args: str, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run the installed ``tfpipe`` console script, as a user types it; wall time from
    process start to exit and the process's peak RSS (from wait4)."""
    exe = os.path.join(os.path.dirname(sys.executable), "tfpipe")
    return measure_process([exe, *args], env=env, cwd=cwd, what=f"tfpipe {' '.join(args)}")


def tfpipe_run(pipeline_file: str, *args: str, env: dict | None = None, cwd: str | None = None) -> dict:
    return measure_python("from tfpipe.cli import main\nrc = main(sys.argv[1:])\nif rc: raise SystemExit(rc)",
                          ["tfpipe", "run", "-q", pipeline_file, *args], env=env, cwd=cwd)


def fresh_workdir(name: str) -> str:
    """``OUT/name``, emptied: a bench's own folder for this run."""
    import shutil
    work = os.path.join(OUT, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return work


def env_sizes(var: str, default: str) -> list[int]:
    """Row counts from ``$var`` (comma-separated, e.g. ``100000,1000000``, ``1e6`` or
    ``1_000_000``), sorted, each once."""
    text = os.environ.get(var, default)
    return sorted({int(float(s)) for s in text.replace("_", "").split(",") if s.strip()})


def write_pipeline(work: str, tag: str, template: str, /, **fields) -> str:
    """``template`` (``str.format`` fields; ``root`` and ``md`` filled here, per ``tag``)
    written to ``work/pipe_<tag>.py``: a pipeline file for ``tfpipe run``."""
    path = os.path.join(work, f"pipe_{tag}.py")
    with open(path, "w") as f:
        f.write(template.format(**fields, root=os.path.join(work, f"root_{tag}"),
                                md=os.path.join(work, f"md_{tag}.sqlite")))
    return path


def scaled_penguins(rows: int, path: str, seed: int = 0, chunk: int = 1_000_000) -> str:
    """The penguin table scaled up to ``rows`` rows: rows resampled, numeric columns
    jittered, missing values kept at their original rate; written a million rows at a time
    (a 10M-row file never sits in memory whole)."""
    if os.path.exists(path):
        return path
    import numpy as np
    import pyarrow as pa
    from pyarrow import csv as pacsv
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = pacsv.read_csv(PENGUINS)
    with pacsv.CSVWriter(path + ".tmp", t.schema) as w:
        for i, start in enumerate(range(0, rows, chunk)):
            n = min(chunk, rows - start)
            rng = np.random.default_rng([seed, i])
            big = t.take(pa.array(rng.integers(0, t.num_rows, n))).combine_chunks()
            cols = {}
            for name in big.column_names:
                col = big.column(name).combine_chunks()
                if pa.types.is_floating(col.type):
                    vals = col.to_numpy(zero_copy_only=False)
                    cols[name] = pa.array(np.round(vals + rng.normal(0, 0.5, n), 1), mask=np.isnan(vals))
                elif pa.types.is_integer(col.type) and name != "year":
                    vals = col.to_pandas().to_numpy(dtype="float64")
                    noisy = np.round(vals + rng.normal(0, 5, n))
                    cols[name] = pa.array(np.nan_to_num(noisy).astype("int64"), mask=np.isnan(vals))
                else:
                    cols[name] = col
            w.write_table(pa.table(cols).cast(t.schema))
    os.replace(path + ".tmp", path)
    return path


def _children_by_parent() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:  # gone since the listing
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(d))
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (from /proc, Linux)."""
    children, out, todo = _children_by_parent(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KB: PSS from /proc/PID/smaps_rollup (shared pages split
    between the processes sharing them, so a forked child's copy-on-write pages are not
    counted twice), RSS from /proc/PID/status; (0, 0) when it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
    except (OSError, ValueError):
        pass
    return pss, rss


def tree_memory_mb(roots: list[int], exclude: tuple[int, ...] = ()) -> tuple[float, float, int]:
    """(sum of PSS, sum of RSS, number of processes) over the trees under ``roots``."""
    pids = {p for r in roots for p in process_tree(r)} - set(exclude)
    pss = rss = 0
    for p in pids:
        a, b = _memory_kb(p)
        pss, rss = pss + a, rss + b
    return pss / 1024, rss / 1024, len(pids)


def measure_tree(cmd: list[str], env: dict | None = None, cwd: str | None = None, what: str = "",
                 timeout: float | None = None, interval: float = 0.5, siblings: bool = False,
                 log_path: str | None = None) -> dict:
    """Run ``cmd`` in its own session; wall time from start to exit, and the peak over
    samples every ``interval`` s of the memory of its whole process tree: the sum of PSS
    (``peak_pss_mb``, sampled at epoch second ``peak_pss_at``; what a forked worker really
    adds) and the sum of RSS (``peak_rss_mb``; shared pages counted once per process).
    ``siblings``: also count every other process this benchmark process started (a local
    Beam cluster's job server and SDK workers). Past ``timeout`` seconds the whole session
    is killed and ``timed_out`` is True (no error); a non-zero exit otherwise raises, with
    the end of stderr (kept in ``log_path``)."""
    import signal
    import threading
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    e.update(env or {})
    log = open(log_path, "wb") if log_path else None
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log or subprocess.PIPE, env=e, cwd=cwd,
                         start_new_session=True)
    peak = {"pss": 0.0, "rss": 0.0, "procs": 0, "pss_at": None}
    done = threading.Event()

    def sample():
        me = os.getpid()
        while not done.is_set():
            pss, rss, n = tree_memory_mb([me] if siblings else [p.pid], exclude=(me,) if siblings else ())
            if pss > peak["pss"]:
                peak["pss_at"] = time.time()
            peak["pss"], peak["rss"] = max(peak["pss"], pss), max(peak["rss"], rss)
            peak["procs"] = max(peak["procs"], n)
            done.wait(interval)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    timed_out = False
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    wall = time.monotonic() - t0
    done.set()
    th.join()
    if log:
        log.close()
        with open(log_path, "rb") as f:
            err = f.read()[-8000:]
    if p.returncode and not timed_out:
        tail = (err or b"").decode(errors="replace")[-4000:]
        raise RuntimeError(f"{what or ' '.join(cmd)} exited {p.returncode}:\n{tail}")
    return {"process_wall_s": wall, "peak_pss_mb": peak["pss"], "peak_rss_mb": peak["rss"],
            "peak_pss_at": peak["pss_at"], "max_processes": peak["procs"], "timed_out": timed_out}
