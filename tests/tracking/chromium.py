"""Headless Chromium for the HTML pages' tests: a screenshot, and the rendered geometry
(boxes, text widths, edge paths, legends) measured by the browser itself."""
import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Run inside the rendered page: the geometry of the graph and the charts, as JSON in a <pre>.
MEASURE_JS = r"""
const out = {nodes: [], edges: [], charts: []};
const box = b => [b.x, b.y, b.width, b.height];
document.querySelectorAll('svg.graph g.node').forEach(g => {
  const texts = [...g.querySelectorAll('text')].map(t => ({text: t.textContent, x: t.getBBox().x,
                                                          w: t.getComputedTextLength()}));
  out.nodes.push({id: g.dataset.node, box: box(g.querySelector('rect').getBBox()), texts});
});
document.querySelectorAll('svg.graph path.edge').forEach(p => {
  const L = p.getTotalLength(), pts = [];
  for (let i = 0; i <= 400; i++) { const q = p.getPointAtLength(L * i / 400); pts.push([q.x, q.y]); }
  out.edges.push({from: p.dataset.from, to: p.dataset.to, pts});
});
document.querySelectorAll('svg.chart').forEach(svg => {
  const items = [...svg.querySelectorAll('g.legend-item')].map(g => ({box: box(g.getBBox()),
      text: g.querySelector('text').textContent, w: g.querySelector('text').getComputedTextLength()}));
  const plot = svg.querySelector('rect[fill="#fafafa"]');
  out.charts.push({label: svg.getAttribute('aria-label'), cls: svg.getAttribute('class'),
                   width: svg.viewBox.baseVal.width, items,
                   plot: plot ? box(plot.getBBox()) : null,
                   points: [...svg.querySelectorAll('circle.point')].map(c => [c.cx.baseVal.value, c.cy.baseVal.value]),
                   series: [...svg.querySelectorAll('polyline.series')].map(p => p.dataset.series)});
});
const pre = document.createElement('pre');
pre.id = 'tfpipe-measure';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
"""


def _base(tmp) -> list[str]:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (`make chromium`)"
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'u'}"]


def screenshot(page, tmp, size=(1280, 2000)) -> bytes:
    shot = tmp / f"{page.stem}.png"
    subprocess.run(_base(tmp) + [f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return shot.read_bytes()


def measure(page, tmp) -> dict:
    """The page rendered at 1280 px wide with MEASURE_JS appended (to a copy: the page
    itself has no script); returns what the script measured."""
    copy = tmp / f"measure-{page.name}"
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", f"<script>{MEASURE_JS}</script></body>"), encoding="utf-8")
    dom = subprocess.run(_base(tmp) + ["--window-size=1280,2000", "--dump-dom", copy.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    m = re.search(r'<pre id="tfpipe-measure">(.*?)</pre>', dom, re.S)
    assert m, f"the measuring script did not run; page starts {dom[:300]!r}"
    os.remove(copy)
    return json.loads(html.unescape(m.group(1)))


def inside(pt, b, margin=1.0) -> bool:
    x, y = pt
    return b[0] + margin < x < b[0] + b[2] - margin and b[1] + margin < y < b[1] + b[3] - margin


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def check_legends(chart: dict) -> None:
    """Every legend entry holds its full text (the chart's series names), inside the
    chart, without overlapping another."""
    items = chart["items"]
    for it in items:
        x, y, w, h = it["box"]
        assert x >= 0 and x + w <= chart["width"] + 0.5, (chart["label"], it)
        assert it["w"] > 0
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            assert not overlap(a["box"], b["box"]), (chart["label"], a["text"], b["text"])
    if items and chart["series"]:
        assert sorted(it["text"] for it in items) == sorted(set(chart["series"])), chart["label"]


# -- pages of a web application (MLflow's UI): rendered until its data has arrived --------
def render(url: str, tmp, expect=(), ready=None, size=(1280, 800)) -> str:
    """The DOM of ``url`` after Chromium ran its scripts and their requests settled (a
    virtual-time budget); rendered again with a larger budget while a string of ``expect``
    is not in its text yet or ``ready(dom)`` is false (a slow server, a chart still being
    drawn), at most three times. The last DOM either way: the caller's assertions say what
    is missing."""
    dom = ""
    for budget in (15000, 30000, 60000):
        dom = subprocess.run(_base(tmp) + [f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget}",
                                           "--dump-dom", url],
                             capture_output=True, text=True, timeout=180, check=True).stdout
        text = page_text(dom)
        if all(e in text for e in expect) and (ready is None or ready(dom)):
            break
    return dom


def screenshot_url(url: str, path, tmp, size=(1280, 800)) -> bytes:
    """A PNG of ``url`` (scripts run, requests settled) at ``size``, written to ``path``."""
    subprocess.run(_base(tmp) + [f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
                                 "--virtual-time-budget=30000", url], capture_output=True, timeout=180, check=True)
    return open(path, "rb").read()


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Texts(HTMLParser):
    """The text of a DOM, and of each element whose ``role`` attribute is ``role``."""

    def __init__(self, role: str | None = None):
        super().__init__()
        self.role, self.stack, self.found = role, [["", False, []]], []

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            self.stack.append([tag, self.role is not None and dict(attrs).get("role") == self.role, []])

    def handle_endtag(self, tag):
        depth = next((i for i in range(len(self.stack) - 1, 0, -1) if self.stack[i][0] == tag), None)
        while depth is not None and len(self.stack) > depth:
            name, match, parts = self.stack.pop()
            text = "" if name in ("script", "style") else " ".join(p for p in parts if p)
            self.stack[-1][2].append(text)
            if match:
                self.found.append(_squash(text))

    def handle_data(self, data):
        self.stack[-1][2].append(data.strip())


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page_text(dom: str) -> str:
    """The visible text of a DOM (scripts and styles left out), whitespace squashed."""
    p = _Texts()
    p.feed(dom)
    p.close()
    while len(p.stack) > 1:
        p.handle_endtag(p.stack[-1][0])
    return _squash(" ".join(p.stack[0][2]))


def role_texts(dom: str, role: str) -> list[str]:
    """The text of every element with ``role="<role>"`` (a table's rows: ``row``), in
    document order of their ends."""
    p = _Texts(role)
    p.feed(dom)
    p.close()
    return p.found
