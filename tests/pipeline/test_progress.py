"""Progress of long work: done of total, the rate since the first report, the time left at
that rate; at most a line every 2 s plus the last; Beam DoFns counting into the node's line
from any thread."""
import threading

from tfpipe import runtime
from tfpipe.runtime import ExecutionContext, count, progress_line, tracking


def test_progress_line_gives_rate_and_time_left():
    assert progress_line(3_000_000, 10_000_000, "rows", 10.0, 3_000_000) == \
        "3,000,000/10,000,000 rows (30%), 300,000 rows/s, about 23 s left"
    assert progress_line(10, 10, "steps trained", 4.0, 10) == "10/10 steps trained (100%), 2.50 steps/s in 4 s"
    assert progress_line(500, None, "rows written", 2.0, 500) == "500 rows written, 250 rows/s"
    assert progress_line(5, 100, "rows", 0.1, 5) == "5/100 rows (5%)"  # too early for a rate
    assert "about 3 min left" in progress_line(1, 201, "rows", 1.0, 1)


def test_progress_prints_every_two_seconds_and_the_last(monkeypatch, capsys):
    clock = {"t": 100.0}
    monkeypatch.setattr(runtime.time, "monotonic", lambda: clock["t"])
    ctx = ExecutionContext(pipeline="p", run_id="r", node_id="Evaluator", execution_id=1)
    for i in range(1, 11):
        clock["t"] += 0.5
        ctx.progress(i * 100, 1000, "rows evaluated")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "  [Evaluator] 100/1,000 rows evaluated (10%)"
    assert lines[1] == "  [Evaluator] 500/1,000 rows evaluated (50%), 200 rows/s, about 2 s left"
    assert lines[-1] == "  [Evaluator] 1,000/1,000 rows evaluated (100%), 200 rows/s in 4 s"
    assert len(lines) == 4  # at 0.5 s, 2.5 s, 4.5 s and the last


def test_counts_from_beam_threads_reach_the_registered_node(capsys):
    ctx = ExecutionContext(pipeline="p", run_id="r", node_id="Transform", execution_id=1)
    with ctx, tracking("Transform x", 4000, "rows read") as t:
        threads = [threading.Thread(target=lambda: [count("Transform x", 10) for _ in range(100)]) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert t.done == 4000
    count("Transform x", 5)  # after the node: nobody registered, nothing happens
    err = capsys.readouterr().err
    assert "[Transform] 4,000/4,000 rows read (100%)" in err
    assert err.count("[Transform]") <= 2
