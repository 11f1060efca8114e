"""The penguin pipeline: the Palmer penguins table (344 rows, missing values included)
from raw CSV to statistics, schema and validated examples.

    tfpipe run examples/penguin/pipeline.py
"""
import os

from components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
from pipeline import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def create_pipeline(data_root: str = DATA, name: str = "penguin", root: str | None = None,
                    metadata: str | None = None, enable_cache: bool = True,
                    beam_pipeline_args: list[str] | None = None) -> Pipeline:
    example_gen = ExampleGen(input_base=data_root, label_key="species")
    stats = StatisticsGen(examples=example_gen.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    validator = ExampleValidator(statistics=stats.outputs.statistics, schema=schema.outputs.schema)
    return Pipeline(name=name, root=root, metadata=metadata, enable_cache=enable_cache,
                    components=[example_gen, stats, schema, validator],
                    beam_pipeline_args=beam_pipeline_args or ["--direct_num_workers=1"])
