"""``tfpipe runs compare ... -o compare.html``: many runs (``--last N``, a sweep) on one
self-contained page: a table of the runs (the parameters that vary, headline metrics,
blessing), a chart of each metric against each varied parameter, the training curves
of every run overlaid, and what else differs (user code files, node parameters, data).
Inline CSS and SVG, like the run report: nothing is loaded from the network.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import string

from tfpipe.metadata import MetadataStore

from .codefiles import display_paths
from .report import TEMPLATE, html_table, write_page
from .report_svg import lines_svg, scatter_svg
from .results import OVERALL
from .runs import compare_runs, ordered_metrics, run_details

__all__ = ["render_compare", "write_compare", "varied_parameters"]

e = html.escape


def _v(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def varied_parameters(cmp: dict) -> dict[str, list]:
    """``{name: [value per run]}`` of the parameters that differ: those given on the
    command line (``-P``), else the node parameters that differ."""
    out = {r["parameter"]: r["values"] for r in cmp.get("given", []) if r["differs"]}
    if not out:
        out = {f"{r['node']}.{r['parameter']}": r["values"] for r in cmp["parameters"] if r["differs"]}
    return out


def render_compare(store: MetadataStore, runs: list[str], title: str | None = None, max_metrics: int = 4) -> str:
    cmp = compare_runs(store, runs)
    infos = [run_details(store, r) for r in runs]
    ids = [r["run_id"] for r in cmp["runs"]]
    varied = varied_parameters(cmp)
    labels = [" ".join(f"{k}={_v(v[i])}" for k, v in varied.items()) or ids[i] for i in range(len(ids))]
    overall = [ordered_metrics((i["evaluation"]["slices"].get(OVERALL)
                                or next(iter(i["evaluation"]["slices"].values()), {}))) for i in infos]
    metric_names = list(ordered_metrics({m: 0 for o in overall for m in o}))
    sections = []

    # the runs
    rows = []
    for i, r in enumerate(cmp["runs"]):
        bl = {True: '<span class="ok">yes</span>', False: '<span class="bad">no</span>', None: "-"}[r.get("blessed")]
        rows.append([f'<td class="feature">{e(r["run_id"])}</td>', *[e(_v(v[i])) for v in varied.values()],
                     *[f'<td class="num">{e(_v(overall[i].get(m)))}</td>' for m in metric_names], bl,
                     e(r["status"] or "?"), f'<td class="num">{(r["duration_s"] or 0):.1f}s</td>'])
    head = ["run", *[f"{e(k)} <span class=\"muted\">(varied)</span>" for k in varied], *map(e, metric_names),
            "blessed", "status", "duration"]
    sections.append(("runs", "Runs", f'<section id="runs"><h2>Runs ({len(ids)})</h2>'
                     + html_table(head, rows, "runs") + "</section>"))

    # each metric against each varied parameter
    charts = []
    numeric_metrics = metric_names[:max_metrics]
    for p, values in varied.items():
        others = [k for k in varied if k != p]
        for m in numeric_metrics:
            series: dict[str, list] = {}
            for i in range(len(ids)):
                key = " ".join(f"{k}={_v(varied[k][i])}" for k in others) or m
                x = values[i]
                series.setdefault(key, []).append((x if isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   else _v(x), overall[i].get(m)))
            svg = scatter_svg(series, title=f"{m} against {p}", xlabel=p)
            if svg:
                charts.append(svg)
    if charts:
        sections.append(("params", "Metrics against parameters",
                         '<section id="params"><h2>Metrics against the varied parameters</h2>'
                         '<p class="muted small">Overall slice; one line per combination of the other parameters.</p>'
                         f'<div class="charts">{"".join(charts)}</div></section>'))

    # training curves overlaid
    curves = []
    hist_names: list[str] = []
    for i in infos:
        for k in i["history"]:
            if k not in hist_names:
                hist_names.append(k)
    for k in hist_names:
        series = {labels[j]: infos[j]["history"].get(k, []) for j in range(len(ids)) if infos[j]["history"].get(k)}
        svg = lines_svg(series, title=k, width=460, height=240)
        if svg:
            curves.append(svg)
    if curves:
        sections.append(("curves", "Training curves", '<section id="curves"><h2>Training curves, overlaid</h2>'
                         f'<div class="charts">{"".join(curves)}</div></section>'))

    # what else differs
    diff_rows = []
    shown = display_paths(sorted({r["file"] for r in cmp["code_files"]}))
    for r in cmp["code_files"]:
        if r["differs"]:
            diff_rows.append(["user code", e(f"{r['node']}: {shown[r['file']]}"),
                              *[f"<code>{e((v or '-')[:12])}</code>" for v in r["values"]]])
    for r in cmp["parameters"]:
        if r["differs"]:
            diff_rows.append(["parameter", e(f"{r['node']}.{r['parameter']}"), *[e(_v(v)[:80]) for v in r["values"]]])
    for r in cmp["data"]:
        # a node's data_fingerprint hashes its inputs: it differs whenever an upstream output
        # did, which the rows of the cause (data read, parameters, code) already show
        if r["differs"] and r["parameter"] != "data_fingerprint":
            diff_rows.append(["data", e(f"{r['node']}.{r['parameter']}"), *[e(_v(v)[:16]) for v in r["values"]]])
    for r in cmp["code"]:
        if r["differs"]:
            diff_rows.append(["code version", e(f"{r['node']}.{r['field']}"), *[e(_v(v)[:12]) for v in r["values"]]])
    body = (html_table(["what", "where", *map(e, ids)], diff_rows, "differences") if diff_rows
            else '<p class="muted">Nothing else differs.</p>')
    sections.append(("differences", "Differences", f'<section id="differences"><h2>What differs</h2>{body}</section>'))

    sweeps = sorted({r.get("sweep") for r in cmp["runs"] if r.get("sweep")})
    title = title or (f"sweep {sweeps[0]}" if len(sweeps) == 1 else f"{len(ids)} runs of {cmp['runs'][0]['pipeline']}")
    meta = (f"{len(ids)} runs · varied: {e(', '.join(varied) or 'nothing')} · "
            f"{sum(1 for r in cmp['runs'] if r.get('blessed'))} blessed")
    with open(TEMPLATE) as f:
        tpl = string.Template(f.read())
    return tpl.substitute(title=e(f"compare · {title}"), meta=meta,
                          nav="".join(f'<a href="#{k}">{t}</a>' for k, t, _ in sections),
                          body="\n".join(s for _, _, s in sections),
                          generated_at=_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), store=e(store.where))


def write_compare(store: MetadataStore, runs: list[str], output: str) -> str:
    return write_page(render_compare(store, runs), output)
