"""Serving: ``tfpipe serve`` against calling the same SavedModel signature directly.

Two penguin models are trained and pushed (the penguin pipeline, two Trainer settings),
production is set to the first and staging to the second (so both are loaded, as a staged
candidate is before it is promoted), and then, all in one run:

- the baseline: the serving signature called directly in this process, one example per
  call, back to back (calls/s, p50/p99 latency);
- ``tfpipe serve`` (a subprocess) under 1, 8 and 32 concurrent keep-alive HTTP clients, one
  raw-feature JSON instance per ``:predict`` request: p50/p99 latency, throughput and its
  ratio to the direct calls (goal at 32 clients: at least 0.67x, which batching concurrent
  requests into one signature call is for);
- failed requests while production is promoted and rolled back 10 times under 8 clients
  (goal 0), and the swap latency of those 20 switches: from the registry call's return to
  the first ``:predict`` response (default route) that carries the new version's
  prediction, max and p50 (goal < 1 s);
- request logging at sample rate 1.0: four fresh servers of the same model, two logging
  every request to Parquet and two not, under the same load (8 clients), measured in
  alternating rounds; the ratio of the unlogged servers' mean throughput to the logged
  ones' (goal at most 1.1x), and the larger spread within a pair set up alike, which is
  how finely one server process can be told from another here.

``BENCH_SERVING_SECONDS`` (default 10) sets each measurement's length.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

from benchmarks.common import PENGUINS, REPO

SECONDS = float(os.environ.get("BENCH_SERVING_SECONDS", "10"))
LARGEST = 10_000  # the server's default --max-instances
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def _instances() -> list[dict]:
    import csv
    out = []
    for r in csv.DictReader(open(PENGUINS)):
        row = {}
        for k in FEATURES:
            v = r[k]
            row[k] = (None if v in ("", "NA") else v if k in ("island", "sex") else
                      int(float(v)) if k in ("flipper_length_mm", "body_mass_g", "year") else float(v))
        out.append(row)
    return out


def _train(home: str) -> tuple[str, str, list[str]]:
    """Two pushed penguin versions; (metadata, destination, versions)."""
    sys.path.insert(0, os.path.join(REPO, "examples", "penguin"))
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.metadata import MetadataStore
    from tfpipe.orchestrators.local import LocalRunner
    from tfpipe.tracking.registry import Registry
    os.environ["TFPIPE_HOME"] = home
    md = os.path.join(home, "metadata.sqlite")
    for steps in (300, 500):
        res = LocalRunner(verbose=False).run(compile_pipeline(create_pipeline(
            root=os.path.join(home, "root"), metadata=md, train_steps=steps)))
        if not res.ok:
            raise RuntimeError(f"penguin run failed: {res.error}")
    rows = Registry(MetadataStore(md)).list_versions("penguin")
    if len(rows) < 2:
        raise RuntimeError(f"expected two pushed versions, found {[r['version'] for r in rows]} (a model not "
                           f"blessed is not pushed)")
    return md, rows[0]["destination"], [r["version"] for r in rows[-2:]]


def _direct(model_dir: str, instances: list[dict]) -> dict:
    import tensorflow as tf

    from tfpipe.serving.features import read_model_info, to_examples
    info = read_model_info(model_dir)
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    records = to_examples(instances, info.parse_specs["serving_default"], "instances")
    for r in records[:20]:
        fn(examples=tf.constant([r]))
    lat, n, t0 = [], 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        t = time.perf_counter()
        fn(examples=tf.constant([records[n % len(records)]]))
        lat.append(time.perf_counter() - t)
        n += 1
    wall = time.perf_counter() - t0
    return {"throughput": n / wall, "p50": _pct(lat, 50), "p99": _pct(lat, 99)}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


async def _client(port: int, path: str, bodies: list[bytes], stop_at: float, lat: list, errors: list, k: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = k
    try:
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 7
            t = time.perf_counter()
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            if status != 200:
                errors.append(status)
    except (OSError, asyncio.IncompleteReadError) as e:
        errors.append(repr(e))
    finally:
        writer.close()


async def _beside(port: int, small_bodies: list[bytes], large_bodies: list[bytes], seconds: float):
    """One client of 1-instance requests while another sends large ones back to back."""
    stop_at = time.perf_counter() + seconds
    small, large = ([], []), ([], [])
    t0 = time.perf_counter()
    await asyncio.gather(_client(port, "/v1/models/penguin:predict", large_bodies, stop_at, *large, 0),
                         _client(port, "/v1/models/penguin:predict", small_bodies, stop_at, *small, 0))
    wall = time.perf_counter() - t0
    return tuple({"p50": _pct(lat, 50), "p99": _pct(lat, 99), "errors": err, "requests": len(lat),
                  "throughput": len(lat) / wall} for lat, err in (small, large))


async def _load(port: int, clients: int, seconds: float, bodies: list[bytes], model: str = "penguin") -> dict:
    lat, errors = [], []
    stop_at = time.perf_counter() + seconds
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_client(port, f"/v1/models/{model}:predict", bodies, stop_at, lat, errors, k))
             for k in range(clients)]
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    return {"throughput": len(lat) / wall, "p50": _pct(lat, 50), "p99": _pct(lat, 99), "errors": errors,
            "requests": len(lat), "wall": wall}


def _serve(md: str, *extra: str):
    from tfpipe.serving.client import ServerProcess
    return ServerProcess.start(["--metadata", md, *extra],
                               command=[sys.executable, "-m", "tfpipe.cli", "serve"],
                               env={"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})


def run(report):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.registry import Registry
    instances = _instances()
    bodies = [json.dumps({"instances": [r]}).encode() for r in instances]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as home:
        md, dest, (v1, v2) = _train(home)
        reg = Registry(MetadataStore(md))
        reg.set_alias("penguin", "production", v1)
        reg.set_alias("penguin", "staging", v2)  # the usual flow: the candidate is staged (so loaded) first
        base = _direct(os.path.join(dest, v1), instances)
        report("direct signature call (1 example/call): throughput", base["throughput"], "calls/s")
        report("direct signature call: p50 latency", base["p50"] * 1000, "ms")
        srv = _serve(md)
        try:
            asyncio.run(_load(srv.port, 4, 2.0, bodies))  # warm-up
            for c in (1, 8, 32):
                r = asyncio.run(_load(srv.port, c, SECONDS, bodies))
                report(f"serve, {c} client(s): throughput", r["throughput"], "req/s",
                       f"x{r['throughput'] / base['throughput']:.2f} of direct; {len(r['errors'])} failed")
                report(f"serve, {c} client(s): p50 / p99 latency", r["p50"] * 1000, "ms",
                       f"p99 {r['p99'] * 1000:.1f} ms")

            r = asyncio.run(_swap_load(srv.port, bodies, lambda: _swaps(md, srv.port, v1, v2, instances[0])))
            report("failed requests in 10 promote/rollback cycles under 8 clients", len(r["errors"]), "requests",
                   f"of {r['requests']} (goal 0)")
            report("swap latency: registry call returned -> new version's first response (max of 20)",
                   max(r["during"]) * 1000, "ms",
                   f"p50 {statistics.median(r['during']) * 1000:.0f} ms (goal < 1000 ms)")
        finally:
            srv.stop()
        # request logging: two logged servers and two unlogged ones, started in the order
        # off, on, on, off and warmed alike, then measured in rounds of alternating order. One
        # server process differs from another by several per cent here (how concurrent
        # requests fall into batches settles differently), so no single pair can tell a cost
        # of a few per cent; the means of two of each can, and the pairs' spread is printed
        servers = {}
        logged = ("--log-requests", os.path.join(home, "log"), "--sample-rate", "1.0")
        try:
            for k in ("off-1", "on-1", "on-2", "off-2"):
                servers[k] = _serve(md, *(logged if k.startswith("on") else ()))
                asyncio.run(_load(servers[k].port, 8, 2.0, bodies))  # warm-up
            rounds = {k: [] for k in servers}
            for i in range(4):
                for k in (list(servers) if i % 2 == 0 else list(servers)[::-1]):
                    rounds[k].append(asyncio.run(_load(servers[k].port, 8, SECONDS / 4, bodies)))
            stats = [_wait_written(servers[k]) for k in ("on-1", "on-2")]
        finally:
            for s in servers.values():
                s.stop()
        srv = _serve(md, *logged)
        try:
            asyncio.run(_load(srv.port, 32, 2.0, bodies))  # warm-up
            r = asyncio.run(_load(srv.port, 32, SECONDS, bodies))
            report("serve with request logging, 32 clients: throughput", r["throughput"], "req/s",
                   f"x{r['throughput'] / base['throughput']:.2f} of direct (goal >= 1.5x); "
                   f"{len(r['errors'])} failed")
            report("serve with request logging, 32 clients: p99 latency", r["p99"] * 1000, "ms",
                   f"p50 {r['p50'] * 1000:.1f} ms (goal p99 <= 30 ms)")
            big = [json.dumps({"instances": [instances[(k + i) % len(instances)] for i in range(LARGEST)]}).encode()
                   for k in range(3)]
            asyncio.run(_load(srv.port, 1, 1.0, bodies))
            alone = asyncio.run(_load(srv.port, 1, SECONDS / 2, bodies))
            small, large = asyncio.run(_beside(srv.port, bodies, big, SECONDS / 2))
            report(f"1-instance requests beside {LARGEST:,}-instance ones: added p99 latency",
                   (small["p99"] - alone["p99"]) * 1000, "ms",
                   f"p99 {alone['p99'] * 1000:.1f} ms alone, {small['p99'] * 1000:.1f} ms beside "
                   f"(goal <= 50 ms added); the large requests took {large['p50'] * 1000:.0f} ms at p50, "
                   f"{large['requests']} done, {len(small['errors']) + len(large['errors'])} failed")
        finally:
            srv.stop()
        tp = {k: sum(x["requests"] for x in v) / sum(x["wall"] for x in v) for k, v in rounds.items()}
        off, on = (tp["off-1"] + tp["off-2"]) / 2, (tp["on-1"] + tp["on-2"]) / 2
        failed = sum(len(x["errors"]) for v in rounds.values() for x in v)
        report("request logging at sample rate 1.0 (8 clients; 2 servers each way, 4 alternating rounds): cost",
               off / on, "x", f"throughput {off:.0f} -> {on:.0f} req/s (goal <= 1.1x); "
               f"{sum(x['written'] for x in stats)} rows written, {sum(x['dropped'] for x in stats)} dropped, "
               f"{failed} failed requests")
        report("the same, spread between two servers set up alike (how finely the figure above can tell)",
               max(max(tp["off-1"], tp["off-2"]) / min(tp["off-1"], tp["off-2"]),
                   max(tp["on-1"], tp["on-2"]) / min(tp["on-1"], tp["on-2"])), "x",
               f"unlogged {tp['off-1']:.0f} and {tp['off-2']:.0f}, logged {tp['on-1']:.0f} and {tp['on-2']:.0f} req/s")


def _wait_written(srv, timeout_s: float = 30.0) -> dict:
    """The logging server's counters once what it queued is written."""
    deadline = time.monotonic() + timeout_s
    while True:
        st = srv.request("GET", "/healthz")[1]["request_log"]
        if st["queued"] == 0 and st["written"] + st["dropped"] >= st["offered"] or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def _swaps(md: str, port: int, v1: str, v2: str, probe: dict) -> list[float]:
    """20 switches (promote v2, roll back to v1); for each, the time from the registry
    call's return until the default route answers with the target version's prediction."""
    from tfpipe.metadata import MetadataStore
    from tfpipe.serving.client import request
    from tfpipe.tracking.registry import Registry
    body = {"instances": [probe]}
    expect = {v: request("127.0.0.1", port, "POST", f"/v1/models/penguin/versions/{v}:predict", body)[1]
              ["predictions"][0] for v in (v1, v2)}
    if expect[v1] == expect[v2]:
        raise RuntimeError(f"versions {v1} and {v2} predict the same for the probe; cannot tell them apart")
    times = []
    for _ in range(10):
        for target, act in ((v2, lambda: Registry(MetadataStore(md)).promote(v2, "production")),
                            (v1, lambda: Registry(MetadataStore(md)).rollback())):
            act()
            t = time.perf_counter()
            while request("127.0.0.1", port, "POST", "/v1/models/penguin:predict", body)[1].get(
                    "predictions", [None])[0] != expect[target]:
                if time.perf_counter() - t > 30:
                    raise RuntimeError(f"the server did not switch to version {target} within 30 s")
            times.append(time.perf_counter() - t)
    return times


async def _swap_load(port, bodies, swaps):
    stop = {"at": None}

    def during():
        try:
            return swaps()
        finally:
            stop["at"] = time.perf_counter()

    lat, errors = [], []
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_until(port, bodies, stop, lat, errors, k)) for k in range(8)]
    times = await asyncio.to_thread(during)
    await asyncio.gather(*tasks)
    return {"errors": errors, "requests": len(lat), "during": times, "wall": time.perf_counter() - t0}


async def _until(port, bodies, stop, lat, errors, k):
    while stop["at"] is None:
        await _client(port, "/v1/models/penguin:predict", bodies, time.perf_counter() + 0.5, lat, errors, k)
