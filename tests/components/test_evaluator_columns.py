"""Which columns the Evaluator hands TFMA as features (components/evaluator.py): those the
EvalConfig names; every column when it slices by SQL or names a metric of its own module."""
import pyarrow as pa
import tensorflow_model_analysis as tfma

from tfpipe.components.evaluator import _with_raw_records, columns_tfma_reads


def _table():
    return pa.table({"species": [0, 1, 2], "body_mass_g": [1.0, 2.0, None], "island": ["a", "b", "c"]})


def _names(config_text):
    [batch] = list(_with_raw_records(_table(), config_text=config_text))
    return batch.schema.names, batch.num_rows


def test_only_the_columns_the_config_names_are_features_and_every_row_keeps_its_example():
    cfg = tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="species_xf")],
                          slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["island"])],
                          metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")])])
    text = columns_tfma_reads(cfg)
    assert text is not None
    # "species" is only part of the label name "species_xf": not a feature TFMA reads
    assert _names(text) == (["island", tfma.ARROW_INPUT_COLUMN], 3)
    assert _names(text + "\nbody_mass_g") == (["body_mass_g", "island", tfma.ARROW_INPUT_COLUMN], 3)
    [batch] = list(_with_raw_records(_table(), config_text=text))
    assert all(len(r) == 1 and r[0] for r in batch.column(tfma.ARROW_INPUT_COLUMN).to_pylist())


def test_sql_slices_or_a_metric_module_keep_every_column():
    sql = tfma.EvalConfig(slicing_specs=[tfma.SlicingSpec(slice_keys_sql="SELECT STRUCT(island) FROM example")])
    module = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="Mine", module="my_metrics")])])
    assert columns_tfma_reads(sql) is None and columns_tfma_reads(module) is None
    assert _names(None) == (["species", "body_mass_g", "island", tfma.ARROW_INPUT_COLUMN], 3)
