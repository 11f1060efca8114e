"""The data half on real TFDV/Beam: ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator."""
import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfpipe import Pipeline, compile_pipeline
from tfpipe.components import (
    ExampleGen,
    ExampleValidator,
    ImportSchemaGen,
    SchemaGen,
    StatisticsGen,
)
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")


def _run(tmp, nodes, name="t", **kw):
    p = Pipeline(name, nodes, root=str(tmp / "root"), metadata=str(tmp / "m.sqlite"),
                 beam_pipeline_args=["--direct_num_workers=1"])
    return LocalRunner(verbose=False).run(compile_pipeline(p), **kw)


def _rows(examples, split):
    return sum(pq.read_metadata(f).num_rows for f in glob.glob(os.path.join(examples.split_uri(split), "*.parquet")))


@pytest.fixture(scope="module")
def penguin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("penguin")
    from examples.penguin.pipeline import create_pipeline
    p = create_pipeline(root=str(tmp / "root"), metadata=str(tmp / "m.sqlite"))
    ir = compile_pipeline(p)
    r = LocalRunner(verbose=False).run(ir, to_node="ExampleValidator")
    assert r.ok, r.error
    return tmp, ir, {n.node_id: n for n in r.nodes}


def test_examplegen_splits_all_rows_two_to_one_deterministically(penguin, tmp_path):
    _, _, nodes = penguin
    ex = nodes["ExampleGen"].outputs["examples"][0]
    assert ex.split_names == ["train", "eval"]
    counts = {s: _rows(ex, s) for s in ex.split_names}
    assert counts == ex.row_counts and sum(counts.values()) == 344
    assert 0.55 < counts["train"] / 344 < 0.78
    assert ex.payload_format == "parquet" and ex.span == 0 and len(ex.input_fingerprint) == 64
    # missing values stay missing (nulls), not zeros or "NA" strings
    t = pq.read_table(ex.split_uri("train"))
    assert t.column("sex").null_count + pq.read_table(ex.split_uri("eval")).column("sex").null_count == 11
    # the same rows land in the same splits on another run
    r2 = _run(tmp_path, [ExampleGen(input_base=os.path.dirname(PENGUINS))])
    ex2 = r2.nodes[0].outputs["examples"][0]
    assert pq.read_table(ex2.split_uri("eval")).equals(pq.read_table(ex.split_uri("eval")))


def test_statistics_cover_every_row_per_split(penguin):
    _, _, nodes = penguin
    from tfpipe.components.statistics_gen import load_statistics
    stats = nodes["StatisticsGen"].outputs["statistics"][0]
    ex = nodes["ExampleGen"].outputs["examples"][0]
    missing_bill = 0
    for s in ("train", "eval"):
        ds = load_statistics(stats, s).datasets[0]
        assert ds.num_examples == ex.row_counts[s]
        feats = {f.path.step[0]: f for f in ds.features}
        assert set(feats) == {"species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                              "body_mass_g", "sex", "year"}
        # missing values (nulls in the Parquet split) are counted as missing by TFDV
        nulls = pq.read_table(ex.split_uri(s)).column("bill_length_mm").null_count
        assert feats["bill_length_mm"].num_stats.common_stats.num_missing == nulls
        missing_bill += nulls
    assert missing_bill == 2  # the Palmer penguins table lacks two bill lengths
    total_missing = sum({f.path.step[0]: f for f in load_statistics(stats, s).datasets[0].features}["sex"]
                        .string_stats.common_stats.num_missing for s in ("train", "eval"))
    assert total_missing == 11


def _rounded(stats):
    """A statistics proto with every double rounded to 9 significant digits: two ways of
    summing the same values may differ in the last digit."""
    from google.protobuf.json_format import MessageToDict

    def walk(x):
        if isinstance(x, float):
            return float(f"{x:.9g}")
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(MessageToDict(stats))


def test_default_statistics_are_what_tfdvs_beam_transform_computes(penguin, tmp_path):
    """StatisticsGen's default (TFDV's in-memory combiners over the Parquet batches) gives the
    statistics of TFDV's GenerateStatistics run as a Beam pipeline, split by split; a
    --runner, more direct workers or slicing options take the Beam pipeline."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv

    from tfpipe import ExampleStatistics
    from tfpipe.components.statistics_gen import _needs_beam, load_statistics, statistics_graph
    _, _, nodes = penguin
    ex = nodes["ExampleGen"].outputs["examples"][0]
    ours = nodes["StatisticsGen"].outputs["statistics"][0]
    beam_stats = ExampleStatistics(uri=str(tmp_path / "beam"))
    with beam.Pipeline() as p:
        statistics_graph(p, examples=ex, statistics=beam_stats, splits=["train", "eval"],
                         stats_options=tfdv.StatsOptions())
    for s in ("train", "eval"):
        a, b = load_statistics(ours, s), load_statistics(beam_stats, s)
        assert a.datasets[0].num_examples == b.datasets[0].num_examples == ex.row_counts[s]
        assert _rounded(a) == _rounded(b), s
    opts = tfdv.StatsOptions()
    assert _needs_beam([], opts) is None and _needs_beam(["--direct_num_workers=1"], opts) is None
    assert _needs_beam(["--runner=PortableRunner"], opts) == "--runner PortableRunner"
    assert _needs_beam(["--direct_num_workers=2"], opts) == "--direct_num_workers 2"
    assert _needs_beam([], tfdv.StatsOptions(feature_allowlist=["island"])) == "stats_options feature_allowlist"


def test_schema_inferred_and_no_anomalies(penguin):
    tmp, _, nodes = penguin
    import tensorflow_data_validation as tfdv
    schema = tfdv.load_schema_text(nodes["SchemaGen"].outputs["schema"][0].schema_path())
    by = {f.name: f for f in schema.feature}
    assert set(by["species"].string_domain.value if by["species"].HasField("string_domain") else
               [d.value for d in schema.string_domain if d.name == by["species"].domain][0]) == \
        {"Adelie", "Chinstrap", "Gentoo"}
    an = nodes["ExampleValidator"].outputs["anomalies"][0]
    assert an.anomaly_count == 0
    assert json.load(open(an.path("anomalies.json"))) == {"train": [], "eval": []}


def test_lineage_and_cached_rerun(penguin):
    tmp, ir, nodes = penguin
    r = LocalRunner(verbose=False).run(ir, to_node="ExampleValidator")
    assert [n.state for n in r.nodes] == ["CACHED"] * 4
    from tfpipe.tracking.records import lineage
    tree = lineage(MetadataStore(ir["pipeline"]["metadata"]), nodes["ExampleValidator"].outputs["anomalies"][0].id)
    chain = []
    t = tree
    while "produced_by" in t:
        chain.append(t["produced_by"]["component"])
        ups = [x for subs in t["inputs"].values() for x in subs if "produced_by" in x]
        if not ups:
            break
        t = ups[0]
    assert chain == ["ExampleValidator", "SchemaGen", "StatisticsGen", "ExampleGen"]
    gen = t["produced_by"]
    assert gen["parameters"]["input_fingerprint"] == nodes["ExampleGen"].outputs["examples"][0].input_fingerprint
    assert gen["code_version"] and t["artifact"]["properties"]["fingerprint"]


def _spans(tmp, spans: dict):
    for s, rows in spans.items():
        d = tmp / "data" / f"span-{s}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "penguins.csv").write_text(rows)
    return str(tmp / "data")


def test_spans_newest_by_default_range_and_changed_data_misses_cache(tmp_path):
    lines = open(PENGUINS).read().splitlines(True)
    base = _spans(tmp_path, {1: "".join(lines[:101]), 2: "".join(lines[:1] + lines[101:201])})
    r = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv")])
    ex = r.nodes[0].outputs["examples"][0]
    assert ex.span == 2 and sum(ex.row_counts.values()) == 100
    r = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv", span_range=[1, 2])])
    assert sum(r.nodes[0].outputs["examples"][0].row_counts.values()) == 200
    r = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv", span=1)])
    assert r.nodes[0].outputs["examples"][0].span == 1
    # new span arrives: not served from cache
    _spans(tmp_path, {3: "".join(lines[:1] + lines[201:])})
    r = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv")])
    assert r.nodes[0].state == "COMPLETE" and r.nodes[0].outputs["examples"][0].span == 3
    # same span, edited in place: the content fingerprint changes, so no cache hit
    again = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv")])
    assert again.nodes[0].state == "CACHED"
    with open(os.path.join(base, "span-3", "penguins.csv"), "a") as f:
        f.write(lines[1])
    edited = _run(tmp_path, [ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv")])
    assert edited.nodes[0].state == "COMPLETE"
    assert sum(edited.nodes[0].outputs["examples"][0].row_counts.values()) == 145


def test_parquet_tfrecord_and_presplit_inputs(tmp_path):
    import tensorflow as tf
    from pyarrow import csv as pacsv
    t = pacsv.read_csv(PENGUINS)
    (tmp_path / "pq").mkdir()
    pq.write_table(t, tmp_path / "pq" / "p.parquet")
    (tmp_path / "tfr").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "tfr" / "p.tfrecord")) as w:
        for row in t.to_pylist():
            feats = {}
            for k, v in row.items():
                if v is None:
                    continue
                if isinstance(v, str):
                    feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                elif isinstance(v, int):
                    feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
                else:
                    feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    lines = open(PENGUINS).read().splitlines(True)
    (tmp_path / "pre" / "train").mkdir(parents=True)
    (tmp_path / "pre" / "test").mkdir(parents=True)
    (tmp_path / "pre" / "train" / "a.csv").write_text("".join(lines[:301]))
    (tmp_path / "pre" / "test" / "a.csv").write_text("".join(lines[:1] + lines[301:]))
    gens = [ExampleGen(input_base=str(tmp_path / "pq"), id="pq"),
            ExampleGen(input_base=str(tmp_path / "tfr"), id="tfr"),
            ExampleGen(input_base=str(tmp_path / "pre"), input_splits={"train": "train/*.csv", "test": "test/*.csv"},
                       id="pre")]
    stats = StatisticsGen(examples=gens[1].outputs.examples)
    r = _run(tmp_path, gens + [stats])
    assert r.ok, r.error
    out = {n.node_id: n.outputs for n in r.nodes}
    assert sum(out["pq"]["examples"][0].row_counts.values()) == 344
    tfr = out["tfr"]["examples"][0]
    assert sum(tfr.row_counts.values()) == 344
    assert tfr.columns["species"] == "string" and tfr.columns["year"] == "int64"
    assert out["pre"]["examples"][0].row_counts == {"train": 300, "test": 44}


def test_import_schema_and_anomalies_fail_or_warn(tmp_path):
    base = tmp_path / "data"
    base.mkdir()
    lines = open(PENGUINS).read().splitlines(True)
    # a curated schema that knows only two species; the data has three
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "species" type: BYTES domain: "species" presence { min_fraction: 1.0 } }\n'
                      'string_domain { name: "species" value: "Adelie" value: "Gentoo" }\n')
    (base / "a.csv").write_text("".join(lines))
    gen = ExampleGen(input_base=str(base))
    stats = StatisticsGen(examples=gen.outputs.examples)
    imp = ImportSchemaGen(schema_file=str(schema))
    strict = ExampleValidator(statistics=stats.outputs.statistics, schema=imp.outputs.schema, id="strict")
    r = _run(tmp_path, [strict])
    assert not r.ok and r.error.node_id == "strict"
    msg = str(r.error)
    assert "feature 'species'" in msg and "Chinstrap" in msg and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in msg
    lenient = ExampleValidator(statistics=stats.outputs.statistics, schema=imp.outputs.schema,
                               fail_on_anomalies=False, id="lenient")
    r2 = _run(tmp_path, [lenient])
    assert r2.ok
    an = r2.nodes[-1].outputs["anomalies"][0]
    assert an.anomaly_count >= 2  # species in both splits (plus year/others missing from the schema)
    report = json.load(open(an.path("anomalies.json")))
    assert any(row["feature"] == "species" for row in report["train"])


def test_drift_against_baseline_statistics(tmp_path):
    lines = open(PENGUINS).read().splitlines(True)
    header, body = lines[0], lines[1:]
    adelie = [ln for ln in body if ln.startswith("Adelie")]
    gentoo = [ln for ln in body if ln.startswith("Gentoo")]
    base = _spans(tmp_path, {1: header + "".join(adelie), 2: header + "".join(gentoo)})
    g1 = ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv", span=1, id="g1")
    g2 = ExampleGen(input_base=base, input_pattern="span-{SPAN}/*.csv", span=2, id="g2")
    s1 = StatisticsGen(examples=g1.outputs.examples, id="s1")
    s2 = StatisticsGen(examples=g2.outputs.examples, id="s2")
    schema = SchemaGen(statistics=s1.outputs.statistics)
    v = ExampleValidator(statistics=s2.outputs.statistics, schema=schema.outputs.schema,
                         baseline_statistics=s1.outputs.statistics, drift_thresholds={"island": 0.1},
                         fail_on_anomalies=False)
    r = _run(tmp_path, [v])
    assert r.ok, r.error
    report = json.load(open(r.nodes[-1].outputs["anomalies"][0].path("anomalies.json")))
    drifted = [row for row in report["train"] if row["feature"] == "island"]
    assert drifted and any("drift" in (row["short"] + row["description"]).lower() or
                           "DRIFT" in ",".join(row["kinds"]) or "COMPARATOR" in ",".join(row["kinds"])
                           for row in drifted), report["train"]


def test_row_hashes_are_stable_across_chunking_and_sensitive_to_values():
    from tfpipe.components._tabular import row_hashes
    from tfpipe.tabular import read_table
    t = read_table([PENGUINS])
    h = row_hashes(t.columns, t.num_rows)
    chunked = pa.concat_tables([t.slice(0, 17), t.slice(17)])
    assert (h == row_hashes(chunked.columns, chunked.num_rows)).all()
    assert len(set(h.tolist())) == t.num_rows  # penguins rows are all distinct
    changed = t.set_column(2, "bill_length_mm", pa.array([None] + t.column(2).to_pylist()[1:], pa.float64()))
    h2 = row_hashes(changed.columns, changed.num_rows)
    assert h2[0] != h[0] and (h2[1:] == h[1:]).all()


def test_hash_split_of_batches_is_the_split_of_the_whole_table():
    """ExampleGen streams its input: the rows each split gets from batch after batch are
    the rows, in the same order, that splitting the whole table gives."""
    from tfpipe.components._tabular import hash_split
    from tfpipe.tabular import read_table
    t = read_table([PENGUINS])
    whole = hash_split(t, {"train": 3, "eval": 1, "test": 1}, "", [PENGUINS])
    parts = [hash_split(b, {"train": 3, "eval": 1, "test": 1}, "", [PENGUINS]) for b in t.to_batches(max_chunksize=50)]
    for s in whole:
        streamed = pa.Table.from_batches([p[s] for p in parts], schema=t.schema)
        assert streamed.num_rows > 0 and streamed.equals(whole[s].combine_chunks()), s
    assert sum(w.num_rows for w in whole.values()) == t.num_rows


def test_statistics_that_miss_recorded_rows_fail_the_node(penguin, tmp_path):
    """The end-to-end row count: examples whose recorded count differs from the rows on disk
    are refused (the in-memory path checks the proto it computed, naming the cause)."""
    from tfpipe import Examples, ExampleStatistics
    from tfpipe.components.statistics_gen import StatisticsError, StatisticsGen
    from tfpipe.runtime import ExecutionContext
    _, _, nodes = penguin
    ex = nodes["ExampleGen"].outputs["examples"][0]
    wrong = Examples(uri=ex.uri)
    wrong.split_names = list(ex.split_names)
    wrong.row_counts = {**ex.row_counts, "eval": ex.row_counts["eval"] + 1}
    out = ExampleStatistics(uri=str(tmp_path / "stats"))
    with ExecutionContext("p", "r", "StatisticsGen", 0, verbose=False):
        with pytest.raises(StatisticsError, match=rf"split eval: statistics cover {ex.row_counts['eval']} examples "
                                                  rf"but ExampleGen wrote {ex.row_counts['eval'] + 1}; the examples"):
            StatisticsGen.fn(examples=wrong, statistics=out)
