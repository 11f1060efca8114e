"""Metrics a batch at a time (components/_batched_metrics.py) against TFMA's own default
evaluator, on the same models and rows: every metric key and value per slice (candidate,
baseline and diff), plots and attributions present per slice, and the validation result
(failures, missing slices, slicing details), so the blessing is the same. The configs take
every branch the batched path has: several slicing specs (feature keys, feature values, a
column with missing values, an integer column), each supported Keras metric, ExampleCount,
value, change and per-slice thresholds, one model and a candidate with a baseline (those
two in tests/components/test_model_validation.py, on its runs' models). Configs it does not
reproduce are left to TFMA, with the reason."""
import json

import pytest

from tests.components.test_model_validation import EVAL_CONFIG


def proto_of(cfg, has_baseline):
    from tfpipe.components import _eval_config as ec
    c = ec.normalize(cfg)
    ec.check_metric_names(c)
    return ec.to_proto(c, has_baseline)


def evaluate(out, proto, model, baseline, patterns, metrics):
    import apache_beam as beam

    from tfpipe.components._autograph import libraries_not_autographed
    from tfpipe.components.evaluator import evaluation_graph
    with libraries_not_autographed(), beam.Pipeline(
            options=beam.options.pipeline_options.PipelineOptions(["--direct_num_workers=1"])) as p:
        return evaluation_graph(p, eval_config=proto, output_path=str(out), model_dir=model.saved_model_dir(),
                                baseline_dir=baseline.saved_model_dir() if baseline else None,
                                parquet_patterns=patterns, metrics=metrics)


def _key(msg) -> bytes:
    return msg.SerializeToString(deterministic=True)


def assert_same_evaluation(a: str, b: str) -> dict:
    """The two output folders hold the same metrics (values to float32 rounding of a sum in
    another order), the same slices in plots and attributions, and the same validation."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    def metrics(path):
        out = {}
        for mfs in tfma.load_metrics(path):
            for kv in mfs.metric_keys_and_values:
                out[(_key(mfs.slice_key), _key(kv.key))] = kv.value
        return out

    ma, mb = metrics(a), metrics(b)
    assert ma.keys() == mb.keys() and ma
    for k, v in ma.items():
        assert v.WhichOneof("type") == mb[k].WhichOneof("type") == "double_value", k
        assert mb[k].double_value.value == pytest.approx(v.double_value.value, rel=1e-6, abs=1e-7), k

    def slices(path, name):
        records = tf.data.TFRecordDataset(tf.io.gfile.glob(f"{path}/{name}-*"))
        return sorted(_key(tfma.proto.metrics_for_slice_pb2.PlotsForSlice.FromString(r.numpy()).slice_key)
                      for r in records)

    for name in ("plots", "attributions"):
        assert slices(a, name) == slices(b, name) == sorted({s for s, _ in ma})
    va, vb = tfma.load_validation_result(a), tfma.load_validation_result(b)

    def failures(v):
        return sorted((_key(s.slice_key), _key(f.metric_key), _key(f.metric_threshold),
                       f.metric_value.double_value.value)
                      for s in v.metric_validations_per_slice for f in s.failures)

    fa, fb = failures(va), failures(vb)
    assert [f[:3] for f in fa] == [f[:3] for f in fb]
    assert [f[3] for f in fb] == pytest.approx([f[3] for f in fa], rel=1e-6, abs=1e-7)
    assert va.validation_ok == vb.validation_ok
    assert sorted(map(_key, va.missing_slices)) == sorted(map(_key, vb.missing_slices))
    assert sorted(map(_key, va.validation_details.slicing_details)) == \
        sorted(map(_key, vb.validation_details.slicing_details))
    assert va.missing_thresholds == vb.missing_thresholds
    return {"slices": len({s for s, _ in ma}), "failures": len(fa), "ok": va.validation_ok,
            "missing_slices": len(va.missing_slices)}


@pytest.mark.parametrize("change,reason", [
    (lambda c: c["metrics_specs"][0]["metrics"].append({"class_name": "AUC"}),
     "metric AUC is computed by TFMA's own code"),
    (lambda c: c["metrics_specs"][0]["metrics"].append({"class_name": "MeanSquaredError"}),
     "metric MeanSquaredError is computed by TFMA's own code"),
    (lambda c: c["slicing_specs"].append({"slice_keys_sql": "SELECT STRUCT(island) FROM example"}),
     "a slicing spec in SQL"),
    (lambda c: c.setdefault("options", {}).update({"compute_confidence_intervals": True}),
     "confidence intervals"),
    (lambda c: c.setdefault("options", {}).update({"min_slice_size": 5}), "a minimum slice size"),
    (lambda c: c["model_specs"][0].update({"example_weight_key": "body_mass_g"}),
     "model spec 'candidate' has example weights, several outputs or padding"),
    (lambda c: c["metrics_specs"][0].update({"binarize": {"top_k_list": {"values": [1]}}}),
     "a metrics spec with a query key, binarization, aggregation or output names"),
])
def test_configs_the_batched_path_does_not_reproduce_go_to_tfma_with_the_reason(change, reason):
    from tfpipe.components import _batched_metrics as bm
    cfg = json.loads(json.dumps(EVAL_CONFIG))
    assert bm.unsupported(proto_of(cfg, True), []) is None
    change(cfg)
    assert bm.unsupported(proto_of(cfg, True), []) == reason


def test_slice_rows_from_columns_with_missing_values_match_tfmas_own_split():
    """A column with missing values arrives as a VarLenTensorValue: each row's slice keys,
    found once per distinct value, are those TFMA's own per-example split gives."""
    import numpy as np
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.api import types

    from tfpipe.components import _batched_metrics as bm
    cfg = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="y")],
                          slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["sex"]),
                                         tfma.SlicingSpec(feature_keys=["island", "sex"]),
                                         tfma.SlicingSpec(feature_values={"sex": "male"})],
                          metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")])])
    sex = [[b"male"], [], [b"female"], [b"male"], [], [b"female", b"male"]]  # missing twice, repeated once
    rows = np.array([i for i, v in enumerate(sex) for _ in v])
    cols = np.array([j for v in sex for j in range(len(v))])
    features = {"island": np.array([[b"a"], [b"b"], [b"a"], [b"b"], [b"a"], [b"a"]], dtype=object),
                "sex": types.VarLenTensorValue(values=np.array([x for v in sex for x in v], dtype=object),
                                               indices=np.stack([rows, cols], axis=1), dense_shape=np.array([6, 2]))}
    fn = bm._MetricsFn(cfg)
    fn._ensure_setup()
    extracts = {tfma.FEATURES_KEY: features}
    fast = {k: sorted(v.tolist()) for k, v in fn._slice_rows(extracts, 6).items()}
    split = {k: sorted(v.tolist()) for k, v in fn._slice_rows_split([features], 6).items()}
    assert fast == split
    assert fast[()] == [0, 1, 2, 3, 4, 5]
    assert fast[(("sex", "male"),)] == [0, 3, 5] and fast[(("sex", "female"),)] == [2, 5]
    assert fast[(("island", "a"), ("sex", "female"))] == [2, 5]


def test_slice_rows_from_one_value_a_row_columns_match_tfmas_own_split():
    """A transform output of shape (n,) (a squeezed column, as TFX's examples make them) and
    a raw column of the same name: sliced per value, as TFMA's own split slices them."""
    import numpy as np
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis import constants

    from tfpipe.components import _batched_metrics as bm
    cfg = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="species_xf",
                                                      preprocessing_function_names=["transform_features"])],
                          slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["island_xf"]),
                                         tfma.SlicingSpec(feature_keys=["island_xf", "size"])],
                          metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")])])
    assert bm.unsupported(cfg, []) is None
    transformed = {"island_xf": np.array([0, 1, 0, 2, 0]), "size": np.array([1.5, 1.5, 2.5, 1.5, 2.5])}
    raw = {"island_xf": np.array([[7], [7], [7], [7], [7]])}  # a raw column the transform's output overrides
    fn = bm._MetricsFn(cfg)
    fn._ensure_setup()
    extracts = {constants.TRANSFORMED_FEATURES_KEY: transformed, constants.FEATURES_KEY: raw}
    fast = {k: sorted(v.tolist()) for k, v in fn._slice_rows(extracts, 5).items()}
    split = {k: sorted(v.tolist()) for k, v in fn._slice_rows_split([transformed, raw], 5).items()}
    assert fast == split
    assert fast[(("island_xf", 0),)] == [0, 2, 4] and fast[(("island_xf", 2),)] == [3]
    assert fast[(("island_xf", 0), ("size", 2.5))] == [2, 4]
