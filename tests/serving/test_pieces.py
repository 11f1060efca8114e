"""The model server's parts without a model: TF Serving's models.config written and read
back (and parsed by TF Serving's own protos), JSON checked against a raw feature spec, the
request log's bounded queue (drops counted, never blocking) and its day partitions."""
import datetime as dt
import os
import re
import threading

import pytest

from tfpipe.serving.config import ConfigError, ModelEntry, read_config, resolve_versions, write_config
from tfpipe.serving.features import FeatureSpec, RequestError, from_examples, to_examples
from tfpipe.serving.request_log import LogError, ParquetSink, RequestLog, read_log

SPEC = {"island": FeatureSpec("island", "string", "var_len"), "mass": FeatureSpec("mass", "int64", "var_len"),
        "bill": FeatureSpec("bill", "float", "fixed_len", (1,), None)}


def test_models_config_round_trip_and_errors(tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    for v in ("3", "5", "9"):
        (tmp_path / v).mkdir()
    path = str(tmp_path / "models.config")
    write_config(path, [ModelEntry('pen"guin', str(tmp_path), versions=[5, 3], labels={"production": 5, "staging": 3}),
                        ModelEntry("other", str(tmp_path))])
    cfg = text_format.Parse(open(path).read(), model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in cfg.model_config_list.config] == ['pen"guin', "other"]  # a literal, escaped
    assert list(cfg.model_config_list.config[0].model_version_policy.specific.versions) == [3, 5]
    [a, b] = read_config(path)
    assert a.versions == [3, 5] and a.labels == {"production": 5, "staging": 3} and b.versions is None
    assert resolve_versions(a) == {3: str(tmp_path / "3"), 5: str(tmp_path / "5")}
    assert list(resolve_versions(b)) == [9]  # no policy: the latest, as TF Serving
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".models.config")]
    with pytest.raises(ConfigError, match="not in its base path") as e:
        resolve_versions(ModelEntry("m", str(tmp_path), versions=[4]))
    assert str(tmp_path) not in str(e.value)  # it reaches /healthz: no path
    (tmp_path / "bad.config").write_text("model_config_list {\n  config { name: 'm' base_pth: '/x' }\n}\n")
    with pytest.raises(ConfigError, match=r"^bad.config:2:\d+: not a ModelServerConfig"):
        read_config(str(tmp_path / "bad.config"))
    (tmp_path / "bin.config").write_bytes(b"model_config_list {\n\xff }\n")
    with pytest.raises(ConfigError, match=r"^bin.config:2: not UTF-8 text \(byte 0xff at offset 20\)"):
        read_config(str(tmp_path / "bin.config"))


def test_version_numbers_are_exact(tmp_path):
    from tfpipe.serving.config import is_version, version_dirs
    assert is_version("0") and is_version("1796505019") and is_version(str(2**63 - 1))
    for bad in ("+1796505019", "1_796_505_019", " 1796505019", "01796505019", "\u0661\u0667", "1796505019 ",
                "-1", "", str(2**63), "1e3", "\uff11"):
        assert not is_version(bad), bad
    for name in ("7", "07", "\u0667", "+8", "x"):
        (tmp_path / name).mkdir()
    assert list(version_dirs(str(tmp_path))) == [7]  # "07" and Arabic-Indic 7 would alias version 7


def test_json_rows_are_checked_against_the_spec():
    rows: list = []
    recs = to_examples([{"island": "Dream", "mass": 4000.0, "bill": [39.5], "species": "Adelie"}], SPEC,
                       "instances", ignore=("species",), rows_out=rows)
    assert rows == [{"island": [b"Dream"], "mass": [4000], "bill": [39.5]}]
    back = from_examples(recs, SPEC)[0]
    assert back["island"] == ["Dream"] and back["mass"] == [4000] and back["bill"] == [39.5]
    cases = [({"island": 3, "mass": 1, "bill": 1.0}, "instances[0].island: expected a string"),
             ({"island": "x", "mass": 1.5, "bill": 1.0}, "instances[0].mass: expected a whole number (int64), "
                                                         "found number 1.5"),
             ({"island": "x", "mass": True, "bill": 1.0}, "found boolean true"),
             ({"island": "x", "mass": 1, "bill": None}, "cannot be missing"),
             ({"island": "x", "mass": 1, "bill": [1.0, 2.0]}, "expected 1 value(s)"),
             ({"island": "x", "mass": 1}, "missing feature(s) ['bill']"),
             ({"island": "x", "mass": 1, "bill": 1.0, "islnd": "y"}, "unknown feature(s) ['islnd']"),
             ("Dream", "expected an object of raw features"),
             # values Python's own conversions refuse (OverflowError, UnicodeEncodeError): 400s, never 500s
             ({"island": "x", "mass": 1, "bill": 10**400}, "instances[0].bill: expected a number (float) within "
                                                           "float32's range (about 3.4e38), found a whole number of "
                                                           "401 digits"),
             ({"island": "x", "mass": 1, "bill": 1e39}, "found number 1e+39"),
             ({"island": "\ud800", "mass": 1, "bill": 1.0}, "instances[0].island: expected a string of Unicode "
                                                             "characters, found a lone surrogate (\\ud800) at "
                                                             "character 0"),
             ({"island": "x", "mass": 1, "bill": 1.0, "q" * 100_000: 1}, "unknown feature(s) ['" + "q" * 40 + "'...]")]
    for row, msg in cases:
        with pytest.raises(RequestError, match=re.escape(msg.replace("instances[0]", "instances[1]"))) as e:
            to_examples([{"island": "a", "mass": 1, "bill": 2.0}, row], SPEC, "instances")
        assert len(str(e.value)) < 300  # never the client's input beyond an excerpt
    assert to_examples([{"island": "x", "mass": 1, "bill": float("nan")}], SPEC, "instances")  # as TF Serving


class _BlockedSink:
    """A sink whose writes wait until released: the writer thread is stuck, the queue fills."""

    def __init__(self):
        self.release, self.entered, self.rows = threading.Event(), threading.Event(), 0

    def write(self, table):
        self.entered.set()
        self.release.wait(30)
        self.rows += table.num_rows
        return table.num_rows


def test_request_log_never_blocks_and_counts_drops():
    sink = _BlockedSink()
    log = RequestLog(sink, max_queue=1, flush_rows=1, flush_s=0.0)
    kw = dict(model="m", version=1, label=None, signature="s", spec=SPEC, rows=[{"island": ["a"], "mass": [1],
                                                                                 "bill": [2.0]}], records=[b""])
    assert log.offer(outputs=[[1]], **kw)
    assert sink.entered.wait(10)  # the writer holds the first row, blocked in the sink
    assert log.offer(outputs=[[2]], **kw)  # fills the queue (size 1)
    assert log.offer(outputs=[[3]], **kw) is False  # full: dropped at once (the sink is still blocked)
    assert log.dropped == 1 and log.offered == 3
    sink.release.set()
    st = log.close()
    assert st["written"] == 2 and st["dropped"] == 1 and sink.rows == 2
    with pytest.raises(LogError, match="from 0 to 1"):
        RequestLog(_BlockedSink(), sample_rate=1.5)


def test_parquet_sink_partitions_by_day_and_reads_windows(tmp_path):
    sink = ParquetSink(str(tmp_path / "log"))
    log = RequestLog(sink, flush_s=0.01)
    now = dt.datetime.now(dt.timezone.utc)
    for days_ago, island in ((0, "Dream"), (2, "Biscoe")):
        log.offer(model="m", version=1, label="production", signature="serving_default", spec=SPEC,
                  rows=[{"island": [island], "mass": [1], "bill": [2.0]}], records=[b""], outputs=[[0.5]],
                  when=(now - dt.timedelta(days=days_ago)).timestamp())
    log.offer(model="other", version=1, label=None, signature="serving_default", spec=SPEC,
              rows=[{"island": ["X"], "mass": None, "bill": [2.0]}], records=[b""], outputs=[[0.1]])
    st = log.close()
    assert st["written"] == 3 and st["dropped"] == 0 and st["errors"] == 0
    days = sorted(os.listdir(tmp_path / "log"))
    assert days == sorted({f"day={(now - dt.timedelta(days=d)):%Y-%m-%d}" for d in (0, 2)})
    t = read_log(str(tmp_path / "log"), "m", now - dt.timedelta(days=1), now + dt.timedelta(seconds=1))
    assert t.num_rows == 1 and t.column("features").to_pylist()[0]["island"] == ["Dream"]
    t = read_log(str(tmp_path / "log"), "m", now - dt.timedelta(days=3), now - dt.timedelta(days=1))
    assert t.column("features").to_pylist()[0]["island"] == ["Biscoe"]
    assert read_log(str(tmp_path / "log"), "nobody", now - dt.timedelta(days=9), now) is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(LogError, match="not a directory"):
        ParquetSink(str(tmp_path / "file"))


def test_request_log_converts_in_batches_off_the_request_path(tmp_path):
    """The request path only queues references; the writer turns everything queued into one
    file per day and model (not one per request), reads {"b64"} examples back, keeps a
    string feature's bytes that are not UTF-8 (replaced characters) and counts rows a
    failing sink could not take."""
    import pyarrow.parquet as pq
    log = RequestLog(ParquetSink(str(tmp_path / "log")), flush_rows=10_000, flush_s=60.0)
    rows = [{"island": [b"Dream"], "mass": [4000], "bill": [39.5]}]
    # the first row finds the writer idle and is written at once; what follows within
    # flush_s (60) waits for one take
    first = dict(model="m", version=2, label="production", signature="serving_default", spec=SPEC, rows=rows,
                 records=[b""], outputs=[[0.0, 1.0]])
    log.offer(**first)
    _wait(lambda: log.written == 1)
    kept = []
    for i in range(200):
        out = [[i / 200, 1 - i / 200]]
        kept.append(out)
        assert log.offer(model="m", version=2, label="production", signature="serving_default", spec=SPEC,
                         rows=rows, records=[b""], outputs=out)
    assert log.stats()["queued"] == 200 and log.written == 1  # nothing converted on the request path
    recs = to_examples([{"island": "Biscoe", "mass": 3000, "bill": 40.0}], SPEC, "instances")
    log.offer(model="m", version=2, label=None, signature="serving_default", spec=SPEC, rows=[None], records=recs,
              outputs=[[0.25, 0.75]])
    log.offer(model="m", version=2, label=None, signature="serving_default", spec=SPEC,
              rows=[{"island": [b"\xff\xfeok"], "mass": None, "bill": [1.0]}], records=[b""], outputs=[[1.0, 0.0]])
    two = [{"island": [b"Torgersen"], "mass": [3500], "bill": [38.0]}, {"island": None, "mass": [3600], "bill": None}]
    log.offer(model="m", version=3, label="staging", signature="serving_default", spec=SPEC, rows=two,
              records=[b"", b""], outputs=[[0.9, 0.1], [0.2, 0.8]])
    st = log.close()
    assert st["written"] == 205 and st["dropped"] == 0 and st["errors"] == 0
    [day] = os.listdir(tmp_path / "log")
    files = sorted(os.listdir(tmp_path / "log" / day))
    assert len(files) == 2, files  # the first row alone, then one batch, one file
    t = pq.read_table(str(tmp_path / "log" / day / files[1])).to_pylist()
    assert [r["response"] for r in t[:200]] == [f"[{o[0][0]}, {o[0][1]}]" for o in kept]
    assert len({r["request_id"] for r in t}) == 203 and {r["version"] for r in t[:202]} == {2}
    assert t[200]["features"] == {"island": ["Biscoe"], "mass": [3000], "bill": [40.0]} and t[200]["label"] is None
    assert t[201]["features"]["island"] == ["\ufffd\ufffdok"] and t[201]["features"]["mass"] is None
    # a request of two examples: two rows sharing the request's id, time, version and label
    a, b = t[202:]
    assert a["request_id"] == b["request_id"] != t[201]["request_id"] and a["time"] == b["time"]
    assert (a["version"], a["label"], b["version"], b["label"]) == (3, "staging", 3, "staging")
    assert (a["features"], a["response"]) == ({"island": ["Torgersen"], "mass": [3500], "bill": [38.0]}, "[0.9, 0.1]")
    assert (b["features"], b["response"]) == ({"island": None, "mass": [3600], "bill": None}, "[0.2, 0.8]")

    class Broken:
        def write(self, table):
            raise OSError("disk full")

    log = RequestLog(Broken(), flush_s=0.01)
    log.offer(model="m", version=1, label=None, signature="s", spec=SPEC, rows=rows, records=[b""], outputs=[[1]])
    st = log.close()
    assert st["written"] == 0 and st["dropped"] == 1 and st["errors"] == 1 and "disk full" in st["last_error"]


def test_server_flags_refuse_negative_intervals(capsys):
    from tfpipe.serving.server import build_parser
    args = build_parser().parse_args(["--model-dir", "m"])
    assert (args.watch, args.poll, args.keep_warm) == (0.1, 2.0, 2)
    # the request limits and their documented defaults (docs/serving.md)
    assert (args.max_body_bytes, args.max_instances, args.header_timeout, args.body_timeout, args.parse_threads) \
        == (10 * 1024 * 1024, 10_000, 10.0, 30.0, 2)
    for flag, value, kind in (("--keep-warm", "-1", "whole number"), ("--watch", "abc", "number"),
                              ("--poll", "-0.5", "number"), ("--max-body-bytes", "-1", "whole number"),
                              ("--max-instances", "1.5", "whole number"), ("--body-timeout", "-1", "number")):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["--model-dir", "m", flag, value])
        assert e.value.code == 2
        assert f"argument {flag}: expected a {kind} >= 0, found '{value}'" in capsys.readouterr().err


def _wait(cond, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


ROW = {"island": [b"Dream"], "mass": [4000], "bill": [39.5]}


def test_request_log_bound_is_per_row():
    """A request with more rows than the queue has room for keeps what fits; the rest are
    dropped and counted, even when the queue was empty before it."""
    sink = _BlockedSink()
    log = RequestLog(sink, max_queue=10, flush_rows=10_000, flush_s=3600)
    kw = dict(model="m", version=1, label=None, signature="s", spec=SPEC)
    assert log.offer(rows=[ROW] * 25, records=[b""] * 25, outputs=[[1]] * 25, **kw)
    st = log.stats()
    assert st["offered"] == 25 and st["dropped"] == 15 and st["queued"] + sink.rows <= 10
    assert log.offer(rows=[ROW] * 5, records=[b""] * 5, outputs=[[1]] * 5, **kw) is False  # no room at all
    sink.release.set()
    st = log.close()
    assert st["written"] == 10 and st["dropped"] == 20


def test_request_log_writes_a_lone_request_at_once():
    """Crash durability: at a low rate a row is written as soon as it is queued, not at the
    writer's next tick (flush_s an hour here); rows that follow within flush_s wait for it."""
    class Sink:
        rows = 0

        def write(self, table):
            Sink.rows += table.num_rows
            return table.num_rows
    log = RequestLog(Sink(), flush_s=3600)
    kw = dict(model="m", version=1, label=None, signature="s", spec=SPEC, rows=[ROW], records=[b""])
    log.offer(outputs=[[1]], **kw)
    _wait(lambda: log.written == 1)
    log.offer(outputs=[[2]], **kw)
    assert log.stats()["queued"] == 1 and log.written == 1  # batched: taken at most one take per flush_s
    assert log.close()["written"] == 2 and Sink.rows == 2


def test_a_row_the_log_cannot_read_back_is_set_aside_alone(tmp_path):
    """A {"b64"} tf.Example TensorFlow parses but Python's protobuf does not (a feature name
    that is not UTF-8): its row is set aside and counted; the rest of its request and of
    the batch are written, never the batch lost for one row."""
    import pyarrow.parquet as pq

    from tests.serving.conftest import example_with_bad_name
    good = to_examples([{"island": "Biscoe", "mass": 3000, "bill": 40.0}], SPEC, "instances")[0]
    bad = example_with_bad_name(1.0)
    log = RequestLog(ParquetSink(str(tmp_path / "log")), flush_s=0.01)
    kw = dict(model="m", version=1, label=None, signature="s", spec=SPEC)
    log.offer(rows=[ROW, ROW], records=[b"", b""], outputs=[[1], [2]], **kw)
    _wait(lambda: log.written == 2)
    log.offer(rows=[None, None, None], records=[good, bad, good], outputs=[[3], [4], [5]], **kw)
    log.offer(rows=[ROW], records=[b""], outputs=[[6]], **kw)
    st = log.close()
    assert st["written"] == 5 and st["set_aside"] == 1 and st["dropped"] == 1 and st["errors"] == 0
    assert "cannot read" in st["last_set_aside"]
    t = pq.read_table(str(tmp_path / "log")).to_pylist()
    assert sorted(r["response"] for r in t) == ["[1]", "[2]", "[3]", "[5]", "[6]"]
