"""The penguin pipeline from each source to a pushed model, on the store of the shared
penguin run (tests/components/conftest.py), each source a pipeline of its own name and root:

  avro-1    the penguin rows as an Avro file: ExampleGen reads it (by the .avro extension)
            into the very Examples the CSV gave, so the data and model halves are cache
            hits; the model is evaluated and pushed to this pipeline's serving directory
  delta-1   a Delta table at version 1 (version 0 holds no rows): the same, recorded as
            delta version 1
  explain   version 2 appends rows: ``--explain`` says ExampleGen reads delta version 1 -> 2
            and that every node after it runs
  delta-2   exactly those nodes run: a new model, compared with delta-1's, pushed beside it
  reproduce ``tfpipe reproduce delta-1`` once version 2 exists: the pipeline file is committed
            in a git work tree of its own, so the run recorded its commit; the re-run reads
            delta version 1 (time travel) and trains on it again, in a fresh directory (its
            Pusher pushes there too, not into the run's serving directory)
"""
import json
import os

import pytest

from tests.components.test_avro_source import write_avro
from tests.components.test_delta_source import penguin_rows, write_versions
from tests.components.test_penguin_e2e import _execs, _pipeline_file
from tests.conftest import tfpipe
from tests.tracking.conftest import git
from tfpipe.components.pusher import versions

EXECUTORS = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer", "Evaluator",
             "InfraValidator", "Pusher"]
AVRO_TYPES = {"int64": "long", "double": "double", "string": "string"}


@pytest.fixture(scope="module")
def runs(penguin_model, tmp_path_factory):
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake
    tmp = tmp_path_factory.mktemp("penguin_sources")
    t = penguin_rows()
    out = {"csv_examples": penguin_model["outputs"]["ExampleGen"]["examples"], "tmp": tmp}
    schema = {"type": "record", "name": "Penguin",
              "fields": [{"name": f.name, "type": ["null", AVRO_TYPES[str(f.type)]]} for f in t.schema]}
    write_avro(str(tmp / "avro" / "penguins.avro"), schema, t.to_pylist())
    out["avro_kw"] = {**penguin_model["kw"], "data_root": str(tmp / "avro"), "name": "penguin_avro",
                      "root": str(tmp / "avro_root")}
    out["avro"] = tfpipe("run", _pipeline_file(tmp, out["avro_kw"], "from_avro"), "--run-id", "avro-1", check=0)

    table = str(tmp / "penguins_delta")
    write_versions(table, [t])
    out["table"] = table
    out["delta_kw"] = {**penguin_model["kw"], "data_root": table, "name": "penguin_delta",
                       "root": str(tmp / "delta_root")}
    code = tmp / "delta_code"  # a git work tree: the runs record its commit, which reproduce re-runs
    code.mkdir()
    pipeline = _pipeline_file(code, out["delta_kw"], "from_delta")
    git(code, "init", "-q")
    git(code, "add", ".")
    git(code, "commit", "-qm", "the penguin pipeline from a Delta table")
    out["d1"] = tfpipe("run", pipeline, "--run-id", "delta-1", check=0)
    out["d1_pushed"] = versions(os.path.join(out["delta_kw"]["root"], "serving_model"))
    more = t.filter(pc.equal(pc.bit_wise_and(pa.array(range(len(t))), 7), 0))  # every 8th row, seen in 2010
    more = more.set_column(more.schema.get_field_index("year"), "year", pa.array([2010] * len(more)))
    write_deltalake(table, more, mode="append")
    out["explain"] = tfpipe("run", pipeline, "--explain", "--json", check=0)
    out["d2"] = tfpipe("run", pipeline, "--run-id", "delta-2", check=0)
    out["d2_pushed"] = versions(os.path.join(out["delta_kw"]["root"], "serving_model"))
    out["repro"] = tfpipe("reproduce", "delta-1", "-o", str(tmp / "again"), "--json", "-q",
                          "--metadata", out["delta_kw"]["metadata"], check=0)
    return out


def _examples(kw, run_id):
    from tfpipe.metadata import MetadataStore
    ex = _execs(kw, run_id)["ExampleGen"]
    [a] = MetadataStore(kw["metadata"]).get_artifacts([ex["outputs"]["examples"][0]["id"]])
    return a


def _pushed(kw, run_id):
    from tfpipe.metadata import MetadataStore
    ex = _execs(kw, run_id)["Pusher"]
    [a] = MetadataStore(kw["metadata"]).get_artifacts([ex["outputs"]["pushed_model"][0]["id"]])
    return a


def test_from_avro_to_a_pushed_model(runs):
    kw = runs["avro_kw"]
    ex = _execs(kw, "avro-1")
    assert ex["ExampleGen"]["state"] == "COMPLETE"
    examples = _examples(kw, "avro-1")
    # the Avro file's types map to what the CSV gave: the same Examples, so the model half is cached
    assert examples.fingerprint == runs["csv_examples"].fingerprint and examples.source == "files"
    assert all(ex[n]["state"] == "CACHED" for n in ["StatisticsGen", "SchemaGen", "Transform", "Trainer"])
    assert ex["Pusher"]["state"] == "COMPLETE" and _pushed(kw, "avro-1").pushed is True
    [v] = versions(os.path.join(kw["root"], "serving_model"))
    assert os.path.exists(os.path.join(kw["root"], "serving_model", str(v), "saved_model.pb"))


def test_from_delta_version_1_to_a_pushed_model(runs):
    kw = runs["delta_kw"]
    examples = _examples(kw, "delta-1")
    assert examples.source == "delta" and examples.data_version == {"delta_version": 1, "table": runs["table"]}
    assert examples.fingerprint == runs["csv_examples"].fingerprint
    assert _pushed(kw, "delta-1").pushed is True
    assert len(runs["d1_pushed"]) == 1


def test_a_new_delta_version_is_explained_and_reruns_exactly_the_nodes_after_it(runs):
    plan = {p["node"]: p for p in json.loads(runs["explain"].stdout)}
    assert plan["ExampleGen"]["action"] == "run"
    assert plan["ExampleGen"]["reasons"][0].startswith("input data changed (delta version 1 -> 2; input_fingerprint ")
    assert {n for n, p in plan.items() if p["action"] == "run"} == set(EXECUTORS)
    resolver = plan["latest_blessed_model_resolver"]  # resolves anew, after its upstream Trainer runs
    assert resolver["action"] == "resolve" and "after upstream Trainer runs" in resolver["reasons"][0]
    assert plan["StatisticsGen"]["reasons"] == ["upstream ExampleGen will run"]
    states = {n: e["state"] for n, e in _execs(runs["delta_kw"], "delta-2").items()}
    assert {n: s for n, s in states.items() if n in EXECUTORS} == {n: "COMPLETE" for n in EXECUTORS}
    examples = _examples(runs["delta_kw"], "delta-2")
    assert examples.data_version["delta_version"] == 2 and sum(examples.row_counts.values()) == 344 + 43
    d1, d2 = _execs(runs["delta_kw"], "delta-1"), _execs(runs["delta_kw"], "delta-2")
    assert d2["Evaluator"]["inputs"]["baseline_model"] == d1["Evaluator"]["inputs"]["model"]  # delta-1's model
    assert _pushed(runs["delta_kw"], "delta-2").pushed is True, runs["d2"].stderr[-3000:]
    assert len(runs["d2_pushed"]) == 2


def test_reproduce_of_the_run_trained_on_delta_version_1_reads_version_1_after_version_2_exists(runs):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.records import show_run
    assert runs["repro"].returncode == 0, runs["repro"].stderr[-3000:]
    res = json.loads(runs["repro"].stdout)
    assert res["status"] == "COMPLETE", res.get("error")
    [check] = [d for d in res["data_checks"] if d["key"] == "source_snapshot"]
    assert check["ok"] and check["data_version"] == {"delta_version": 1, "table": runs["table"]}
    # version 1's rows again, not version 2's: the same Examples as delta-1's
    [examples] = [r for r in res["artifacts"] if (r["node"], r["output"]) == ("ExampleGen", "examples")]
    assert examples["identical"] and examples["original"] == _examples(runs["delta_kw"], "delta-1").fingerprint
    again = {e["node_id"]: e for e in show_run(MetadataStore(res["metadata"]), res["reproduced_run_id"])["executions"]}
    [a] = MetadataStore(res["metadata"]).get_artifacts([again["ExampleGen"]["outputs"]["examples"][0]["id"]])
    assert a.data_version["delta_version"] == 1 and sum(a.row_counts.values()) == 344
    # and trained on them again, in the fresh directory
    assert again["Trainer"]["state"] == "COMPLETE"
    [model] = [r for r in res["artifacts"] if (r["node"], r["output"]) == ("Trainer", "model")]
    assert model["reproduced_uri"].startswith(res["out_dir"])
    # a reproduction publishes nothing: its Pusher pushed into the fresh directory
    serving = os.path.join(runs["delta_kw"]["root"], "serving_model")
    assert res["pushes"] == {"Pusher": {"recorded": serving, "reproduced": os.path.join(res["out_dir"], "pushed",
                                                                                        "Pusher")}}
    assert versions(serving) == runs["d2_pushed"]
