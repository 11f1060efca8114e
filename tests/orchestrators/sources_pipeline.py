"""A pipeline reading a Delta table at a pinned version (``SOURCES_TABLE``, read when the
pipeline is created), for the source check in every orchestrator."""
import os

from tfpipe import Examples, Input, Integer, Output, Pipeline, component
from tfpipe.components import ExampleGen


@component(name="CountRows")
def count_rows(examples: Input[Examples], result: Output[Integer]) -> None:
    result.write(sum(examples.row_counts.values()))


def create_pipeline() -> Pipeline:
    gen = ExampleGen(input_base=os.environ["SOURCES_TABLE"], source_config={"version": 1}, label_key="species")
    return Pipeline(name="sources", components=[gen, count_rows(examples=gen.outputs.examples)])
