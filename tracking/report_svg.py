"""Inline SVG for the run report: the pipeline graph, histograms and line charts. Plain
strings, no JavaScript, no external fonts or images, so the page renders offline."""
from __future__ import annotations

import html
import math

__all__ = ["graph_svg", "bars_svg", "lines_svg", "PALETTE"]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
STATE_COLORS = {"COMPLETE": "#d7f0d2", "CACHED": "#dbe8fb", "FAILED": "#f9d0cc", "RUNNING": "#fff2c2",
                "NOT RUN": "#eeeeee"}
STATE_STROKE = {"COMPLETE": "#2e7d32", "CACHED": "#1f5fbf", "FAILED": "#c62828", "RUNNING": "#b28704",
                "NOT RUN": "#9e9e9e"}

e = html.escape


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def graph_svg(nodes: list[dict], edges: list[tuple[str, str]]) -> str:
    """``nodes``: [{"id", "component", "state", "duration_s", "cached"}] in topological
    order; ``edges``: (upstream id, downstream id). Layered left to right."""
    layer: dict[str, int] = {}
    ups: dict[str, list[str]] = {n["id"]: [] for n in nodes}
    for a, b in edges:
        if a in ups and b in ups:
            ups[b].append(a)
    for n in nodes:
        layer[n["id"]] = 1 + max((layer[u] for u in ups[n["id"]] if u in layer), default=-1)
    cols: dict[int, list[str]] = {}
    for n in nodes:
        cols.setdefault(layer[n["id"]], []).append(n["id"])
    bw, bh, gx, gy, pad = 152, 58, 34, 22, 12
    pos = {}
    for c, ids in cols.items():
        for r, nid in enumerate(ids):
            pos[nid] = (pad + c * (bw + gx), pad + r * (bh + gy))
    width = pad * 2 + (max(cols, default=0) + 1) * (bw + gx) - gx
    height = pad * 2 + max((len(v) for v in cols.values()), default=1) * (bh + gy) - gy
    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="pipeline graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>']
    for a, b in edges:
        if a not in pos or b not in pos:
            continue
        x1, y1 = pos[a][0] + bw, pos[a][1] + bh / 2
        x2, y2 = pos[b][0], pos[b][1] + bh / 2
        mx = (x1 + x2) / 2
        out.append(f'<path d="M {x1} {y1} C {mx} {y1}, {mx} {y2}, {x2 - 2} {y2}" fill="none" stroke="#888" '
                   f'stroke-width="1.4" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = pos[n["id"]]
        st = n["state"]
        dur = "" if n.get("duration_s") is None else f'{n["duration_s"]:.2f}s'
        badge = " · cache hit" if n.get("cached") else ""
        out.append(f'<g class="node" data-node="{e(n["id"])}" data-state="{e(st)}">'
                   f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="7" fill="{STATE_COLORS.get(st, "#eee")}" '
                   f'stroke="{STATE_STROKE.get(st, "#999")}" stroke-width="1.6"/>'
                   f'<text x="{x + 9}" y="{y + 19}" font-size="13" font-weight="bold">{e(n["id"][:19])}</text>'
                   f'<text x="{x + 9}" y="{y + 35}" font-size="11" fill="#444">{e(n["component"][:22])}</text>'
                   f'<text x="{x + 9}" y="{y + 50}" font-size="11" fill="{STATE_STROKE.get(st, "#444")}">'
                   f'{e(st)} {e(dur)}{e(badge)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def bars_svg(bars: list[tuple[str, float]], title: str = "", width: int = 300, height: int = 120,
             color: str = "#4c78a8", labels_below: bool = False) -> str:
    """A bar chart: histogram buckets (label, count) or top values."""
    if not bars:
        return '<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    top, bottom, left = 16, 30 if labels_below else 18, 4
    h = height - top - bottom
    mx = max(v for _, v in bars) or 1.0
    bw = (width - left * 2) / len(bars)
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">']
    if title:
        out.append(f'<text x="{left}" y="11" font-size="10" fill="#555">{e(title)}</text>')
    for i, (lab, v) in enumerate(bars):
        bh = h * (v / mx)
        x = left + i * bw
        out.append(f'<rect x="{x + 0.5:.1f}" y="{top + h - bh:.1f}" width="{max(bw - 1, 0.8):.1f}" '
                   f'height="{bh:.1f}" fill="{color}"><title>{e(lab)}: {_fmt(v)}</title></rect>')
        if labels_below and len(bars) <= 12:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + h + 12}" font-size="9" text-anchor="middle" '
                       f'fill="#333">{e(lab[:10])}</text>')
    out.append(f'<line x1="{left}" y1="{top + h}" x2="{width - left}" y2="{top + h}" stroke="#999"/>')
    if not labels_below:
        out.append(f'<text x="{left}" y="{height - 4}" font-size="9" fill="#666">{e(bars[0][0])}</text>')
        out.append(f'<text x="{width - left}" y="{height - 4}" font-size="9" fill="#666" '
                   f'text-anchor="end">{e(bars[-1][0])}</text>')
    out.append("</svg>")
    return "".join(out)


def lines_svg(series: dict[str, list[float]], title: str = "", width: int = 420, height: int = 220,
              xlabel: str = "epoch") -> str:
    """A line chart of one or more series over steps (0, 1, 2, ...)."""
    pts = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    if not pts:
        return ""
    lo, hi = min(pts), max(pts)
    if hi == lo:
        hi, lo = hi + 0.5, lo - 0.5
    n = max(len(s) for s in series.values())
    left, right, top, bottom = 52, 12, 36, 34
    w, h = width - left - right, height - top - bottom

    def xy(i, v):
        x = left + (w * i / (n - 1) if n > 1 else w / 2)
        return x, top + h - h * (v - lo) / (hi - lo)

    out = [f'<svg class="chart curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
           f'<text x="{left}" y="14" font-size="12" font-weight="bold">{e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end" fill="#555">'
                   f'{_fmt(v)}</text>')
    for i in range(n):
        if n <= 12 or i % max(1, n // 10) == 0 or i == n - 1:
            x, _ = xy(i, lo)
            out.append(f'<text x="{x:.1f}" y="{top + h + 12}" font-size="9" text-anchor="middle" '
                       f'fill="#555">{i + 1}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 4}" font-size="10" text-anchor="middle" '
               f'fill="#555">{e(xlabel)}</text>')
    for j, (name, vals) in enumerate(series.items()):
        c = PALETTE[j % len(PALETTE)]
        p = [xy(i, v) for i, v in enumerate(vals) if v is not None and math.isfinite(v)]
        if not p:
            continue
        out.append(f'<polyline class="series" data-series="{e(name)}" fill="none" stroke="{c}" stroke-width="2" '
                   f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in p)}"/>')
        for x, y in p if len(p) <= 40 else ():
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{c}"/>')
        out.append(f'<rect x="{left + 150 * j}" y="20" width="10" height="10" fill="{c}"/>'
                   f'<text x="{left + 14 + 150 * j}" y="29" font-size="10">{e(name[:24])}</text>')
    out.append("</svg>")
    return "".join(out)
