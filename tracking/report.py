"""``tfpipe report RUN``: one self-contained HTML page about a run.

The pipeline graph (status, duration and cache hit per node), feature statistics with
histograms per split (from TFDV's FeatureStats.pb), anomalies, the schema, training
curves (Trainer history), Tuner trials, evaluation metrics per slice with thresholds and
the blessing verdict, and the lineage of the pushed model. Everything is inline (CSS and
SVG); the page loads nothing from the network.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import string

from tfpipe import fileio
from tfpipe.artifacts import ExampleStatistics
from tfpipe.metadata import MetadataStore
from tfpipe.state import ArtifactState

from . import records
from .report_svg import STATE_COLORS, STATE_STROKE, bars_svg, graph_svg, lines_svg
from .runs import run_details

__all__ = ["write_report", "render_report", "write_page", "html_table", "TEMPLATE"]

TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "report.html")
e = html.escape


def _ts(t) -> str:
    return records.format_time(t)


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return e(str(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    return e(str(v))


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table of ``rows`` under ``header``; cells are HTML already (callers escape)."""
    h = "".join(f"<th>{c}</th>" for c in header)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _outputs(info: dict, type_name: str) -> list[dict]:
    """The LIVE outputs of a type, each at a local path (a copy of one on an object store)."""
    found = [{**o, "node": ex["node_id"], "key": key} for ex in info["executions"]
             for key, outs in ex["outputs"].items() for o in outs
             if o["type"] == type_name and o["state"] == ArtifactState.LIVE]
    for o in found:
        if fileio.is_remote(o["uri"]) and fileio.exists(o["uri"]):
            o["uri"] = fileio.local_copy(o["uri"], o.get("fingerprint") or "")
    return [o for o in found if os.path.isdir(o["uri"])]


# -- sections ---------------------------------------------------------------------------------
def _graph(store: MetadataStore, info: dict, ir: dict | None) -> str:
    execs = {}
    for ex in info["executions"]:
        execs[ex["node_id"]] = ex
    if ir:
        order = [n["id"] for n in ir["nodes"]]
        comps = {n["id"]: n["component"] for n in ir["nodes"]}
        edges = [(u, n["id"]) for n in ir["nodes"] for u in n["upstream"]]
    else:  # from the recorded events: input artifact -> the node that produced it in this run
        order = list(execs)
        comps = {k: v["component"] for k, v in execs.items()}
        producer = {o["id"]: ex["node_id"] for ex in info["executions"] for outs in ex["outputs"].values()
                    for o in outs}
        edges = sorted({(producer[i], ex["node_id"]) for ex in info["executions"] for ids in ex["inputs"].values()
                        for i in ids if i in producer})
    nodes = []
    for nid in order:
        ex = execs.get(nid)
        nodes.append({"id": nid, "component": comps.get(nid, "?"),
                      "state": ex["state"] if ex else "NOT RUN", "duration_s": ex["duration_s"] if ex else None,
                      "cached": bool(ex and ex["cached_from"])})
    legend = "".join(f'<span><i class="swatch" style="background:{STATE_COLORS[s]};border-color:'
                     f'{STATE_STROKE[s]}"></i>{s}</span>' for s in ("COMPLETE", "CACHED", "FAILED", "NOT RUN"))
    rows = []
    for n in nodes:
        ex = execs.get(n["id"]) or {}
        outs = ", ".join(f"{e(k)} #{v[0]['id']}" for k, v in (ex.get("outputs") or {}).items() if v)
        dur = "-" if n["duration_s"] is None else f"{n['duration_s']:.2f}s"
        rows.append([f'<td class="feature">{e(n["id"])}</td>', e(n["component"]), e(n["state"]),
                     f'<td class="num">{dur}</td>',
                     "yes (from #%s)" % ex["cached_from"] if ex.get("cached_from") else "no", outs,
                     f'<span class="error">{e(ex["error"])}</span>' if ex.get("error") else ""])
    return (f'<section id="graph"><h2>Pipeline graph</h2><div class="legend">{legend}</div>'
            f'<div class="graph-wrap">{graph_svg(nodes, edges)}</div>'
            + html_table(["node", "component", "state", "duration", "cache hit", "outputs", "error"], rows,
                     "nodes") + "</section>")


def _load_stats(path: str):
    from tensorflow_metadata.proto.v0 import statistics_pb2
    s = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as f:
        s.ParseFromString(f.read())
    return s


def _feature_cell(f) -> tuple[str, str]:
    """(summary html, chart svg) of one feature's statistics in one split."""
    kind = f.WhichOneof("stats")
    if kind == "num_stats":
        ns = f.num_stats
        c = ns.common_stats
        summary = (f"n={c.num_non_missing:,} missing={c.num_missing:,}<br>mean={ns.mean:.4g} sd={ns.std_dev:.4g}"
                   f"<br>min={ns.min:.4g} median={ns.median:.4g} max={ns.max:.4g}"
                   + (f"<br>zeros={ns.num_zeros}" if ns.num_zeros else ""))
        hist = next((h for h in ns.histograms if h.type == 0), ns.histograms[0] if ns.histograms else None)
        bars = [(f"{b.low_value:.4g}–{b.high_value:.4g}", b.sample_count) for b in hist.buckets] if hist else []
        return summary, bars_svg(bars, "histogram")
    if kind == "string_stats":
        ss = f.string_stats
        c = ss.common_stats
        summary = f"n={c.num_non_missing:,} missing={c.num_missing:,}<br>unique={ss.unique}"
        tops = [(t.value, t.frequency) for t in ss.top_values][:10]
        if not tops and ss.rank_histogram.buckets:
            tops = [(b.label, b.sample_count) for b in ss.rank_histogram.buckets][:10]
        return summary, bars_svg(tops, "top values", color="#f58518", labels_below=True, height=134)
    return e(kind or "no statistics"), ""


OPEN_FEATURES = 12  # a statistics table of more features starts folded (one line that says what it holds)


def _statistics(info: dict) -> str:
    arts = _outputs(info, "ExampleStatistics")
    if not arts:
        return ""
    parts = ['<section id="statistics"><h2>Feature statistics</h2>']
    for a in arts[:2]:
        art = ExampleStatistics(uri=a["uri"])
        splits = sorted(art.splits_with_stats(), key=lambda s: (s != "train", s))
        per_split = {}
        for s in splits:
            st = _load_stats(art.stats_path(s))
            if st.datasets:
                per_split[s] = st.datasets[0]
        parts.append(f'<h3>{e(a["node"])}.{e(a["key"])}</h3><p class="muted small">ExampleStatistics #{a["id"]} · '
                     + " · ".join(f"{s}: {d.num_examples:,} examples" for s, d in per_split.items()) + "</p>")
        names: list[str] = []
        for d in per_split.values():
            for f in d.features:
                n = ".".join(f.path.step) or f.name
                if n not in names:
                    names.append(n)
        rows = []
        for n in names:
            cells = [f'<td class="feature">{e(n)}</td>']
            ftype = ""
            for _s, d in per_split.items():
                f = next((x for x in d.features if (".".join(x.path.step) or x.name) == n), None)
                if f is None:
                    cells.append('<span class="muted">absent</span>')
                    continue
                from tensorflow_metadata.proto.v0 import statistics_pb2
                ftype = statistics_pb2.FeatureNameStatistics.Type.Name(f.type)
                summary, chart = _feature_cell(f)
                cells.append(f'<div class="small">{summary}</div>{chart}')
            cells.insert(1, e(ftype))
            rows.append(cells)
        table = html_table(["feature", "type"] + [f"split {e(s)}" for s in per_split], rows, "stats")
        parts.append(f'<details{" open" if len(rows) <= OPEN_FEATURES else ""}><summary>{len(rows)} feature(s): '
                     f'{e(", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))}</summary>{table}</details>')
    parts.append("</section>")
    return "".join(parts)


def _anomalies(info: dict) -> str:
    arts = _outputs(info, "ExampleAnomalies")
    if not arts:
        return ""
    rows, total = [], 0
    for a in arts:
        path = os.path.join(a["uri"], "anomalies.json")
        data = json.load(open(path)) if os.path.isfile(path) else {}
        for split, items in data.items():
            for it in items:
                total += 1
                rows.append([e(split), f'<td class="feature">{e(it.get("feature", ""))}</td>',
                             e(", ".join(it.get("kinds", []))), e(it.get("short", "")), e(it.get("description", ""))])
    body = (html_table(["split", "feature", "kind", "anomaly", "description (expected vs found)"], rows, "anomalies")
            if rows else '<p class="ok">No anomalies: every split matches the schema.</p>')
    return f'<section id="anomalies"><h2>Anomalies ({total})</h2>{body}</section>'


def _schema(info: dict) -> str:
    arts = _outputs(info, "Schema")
    path = next((os.path.join(a["uri"], "schema.pbtxt") for a in arts
                 if os.path.isfile(os.path.join(a["uri"], "schema.pbtxt"))), None)
    if not path:
        return ""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    sch = text_format.Parse(open(path).read(), schema_pb2.Schema())
    domains = {d.name: list(d.value) for d in sch.string_domain}
    rows = []
    for f in sch.feature:
        dom = ""
        kind = f.WhichOneof("domain_info")
        if kind == "domain":
            dom = ", ".join(domains.get(f.domain, [])[:12])
        elif kind:
            dom = text_format.MessageToString(getattr(f, kind), as_one_line=True)
        pres = f"min_fraction={f.presence.min_fraction:g}" if f.HasField("presence") else ""
        shape = ("shape " + "x".join(str(d.size) for d in f.shape.dim)) if f.HasField("shape") else \
            (f"valency {f.value_count.min}..{f.value_count.max}" if f.HasField("value_count") else "")
        rows.append([f'<td class="feature">{e(f.name)}</td>', e(schema_pb2.FeatureType.Name(f.type)), e(pres),
                     e(shape), e(dom)])
    return (f'<section id="schema"><h2>Schema ({len(sch.feature)} features)</h2>'
            + html_table(["feature", "type", "presence", "shape / valency", "domain"], rows, "schema") + "</section>")


def _training(info: dict) -> str:
    hist, trials = info["history"], info["trials"]
    if not hist and not trials:
        return ""
    parts = ['<section id="training"><h2>Training</h2>']
    if hist:
        groups: dict[str, dict[str, list[float]]] = {}
        for k, v in hist.items():
            base = k[4:] if k.startswith("val_") else k
            groups.setdefault(base, {})[k] = v
        parts.append('<div class="charts">' + "".join(lines_svg(g, title=b) for b, g in groups.items()) + "</div>")
        n = max(len(v) for v in hist.values())
        rows = [[str(i + 1)] + [f'<td class="num">{_num(v[i]) if i < len(v) else ""}</td>' for v in hist.values()]
                for i in range(n)]
        parts.append(html_table(["epoch"] + [e(k) for k in hist], rows, "history"))
    if trials:
        scores = [t["score"] for t in trials]
        if any(s is not None for s in scores):
            parts.append(lines_svg({"score": [s if s is not None else float("nan") for s in scores]},
                                   title="tuner trials", xlabel="trial"))
        rows = [[e(str(t["trial_id"])), e(str(t.get("status", ""))), f'<td class="num">{_num(t["score"])}</td>',
                 e(json.dumps(t["hyperparameters"], sort_keys=True))] for t in trials]
        parts.append("<h3>Tuner trials</h3>" + html_table(["trial", "status", "score", "hyperparameters"], rows,
                                                      "trials"))
    parts.append("</section>")
    return "".join(parts)


def _evaluation(info: dict) -> str:
    ev, bl = info["evaluation"], info["blessing"]
    if not ev["slices"] and bl is None:
        return ""
    parts = ['<section id="evaluation"><h2>Evaluation</h2>']
    if bl is not None:
        ok = bool(bl.get("blessed"))
        reasons = bl.get("reasons") or []
        parts.append(f'<div class="verdict {"ok" if ok else "bad"}">Blessing verdict: '
                     f'{"BLESSED" if ok else "NOT BLESSED"}</div>'
                     + ("<ul>" + "".join(f"<li>{e(str(r))}</li>" for r in reasons) + "</ul>" if reasons else ""))
    if ev["slices"]:
        metrics = []
        for m in ev["slices"].values():
            for k in m:
                if k not in metrics:
                    metrics.append(k)
        th = ev["thresholds"]
        head = ["slice"] + [e(m) + (f'<br><span class="muted small">{e(_thr_text(th[m]))}</span>'
                                    if m in th else "") for m in metrics]
        base = ev.get("baseline") or {}

        def cell(s, vals, m):
            if m not in vals:
                return '<td class="num"></td>'
            b = base.get(s, {}).get(m)
            extra = f'<br><span class="muted small">baseline {_num(b)}</span>' if b is not None else ""
            return f'<td class="num">{_num(vals[m])}{extra}</td>'

        rows = [[f'<td class="feature">{e(s)}</td>'] + [cell(s, vals, m) for m in metrics]
                for s, vals in ev["slices"].items()]
        parts.append(html_table(head, rows, "metrics"))
        if ev.get("notes"):
            parts.append("".join(f'<p class="muted small">note: {e(str(n))}</p>' for n in ev["notes"]))
        if th:
            rows = [[e(m), e(_thr_text(t))] for m, t in th.items()]
            parts.append("<h3>Thresholds</h3>" + html_table(["metric", "threshold"], rows, "thresholds"))
    parts.append("</section>")
    return "".join(parts)


def _thr_text(t: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in t.items()) or json.dumps(t, sort_keys=True)


def _lineage(store: MetadataStore, info: dict) -> str:
    pushed = info.get("pushed")
    if not pushed:
        return ""
    from .lineage_summary import summarize_lineage
    lin = summarize_lineage(records.lineage(store, pushed["id"]), store)
    head = (f'<p>PushedModel #{pushed["id"]}: pushed={e(str(pushed.get("pushed")))} '
            f'version <code>{e(str(pushed.get("pushed_version")))}</code> to '
            f'<code>{e(str(pushed.get("destination")))}</code>'
            + (f' ({e(pushed["reason"])})' if pushed.get("reason") else "") + "</p>")
    rows = []
    for d in lin["data"]:
        rows.append(["data", f"Examples #{d['id']}",
                     e(f"span {d['span']}, input fingerprint "
                       f"{(d['input_fingerprint'] or '-')[:16]}, rows {d['row_counts']}")])
    for k in ("schema", "transform", "hyperparameters", "model"):
        for a in lin[k]:
            rows.append([e(f"{k} ({a['role']})" if a.get("role") else k), f"#{a['id']}",
                         f"<code>{e(a['uri'])}</code> fingerprint {(a['fingerprint'] or '-')[:16]}"])
    for ev in lin["evaluation"]:
        rows.append(["evaluation", f"#{ev['id']}", e(f"{len(ev['slices'])} slices")])
    for b in lin["blessing"]:
        rows.append(["blessing", f"#{b['id']}", e(f"blessed={b['blessed']}")])
    for b in lin["infra_blessing"]:
        rows.append(["infra blessing", f"#{b['id']}", e(f"blessed={b['blessed']} {b['reasons'] or ''}")])
    rows.append(["code", "", e(", ".join(lin["code_commits"]))])
    for x in lin["executions"]:
        params = {k: v for k, v in (x["parameters"] or {}).items() if k not in ("input_files", "previous_span_files")}
        rows.append([f"{e(x['node_id'])}", f"execution #{x['execution_id']}",
                     e(f"run {x['run_id']} code {x['code_version']} " + json.dumps(params, sort_keys=True,
                                                                                   default=str)[:400])])
    return (f'<section id="lineage"><h2>Lineage of the pushed model</h2>{head}'
            + html_table(["what", "artifact / execution", "details"], rows, "lineage") + "</section>")


def render_report(store: MetadataStore, run: str) -> str:
    info = run_details(store, run)
    ctx = records.run_context(store, run)
    props = store.props(ctx)
    ir = json.loads(props["ir"]) if props.get("ir") else None
    sections = [("graph", "Graph", _graph(store, info, ir)), ("statistics", "Statistics", _statistics(info)),
                ("anomalies", "Anomalies", _anomalies(info)), ("schema", "Schema", _schema(info)),
                ("training", "Training", _training(info)), ("evaluation", "Evaluation", _evaluation(info)),
                ("lineage", "Lineage", _lineage(store, info))]
    sections = [s for s in sections if s[2]]
    status = info["status"] or "?"
    meta = (f'<span class="status status-{e(status)}">{e(status)}</span> · started {_ts(info["started_at"])} · '
            f'{(info["duration_s"] or 0):.1f}s · commit <code>{e((info["git_commit"] or "-")[:12])}</code>'
            + (" (uncommitted changes)" if info["git_dirty"] else "")
            + (f' · <span class="bad">{e(info["error"])}</span>' if info.get("error") else ""))
    with open(TEMPLATE) as f:
        tpl = string.Template(f.read())
    return tpl.substitute(
        title=e(f"{info['pipeline']} · run {info['run_id']}"), meta=meta,
        nav="".join(f'<a href="#{k}">{t}</a>' for k, t, _ in sections),
        body="\n".join(s for _, _, s in sections),
        generated_at=_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), store=e(store.where))


def write_report(store: MetadataStore, run: str, output: str) -> str:
    return write_page(render_report(store, run), output)


def write_page(text: str, output: str) -> str:
    """Write an HTML page whole (a temporary file renamed over ``output``, or one upload
    to an object store: ``-o s3://bucket/reports/run.html``)."""
    return fileio.write_text(output, text)
