"""Bad input to the data half: a clear one-paragraph error naming what was expected, what
was found and where; exit 1; a FAILED execution in metadata; nothing LIVE, nothing partial.

A few cases go through the real CLI (``tfpipe run`` in a subprocess: its exit code and
stderr); the others run the same pipeline file in this process (``run_here``: the run's
error is what the CLI prints after ``error:``), which spares a process start per case."""
import glob
import os
import types

from tests.conftest import tfpipe
from tfpipe.metadata import MetadataStore

HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
ROWS = ["Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n",
        "Gentoo,Biscoe,46.1,13.2,211,4500,female,2007\n",
        "Chinstrap,Dream,46.5,17.9,192,3500,female,2007\n"]


def _pipeline_file(tmp_path, gen_args: str, schema_file: str | None = None) -> str:
    nodes = "[gen, stats]"
    extra = ""
    if schema_file:
        extra = f"    imp = ImportSchemaGen(schema_file={schema_file!r})\n"
        nodes = "[gen, stats, imp, ExampleValidator(statistics=stats.outputs.statistics, schema=imp.outputs.schema)]"
    src = "\n".join([
        "from tfpipe.components import ExampleGen, ExampleValidator, ImportSchemaGen, StatisticsGen",
        "from tfpipe import Pipeline",
        "",
        "def create_pipeline():",
        f"    gen = ExampleGen({gen_args})",
        "    stats = StatisticsGen(examples=gen.outputs.examples)",
        extra.rstrip("\n"),
        f"    return Pipeline('bad', {nodes}, root={str(tmp_path / 'root')!r},",
        f"                    metadata={str(tmp_path / 'm.sqlite')!r})",
        ""])
    path = tmp_path / "pipeline.py"
    path.write_text(src)
    return str(path)


def run_here(path: str, to_node: str | None = None):
    """``tfpipe run <path>`` without the subprocess: the file loaded and compiled as the CLI
    does, run by the local runner; returncode and stderr as the CLI would give them."""
    from tfpipe.cli.common import load_pipeline
    from tfpipe.compiler import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner
    res = LocalRunner(verbose=False).run(compile_pipeline(load_pipeline(path)), to_node=to_node)
    return types.SimpleNamespace(returncode=0 if res.ok else 1, stderr="" if res.ok else f"error: {res.error}")


def _assert_failed(tmp_path, proc, node: str, *fragments: str):
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    for f in fragments:
        assert f in err, f"{f!r} not in stderr:\n{err[-3000:]}"
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    failed = [e for e in store.store.get_executions() if store.state_name(e) == "FAILED"]
    assert [store.props(e)["node_id"] for e in failed] == [node]
    msg = store.props(failed[0])["error"]
    for f in fragments:
        assert f in msg
    assert "\n" not in msg.strip(), "the error is one paragraph"
    live = [a for a in store.list_artifacts() if a.state == "LIVE" and a.uri.split(os.sep)[-3] == node]
    assert live == []
    out_dir = tmp_path / "root" / node
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(out_dir) for f in fs] if out_dir.exists() else []
    assert leftovers == [], "no partial output may remain"
    # downstream never ran
    assert {store.props(e)["node_id"] for e in store.store.get_executions()} == {node}


def _write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)
    return path


def test_input_path_missing(tmp_path):
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'nope')!r}")
    _assert_failed(tmp_path, tfpipe("run", p), "ExampleGen",
                   f"input_base {tmp_path / 'nope'} does not exist")


def test_pattern_matching_no_files(tmp_path):
    (tmp_path / "data").mkdir()
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, input_pattern='span-{{SPAN}}/*.csv'")
    _assert_failed(tmp_path, run_here(p), "ExampleGen", "span-{SPAN}/*.csv' matches no files")


def test_empty_file(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"), "")
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen", f"file {f} is empty")


def test_header_only_csv(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"), HEADER)
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen", f"file {f} has a header", "but no data rows")


def test_ragged_row_reports_file_and_line(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"),
               HEADER + ROWS[0] + ROWS[1] + "Adelie,Dream,37.0,17.1,185,3400,male,2008,EXTRA\n" + ROWS[2])
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, tfpipe("run", p), "ExampleGen",
                   f"file {f}, line 4: expected 8 columns (as in the header), found 9")


def test_non_utf8_byte_reports_line_and_column(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"),
               (HEADER + ROWS[0]).encode() + b"Gentoo,Bis\xffcoe,46.1,13.2,211,4500,female,2007\n", "wb")
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   f"file {f}, line 3, column 11: byte 0xff is not valid UTF-8")


def test_column_type_changing_between_spans(tmp_path):
    _write(str(tmp_path / "data" / "span-1" / "a.csv"), HEADER + "".join(ROWS))
    f2 = _write(str(tmp_path / "data" / "span-2" / "a.csv"),
                HEADER + ROWS[0] + "Gentoo,Biscoe,46.1,13.2,211,heavy,female,2007\n")
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, input_pattern='span-{{SPAN}}/*.csv'")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   "column 'body_mass_g' changed type between spans: int64 in the previous span",
                   f"string in span 2 ({f2}); first such value 'heavy' at line 3")


def test_unknown_column_appearing(tmp_path):
    _write(str(tmp_path / "data" / "span-1" / "a.csv"), HEADER + "".join(ROWS))
    _write(str(tmp_path / "data" / "span-2" / "a.csv"),
           HEADER.strip() + ",colour\n" + "".join(r.strip() + ",blue\n" for r in ROWS))
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, input_pattern='span-{{SPAN}}/*.csv'")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   "has unknown column(s) ['colour'] not in the previous span")


def test_label_column_missing(tmp_path):
    no_label = "".join(r.split(",", 1)[1] for r in [HEADER, *ROWS])
    _write(str(tmp_path / "data" / "a.csv"), no_label)
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, label_key='species'")
    _assert_failed(tmp_path, run_here(p), "ExampleGen", "label column 'species' is missing from the")


def test_label_column_entirely_empty(tmp_path):
    rows = "".join("," + r.split(",", 1)[1] for r in ROWS * 4)
    _write(str(tmp_path / "data" / "a.csv"), HEADER + rows)
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, label_key='species'")
    _assert_failed(tmp_path, run_here(p), "ExampleGen", "label column 'species' has no values in any of the")


def test_schema_file_that_does_not_parse(tmp_path):
    _write(str(tmp_path / "data" / "a.csv"), HEADER + "".join(ROWS))
    bad = _write(str(tmp_path / "schema.pbtxt"), 'feature {\n  name: "species"\n  type: NOT_A_TYPE\n}\n')
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}", schema_file=bad)
    proc = tfpipe("run", p, "--to", "ImportSchemaGen")
    _assert_failed(tmp_path, proc, "ImportSchemaGen", f"schema file {bad}: 3:9", "NOT_A_TYPE")


PENGUINS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples", "penguin", "data", "penguins.csv")


def _penguins_with(line_no: int, column: str, value: str) -> str:
    """The real penguins table with one value replaced (line numbers count the header as 1)."""
    lines = open(PENGUINS).read().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = lines[line_no - 1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[line_no - 1] = ",".join(cells) + "\n"
    return "".join(lines)


def test_duplicated_header_names_are_refused_where_they_enter(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"), HEADER.replace("year", "sex") + "".join(ROWS))
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   f"file {f}: the header repeats column names ('sex' at columns 7, 8)")


def test_one_non_numeric_value_in_a_numeric_column_is_an_error_naming_value_and_line(tmp_path):
    f = _write(str(tmp_path / "data" / "a.csv"), _penguins_with(101, "body_mass_g", "abc"))
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   f"file {f}, line 101, column 'body_mass_g': expected a number",
                   "found 'abc'", "string_columns=['body_mass_g']")


def test_string_columns_accepts_such_a_column_as_strings_and_says_so(tmp_path):
    import pyarrow.parquet as pq
    _write(str(tmp_path / "data" / "a.csv"), _penguins_with(101, "body_mass_g", "abc"))
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}, string_columns=['body_mass_g']")
    proc = tfpipe("run", p, "--to", "ExampleGen")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "column 'body_mass_g' read as strings (string_columns)" in proc.stderr
    parts = [pq.read_table(f) for f in glob.glob(str(tmp_path / "root" / "ExampleGen" / "examples" / "*" / "*" /
                                                     "*.parquet"))]
    assert sum(t.num_rows for t in parts) == 344  # every row kept
    assert {str(t.schema.field("body_mass_g").type) for t in parts} == {"string"}
    assert "abc" in {v for t in parts for v in t.column("body_mass_g").to_pylist()}


def test_a_span_missing_a_column_of_the_previous_span(tmp_path):
    _write(str(tmp_path / "data" / "span-1" / "a.csv"), HEADER + "".join(ROWS))
    drop = HEADER.strip().split(",").index("island")
    f2 = _write(str(tmp_path / "data" / "span-2" / "a.csv"),
                "".join(",".join(c for i, c in enumerate(r.strip().split(",")) if i != drop) + "\n"
                        for r in [HEADER, *ROWS]))
    args = f"input_base={str(tmp_path / 'data')!r}, input_pattern='span-{{SPAN}}/*.csv'"
    _assert_failed(tmp_path, tfpipe("run", _pipeline_file(tmp_path, args)), "ExampleGen",
                   f"span 2 ({f2}) lacks column(s) ['island'] that the previous span",
                   "pass allow_missing_columns=True")
    ok = tmp_path / "ok"
    ok.mkdir()
    proc = tfpipe("run", _pipeline_file(ok, args + ", allow_missing_columns=True"), "--to", "ExampleGen")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "span 2 lacks column(s) ['island'] of the previous span (allow_missing_columns)" in proc.stderr


def test_a_bad_value_far_past_the_first_block_names_its_line_and_leaves_nothing(tmp_path):
    """ExampleGen streams a CSV block by block (types inferred from the first 16 MB, as
    pyarrow's reader does); a value further on that does not fit fails the node with its
    line, after rows were already written: none of them may remain."""
    body = "".join(ROWS) * 140_000  # 420,000 rows, about 20 MB: more than one block
    bad_line = len(ROWS) * 140_000 + 2 - 7  # the header is line 1
    lines = (HEADER + body).splitlines(keepends=True)
    lines[bad_line - 1] = "Gentoo,Biscoe,46.1,13.2,211,heavy,female,2007\n"
    f = _write(str(tmp_path / "data" / "a.csv"), "".join(lines))
    assert os.path.getsize(f) > 16 << 20
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    _assert_failed(tmp_path, run_here(p), "ExampleGen",
                   f"file {f}, line {bad_line}, column 'body_mass_g': expected int64 values (as in the rows "
                   f"before), found 'heavy'")


def test_files_of_one_split_with_int_and_float_columns_are_unified_to_float(tmp_path):
    import pyarrow.parquet as pq
    _write(str(tmp_path / "data" / "a.csv"), HEADER + "".join(ROWS))
    _write(str(tmp_path / "data" / "b.csv"), HEADER + "Adelie,Dream,40.0,18.0,190,3800.5,male,2008\n")
    p = _pipeline_file(tmp_path, f"input_base={str(tmp_path / 'data')!r}")
    proc = run_here(p, to_node="ExampleGen")
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [pq.read_table(f) for f in glob.glob(str(tmp_path / "root" / "ExampleGen" / "examples" / "*" / "*" /
                                                     "*.parquet"))]
    assert {str(t.schema.field("body_mass_g").type) for t in parts} == {"double"}
    assert sorted(v for t in parts for v in t.column("body_mass_g").to_pylist()) == [3500.0, 3750.0, 3800.5, 4500.0]
    b_int = HEADER + "Adelie,Dream,40.0,18.0,190,heavy,male,2008\n"
    _write(str(tmp_path / "data" / "b.csv"), b_int)
    proc2 = run_here(p, to_node="ExampleGen")
    assert proc2.returncode == 1
    assert f"file {tmp_path / 'data' / 'b.csv'}, column 'body_mass_g': type string differs from int64" in \
        proc2.stderr
