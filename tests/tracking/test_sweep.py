"""Sweeps (tfpipe run -P a=1,2 -P b=x,y): the grid, the shared nodes run once, each
combination a run of its own with its values recorded, one summary sorted by a metric;
and the compare page over a sweep, rendered in headless Chromium."""
import json
import os
import re
import types
from html.parser import HTMLParser

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.chromium import check_legends, inside, measure, screenshot
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.records import show_run
from tfpipe.tracking.runs import list_runs

PENGUIN = os.path.join(REPO, "examples", "penguin", "pipeline.py")

TRIVIAL = """
import os
from tfpipe import Pipeline
from tests.fixtures.trivial import describe, make_numbers, total

def create_pipeline(n: int = 3, prefix: str = "sum"):
    nums = make_numbers(n=n)
    t = total(numbers=nums.outputs.numbers)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result, prefix=prefix)
    home = os.environ["TFPIPE_HOME"]
    return Pipeline("sweepy", [d], root=os.path.join(home, "root"), metadata=os.path.join(home, "m.sqlite"))
"""


def test_trivial_sweep_runs_the_grid_with_the_shared_nodes_once(tmp_path):
    path = tmp_path / "pipe.py"
    path.write_text(TRIVIAL)
    env = {"TFPIPE_HOME": str(tmp_path / "home")}
    p = tfpipe("run", str(path), "-P", "total.offset=1,2,3", "-P", 'prefix=a,"b,c"', "--parallel", "2", env=env,
               check=0)
    store = MetadataStore(str(tmp_path / "home" / "m.sqlite"))
    rows = list_runs(store)
    [sweep] = {r["sweep"] for r in rows}
    shared = [r for r in rows if r["sweep_role"] == "shared"]
    trials = sorted((r for r in rows if r["sweep_role"] == "trial"), key=lambda r: r["run_id"])
    assert len(shared) == 1 and len(trials) == 6 and all(r["status"] == "COMPLETE" for r in rows)
    # make_numbers is the same in every combination: executed once, a cache hit everywhere else
    execs = [e for r in rows for e in show_run(store, r["run_id"])["executions"] if e["node_id"] == "make_numbers"]
    assert [e["state"] for e in execs].count("COMPLETE") == 1 and len(execs) == 7
    assert {tuple(t["params"].items()) for t in trials} == {
        (("total.offset", o), ("prefix", x)) for o in (1, 2, 3) for x in ("a", "b,c")}  # "b,c": one value
    info = show_run(store, trials[0]["run_id"])
    assert info["sweep"] == sweep and info["sweep_info"]["of"] == 6
    from tfpipe.tracking.runs import select_runs
    assert select_runs(store, sweep=sweep) == [f"{sweep}-{i}" for i in range(1, 7)]  # the shared run left out
    assert len(select_runs(store, last=6)) == 6 and f"{sweep}-shared" not in select_runs(store, last=7)
    # progress on stderr, the summary table on stdout
    assert f"[sweep] shared by every combination, run once as {sweep}-shared: make_numbers" in p.stderr
    assert re.search(r"\[6/6\] total.offset=3 prefix=b,c: COMPLETE in", p.stderr)
    header = p.stdout.splitlines()[1].split()
    assert header[:3] == ["RUN", "total.offset", "prefix"] and len(p.stdout.splitlines()) == 8
    # a sweep needs values, runs whole pipelines, and cannot be compiled
    q = tfpipe("compile", str(path), "-P", "n=1,2", env=env)
    assert q.returncode == 2 and "a comma list is a sweep" in q.stderr
    q = tfpipe("run", str(path), "-P", "n=1,2", "--from", "total", env=env)
    assert q.returncode == 2 and "--from/--to" in q.stderr


def test_a_failing_combination_fails_the_sweep_and_is_recorded(tmp_path):
    path = tmp_path / "pipe.py"
    path.write_text(TRIVIAL)
    env = {"TFPIPE_HOME": str(tmp_path / "home")}
    p = tfpipe("run", str(path), "-P", "make_numbers.fail=false,true", "-q", env=env)
    assert p.returncode == 1
    rows = list_runs(MetadataStore(str(tmp_path / "home" / "m.sqlite")))
    assert sorted(r["status"] for r in rows) == ["COMPLETE", "FAILED"]
    assert "1 failed" in p.stdout.splitlines()[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One -P run of the penguin example, then a 2x2 sweep (learning_rate x units) in the
    same home: the sweep's shared nodes (the data half and Transform) come from the cache."""
    tmp = tmp_path_factory.mktemp("sweep")
    env = {"TFPIPE_HOME": str(tmp / "home")}
    single = tfpipe("run", PENGUIN, "-q", "--run-id", "single", "-P", "train_steps=10", "-P", "units=4",
                    "-P", "Trainer.eval_steps=3", env=env, check=0)
    p = tfpipe("run", PENGUIN, "-P", "train_steps=10", "-P", "learning_rate=0.003,0.03", "-P", "units=4,8",
               "--sort-by", "sparse_categorical_accuracy", "--parallel", "2", env=env, timeout=1800, check=0)
    md = str(tmp / "home" / "metadata.sqlite")
    sid = re.search(r"^sweep (sweep-\S+):", p.stdout, re.M).group(1)
    return types.SimpleNamespace(tmp=tmp, env=env, metadata=md, out=p.stdout, err=p.stderr, id=sid,
                                 single=single)


def test_a_parameter_run_of_the_penguin_example(sweep):
    store = MetadataStore(sweep.metadata)
    info = show_run(store, "single")
    assert info["status"] == "COMPLETE"
    assert info["params"] == {"train_steps": 10, "units": 4, "Trainer.eval_steps": 3}
    [trainer] = [e for e in info["executions"] if e["node_id"] == "Trainer"]
    assert trainer["parameters"]["train_steps"] == 10 and trainer["parameters"]["eval_steps"] == 3
    assert trainer["parameters"]["custom_config"] == {"learning_rate": 0.01, "units": 4}


def test_penguin_sweep_2x2_shares_the_data_half_and_sorts_the_summary(sweep):
    store = MetadataStore(sweep.metadata)
    rows = [r for r in list_runs(store) if r["sweep"] == sweep.id]
    trials = [r for r in rows if r["sweep_role"] == "trial"]
    assert len(trials) == 4 and all(r["status"] == "COMPLETE" for r in rows)
    assert {(t["params"]["learning_rate"], t["params"]["units"]) for t in trials} == {
        (0.003, 4), (0.003, 8), (0.03, 4), (0.03, 8)}
    shared = show_run(store, f"{sweep.id}-shared")
    assert {e["node_id"] for e in shared["executions"]} == {"ExampleGen", "StatisticsGen", "SchemaGen",
                                                             "ExampleValidator", "Transform"}
    # the data half ran once (for the -P run); every run of the sweep took it from the cache
    for t in trials:
        info = show_run(store, t["run_id"])
        states = {e["node_id"]: e["state"] for e in info["executions"]}
        assert states["Transform"] == states["ExampleGen"] == "CACHED" and states["Trainer"] == "COMPLETE"
        [tr] = [e for e in info["executions"] if e["node_id"] == "Trainer"]
        assert tr["parameters"]["custom_config"] == {"learning_rate": t["params"]["learning_rate"],
                                                     "units": t["params"]["units"]}
    lines = sweep.out.splitlines()
    assert "sorted by sparse_categorical_accuracy (higher is better)" in lines[0]
    header = lines[1].split()
    assert header[:4] == ["RUN", "learning_rate", "units", "sparse_categorical_accuracy"]
    accs = [float(x.split()[3]) for x in lines[2:6]]
    assert accs == sorted(accs, reverse=True)
    assert f"compare: tfpipe runs compare --sweep {sweep.id}" in sweep.err


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self.ids.append(dict(attrs).get("id"))


def test_compare_page_of_the_sweep_renders_in_chromium(sweep, tmp_path):
    page = tmp_path / "sweep.html"
    p = tfpipe("runs", "compare", "--sweep", sweep.id, "-o", str(page), "--metadata", sweep.metadata, check=0)
    assert "(4 runs)" in p.stderr
    parsed = _Sections()
    parsed.feed(page.read_text())
    assert parsed.ids == ["runs", "params", "curves", "differences"]
    # what differs: the causes (the Trainer's parameters), not the downstream nodes' input
    # fingerprints that differ only because the model did
    differs = page.read_text().split('id="differences"')[1]
    assert "data_fingerprint" not in differs and "Evaluator" not in differs
    for t, a in parsed.tags:  # self-contained
        assert t not in ("script", "link", "img", "iframe")
        assert not (a.get("src") or "") and (a.get("href") or "#").startswith("#")
    data = screenshot(page, tmp_path, size=(1280, 1800))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    m = measure(page, tmp_path)
    scatters = {c["label"]: c for c in m["charts"] if c["cls"] == "chart scatter"}
    assert {"sparse_categorical_accuracy against learning_rate", "sparse_categorical_accuracy against units"} \
        <= set(scatters)
    for c in scatters.values():
        assert len(c["points"]) == 4 and all(inside(pt, c["plot"], margin=-4) for pt in c["points"])
        check_legends(c)
    by_lr = scatters["sparse_categorical_accuracy against learning_rate"]
    assert sorted(it["text"] for it in by_lr["items"]) == ["units=4", "units=8"]
    curves = {c["label"]: c for c in m["charts"] if c["cls"] == "chart curve"}
    assert "loss" in curves and "val_sparse_categorical_accuracy" in curves
    for c in curves.values():
        assert len(c["series"]) == 4  # one per run, overlaid
        check_legends(c)
    assert "learning_rate=0.003 units=4" in curves["loss"]["series"]
    # the text comparison over the same runs: the values given, the Trainer's parameters differ
    cmp = json.loads(tfpipe("runs", "compare", "--sweep", sweep.id, "--json", "--metadata", sweep.metadata,
                            check=0).stdout)
    assert [r["parameter"] for r in cmp["given"] if r["differs"]] == ["learning_rate", "units"]
    assert len(cmp["runs"]) == 4 and all(r["sweep"] == sweep.id for r in cmp["runs"])
    last = tfpipe("runs", "compare", "--last", "2", "--metadata", sweep.metadata, check=0).stdout
    assert last.count(f"{sweep.id}-") >= 2
