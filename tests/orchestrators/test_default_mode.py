"""The default mode (`tfpipe run` without --parallel) runs nodes at once in forked tasks
only where the graph offers parallelism worth a fork; otherwise it runs them one after the
other in this process, as --parallel 1 does (so it is never slower than that)."""
from tests.conftest import tfpipe
from tfpipe.orchestrators.local.runner import worth_forking

from .test_parallel_local import _execs, _file


def _chain(*ids):
    return [{"id": x, "upstream": [ids[i - 1]] if i else []} for i, x in enumerate(ids)]


def test_a_chain_never_forks():
    nodes = _chain("a", "b", "c", "d")
    fork, why = worth_forking(nodes, {n["id"]: 30.0 for n in nodes}, 4)
    assert not fork and "save about 0.0 s" in why and "forking 4 task(s)" in why


def test_long_branches_side_by_side_fork_and_short_ones_do_not():
    nodes = [{"id": "gen", "upstream": []}, {"id": "left", "upstream": ["gen"]},
             {"id": "right", "upstream": ["gen"]}, {"id": "join", "upstream": ["left", "right"]}]
    assert worth_forking(nodes, {"gen": 1.0, "left": 20.0, "right": 20.0, "join": 1.0}, 2) == (True, "")
    fork, why = worth_forking(nodes, {"gen": 1.0, "left": 0.5, "right": 0.5, "join": 1.0}, 2)
    assert not fork and "forking 4 task(s)" in why
    # one slot: nothing at once, whatever the durations
    assert not worth_forking(nodes, {"gen": 1.0, "left": 20.0, "right": 20.0, "join": 1.0}, 1)[0]


def test_cached_nodes_and_resolvers_cost_no_fork():
    nodes = [{"id": "gen", "upstream": []}, {"id": "left", "upstream": ["gen"]},
             {"id": "right", "upstream": ["gen"]}]
    fork, why = worth_forking(nodes, {"gen": 0.0, "left": 0.0, "right": 3.0}, 2)
    assert not fork and "forking 1 task(s)" in why


def test_default_mode_picks_by_the_last_durations(tmp_path):
    f = _file(tmp_path, "auto", slow=6)
    # first run, nothing known: every node is expected short, so no fork pays
    p = tfpipe("run", f, "--run-id", "auto-1", check=0)
    assert "in this process (nodes at once would save about" in p.stderr and "at once" not in p.stderr.split("\n")[0]
    status, ex = _execs(tmp_path, "auto-1")
    assert status == "COMPLETE" and ex["slow_a"]["duration_s"] >= 6
    # the two slow nodes are known to take 6 s each and can overlap: forked, and they do
    p = tfpipe("run", f, "--run-id", "auto-2", "--no-cache", check=0)
    assert "up to 2 at once" in p.stderr
    status, ex = _execs(tmp_path, "auto-2")
    a, b = ex["slow_a"], ex["slow_b"]
    assert status == "COMPLETE"
    assert a["started_at"] < b["started_at"] + b["duration_s"] and b["started_at"] < a["started_at"] + a["duration_s"]
