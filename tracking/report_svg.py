"""Inline SVG for the run report: the pipeline graph, histograms and line charts. Plain
strings, no JavaScript, no external fonts or images, so the page renders offline."""
from __future__ import annotations

import html
import math

__all__ = ["graph_svg", "graph_layout", "bars_svg", "lines_svg", "scatter_svg", "legend_svg", "text_width",
           "PALETTE"]

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


# -- text widths ------------------------------------------------------------------------------
_NARROW, _WIDE = set("il.,:;'|!()[]{}1Ijft "), set("mwMW@%")


def text_width(s: str, size: float, bold: bool = False) -> float:
    """A generous estimate of the rendered width of ``s`` in a sans-serif font of ``size``
    px (boxes and legends are sized from it; the Chromium test measures the real one)."""
    w = 0.0
    for c in s:
        w += 0.34 if c in _NARROW else 0.95 if c in _WIDE else 0.72 if c.isupper() else 0.6
    return w * size * (1.08 if bold else 1.0) + 2


def legend_svg(names: list[str], colors: list[str], x0: float, y0: float, width: float,
               size: int = 10) -> tuple[str, float]:
    """Legend entries (swatch + full name) wrapped into rows within ``width``; returns the
    SVG and the height used."""
    out, x, y, row_h = [], x0, y0, size + 6
    for name, c in zip(names, colors):
        w = 14 + text_width(name, size) + 14
        if x > x0 and x + w > x0 + width:
            x, y = x0, y + row_h
        out.append(f'<g class="legend-item"><title>{e(name)}</title><rect x="{x:.1f}" y="{y:.1f}" width="10" '
                   f'height="10" fill="{c}"/><text x="{x + 14:.1f}" y="{y + 9:.1f}" font-size="{size}">{e(name)}'
                   f'</text></g>')
        x += w
    return "".join(out), (y - y0 + row_h) if names else 0


# -- the pipeline graph ---------------------------------------------------------------------------
def _layers(nodes: list[dict], edges: list[tuple[str, str]]) -> tuple[dict, list[tuple[str, str]]]:
    ups: dict[str, list[str]] = {n["id"]: [] for n in nodes}
    good = [(a, b) for a, b in edges if a in ups and b in ups]
    for a, b in good:
        ups[b].append(a)
    layer: dict[str, int] = {}
    for n in nodes:
        layer[n["id"]] = 1 + max((layer[u] for u in ups[n["id"]] if u in layer), default=-1)
    return layer, good


def graph_layout(nodes: list[dict], edges: list[tuple[str, str]]) -> dict:
    """A layered left-to-right layout in which no edge passes behind a box: an edge
    spanning several layers gets a waypoint in each layer it crosses, which takes a slot
    of its own in that layer's column (as in Sugiyama's method), so the edge runs through
    the column where no box is. Returns ``{"boxes": {id: (x, y, w, h)}, "edges": [(a, b,
    [(x, y), ...])], "width", "height"}``."""
    layer, good = _layers(nodes, edges)
    bh, gx, gy, dummy_h, pad = 58, 46, 18, 10, 12
    cols: dict[int, list] = {}
    for n in nodes:
        cols.setdefault(layer[n["id"]], []).append(("n", n["id"]))
    chains = []
    for a, b in good:
        span = list(range(layer[a] + 1, layer[b]))
        ds = []
        for c in span:
            d = ("d", f"{a}->{b}@{c}")
            cols[c].append(d)
            ds.append(d)
        chains.append((a, b, ds))
    # order within columns: a few barycenter sweeps over the predecessors' positions
    preds: dict = {}
    for a, b, ds in chains:
        seq = [("n", a), *ds, ("n", b)]
        for u, v in zip(seq, seq[1:]):
            preds.setdefault(v, []).append(u)
    for _ in range(4):
        index = {v: i for c in cols.values() for i, v in enumerate(c)}
        for c in sorted(cols)[1:]:
            cols[c].sort(key=lambda v: (sum(index[p] for p in preds.get(v, [])) / len(preds[v])
                                        if preds.get(v) else index[v], index[v]))
            index.update({v: i for i, v in enumerate(cols[c])})
    by_id = {n["id"]: n for n in nodes}
    widths = {}
    for c, vs in cols.items():
        widths[c] = max([120.0] + [max(text_width(v[1], 13, bold=True), text_width(by_id[v[1]]["component"], 11),
                                       text_width(_status(by_id[v[1]]), 11)) + 20
                                   for v in vs if v[0] == "n"])
    xs, x = {}, pad
    for c in sorted(cols):
        xs[c] = x
        x += widths[c] + gx
    width = x - gx + pad
    pos, height = {}, 0.0
    for c, vs in cols.items():
        y = pad
        for v in vs:
            h = bh if v[0] == "n" else dummy_h
            pos[v] = (xs[c], y, widths[c], h)
            y += h + gy
        height = max(height, y - gy + pad)
    boxes = {v[1]: pos[v] for v in pos if v[0] == "n"}
    routed = []
    for a, b, ds in chains:
        ax, ay, aw, ah = boxes[a]
        bx, by, bw, bhh = boxes[b]
        pts = [(ax + aw, ay + ah / 2)]
        for d in ds:
            dx, dy, dw, dh = pos[d]
            pts += [(dx, dy + dh / 2), (dx + dw, dy + dh / 2)]
        pts.append((bx, by + bhh / 2))
        routed.append((a, b, pts))
    return {"boxes": boxes, "edges": routed, "width": width, "height": height}


def _status(n: dict) -> str:
    dur = "" if n.get("duration_s") is None else f' {n["duration_s"]:.2f}s'
    return f'{n["state"]}{dur}{" · cache hit" if n.get("cached") else ""}'


def _path(pts: list[tuple[float, float]]) -> str:
    """Horizontal runs through columns, smooth curves across the gaps between them."""
    d = [f"M {pts[0][0]:.1f} {pts[0][1]:.1f}"]
    for i in range(1, len(pts)):
        (x1, y1), (x2, y2) = pts[i - 1], pts[i]
        if i % 2 == 1:  # across a gap
            mx = (x1 + x2) / 2
            d.append(f"C {mx:.1f} {y1:.1f}, {mx:.1f} {y2:.1f}, {x2 - (2 if i == len(pts) - 1 else 0):.1f} {y2:.1f}")
        else:  # through a column, at the waypoint's height
            d.append(f"L {x2:.1f} {y2:.1f}")
    return " ".join(d)


def graph_svg(nodes: list[dict], edges: list[tuple[str, str]]) -> str:
    """``nodes``: [{"id", "component", "state", "duration_s", "cached"}] in topological
    order; ``edges``: (upstream id, downstream id). Layered left to right; see
    :func:`graph_layout`. Names are never cut: boxes are as wide as their text, and each
    node carries a ``<title>`` with its full name."""
    lay = graph_layout(nodes, edges)
    width, height = lay["width"], lay["height"]
    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="pipeline graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>']
    for a, b, pts in lay["edges"]:
        out.append(f'<path class="edge" data-from="{e(a)}" data-to="{e(b)}" d="{_path(pts)}" fill="none" '
                   f'stroke="#888" stroke-width="1.4" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y, bw, bh = lay["boxes"][n["id"]]
        st = n["state"]
        out.append(f'<g class="node" data-node="{e(n["id"])}" data-state="{e(st)}"><title>{e(n["id"])} '
                   f'({e(n["component"])}): {e(_status(n))}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh}" rx="7" '
                   f'fill="{STATE_COLORS.get(st, "#eee")}" stroke="{STATE_STROKE.get(st, "#999")}" stroke-width="1.6"/>'
                   f'<text class="name" x="{x + 9:.1f}" y="{y + 19:.1f}" font-size="13" font-weight="bold">'
                   f'{e(n["id"])}</text>'
                   f'<text x="{x + 9:.1f}" y="{y + 35:.1f}" font-size="11" fill="#444">{e(n["component"])}</text>'
                   f'<text x="{x + 9:.1f}" y="{y + 50:.1f}" font-size="11" fill="{STATE_STROKE.get(st, "#444")}">'
                   f'{e(_status(n))}</text></g>')
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
                       f'fill="#333">{e(lab if len(lab) <= 10 else lab[:9] + "…")}<title>{e(lab)}</title></text>')
    out.append(f'<line x1="{left}" y1="{top + h}" x2="{width - left}" y2="{top + h}" stroke="#999"/>')
    if not labels_below:
        out.append(f'<text x="{left}" y="{height - 4}" font-size="9" fill="#666">{e(bars[0][0])}</text>')
        out.append(f'<text x="{width - left}" y="{height - 4}" font-size="9" fill="#666" '
                   f'text-anchor="end">{e(bars[-1][0])}</text>')
    out.append("</svg>")
    return "".join(out)


def _plot_frame(kind: str, title: str, legend: str, width: int, height: float, left: float, top: float,
                w: float, h: float, lo: float, hi: float) -> list[str]:
    """The opening of a chart: the svg element, title, legend, plot area and y grid."""
    out = [f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
           f'<text x="{left}" y="14" font-size="12" font-weight="bold">{e(title)}</text>', legend,
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = top + h - h * (v - lo) / (hi - lo)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end" fill="#555">'
                   f'{_fmt(v)}</text>')
    return out


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
    names = list(series)
    colors = [PALETTE[j % len(PALETTE)] for j in range(len(names))]
    left, right, bottom = 52, 12, 34
    legend, legend_h = legend_svg(names, colors, left, 20, width - left - right)
    top = 24 + legend_h
    height += legend_h - 12 if legend_h > 12 else 0
    w, h = width - left - right, height - top - bottom

    def xy(i, v):
        x = left + (w * i / (n - 1) if n > 1 else w / 2)
        return x, top + h - h * (v - lo) / (hi - lo)

    out = _plot_frame("curve", title, legend, width, height, left, top, w, h, lo, hi)
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
    out.append("</svg>")
    return "".join(out)


def scatter_svg(series: dict[str, list[tuple[object, float]]], title: str = "", xlabel: str = "",
                width: int = 420, height: int = 240) -> str:
    """``y`` against a parameter's value ``x``: one series (points joined in x order) per
    combination of the other parameters. Numeric x on a linear axis (logarithmic when the
    values are positive and span two decades or more); other values as categories."""
    pts = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    if not pts:
        return ""
    xs_all = []
    for x, _ in pts:
        if x not in xs_all:
            xs_all.append(x)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_all)
    log = numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 100
    cats = sorted(xs_all, key=lambda v: (not numeric, v if numeric else str(v)))
    ys = [y for _, y in pts]
    lo, hi = min(ys), max(ys)
    if hi == lo:
        hi, lo = hi + 0.5, lo - 0.5
    names = list(series)
    colors = [PALETTE[j % len(PALETTE)] for j in range(len(names))]
    left, right, bottom = 52, 16, 36
    legend, legend_h = legend_svg(names, colors, left, 20, width - left - right) if len(names) > 1 else ("", 0)
    top = 24 + legend_h
    height += legend_h
    w, h = width - left - right, height - top - bottom

    def fx(x):
        if numeric and len(cats) > 1:
            a, b = (math.log10(cats[0]), math.log10(cats[-1])) if log else (cats[0], cats[-1])
            v = math.log10(x) if log else x
            return left + 10 + (w - 20) * (v - a) / ((b - a) or 1)
        i = cats.index(x)
        return left + (w * (i + 0.5) / len(cats))

    def fy(y):
        return top + h - h * (y - lo) / (hi - lo)

    out = _plot_frame("scatter", title, legend, width, height, left, top, w, h, lo, hi)
    for c in cats:
        label = _fmt(c) if numeric else str(c)
        out.append(f'<text x="{fx(c):.1f}" y="{top + h + 12}" font-size="9" text-anchor="middle" fill="#555">'
                   f'{e(label)}<title>{e(str(c))}</title></text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 4}" font-size="10" text-anchor="middle" fill="#555">'
               f'{e(xlabel)}{" (log scale)" if log else ""}</text>')
    for j, name in enumerate(names):
        c = colors[j]
        p = sorted(((fx(x), fy(y)) for x, y in series[name] if y is not None and math.isfinite(y)))
        if len(p) > 1:
            out.append(f'<polyline class="series" data-series="{e(name)}" fill="none" stroke="{c}" stroke-width="1.6" '
                       f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in p)}"/>')
        for x, y in series[name]:
            if y is None or not math.isfinite(y):
                continue
            out.append(f'<circle class="point" cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3.5" fill="{c}">'
                       f'<title>{e(name + ": " if len(names) > 1 else "")}{e(xlabel)}={e(str(x))}: {_fmt(y)}</title>'
                       f'</circle>')
    out.append("</svg>")
    return "".join(out)
