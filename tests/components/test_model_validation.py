"""Resolver, Evaluator (TFMA), InfraValidator, Pusher and BulkInferrer on the penguin data
with a tiny contract model (tests/fixtures/tiny_model.py) standing in for the Trainer.

One module-scoped sequence of runs on one metadata store:
  run 1  good model            -> blessed, infra-blessed, pushed as version v1, predictions
  run 2  constant model        -> baseline = run 1's model; not blessed (value and change
                                  thresholds, with metric/slice/value), not pushed, no predictions
  run 3  good model again      -> every executor node served from cache; the resolver
                                  re-resolves; nothing new pushed
"""
import json
import os
import re
import textwrap

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, tfpipe
from tests.fixtures.tiny_model import TinyClassifierTrainer
from tfpipe import Model, Pipeline, compile_pipeline
from tfpipe.components import (
    BulkInferrer,
    Evaluator,
    ExampleGen,
    InfraValidator,
    Pusher,
    Resolver,
)
from tfpipe.components.evaluator import load_metrics
from tfpipe.components.pusher import RECORD, push_atomically, versions
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner

DATA = os.path.join(REPO, "examples", "penguin", "data")

EVAL_CONFIG = {
    "model_specs": [{"label_key": "species", "prediction_key": "outputs",
                     "preprocessing_function_names": ["transform_features"]}],
    "slicing_specs": [{}, {"feature_keys": ["island"]}],
    "metrics_specs": [{"metrics": [
        {"class_name": "sparse_categorical_accuracy",
         "threshold": {"value_threshold": {"lower_bound": 0.6},
                       "change_threshold": {"direction": "HIGHER_IS_BETTER", "absolute": -0.01}}},
        {"class_name": "ExampleCount"}]}],
}


def build(root, constant=False, eval_config=EVAL_CONFIG, name="tinypenguin"):
    eg = ExampleGen(input_base=DATA, label_key="species")
    trainer = TinyClassifierTrainer(examples=eg.outputs.examples, constant=constant, id="Trainer")
    latest = Resolver(strategy="latest_blessed_model", model_type=Model, candidate=trainer.outputs.model,
                      id="latest_blessed_model_resolver")
    evaluator = Evaluator(examples=eg.outputs.examples, model=trainer.outputs.model,
                          baseline_model=latest.outputs.model, eval_config=eval_config)
    infra = InfraValidator(model=trainer.outputs.model, examples=eg.outputs.examples,
                           drop_columns=["species"], num_examples=5)
    pusher = Pusher(model=trainer.outputs.model, model_blessing=evaluator.outputs.blessing,
                    infra_blessing=infra.outputs.blessing, push_destination=os.path.join(root, "serving"))
    bulk = BulkInferrer(examples=eg.outputs.examples, model=trainer.outputs.model,
                        model_blessing=evaluator.outputs.blessing, keep_columns=["island", "species"])
    return Pipeline(name, [eg, trainer, latest, evaluator, infra, pusher, bulk],
                    root=os.path.join(root, "artifacts"), metadata=os.path.join(root, "metadata.sqlite"),
                    beam_pipeline_args=["--direct_num_workers=1"])


def node(res, node_id):
    [r] = [r for r in res.nodes if r.node_id == node_id]
    return r


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    runner = LocalRunner(verbose=False)
    out = {"root": root}
    for name, constant in (("r1", False), ("r2", True), ("r3", False)):
        res = runner.run(compile_pipeline(build(root, constant)), run_id=name)
        assert res.ok, res.error
        out[name] = res
    out["store"] = MetadataStore(os.path.join(root, "metadata.sqlite"))
    return out


def test_first_run_blesses_and_pushes_atomically_versioned(runs):
    r1, base = runs["r1"], os.path.join(runs["root"], "serving")
    assert node(r1, "latest_blessed_model_resolver").outputs == {}  # nothing earlier
    blessing = node(r1, "Evaluator").outputs["blessing"][0]
    assert blessing.blessed is True
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert node(r1, "Evaluator").outputs["evaluation"][0].custom["metrics_computed"] == "in batches"
    m = load_metrics(node(r1, "Evaluator").outputs["evaluation"][0])
    overall = m["slices"][0]
    assert overall["slice"] == "Overall" and overall["candidate"]["sparse_categorical_accuracy"] > 0.9
    eval_rows = node(r1, "ExampleGen").outputs["examples"][0].row_counts["eval"]
    assert overall["candidate"]["example_count"] == eval_rows  # the eval split, every row
    assert {s["slice"] for s in m["slices"]} >= {"island=Biscoe", "island=Dream", "island=Torgersen"}
    assert m["baseline_model"] is None and "change thresholds skipped" in m["notes"][0]
    infra = node(r1, "InfraValidator").outputs["blessing"][0]
    assert infra.blessed and infra.custom["load_time_s"] > 0
    assert os.path.exists(os.path.join(infra.uri, "INFRA_BLESSED"))
    pushed = node(r1, "Pusher").outputs["pushed_model"][0]
    assert pushed.pushed is True and pushed.destination == base
    [v] = versions(base)
    assert pushed.pushed_version == str(v)
    assert os.path.exists(os.path.join(base, str(v), "saved_model.pb"))
    rec = json.load(open(os.path.join(base, str(v), RECORD)))
    assert rec["model_id"] == node(r1, "Trainer").outputs["model"][0].id
    assert not [d for d in os.listdir(base) if d.startswith(".")]  # no temporary left behind


def test_bulk_inferrer_predicts_every_eval_row_with_keys(runs):
    res = node(runs["r1"], "BulkInferrer").outputs["inference_result"][0]
    files = [os.path.join(res.uri, f) for f in os.listdir(res.uri) if f.endswith(".parquet")]
    t = pq.ParquetDataset(files).read()
    assert t.num_rows == node(runs["r1"], "ExampleGen").outputs["examples"][0].row_counts["eval"]
    assert {"island", "species", "outputs", "predicted_class", "score"} <= set(t.column_names)
    rows = t.to_pylist()
    assert all(abs(sum(r["outputs"]) - 1) < 1e-3 for r in rows)
    vocab = sorted({r["species"] for r in rows})
    acc = sum(vocab[r["predicted_class"]] == r["species"] for r in rows) / len(rows)
    assert acc > 0.9  # predictions line up with their input rows


def test_worse_model_is_not_blessed_not_pushed_and_says_why(runs):
    r1, r2 = runs["r1"], runs["r2"]
    first_model = node(r1, "Trainer").outputs["model"][0]
    assert [a.id for a in node(r2, "latest_blessed_model_resolver").outputs["model"]] == [first_model.id]
    blessing = node(r2, "Evaluator").outputs["blessing"][0]
    assert blessing.blessed is False
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    text = "\n".join(blessing.reasons)
    assert re.search(r"sparse_categorical_accuracy on slice Overall = 0\.[0-5]\d{3} fails the value "
                     r"threshold lower bound 0\.6", text), text
    assert re.search(r"change in sparse_categorical_accuracy vs the baseline on slice Overall = -0\.\d{4} "
                     r"fails the change threshold", text), text
    assert "HIGHER_IS_BETTER, absolute -0.01" in text
    assert load_metrics(node(r2, "Evaluator").outputs["evaluation"][0])["baseline_model"] == first_model.id
    pushed = node(r2, "Pusher").outputs["pushed_model"][0]
    assert pushed.pushed is False and pushed.pushed_version is None
    assert "not blessed by the Evaluator: sparse_categorical_accuracy on slice Overall" in pushed.reason
    assert len(versions(os.path.join(runs["root"], "serving"))) == 1
    bulk = node(r2, "BulkInferrer").outputs["inference_result"][0]
    assert os.path.exists(os.path.join(bulk.uri, "SKIPPED"))
    assert not [f for f in os.listdir(bulk.uri) if f.endswith(".parquet")]


def test_unchanged_rerun_is_cached_and_pushes_nothing(runs):
    r1, r3 = runs["r1"], runs["r3"]
    states = {r.node_id: r.state for r in r3.nodes}
    assert states.pop("latest_blessed_model_resolver") == "COMPLETE"  # always re-resolves
    assert set(states.values()) == {"CACHED"}, states
    # the candidate is excluded, and the only other model is not blessed: no baseline, as in run 1
    assert node(r3, "latest_blessed_model_resolver").outputs == {}
    assert node(r3, "Pusher").cached_from == node(r1, "Pusher").execution_id
    assert len(versions(os.path.join(runs["root"], "serving"))) == 1


def test_resolver_execution_points_at_existing_artifacts(runs):
    store = runs["store"]
    r2 = node(runs["r2"], "latest_blessed_model_resolver")
    [e] = store.executions([r2.execution_id])
    ins, outs = store.io_of(e.id)
    first_model = node(runs["r1"], "Trainer").outputs["model"][0]
    assert [a.id for a in outs["model"]] == [first_model.id]
    assert [a.id for a in ins["candidate"]] == [node(runs["r2"], "Trainer").outputs["model"][0].id]
    assert len(store.list_artifacts("Model")) == 2  # two Trainer executions, none from resolvers


def test_push_is_atomic_and_versions_increase(tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(b"x" * 1000)
    base = str(tmp_path / "serving")
    a = push_atomically(str(src), base, {"n": 1})
    b = push_atomically(str(src), base, {"n": 2})
    assert b > a and versions(base) == [a, b]
    assert json.load(open(os.path.join(base, str(b), RECORD))) == {"n": 2}
    assert sorted(os.listdir(base)) == [str(a), str(b)]


def _bad_pipeline_file(tmp_path, root, eval_config):
    f = tmp_path / "bad_pipeline.py"
    f.write_text(textwrap.dedent(f"""
        from tests.components.test_model_validation import build
        def create_pipeline():
            return build({root!r}, eval_config={eval_config!r})
    """))
    return str(f)


def _bad_config(path, value):
    cfg = json.loads(json.dumps(EVAL_CONFIG))
    *where, last = path
    d = cfg
    for k in where:
        d = d[k]
    d[last] = value
    return cfg


def _failed_evaluator(root, run_id, expect):
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    failed = [e for e in store.executions_by_context(store.context("pipeline_run", f"tinypenguin.{run_id}"))
              if store.state_name(e) == "FAILED"]
    assert [store.props(e)["node_id"] for e in failed] == ["Evaluator"]
    assert expect in store.props(failed[0])["error"]
    assert len(versions(os.path.join(root, "serving"))) == 1  # nothing pushed


@pytest.mark.parametrize("run_id,path,value,expect", [
    ("bad-label", ["model_specs", 0, "label_key"], "specie",
     "label 'specie' is not in the data; columns of Examples"),
    ("bad-metric", ["metrics_specs", 0, "metrics", 0, "class_name"], "sparse_categorical_acuracy",
     "eval_config.metrics_specs[0].metrics[0]: unknown metric 'sparse_categorical_acuracy'; expected a TFMA "
     "or Keras metric class name or its snake_case form such as SparseCategoricalAccuracy"),
])
def test_bad_eval_config_fails_tfpipe_run_with_exit_1(runs, tmp_path, run_id, path, value, expect):
    """Through the real CLI: exit 1, the error names the label or metric and what there is,
    the Evaluator's execution is FAILED, nothing after it runs, nothing is pushed."""
    cfg = _bad_config(path, value)
    p = tfpipe("run", _bad_pipeline_file(tmp_path, runs["root"], cfg), "--run-id", run_id, check=1)
    assert expect in p.stderr and "Evaluator" in p.stderr
    if run_id == "bad-label":
        assert "'species'" in p.stderr  # the columns there are
    assert "[Pusher]" not in p.stderr and "BulkInferrer" not in p.stderr
    _failed_evaluator(runs["root"], run_id, expect)


def test_eval_config_may_be_the_tfma_message_itself():
    """A TFX pipeline's ``tfma.EvalConfig(...)`` is taken as it is: the node holds its dict
    (proto field names, bounds as plain numbers), the same as the dict form; a message of
    another type is refused when the node is defined, naming what was expected."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    from tfpipe import WiringError
    msg = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="species", prediction_key="outputs",
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["island"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="sparse_categorical_accuracy", threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.6}),
                change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                             absolute={"value": -0.01}))),
            tfma.MetricConfig(class_name="ExampleCount")])])
    ir = compile_pipeline(build("/nonexistent", eval_config=msg))
    [ev] = [n for n in ir["nodes"] if n["id"] == "Evaluator"]
    assert ev["parameters"]["eval_config"] == EVAL_CONFIG
    assert json_format.ParseDict(ev["parameters"]["eval_config"], tfma.EvalConfig()) == msg
    with pytest.raises(WiringError, match=r"Evaluator\(id='Evaluator'\): parameter 'eval_config': expected a "
                                          r"tensorflow_model_analysis.EvalConfig message or its dict, found a "
                                          r"tensorflow_model_analysis.SlicingSpec message"):
        build("/nonexistent", eval_config=tfma.SlicingSpec())


def test_without_a_baseline_every_change_threshold_is_dropped_and_every_value_threshold_kept():
    """Change thresholds are dropped on a first run wherever the config puts them (a metric's
    threshold, its per-slice and cross-slice thresholds, a metrics spec's maps of them), as
    TFX's penguin example puts its change threshold per slice; TFMA would otherwise refuse
    to run ("There are change thresholds, but the baseline is missing")."""
    import tensorflow_model_analysis as tfma

    from tfpipe.components import _eval_config as ec
    change = {"direction": "higher_is_better", "absolute": {"value": -0.05}}
    both = {"value_threshold": {"lower_bound": 0.5}, "change_threshold": change}
    cfg = {"model_specs": [{"label_key": "species"}],
           "slicing_specs": [{}, {"feature_keys": ["island"]}],
           "cross_slicing_specs": [{"baseline_spec": {}, "slicing_specs": [{"feature_keys": ["island"]}]}],
           "metrics_specs": [{"metrics": [
               {"class_name": "SparseCategoricalAccuracy", "threshold": both,
                "per_slice_thresholds": [{"slicing_specs": [{}], "threshold": {"change_threshold": change}},
                                         {"slicing_specs": [{"feature_keys": ["island"]}], "threshold": both}],
                "cross_slice_thresholds": [{"cross_slicing_specs": [{"baseline_spec": {}}],
                                            "threshold": {"change_threshold": change}}]},
               {"class_name": "ExampleCount", "threshold": {"change_threshold": change}}]},
               {"metrics": [{"class_name": "Precision"}],
                "thresholds": {"precision": {"change_threshold": change}, "recall": both},
                "per_slice_thresholds": {"precision": {"thresholds": [
                    {"slicing_specs": [{}], "threshold": {"change_threshold": change}}]}}}]}
    norm = ec.normalize(cfg)
    where = [w for w, th in ec._thresholds(norm) if "change_threshold" in th]
    assert len(where) == 8  # every site found, each direction upper-cased
    assert all(th["change_threshold"]["direction"] == "HIGHER_IS_BETTER"
               for _w, th in ec._thresholds(norm) if "change_threshold" in th)

    def kinds(proto):
        out = {"change": 0, "value": 0}
        for _key, pairs in tfma.metrics.metric_thresholds_from_metrics_specs(list(proto.metrics_specs)).items():
            for _slice, th in pairs:
                out["change" if isinstance(th, tfma.GenericChangeThreshold) else "value"] += 1
        return out

    assert kinds(ec.to_proto(norm, True)) == {"change": 8, "value": 3}
    first = ec.to_proto(norm, False)
    assert kinds(first) == {"change": 0, "value": 3}
    m = first.metrics_specs[0].metrics
    assert [len(m[0].per_slice_thresholds), len(m[0].cross_slice_thresholds)] == [1, 0]
    assert not m[1].HasField("threshold")
    assert list(first.metrics_specs[1].thresholds) == ["recall"] and not first.metrics_specs[1].per_slice_thresholds
    bad = json.loads(json.dumps(cfg))
    per_slice = bad["metrics_specs"][0]["metrics"][0]["per_slice_thresholds"]
    per_slice[0]["threshold"]["change_threshold"]["direction"] = "UP"
    with pytest.raises(ec.EvalConfigError, match=re.escape(
            "eval_config.metrics_specs[0].metrics[0] (SparseCategoricalAccuracy).per_slice_thresholds[0]: "
            "change_threshold direction 'UP'; expected 'HIGHER_IS_BETTER' or 'LOWER_IS_BETTER'")):
        ec.normalize(bad)


def test_evaluation_from_parquet_matches_tfma_on_tfrecord(runs, tmp_path):
    """The Evaluator streams ExampleGen's Parquet into TFMA (each batch given its serialized
    tf.Examples) and computes the metrics in batches; TFMA's default evaluator over a
    TFRecord of the same rows read through TFXIO, as TFX feeds it, computes the same metrics
    per slice, candidate, baseline and diff, and the same validation verdict (run 2: a
    constant model against run 1's)."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    from tfpipe.components import _eval_config as ec
    from tfpipe.components.evaluator import _metrics_table, evaluation_graph
    from tfpipe.components.examples_io import serialized_examples
    examples = node(runs["r2"], "ExampleGen").outputs["examples"][0]
    model = node(runs["r2"], "Trainer").outputs["model"][0]
    baseline = node(runs["r1"], "Trainer").outputs["model"][0]
    cfg = json.loads(json.dumps(EVAL_CONFIG).replace('"sparse_categorical_accuracy"', '"SparseCategoricalAccuracy"'))
    proto = ec.to_proto(ec.normalize(cfg), True)
    records = str(tmp_path / "eval.tfrecord")
    with tf.io.TFRecordWriter(records) as w:
        for rec in serialized_examples(examples, "eval"):
            w.write(rec)
    out, computed = {}, {}
    for how, kw in (("tfrecord", {"data_location": records, "metrics": "tfma"}),  # as TFX does it
                    ("parquet", {"parquet_patterns": [examples.parquet_glob("eval")]})):
        out[how] = str(tmp_path / how)
        with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(["--direct_num_workers=1"])) as p:
            computed[how] = evaluation_graph(p, eval_config=proto, output_path=out[how],
                                             model_dir=model.saved_model_dir(),
                                             baseline_dir=baseline.saved_model_dir(), **kw)
    assert computed == {"tfrecord": "by TFMA's default evaluator (asked for)", "parquet": "in batches"}
    a, b = _metrics_table(out["tfrecord"]), _metrics_table(out["parquet"])
    assert [r["slice"] for r in a] == [r["slice"] for r in b] and len(a) >= 4  # Overall + 3 islands
    assert a[0]["candidate"]["example_count"] == examples.row_counts["eval"]
    for ra, rb in zip(a, b):
        assert set(ra) == set(rb) == {"slice", "candidate", "baseline", "diff"}
        for side in ("candidate", "baseline", "diff"):
            assert ra[side].keys() == rb[side].keys()
            for k in ra[side]:
                assert rb[side][k] == pytest.approx(ra[side][k], rel=1e-6, abs=1e-9), (ra["slice"], side, k)
    va, vb = tfma.load_validation_result(out["tfrecord"]), tfma.load_validation_result(out["parquet"])
    assert va.validation_ok is vb.validation_ok is False
    assert len(va.metric_validations_per_slice) == len(vb.metric_validations_per_slice) > 0


# The batched metrics (components/_batched_metrics.py) against TFMA's default evaluator on
# this module's models: many slices (missing values in sex, an integer year), thresholds.
RICH = json.loads(json.dumps(EVAL_CONFIG))
RICH["slicing_specs"] = [{}, {"feature_keys": ["island"]}, {"feature_keys": ["sex"]},
                         {"feature_keys": ["island"], "feature_values": {"sex": "female"}},
                         {"feature_values": {"year": "2008"}}, {"feature_keys": ["island", "year"]}]
RICH["metrics_specs"][0]["metrics"] += [
    {"class_name": "SparseCategoricalCrossentropy"},
    {"class_name": "SparseTopKCategoricalAccuracy", "config": '{"k": 2, "name": "top_2"}'},
    {"class_name": "SparseCategoricalAccuracy", "config": '{"name": "acc_by_slice"}',
     "per_slice_thresholds": [
         {"slicing_specs": [{"feature_keys": ["island"]}], "threshold": {"value_threshold": {"lower_bound": 0.5}}},
         {"slicing_specs": [{"feature_values": {"island": "Nowhere"}}],
          "threshold": {"value_threshold": {"lower_bound": 0.1}}}]}]


def test_a_candidate_against_its_baseline_on_many_slices_matches_tfma(runs, tmp_path, monkeypatch):
    from tests.components.test_batched_metrics import assert_same_evaluation, evaluate, proto_of
    from tfpipe.components import _batched_metrics as bm
    from tfpipe.components.evaluator import _reasons

    def no_split(*a):
        raise AssertionError("the penguin columns (sex has missing values) are sliced without a per-row split")
    monkeypatch.setattr(bm._MetricsFn, "_slice_rows_split", no_split)
    examples = node(runs["r2"], "ExampleGen").outputs["examples"][0]
    model = node(runs["r2"], "Trainer").outputs["model"][0]  # the constant model
    baseline = node(runs["r1"], "Trainer").outputs["model"][0]
    proto = proto_of(RICH, True)
    patterns = [examples.parquet_glob("eval")]
    how = {m: evaluate(tmp_path / m, proto, model, baseline, patterns, m) for m in ("tfma", "auto")}
    assert how == {"tfma": "by TFMA's default evaluator (asked for)", "auto": "in batches"}
    seen = assert_same_evaluation(str(tmp_path / "tfma"), str(tmp_path / "auto"))
    # Overall, 3 islands, 2 sexes (the rows without one in no slice), island x female,
    # the 2008 rows, island x year: a branch of the batched path each
    assert seen["slices"] >= 14 and seen["failures"] > 0 and seen["ok"] is False
    assert seen["missing_slices"] == 1  # island=Nowhere matched no example
    import tensorflow_model_analysis as tfma
    reasons = _reasons(tfma.load_validation_result(str(tmp_path / "auto")))
    assert sorted(reasons) == sorted(_reasons(tfma.load_validation_result(str(tmp_path / "tfma"))))  # any slice order
    assert any("change in sparse_categorical_accuracy vs the baseline" in r for r in reasons)


def test_one_model_without_a_baseline_matches_tfma(runs, tmp_path):
    from tests.components.test_batched_metrics import assert_same_evaluation, evaluate, proto_of
    examples = node(runs["r1"], "ExampleGen").outputs["examples"][0]
    model = node(runs["r1"], "Trainer").outputs["model"][0]
    proto = proto_of(RICH, False)
    patterns = [examples.parquet_glob("eval"), examples.parquet_glob("train")]  # two splits
    how = {m: evaluate(tmp_path / m, proto, model, None, patterns, m) for m in ("tfma", "auto")}
    assert how["auto"] == "in batches"
    seen = assert_same_evaluation(str(tmp_path / "tfma"), str(tmp_path / "auto"))
    assert seen["slices"] >= 14
