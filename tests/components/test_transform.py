"""Transform on TensorFlow Transform + Beam, over the shared penguin run."""
import glob
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.components.conftest import bad_module


def test_transform_graph_loads_and_analyzers_saw_only_train(penguin_model):
    import tensorflow_transform as tft
    outs = penguin_model["outputs"]
    tg = outs["Transform"]["transform_graph"]
    assert os.path.isdir(os.path.join(tg.uri, "transform_fn"))
    assert os.path.isdir(os.path.join(tg.uri, "transformed_metadata"))
    tft_out = tft.TFTransformOutput(tg.uri)
    assert set(tft_out.transformed_feature_spec()) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                                      "body_mass_g", "island", "sex", "species"}
    assert "species" in tft_out.raw_feature_spec()
    # vocabularies come from the train split only (3 species, 3 islands)
    assert sorted(tft_out.vocabulary_by_name("species")) == [b"Adelie", b"Chinstrap", b"Gentoo"]
    ex = outs["ExampleGen"]["examples"]
    train = pq.read_table(ex.split_uri("train")).to_pandas()
    assert set(tft_out.vocabulary_by_name("island")) == {s.encode() for s in train["island"].dropna()}


def _parsed(te, split, spec):
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(te.split_uri(split), "transformed_examples-*")))
    recs = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    return {k: v.numpy() for k, v in tf.io.parse_example(recs, spec).items()}


def test_transformed_examples_z_scored_on_train_with_missing_values_imputed(penguin_model):
    import tensorflow_transform as tft
    outs = penguin_model["outputs"]
    te = outs["Transform"]["transformed_examples"]
    assert te.payload_format == "FORMAT_TF_EXAMPLE"
    assert te.split_names == ["train", "eval"]
    raw = outs["ExampleGen"]["examples"]
    assert te.row_counts == raw.row_counts
    spec = tft.TFTransformOutput(outs["Transform"]["transform_graph"].uri).transformed_feature_spec()
    train = _parsed(te, "train", spec)
    assert len(train["species"]) == raw.row_counts["train"]
    for f in ("bill_length_mm", "body_mass_g"):
        x = train[f].ravel()
        assert np.isfinite(x).all(), f"{f}: missing values must be imputed, found NaN"
        assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 0.02, (f, x.mean(), x.std())
    # the raw data does have missing values in these columns
    t = pq.read_table(raw.split_uri("train"))
    assert t.column("sex").null_count > 0
    assert set(np.unique(train["species"])) == {0, 1, 2}
    ev = _parsed(te, "eval", spec)
    assert len(ev["species"]) == raw.row_counts["eval"]
    # eval is transformed with the train statistics, so its mean is not exactly 0
    assert abs(ev["bill_length_mm"].mean()) > 1e-6


def test_post_transform_statistics_per_split(penguin_model):
    from tfpipe.components.statistics_gen import load_statistics
    st = penguin_model["outputs"]["Transform"]["post_transform_statistics"]
    assert st.split_names == ["train", "eval"]
    stats = load_statistics(st, "train")
    ds = stats.datasets[0]
    assert ds.num_examples == penguin_model["outputs"]["ExampleGen"]["examples"].row_counts["train"]
    names = {f.path.step[0] for f in ds.features}
    assert "bill_length_mm" in names and "species" in names
    mean = next(f for f in ds.features if f.path.step[0] == "bill_length_mm").num_stats.mean
    assert abs(mean) < 1e-4


def test_preprocessing_fn_missing_fails_naming_file_and_function(penguin_model, tmp_path):
    """Found when the pipeline is compiled, before any node runs."""
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import PipelineDefinitionError, compile_pipeline
    mod = bad_module(tmp_path, "no_pp.py", "import tensorflow as tf\n\ndef preprocess(inputs):\n    return inputs\n")
    with pytest.raises(PipelineDefinitionError) as e:
        compile_pipeline(create_pipeline(**penguin_model["kw"], transform_module=mod))
    msg = str(e.value)
    assert "node Transform (Transform)" in msg and mod in msg
    assert "defines no function preprocessing_fn; expected def preprocessing_fn(inputs)" in msg
    assert "functions found: ['preprocess']" in msg


def test_preprocessing_fn_raising_surfaces_the_users_message(run_penguin_node, tmp_path):
    mod = bad_module(tmp_path, "raising_pp.py",
                     "def preprocessing_fn(inputs):\n    raise KeyError('no column called beak_colour')\n")
    r = run_penguin_node("Transform", transform_module=mod)
    assert not r.ok
    assert "beak_colour" in r.error.message and "preprocessing_fn" in r.error.message and mod in r.error.message
