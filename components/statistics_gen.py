"""StatisticsGen: TFDV statistics per split.

Parquet record batches feed TFDV directly, with no row-wise tf.Example detour, in one of
two ways that give the same statistics (floating-point sums may differ in their last
digit, as they do between two Beam runners):

- the pipeline's ``beam_pipeline_args`` name a runner (``--runner``: a portable job
  server, Flink, Spark, Dataflow), more than one direct worker, or the options ask for
  what only TFDV's Beam transform does (slicing, custom generators, a feature allowlist,
  a schema): one Apache Beam pipeline, TFDV's ``GenerateStatistics``;
- otherwise (the default: Beam's in-process runner with one worker) TFDV's own in-memory
  combiners (``get_generators(in_memory=True)``, what ``generate_statistics_in_memory``
  uses) take the Parquet batches one at a time in this process. That is the same work the
  in-process runner would do, without building, translating and pickling TFDV's Beam graph
  of about 250 transforms, which costs more than the statistics of a million rows. Memory
  stays bounded by one batch (``BATCH_ROWS``) plus the accumulators.
"""
from __future__ import annotations

from tfpipe import Examples, ExampleStatistics, Input, Output, component, current, fileio
from tfpipe.files import write_file

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
        fileio.makedirs(statistics.split_uri(s))
        (p
         | f"Read[{s}]" >> beam.io.ReadFromParquetBatched(examples.parquet_glob(s))
         | f"ToLists[{s}]" >> beam.FlatMap(_table_to_list_batches).with_output_types(pa.RecordBatch)
         | f"Stats[{s}]" >> tfdv.GenerateStatistics(stats_options)
         | f"Write[{s}]" >> tfdv.WriteStatisticsToBinaryFile(statistics.stats_path(s)))


def _needs_beam(beam_args: list[str], opts) -> str | None:
    """Why these statistics need a Beam pipeline, or None when the in-memory combiners do
    the same work."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
    options = PipelineOptions(list(beam_args))
    if options.view_as(StandardOptions).runner:
        return f"--runner {options.view_as(StandardOptions).runner}"
    if (options.view_as(DirectOptions).direct_num_workers or 1) != 1:
        return f"--direct_num_workers {options.view_as(DirectOptions).direct_num_workers}"
    for what in ("generators", "feature_allowlist", "schema", "slicing_config", "experimental_slice_functions",
                 "experimental_slice_sqls"):
        if getattr(opts, what, None):
            return f"stats_options {what}"
    return None


def in_memory_statistics(examples: Examples, split: str, opts, progress=None):
    """TFDV statistics of one split from its Parquet batches, in this process, with TFDV's
    in-memory combiners (the generators ``generate_statistics_in_memory`` uses), one batch
    at a time."""
    import pyarrow.parquet as pq
    from tensorflow_data_validation.statistics import stats_impl

    from tfpipe.tabular import BATCH_ROWS, to_list_batch
    generators = stats_impl.get_generators(opts, in_memory=True)
    accumulators = [g.create_accumulator() for g in generators]
    rows = 0
    for path in examples.parquet_files(split):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            lists = to_list_batch(batch)
            accumulators = [g.add_input(a, lists) for g, a in zip(generators, accumulators)]
            rows += batch.num_rows
            if progress is not None:
                progress(rows)
    return stats_impl.extract_statistics_output(accumulators, generators)


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
    why = _needs_beam(ctx.beam_pipeline_args, opts)
    computed = {}  # split -> statistics proto, when computed in this process
    if why is None:
        for s in splits:
            total = (examples.row_counts or {}).get(s)
            computed[s] = in_memory_statistics(examples, s, opts,
                                               progress=lambda n, s=s, t=total: ctx.progress(n, t, f"rows of {s}"))
            # the binary DatasetFeatureStatisticsList WriteStatisticsToBinaryFile writes
            write_file(statistics.stats_path(s), computed[s].SerializeToString())
    else:
        ctx.log(f"statistics as a Beam pipeline ({why})")
        with ctx.beam_pipeline() as p:
            statistics_graph(p, examples=examples, statistics=statistics, splits=splits, stats_options=opts)
    # count rows end to end: statistics must cover every example ExampleGen wrote
    for s in splits:
        stats = computed[s] if s in computed else load_statistics(statistics, s)
        n = stats.datasets[0].num_examples if stats.datasets else 0
        want = (examples.row_counts or {}).get(s)
        if want is not None and n != want:
            cause = ("the examples on disk hold other rows than recorded" if s in computed else
                     "the Beam runner dropped data (check beam_pipeline_args)")
            raise StatisticsError(f"split {s}: statistics cover {n} examples but ExampleGen wrote {want}; {cause}")
        ctx.log(f"split {s}: statistics over {n:,} examples")
    statistics.split_names = splits
    statistics.span = examples.span
