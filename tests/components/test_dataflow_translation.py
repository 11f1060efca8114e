"""The statistics, transform and evaluation Beam pipelines translate for Google Cloud
Dataflow: each component's graph builder on a pipeline whose options are the
DataflowRunner's with ``--dry_run=True``, which builds the Dataflow job (the pipeline
proto translated to Dataflow's environment) and returns without contacting Google Cloud.
Nothing here reaches the network: the project and region are made up, and the artifacts
the graphs read and write are gs:// URIs on the GCS emulator the tests start (Beam's GCS
file system and pyarrow's reach it through ``STORAGE_EMULATOR_HOST``), as they are on a
bucket when the graphs run on Dataflow's workers. Two paths stay local because TensorFlow's
own gs:// client touches them while the graph is built, and its endpoint cannot be pointed
at an emulator: the evaluation graph's model (TFMA loads it) and Transform's temporary
directory (TFT creates it); on Dataflow both are gs:// URIs (docs/object_storage.md)."""
import importlib.util
import os

import pytest

DATAFLOW = ["--runner=DataflowRunner", "--project=test-project", "--region=us-central1",
            "--temp_location=gs://test-bucket/tmp", "--dry_run=True"]
DOCKER_URN = "beam:env:docker:v1"


def dataflow_job(build):
    """Build a pipeline with ``build(p)`` and translate it with the DataflowRunner's dry run:
    (the Dataflow job, {unique name of every transform})."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    p = beam.Pipeline(options=PipelineOptions(DATAFLOW))
    build(p)
    result = p.run()
    job = result.job
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    return job, names


def assert_dataflow_job(job):
    assert job.proto.type.name == "JOB_TYPE_BATCH"
    envs = job.proto_pipeline.components.environments
    assert envs and all(e.urn == DOCKER_URN for e in envs.values())  # what Dataflow's workers run
    assert job.google_cloud_options.project == "test-project"
    assert job.google_cloud_options.region == "us-central1"


@pytest.fixture(scope="module")
def artifacts(penguin_model):
    return penguin_model["outputs"]


@pytest.fixture
def bucket(gcs, monkeypatch):
    for k, v in gcs.env().items():
        monkeypatch.setenv(k, v)
    return gcs.bucket


def on_gcs(artifact, uri):
    """The artifact copied under ``uri`` on the emulator, at that URI."""
    from tfpipe import fileio
    fileio.copy_tree(artifact.uri, uri)
    return artifact.at(uri)


def test_statistics_pipeline_translates_for_dataflow(artifacts, bucket):
    import tensorflow_data_validation as tfdv

    from tfpipe import ExampleStatistics
    from tfpipe.components.statistics_gen import statistics_graph
    examples = on_gcs(artifacts["ExampleGen"]["examples"], f"{bucket}/stats-in/examples")
    splits = list(examples.split_names)
    job, names = dataflow_job(lambda p: statistics_graph(
        p, examples=examples, statistics=ExampleStatistics(uri=f"{bucket}/stats-out/statistics"), splits=splits,
        stats_options=tfdv.StatsOptions()))
    assert_dataflow_job(job)
    for s in splits:
        assert {f"Read[{s}]", f"Stats[{s}]", f"Write[{s}]"} <= names
        assert any(n.startswith(f"Stats[{s}]/") for n in names)  # TFDV's own transforms, expanded


def test_transform_pipeline_translates_for_dataflow(artifacts, tmp_path, bucket):
    from tfpipe import Examples, ExampleStatistics, TransformGraph
    from tfpipe.components.transform import _read_schema, transform_beam_graph
    examples = on_gcs(artifacts["ExampleGen"]["examples"], f"{bucket}/transform-in/examples")
    spec = importlib.util.spec_from_file_location(
        "penguin_transform", os.path.join(os.path.dirname(__file__), "..", "..", "examples", "penguin",
                                          "penguin_transform.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    splits = list(examples.split_names)
    job, names = dataflow_job(lambda p: transform_beam_graph(
        p, examples=examples, raw_schema=_read_schema(artifacts["SchemaGen"]["schema"]),
        preprocessing_fn=module.preprocessing_fn, transform_graph=TransformGraph(uri=f"{bucket}/transform-out/graph"),
        transformed_examples=Examples(uri=f"{bucket}/transform-out/examples"),
        post_transform_statistics=ExampleStatistics(uri=f"{bucket}/transform-out/stats"),
        analyze_splits=["train"], splits=splits, compute_statistics=True,
        temp_dir=str(tmp_path / "tft")))  # TFT makes it with TensorFlow's gs:// client, which no emulator serves
    assert_dataflow_job(job)
    assert {"Analyze", "WriteTransformFn"} <= names
    assert any(n.startswith("Analyze/") for n in names)  # TFT's analyzers, expanded
    for s in splits:
        assert {f"Transform[{s}]", f"Encode[{s}]", f"Write[{s}]", f"Stats[{s}]", f"WriteStats[{s}]"} <= names


def test_evaluation_pipeline_translates_for_dataflow(artifacts, tmp_path, bucket):
    from examples.penguin.pipeline import EVAL_CONFIG
    from tfpipe.components import _eval_config as ec
    from tfpipe.components.evaluator import evaluation_graph
    examples, model = artifacts["ExampleGen"]["examples"], artifacts["Trainer"]["model"]
    examples = on_gcs(examples, f"{bucket}/eval-in/examples")  # the Parquet the Evaluator streams
    proto = ec.to_proto(ec.normalize(EVAL_CONFIG), False)
    job, names = dataflow_job(lambda p: evaluation_graph(
        p, parquet_patterns=[examples.parquet_glob("eval")], eval_config=proto,
        output_path=f"{bucket}/eval-out/evaluation", model_dir=model.saved_model_dir()))
    assert_dataflow_job(job)
    assert {"ReadParquet[0]", "ToExamples", "ExtractEvaluateAndWriteResults"} <= names
    inner = {n.split("/")[1] for n in names if n.startswith("ExtractEvaluateAndWriteResults/")}
    assert {"ExtractAndEvaluate", "WriteResults"} <= inner, inner  # TFMA's extract, evaluate and write
