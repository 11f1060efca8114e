"""StatisticsGen: TFDV statistics per split, computed as one Apache Beam pipeline.

The pipeline's ``beam_pipeline_args`` choose the runner (DirectRunner by default; Flink,
Spark or Dataflow by arguments). Parquet record batches feed TFDV directly, with no
row-wise tf.Example detour.
"""
from __future__ import annotations

import os

from tfpipe import Examples, ExampleStatistics, Input, Output, component, current

__all__ = ["StatisticsGen", "load_statistics", "statistics_graph"]


class StatisticsError(RuntimeError):
    pass


def _table_to_list_batches(table):
    from tfpipe.tabular import to_list_batch
    return [to_list_batch(b) for b in table.to_batches()]


def statistics_graph(p, *, examples: Examples, statistics: ExampleStatistics, splits: list[str],
                     stats_options) -> None:
    """Add to Beam pipeline ``p``, per split: the Parquet record batches, TFDV's
    ``GenerateStatistics`` and the statistics file."""
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    for s in splits:
        os.makedirs(statistics.split_uri(s), exist_ok=True)
        (p
         | f"Read[{s}]" >> beam.io.ReadFromParquetBatched(examples.parquet_glob(s))
         | f"ToLists[{s}]" >> beam.FlatMap(_table_to_list_batches).with_output_types(pa.RecordBatch)
         | f"Stats[{s}]" >> tfdv.GenerateStatistics(stats_options)
         | f"Write[{s}]" >> tfdv.WriteStatisticsToBinaryFile(statistics.stats_path(s)))


def load_statistics(artifact: ExampleStatistics, split: str):
    import tensorflow_data_validation as tfdv
    return tfdv.load_stats_binary(artifact.stats_path(split))


@component(name="StatisticsGen")
def StatisticsGen(examples: Input[Examples], statistics: Output[ExampleStatistics],
                  exclude_splits: list = (), stats_options: dict = None) -> None:
    """``stats_options``: keyword arguments of ``tfdv.StatsOptions`` (e.g. num_top_values)."""
    import tensorflow_data_validation as tfdv

    ctx = current()
    splits = [s for s in examples.split_names if s not in exclude_splits]
    opts = tfdv.StatsOptions(**(stats_options or {}))
    with ctx.beam_pipeline() as p:
        statistics_graph(p, examples=examples, statistics=statistics, splits=splits, stats_options=opts)
    # count rows end to end: statistics must cover every example ExampleGen wrote
    for s in splits:
        stats = load_statistics(statistics, s)
        n = stats.datasets[0].num_examples if stats.datasets else 0
        want = (examples.row_counts or {}).get(s)
        if want is not None and n != want:
            raise StatisticsError(f"split {s}: statistics cover {n} examples but ExampleGen wrote {want}; "
                                  f"the Beam runner dropped data (check beam_pipeline_args)")
        ctx.log(f"split {s}: statistics over {n:,} examples")
    statistics.split_names = splits
    statistics.span = examples.span
