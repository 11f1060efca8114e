"""The HTML run report: its contents (parsed), self-containment, and a real rendering in
headless Chromium (installed by `make test`'s chromium target)."""
import glob
import json
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from tests.conftest import tfpipe
from tests.tracking.chromium import check_legends, inside, measure, overlap, screenshot
from tfpipe import Input, Output, String, component

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@component
def shout(text: Input[String], loud: Output[String]) -> None:
    loud.write(text.read().upper())


class _Parse(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.text = [], [], {}
        self.section = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self.section = a.get("id")

    def handle_data(self, data):
        if self.section:
            self.text[self.section] = self.text.get(self.section, "") + data


@pytest.fixture(scope="module")
def report(penguin):
    out = penguin.dir / "report.html"
    tfpipe("report", penguin.runs[1], "-o", str(out), "--metadata", penguin.metadata, check=0)
    p = _Parse()
    p.feed(out.read_text())
    return out, p


def test_report_contents(report, penguin):
    path, p = report
    sections = {a.get("id") for t, a in p.tags if t == "section"}
    assert {"graph", "statistics", "anomalies", "schema", "training", "evaluation", "lineage"} <= sections
    # graph: one node per pipeline node, with its state; upstream nodes were cache hits
    nodes = {a["data-node"]: a["data-state"] for t, a in p.tags if t == "g" and "data-node" in a}
    assert set(nodes) == {n["id"] for n in penguin.ir["nodes"]}
    assert nodes["Transform"] == "CACHED" and nodes["Trainer"] == "COMPLETE"
    assert "cache hit" in p.text["graph"]
    # statistics: a histogram per feature and split
    assert "split train" in p.text["statistics"] and "split eval" in p.text["statistics"]
    charts = [a for t, a in p.tags if t == "svg" and a.get("aria-label") in ("histogram", "top values")]
    assert len(charts) >= 2 * 8
    assert "body_mass_g" in p.text["statistics"] and "mean=" in p.text["statistics"]
    assert ("details", {"open": None}) in p.tags  # a table of a few features starts unfolded
    found = json.load(open(glob.glob(os.path.join(penguin.root, "ExampleValidator", "anomalies", "*",
                                                  "anomalies.json"))[0]))
    n = sum(len(v) for v in found.values())
    assert f"Anomalies ({n})" in p.text["anomalies"]
    assert ("No anomalies" in p.text["anomalies"]) == (n == 0)
    assert "island" in p.text["schema"] and "Biscoe" in p.text["schema"]
    # training curves: loss and val_loss series from history.json
    series = {a["data-series"] for t, a in p.tags if t == "polyline"}
    assert {"loss", "val_loss", "sparse_categorical_accuracy", "score"} <= series  # score: Tuner trials
    assert "Tuner trials" in p.text["training"] and "learning_rate" in p.text["training"]
    # evaluation per slice with thresholds and the verdict
    ev = p.text["evaluation"]
    assert "BLESSED" in ev and "Overall" in ev and "island=" in ev and "lower_bound=0.2" in ev
    assert "Pusher" in p.text["lineage"] and "span 0" in p.text["lineage"]
    # self-contained: nothing fetched from anywhere
    for t, a in p.tags:
        assert t not in ("script", "link", "img", "iframe"), t
        for k in ("src", "href"):
            v = a.get(k) or ""
            assert not v or v.startswith("#"), (t, k, v)


def test_statistics_of_many_features_start_folded(tmp_path):
    """A wide dataset's statistics table is one line (how many features, the first names)
    until opened, so training and evaluation are not thousands of pixels down the page."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    from tfpipe import ExampleStatistics, fileio
    from tfpipe.tracking.report import _statistics
    art = ExampleStatistics(uri=str(tmp_path / "stats"))
    wide = pd.DataFrame({f"pixel_{i}": [float(i + j) for j in range(50)] for i in range(64)})
    for split in ("train", "eval"):
        fileio.write_bytes(art.stats_path(split), tfdv.generate_statistics_from_dataframe(wide).SerializeToString())
    info = {"executions": [{"node_id": "StatisticsGen", "outputs": {"statistics": [
        {"type": "ExampleStatistics", "state": "LIVE", "uri": art.uri, "id": 7}]}}]}
    p = _Parse()
    p.feed(_statistics(info))
    assert ("details", {}) in p.tags and ("details", {"open": None}) not in p.tags
    assert "64 feature(s): pixel_0, pixel_1" in p.text["statistics"]
    assert p.text["statistics"].count("pixel_63") == 1  # in the folded table, once


def test_report_renders_in_headless_chromium(report, tmp_path):
    assert CHROMIUM, "chromium is not installed: `make test` installs it (`make chromium`)"
    path, _ = report
    shot = tmp_path / "report.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}"]
    data = screenshot(path, tmp_path)
    (tmp_path / "report.png").write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (1280, 2000) and len(data) > 50_000  # a blank page compresses to a few KB
    dom = subprocess.run(base + ["--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "Blessing verdict" in dom and 'data-node="Pusher"' in dom
    if os.environ.get("TFPIPE_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, os.path.join(os.path.dirname(__file__), "..", "..", "docs", "report.png"))


def test_report_graph_reads_as_the_dag_it_is_in_chromium(report, penguin, tmp_path):
    """Measured in the rendered page: every box holds its full name, no edge passes behind
    a box it does not connect, boxes do not overlap, and the chart legends hold their full
    series names without overlapping."""
    path, _ = report
    m = measure(path, tmp_path)
    nodes = {n["id"]: n for n in m["nodes"]}
    assert set(nodes) == {n["id"] for n in penguin.ir["nodes"]}
    for nid, n in nodes.items():
        x, y, w, h = n["box"]
        assert n["texts"][0]["text"] == nid  # the name, whole
        for t in n["texts"]:
            assert t["w"] > 0 and t["x"] >= x and t["x"] + t["w"] <= x + w - 2, (nid, t, n["box"])
    boxes = list(nodes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not overlap(a["box"], b["box"]), (a["id"], b["id"])
    edges = {(u, n["id"]) for n in penguin.ir["nodes"] for u in n["upstream"]}
    assert {(e["from"], e["to"]) for e in m["edges"]} == edges
    long_edges = 0
    for e in m["edges"]:
        others = [n for nid, n in nodes.items() if nid not in (e["from"], e["to"])]
        for pt in e["pts"]:
            hit = [n["id"] for n in others if inside(pt, n["box"])]
            assert not hit, f"edge {e['from']} -> {e['to']} passes behind {hit} at {pt}"
        a, b = nodes[e["from"]]["box"], nodes[e["to"]]["box"]
        long_edges += any(a[0] + a[2] < n["box"][0] and n["box"][0] + n["box"][2] < b[0] for n in others)
    assert long_edges >= 3  # ExampleGen -> Transform/Evaluator, Trainer -> Pusher, ...: routed, not hidden
    curves = [c for c in m["charts"] if c["cls"] == "chart curve"]
    assert curves and all(c["items"] for c in curves)
    for c in curves:
        check_legends(c)
    assert any(it["text"] == "val_sparse_categorical_accuracy" for c in curves for it in c["items"])


def test_report_of_a_failed_run_shows_the_error_and_nodes_not_run(tmp_path):
    from tests.fixtures.trivial import explode, make_numbers
    from tfpipe import Pipeline, compile_pipeline
    from tfpipe.metadata import MetadataStore
    from tfpipe.orchestrators.local import LocalRunner
    from tfpipe.tracking.report import write_report

    nums = make_numbers(n=3)
    bad = explode(numbers=nums.outputs.numbers, message="the disk is full")
    after = shout(text=bad.outputs.out)
    ir = compile_pipeline(Pipeline("broken", [bad, after], root=str(tmp_path / "root"),
                                   metadata=str(tmp_path / "m.sqlite")))
    res = LocalRunner(verbose=False).run(ir)
    assert not res.ok
    out = write_report(MetadataStore(str(tmp_path / "m.sqlite")), res.run_id, str(tmp_path / "r.html"))
    p = _Parse()
    p.feed(open(out).read())
    states = {a["data-node"]: a["data-state"] for t, a in p.tags if t == "g" and "data-node" in a}
    assert states == {"make_numbers": "COMPLETE", "explode": "FAILED", "shout": "NOT RUN"}
    assert "the disk is full" in p.text["graph"]
    assert {a.get("id") for t, a in p.tags if t == "section"} == {"graph"}  # nothing else was produced
