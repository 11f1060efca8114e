"""Reading an Examples artifact (Parquet per split) in the forms downstream code needs:
an Arrow table, TFDV/TFT-ready list-typed record batches, or serialized tf.Example
records (what a serving signature takes)."""
from __future__ import annotations

from tfpipe.tabular import to_list_batch

__all__ = ["read_split", "serialized_examples"]


def read_split(examples, split: str, columns: list[str] | None = None):
    """The split as one Arrow table (plain columns; nulls are missing values)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in examples.parquet_files(split)])


def serialized_examples(examples, split: str, limit: int | None = None,
                        drop_columns: list[str] = ()) -> list[bytes]:
    """Serialized tf.Example records of a split (first ``limit`` rows), e.g. for a
    serving signature that parses raw examples."""
    from tfx_bsl.coders import example_coder
    t = read_split(examples, split)
    if drop_columns:
        t = t.drop([c for c in drop_columns if c in t.column_names])
    if limit is not None:
        t = t.slice(0, limit)
    import pyarrow as pa
    # tf.Example has float32 lists only
    t = t.cast(pa.schema([pa.field(f.name, pa.float32()) if pa.types.is_floating(f.type) else f
                          for f in t.schema]))
    out: list[bytes] = []
    for b in t.to_batches(max_chunksize=65536):
        out.extend(example_coder.RecordBatchToExamples(to_list_batch(b)))
    return out
