"""ExampleGen's own table work: the check that a new span keeps the previous span's
columns, and the deterministic hash split."""
from __future__ import annotations

import os

from tfpipe.tabular import (
    BATCH_ROWS,
    InputDataError,
    find_bad_value,
    format_of,
    read_schema,
    types_compatible,
    write_parquet,
)

__all__ = ["check_span_compatible", "check_split_ratios", "hash_split", "row_hashes", "SplitWriter"]


def check_span_compatible(prev_file: str, files: list[str], schema, fmt: str, encoding: str,
                          allow_new_columns: bool, span: int, allow_missing_columns: bool = False,
                          string_columns=(), prev_span: int | None = None) -> list[str]:
    """The newest span must keep the previous span's columns and their types. Returns the
    previous span's columns it lacks (allowed by ``allow_missing_columns``)."""
    prev = read_schema(prev_file, fmt, encoding, string_columns)
    before = f"span {prev_span}" if prev_span is not None else "the previous span"
    new_cols = [c for c in schema.names if c not in prev.names]
    if new_cols and not allow_new_columns:
        raise InputDataError(f"span {span} ({files[0]}) has unknown column(s) {new_cols} not in the previous "
                             f"span ({prev_file}); expected columns {prev.names} "
                             f"(pass allow_new_columns=True to accept)")
    missing = [c for c in prev.names if c not in schema.names]
    if missing and not allow_missing_columns:
        raise InputDataError(f"span {span} ({files[0]}) lacks column(s) {missing} that {before} ({prev_file}) "
                             f"has; expected columns {prev.names} (pass allow_missing_columns=True to "
                             f"accept a span without them)")
    for name in prev.names:
        if name not in schema.names:
            continue
        old_t, new_t = prev.field(name).type, schema.field(name).type
        if not types_compatible(old_t, new_t):
            where = ""
            if format_of(files[0], fmt) == "csv":
                bad = find_bad_value(files[0], name, str(old_t))
                if bad:
                    where = f"; first such value {bad[1]!r} at line {bad[0]}"
            raise InputDataError(f"column {name!r} changed type between spans: {old_t} in the previous span "
                                 f"({prev_file}), {new_t} in span {span} ({files[0]}){where}")
    return missing


def check_split_ratios(ratios: dict) -> None:
    if not ratios or any((not isinstance(v, int)) or v <= 0 for v in ratios.values()):
        raise InputDataError(f"split_ratios {ratios!r}: expected positive integers per split, e.g. "
                             f"{{'train': 2, 'eval': 1}}")


def hash_split(table, ratios: dict, partition_feature: str, files: list[str]) -> dict:
    """Deterministic split of a table or record batch: a stable hash of each row (or of
    ``partition_feature``) into buckets by ratio. The same row always lands in the same
    split, however the data is cut into batches."""
    import numpy as np
    check_split_ratios(ratios)
    names = table.schema.names
    if partition_feature:
        if partition_feature not in names:
            raise InputDataError(f"partition_feature {partition_feature!r} is not a column of {files[0]}; "
                                 f"columns: {names}")
        columns = [table.column(names.index(partition_feature))]
    else:
        columns = list(table.columns)
    h = row_hashes(columns, table.num_rows)
    total = sum(ratios.values())
    bucket = (h % np.uint64(total)).astype(np.int64)
    out, lo = {}, 0
    for name, r in ratios.items():
        mask = (bucket >= lo) & (bucket < lo + r)
        out[name] = table.filter(mask)
        lo += r
    return out


class SplitWriter:
    """One Parquet file per split, written batch by batch (row groups of ``BATCH_ROWS``);
    a split that gets no rows is written empty with the data's columns."""

    def __init__(self, paths: dict):
        self.paths, self.writers, self.schemas = paths, {}, {}

    def schema(self, schema, splits: list[str]) -> None:
        for s in splits:
            self.schemas.setdefault(s, schema)

    def write(self, split: str, batch) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        w = self.writers.get(split)
        if w is None:
            os.makedirs(os.path.dirname(self.paths[split]), exist_ok=True)
            w = self.writers[split] = pq.ParquetWriter(self.paths[split], self.schemas[split])
        t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        w.write_table(t, row_group_size=BATCH_ROWS)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        import pyarrow as pa
        for w in self.writers.values():
            w.close()
        if exc[0] is None:
            for s, path in self.paths.items():
                if s not in self.writers and s in self.schemas:
                    write_parquet(pa.Table.from_batches([], schema=self.schemas[s]), path)


_NULL = 0x9E3779B97F4A7C15


def _mix(x):
    """splitmix64 finalizer, vectorised (uint64 arithmetic wraps)."""
    import numpy as np
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _column_hash(col):
    """A stable uint64 per value of an Arrow column (nulls hash to a constant)."""
    import hashlib

    import numpy as np
    import pyarrow as pa
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = col.type
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t):
        enc = col.dictionary_encode()
        words = np.array([int.from_bytes(hashlib.blake2b(
            v.encode() if isinstance(v, str) else v, digest_size=8).digest(), "little")
            for v in enc.dictionary.to_pylist()] + [_NULL], dtype=np.uint64)
        idx = enc.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
        return words[idx]
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        vals = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    elif pa.types.is_floating(t):
        vals = col.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False).view(np.uint64)
    else:  # lists and other nested values: their text form
        return _column_hash(pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string()))
    out = _mix(vals + np.uint64(0x632BE59BD9B4E019))
    if col.null_count:
        out[~col.is_valid().to_numpy(zero_copy_only=False)] = np.uint64(_NULL)
    return out


def row_hashes(columns: list, num_rows: int):
    """A stable 64-bit hash of each row's values (column order matters), computed
    column-wise with Arrow and NumPy, independent of process, platform and chunking."""
    import numpy as np
    h = np.full(num_rows, 0x84222325CBF29CE4, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, col in enumerate(columns):
            h = _mix(h ^ (_column_hash(col) + np.uint64(i)))
    return h
