"""ExampleGen from Avro files: recognised by the .avro extension under input_base (spans
and globs as for CSV), or named as source="avro"; the Avro schema's types mapped (a union
with null a missing value); what cannot be mapped, and a file without records, a FAILED
ExampleGen naming the file and field."""
import os

import pyarrow.parquet as pq
import pytest

from tests.components.test_bad_input import _assert_failed, _pipeline_file
from tests.conftest import tfpipe
from tfpipe import Pipeline, compile_pipeline
from tfpipe.components import ExampleGen
from tfpipe.orchestrators.local import LocalRunner

SCHEMA = {"type": "record", "name": "Row", "fields": [
    {"name": "i", "type": "int"}, {"name": "l", "type": "long"}, {"name": "f", "type": "float"},
    {"name": "d", "type": ["null", "double"]}, {"name": "s", "type": ["string", "null"]},
    {"name": "b", "type": "boolean"}, {"name": "raw", "type": "bytes"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}}]}


def _rows(n, start=0):
    return [{"i": k, "l": k * 10**10, "f": k / 2, "d": None if k % 3 == 0 else k / 3,
             "s": None if k % 4 == 0 else f"s{k}", "b": k % 2 == 0, "raw": bytes([k % 256]), "kind": "AB"[k % 2],
             "tags": [f"t{k % 5}"] * (k % 3)}
            for k in range(start, start + n)]


def write_avro(path, schema, rows):
    import fastavro
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), rows)
    return path


def _gen(tmp_path, **kw):
    gen = ExampleGen(**kw)
    r = LocalRunner(verbose=False).run(compile_pipeline(
        Pipeline("avro", [gen], root=str(tmp_path / "root"), metadata=str(tmp_path / "m.sqlite"))))
    assert r.ok, r.error
    return r.nodes[0].outputs["examples"][0]


def _read(ex):
    import pyarrow as pa
    return pa.concat_tables([pq.read_table(ex.parquet_path(s)) for s in ex.split_names]).sort_by("i")


def test_avro_files_by_extension_with_their_types_mapped(tmp_path, monkeypatch):
    import tfpipe.tabular
    monkeypatch.setattr(tfpipe.tabular, "BATCH_ROWS", 7)  # several batches per file
    write_avro(str(tmp_path / "data" / "span-1" / "a.avro"), SCHEMA, _rows(20))
    write_avro(str(tmp_path / "data" / "span-2" / "a.avro"), SCHEMA, _rows(25, 100))
    write_avro(str(tmp_path / "data" / "span-2" / "b.avro"), SCHEMA, _rows(5, 200))
    ex = _gen(tmp_path, input_base=str(tmp_path / "data"), input_pattern="span-{SPAN}/*.avro")
    assert ex.span == 2 and sum(ex.row_counts.values()) == 30 and ex.source == "files"
    assert ex.columns == {"i": "int64", "l": "int64", "f": "double", "d": "double", "s": "string", "b": "bool",
                          "raw": "binary", "kind": "string", "tags": "list<item: string>"}
    t = _read(ex)
    first = t.slice(0, 1).to_pylist()[0]
    assert first == {"i": 100, "l": 100 * 10**10, "f": 50.0, "d": 100 / 3, "s": None, "b": True, "raw": bytes([100]),
                     "kind": "A", "tags": ["t0"]}
    assert t.column("d").null_count == sum(1 for r in _rows(25, 100) + _rows(5, 200) if r["d"] is None)
    # the same files named as a source
    src = _gen(tmp_path, source="avro", source_config={"path": str(tmp_path / "data" / "span-2")})
    assert src.source == "avro" and src.data_version == {"files": 2}
    assert _read(src).equals(t)


@pytest.mark.parametrize("case", ["record field", "union", "no records", "not avro"])
def test_avro_that_cannot_be_read_fails_example_gen(tmp_path, case):
    f = str(tmp_path / "data" / "a.avro")
    if case == "record field":
        inner = {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}
        write_avro(f, {"type": "record", "name": "R", "fields": [{"name": "ok", "type": "int"},
                                                                    {"name": "nested", "type": inner}]},
                   [{"ok": 1, "nested": {"x": 2}}])
        want = [f"file {f}, field 'nested': Avro type ", "is not supported", "expected int, long"]
    elif case == "union":
        write_avro(f, {"type": "record", "name": "R", "fields": [{"name": "u", "type": ["null", "int", "string"]}]},
                   [{"u": 1}])
        want = [f"file {f}, field 'u': Avro type [\"null\", \"int\", \"string\"] is not supported (a union of more "
                f"than null and one type)"]
    elif case == "no records":
        write_avro(f, SCHEMA, [])
        want = [f"file {f} holds no records; expected at least one"]
    else:
        os.makedirs(os.path.dirname(f))
        with open(f, "w") as fh:
            fh.write("species,island\nAdelie,Dream\n")
        want = [f"file {f}: not a readable Avro file"]
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, tfpipe("run", p), "ExampleGen", *want)
