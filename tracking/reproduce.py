"""``tfpipe reproduce RUN``: re-run a recorded run from its recorded code version,
parameters and data, in a fresh directory, and say which artifacts came out identical.

The record a run leaves in ML Metadata is enough: the compiled IR (parameters included)
and the git commit on the run context, the data fingerprints in each ExampleGen
execution's parameters. Reproduction refuses, with the reason, when

- the run recorded uncommitted changes (``git_dirty``) - unless ``allow_dirty``;
- its commit is not in the repository any more (or there is no repository);
- the input data no longer matches the recorded fingerprint (files changed or gone);
- a data source's snapshot cannot be read again as it was: it is not reproducible (a SQL
  table without a version column) and its data changed since (``check_sources``).

A reproducible source snapshot (a Delta table at a version) is pinned: the re-run's
ExampleGen reads the recorded snapshot (``source_snapshot``), so the recorded Delta version
by time travel, whatever versions came after.

The code is the recorded commit exported with ``git archive`` (the user's repository and
work tree are left untouched); the local runner re-runs the recorded IR in a subprocess
working in that exported tree (``python -m tfpipe.orchestrators.local``), with a fresh
artifact root and metadata store and the installed tfpipe. A Pusher of the re-run pushes
into that directory, not where the run pushed: a reproduction publishes nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from tfpipe import fileio
from tfpipe.fingerprint import fingerprint_files, fingerprint_path
from tfpipe.metadata import MetadataStore
from tfpipe.state import SUCCEEDED

from . import records
from .content import compare_content
from .envs import EnvironmentError_, build_environment, export_commit, format_differences, lock_differences, run_lock

__all__ = ["reproduce", "format_reproduction", "ReproduceError", "check_data", "check_sources", "redirect_pushes"]


class ReproduceError(RuntimeError):
    """The run cannot be reproduced; the message says why and what to do."""


def _git(repo: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, timeout=120, **kw)


def _remap(value, old: str, new: str):
    if isinstance(value, str):
        if value == old or value.startswith(old.rstrip(os.sep) + os.sep):
            return new + value[len(old.rstrip(os.sep)):]
        return value
    if isinstance(value, list):
        return [_remap(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _remap(v, old, new) for k, v in value.items()}
    return value


def check_data(info: dict, remap=lambda p: p) -> list[dict]:
    """Recompute each recorded data fingerprint (ExampleGen's ``input_fingerprint`` over its
    ``input_files``; ImportSchemaGen's ``schema_fingerprint``). Returns one row per check
    with ``ok``; missing files count as a mismatch."""
    rows = []
    for ex in info["executions"]:
        p = ex["parameters"]
        checks = []
        if p.get("input_fingerprint") and p.get("input_files") is not None:
            files = p["input_files"]
            files = sorted({f for fs in files.values() for f in fs}) if isinstance(files, dict) else list(files)
            checks.append(("input_fingerprint", files, p["input_fingerprint"]))
        if p.get("schema_fingerprint") and p.get("schema_file"):
            checks.append(("schema_fingerprint", [p["schema_file"]], p["schema_fingerprint"]))
        for key, files, want in checks:
            files = [remap(f) for f in files]
            missing = [f for f in files if not fileio.isfile(f)]
            got = None if missing else fingerprint_files([fileio.local_file(f) for f in files])
            rows.append({"node": ex["node_id"], "key": key, "files": files, "recorded": want, "current": got,
                         "missing": missing, "ok": got == want})
    return rows


def check_sources(info: dict, ir: dict, remap=lambda p: p) -> list[dict]:
    """Each ExampleGen of the run that read a data source: a reproducible snapshot is pinned
    in ``ir`` (its node's ``source_snapshot``: the re-run reads exactly it); for one that is
    not, the source's current snapshot is taken and must have the recorded fingerprint.
    One row per source with ``ok`` and ``how``; ``why`` when it is not ok."""
    from tfpipe.sources import describe_version, load_source, source_of
    nodes = {n["id"]: n for n in ir["nodes"]}
    rows = []
    for ex in info["executions"]:
        p = ex["parameters"]
        snap = p.get("source_snapshot")
        if not isinstance(snap, dict) or ex["node_id"] not in nodes:
            continue
        node = nodes[ex["node_id"]]
        version = describe_version(snap.get("data_version") or {}) or "its recorded snapshot"
        row = {"node": ex["node_id"], "key": "source_snapshot", "recorded": snap["fingerprint"],
               "data_version": snap.get("data_version") or {}, "reproducible": bool(snap.get("reproducible")),
               "files": [], "missing": []}
        if snap.get("reproducible"):
            node["parameters"]["source_snapshot"] = snap
            row.update(current=snap["fingerprint"], ok=True, how=f"{version}, read again as recorded")
            rows.append(row)
            continue
        name, cfg = source_of(remap({k: p.get(k) for k in ("input_base", "source", "source_config")}))
        try:
            now = load_source(name, cfg).snapshot()
            got = now.get("fingerprint")
        except Exception as e:  # the source is gone or unreachable: say so, as for missing files
            got, now = None, {"error": str(e)}
        row["current"] = got
        row["ok"] = got == snap["fingerprint"]
        row["how"] = f"{version}, unchanged (its source is not reproducible: checked against its data now)"
        if not row["ok"]:
            what = f"reading it failed: {now['error']}" if "error" in now else \
                f"its data changed since (fingerprint {snap['fingerprint'][:12]} -> {(got or '-')[:12]}" + \
                (f"; now {describe_version(now.get('data_version') or {})}" if now.get("data_version") else "") + ")"
            row["why"] = (f"source {name!r} cannot be read again as it was: its snapshot ({version}) is not "
                          f"reproducible and {what}")
        rows.append(row)
    return rows


def _artifacts(store: MetadataStore, run: str, nodes: set[str] | None = None) -> dict[tuple, dict]:
    out = {}
    for ex in records.show_run(store, run)["executions"]:
        if ex["state"] not in SUCCEEDED or (nodes is not None and ex["node_id"] not in nodes):
            continue
        for key, arts in ex["outputs"].items():
            if arts:
                [a] = store.get_artifacts([arts[0]["id"]])
                out[(ex["node_id"], key)] = {"id": a.id, "type": a.type_name, "fingerprint": a.fingerprint,
                                             "uri": a.uri, "properties": a.properties}
    return out


def pin_resolved(store: MetadataStore, run: str, ir: dict) -> dict:
    """Make the re-run's resolver nodes pick what they picked in the recorded run (a
    baseline model, say): each artifact whose files are still there with their recorded
    fingerprint is pinned in ``ir`` (``node["pinned"]``) and will be recorded in the fresh
    store at its own URI, read-only. Returns ``{"pinned": {node: [...]}, "not_reproduced":
    {node: why}, "nothing": [nodes that found nothing]}``."""
    ctx = records.run_context(store, run)
    nodes = {n["id"]: n for n in ir["nodes"]}
    res: dict = {"pinned": {}, "not_reproduced": {}, "nothing": []}
    for e in store.executions_by_context(ctx):
        p = store.props(e)
        if "resolved" not in p or store.state_name(e) not in SUCCEEDED or p.get("node_id") not in nodes:
            continue
        node = p["node_id"]
        _, outs = store.io_of(e.id)
        if not any(outs.values()):
            res["nothing"].append(node)
            continue
        pinned, why = {}, None
        for key, arts in outs.items():
            for a in arts:
                if not fileio.exists(a.uri) and not (fileio.is_remote(a.uri)
                                                     and a.fingerprint == fingerprint_files([])):
                    why = f"{a.type_name} #{a.id} at {a.uri} is gone"
                elif a.fingerprint and fingerprint_path(fileio.local_copy(a.uri, a.fingerprint)) != a.fingerprint:
                    why = f"{a.type_name} #{a.id} at {a.uri} changed since the run (fingerprint)"
                pinned.setdefault(key, []).append({"type": a.type_name, "uri": a.uri, "fingerprint": a.fingerprint,
                                                   "properties": a.properties, "id": a.id})
        if why:
            res["not_reproduced"][node] = why
        else:
            nodes[node]["pinned"] = pinned
            res["pinned"][node] = pinned
    return res


def redirect_pushes(ir: dict, out: str) -> dict:
    """A reproduction publishes nothing: each node with a ``push_destination`` (the Pusher)
    pushes under ``out``/pushed/NODE instead of where the run pushed (a serving directory a
    model server may be watching). Returns ``{node: {"recorded": ..., "reproduced": ...}}``."""
    pushes = {}
    for node in ir["nodes"]:
        params = node.get("parameters") or {}
        if isinstance(params.get("push_destination"), str):
            new = os.path.join(out, "pushed", node["id"])
            pushes[node["id"]] = {"recorded": params["push_destination"], "reproduced": new}
            params["push_destination"] = new
    return pushes


def reproduce(store: MetadataStore, run: str, out_dir: str | None = None, allow_dirty: bool = False,
              verbose: bool = True, env: bool = False) -> dict:
    ctx = records.run_context(store, run)
    props = store.props(ctx)
    run_id = props.get("run_id")
    where = f"run {run_id} (metadata {store.where})"
    if not props.get("ir"):
        raise ReproduceError(f"{where} has no recorded IR (it ran before tfpipe recorded one); "
                             f"re-run its pipeline file instead")
    commit = props.get("git_commit")
    if not commit:
        raise ReproduceError(f"{where} recorded no git commit: its pipeline was not in a git work tree, so "
                             f"the code version cannot be recovered; commit the pipeline and run it again")
    if props.get("git_dirty") and not allow_dirty:
        raise ReproduceError(f"{where} was made from commit {commit[:10]} with uncommitted changes (git_dirty), "
                             f"which were not recorded; pass --allow-dirty to re-run the commit without them")
    workdir = props.get("workdir") or ""
    top = _git(workdir, "rev-parse", "--show-toplevel", text=True) if os.path.isdir(workdir) else None
    if top is None or top.returncode != 0:
        raise ReproduceError(f"{where}: the code is not available: {workdir or '(no directory recorded)'} is no "
                             f"longer a git work tree holding commit {commit[:10]}")
    repo = top.stdout.strip()
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReproduceError(f"{where}: the code is not available: commit {commit} is not in the repository "
                             f"{repo} (fetch it, or the history was rewritten)")
    ir = json.loads(props["ir"])
    info = records.show_run(store, run)

    out = os.path.abspath(out_dir or tempfile.mkdtemp(prefix=f"tfpipe-reproduce-{run_id}-"))
    if os.path.exists(out) and os.listdir(out):
        raise ReproduceError(f"output directory {out} is not empty; reproduce needs a fresh directory")
    code = os.path.join(out, "code")

    def remap(p):
        return _remap(p, repo, code)

    os.makedirs(code, exist_ok=True)
    err = export_commit(repo, commit, code)
    if err:
        shutil.rmtree(out, ignore_errors=True)
        raise ReproduceError(f"could not export commit {commit[:10]} of {repo}: {err}")
    # data under the repository is read from the exported commit; other data where it was
    data = check_data(info, remap)
    bad = [d for d in data if not d["ok"]]
    if bad:
        shutil.rmtree(out, ignore_errors=True)
        detail = "; ".join(
            f"node {d['node']}: {d['key']} recorded {d['recorded'][:12]}, "
            + (f"files missing: {d['missing']}" if d["missing"] else f"now {d['current'][:12]} over {d['files']}")
            for d in bad)
        raise ReproduceError(f"{where}: the data no longer matches its recorded fingerprint: {detail}; "
                             f"restore the data the run read, or run the pipeline anew")

    new_ir = remap(ir)
    new_ir["pipeline"].pop("sweep", None)  # the re-run is a run of its own, not one of the sweep
    sources = check_sources(info, new_ir, remap)
    bad = [d for d in sources if not d["ok"]]
    if bad:
        shutil.rmtree(out, ignore_errors=True)
        raise ReproduceError(f"{where}: " + "; ".join(f"node {d['node']}: {d['why']}" for d in bad)
                             + "; run the pipeline anew instead")
    data = data + sources
    baseline = pin_resolved(store, run, new_ir)
    # the environment: re-created from the run's lock (--env), or what differs from this one
    environment = {"hash": props.get("environment_hash")}
    python = sys.executable
    try:
        lock, environment["lock"] = run_lock(store, props.get("environment_hash"))
        environment["differences"] = lock_differences(lock)
        if env:
            python, environment["built"] = build_environment(lock, props["environment_hash"], verbose=verbose)
    except EnvironmentError_ as e:
        if env:
            shutil.rmtree(out, ignore_errors=True)
            raise ReproduceError(f"{where}: --env: {e}") from None
        environment["error"] = str(e)
    new_ir["pipeline"]["root"] = os.path.join(out, "artifacts")
    new_ir["pipeline"]["metadata"] = os.path.join(out, "metadata.sqlite")
    pushes = redirect_pushes(new_ir, out)
    ir_path = os.path.join(out, "ir.json")
    with open(ir_path, "w") as f:
        json.dump(new_ir, f, indent=1)
    new_run = f"repro-{run_id}-{uuid.uuid4().hex[:4]}"
    env = dict(os.environ)
    env["TFPIPE_HOME"] = out
    if verbose:
        print(f"reproducing run {run_id} from commit {commit[:10]} in {out}", file=sys.stderr, flush=True)
    try:
        sink = sys.stderr.fileno() if verbose else subprocess.DEVNULL
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured): keep the output
        sink = subprocess.PIPE
    # the recorded commit's tree is the working directory, as the user's repository was
    proc = subprocess.run([python, "-m", "tfpipe.orchestrators.local", "--ir", ir_path, "--run-id", new_run,
                           *([] if verbose else ["-q"])], cwd=code, env=env, stdout=sink,
                          stderr=sink if verbose else subprocess.PIPE, text=True)
    if verbose and sink == subprocess.PIPE:
        sys.stderr.write((proc.stdout or "") + (proc.stderr or ""))
    new_store = MetadataStore(new_ir["pipeline"]["metadata"])
    try:
        new_ctx = records.run_context(new_store, new_run)
        new_store.update_context(new_ctx, {"reproduces": run_id, "reproduced_commit": commit})
        status = new_store.props(new_ctx).get("status") or ("COMPLETE" if proc.returncode == 0 else "FAILED")
    except records.NotFound:
        status = "FAILED"
    nodes = set((props.get("nodes") or "").split(",")) - {""} or None
    before = _artifacts(store, run, nodes)
    after = _artifacts(new_store, new_run, nodes) if status != "FAILED" or proc.returncode == 0 else {}
    rows = []
    pinned_ids = {d["uri"] for keys in baseline.get("pinned", {}).values() for descs in keys.values() for d in descs}
    for (node, key), a in before.items():
        b = after.get((node, key))
        row = {"node": node, "output": key, "type": a["type"], "original": a["fingerprint"],
               "reproduced": b and b["fingerprint"], "original_uri": a["uri"], "reproduced_uri": b and b["uri"]}
        if b is None:
            row.update(identical=False, how=None, detail="not made by the re-run")
        elif a["uri"] in pinned_ids and b["uri"] == a["uri"]:
            row.update(identical=True, how="the recorded baseline, reused read-only", detail="")
        else:
            row.update(compare_content(a["type"], a["uri"], b["uri"], a["fingerprint"], b["fingerprint"],
                                       a["properties"]))
        rows.append(row)
    return {"run_id": run_id, "reproduced_run_id": new_run, "status": status if proc.returncode == 0 else "FAILED",
            "commit": commit, "allowed_dirty": bool(props.get("git_dirty")), "out_dir": out, "code_dir": code,
            "metadata": new_ir["pipeline"]["metadata"], "data_checks": data, "artifacts": rows,
            "baseline": baseline, "environment": environment, "python": python, "pushes": pushes,
            "identical": sum(r["identical"] for r in rows), "total": len(rows),
            "error": (proc.stderr or "")[-2000:] if proc.returncode and proc.stderr else None}


def format_reproduction(res: dict) -> str:
    lines = [f"run {res['run_id']} reproduced as {res['reproduced_run_id']}: {res['status']} "
             f"(commit {res['commit'][:10]}{', uncommitted changes NOT reproduced' if res['allowed_dirty'] else ''})",
             f"  fresh directory: {res['out_dir']}"]
    for d in res["data_checks"]:
        lines.append(f"  data {d['node']}.{d['key']}: {d['recorded'][:12]} "
                     + (d["how"] if d.get("how") else "matches"))
    env = res.get("environment") or {}
    if env.get("built"):
        lines.append(f"  environment {env['hash'][:12]}: re-created, {env['built']}")
    elif env.get("error"):
        lines.append(f"  environment: {env['error']}")
    elif env.get("differences") is not None:
        diff = format_differences(env["differences"])
        lines.append(f"  environment {env['hash'][:12]}: ran in this environment, "
                     + ("identical to the recorded one" if not diff else
                        "which differs from the recorded one (tfpipe reproduce --env re-creates it):"))
        lines += [f"    {x}" for x in diff]
    for node, push in (res.get("pushes") or {}).items():
        lines.append(f"  {node} pushed into {push['reproduced']}, not where the run pushed ({push['recorded']})")
    b = res.get("baseline") or {}
    for node, arts in b.get("pinned", {}).items():
        names = ", ".join(f"{d['type']} #{d['id']} ({d['uri']})" for ds in arts.values() for d in ds)
        lines.append(f"  baseline: {node} picks what it picked in the run, reused read-only: {names}")
    for node, why in b.get("not_reproduced", {}).items():
        lines.append(f"  baseline comparison not reproduced: {node}'s pick of the run is not available ({why})")
    for node in b.get("nothing", []):
        lines.append(f"  baseline: {node} found nothing in the run, nor in the re-run")
    lines.append(f"artifacts: {res['identical']} of {res['total']} identical")
    for r in res["artifacts"]:
        mark = "identical" if r["identical"] else ("DIFFERENT" if r["reproduced"] else "MISSING")
        how = f" [{r['how']}{': ' + r['detail'] if r.get('detail') else ''}]" if r.get("how") else ""
        lines.append(f"  {mark:9}  {r['node']}.{r['output']} ({r['type']}) {(r['original'] or '-')[:12]}"
                     + ("" if r["original"] == r["reproduced"] else f" -> {(r['reproduced'] or '-')[:12]}") + how)
    if res.get("error"):
        lines.append("error output:\n" + res["error"])
    return "\n".join(lines)
