"""ExampleGen from a Delta Lake table: the version read (the newest, a given version, the
one at a timestamp) recorded as the data version and in the cache key; bad input (a
version that does not exist, a column whose type changed, no rows) a FAILED ExampleGen
with nothing partial; ``tfpipe reproduce`` reading the recorded version after a newer one
exists, and saying when a source cannot be read again as it was; a table on S3."""
import datetime
import json
import os
import time

import pytest

from tests.components.test_bad_input import _assert_failed
from tests.conftest import REPO, scoped_env, tfpipe
from tests.tracking.conftest import git
from tfpipe import Pipeline, compile_pipeline
from tfpipe.components import ExampleGen
from tfpipe.orchestrators.local import LocalRunner

PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")


def penguin_rows():
    """The penguin table as ExampleGen reads the CSV (NA is a missing value)."""
    import pyarrow.csv as pacsv
    return pacsv.read_csv(PENGUINS, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def write_versions(uri: str, parts, storage_options=None) -> list[int]:
    """A Delta table whose version 0 has no rows and version i (i >= 1) appends ``parts[i-1]``;
    returns each version's commit time (ms)."""
    from deltalake import DeltaTable, write_deltalake
    t = penguin_rows()
    write_deltalake(uri, t.slice(0, 0), storage_options=storage_options)
    for part in parts:
        time.sleep(0.02)  # commit times apart, for reading at a timestamp
        write_deltalake(uri, part, mode="append", storage_options=storage_options)
    return [h["timestamp"] for h in sorted(DeltaTable(uri, storage_options=storage_options).history(),
                                           key=lambda h: h["version"])]


@pytest.fixture
def table(tmp_path):
    t = penguin_rows()
    path = str(tmp_path / "penguins_delta")
    times = write_versions(path, [t.slice(0, 200), t.slice(200)])
    return path, times


def _gen(tmp_path, **kw):
    gen = ExampleGen(label_key="species", **kw)
    r = LocalRunner(verbose=False).run(compile_pipeline(
        Pipeline("delta", [gen], root=str(tmp_path / "root"), metadata=str(tmp_path / "m.sqlite"))))
    assert r.ok, r.error
    [node] = r.nodes
    return node.state, node.outputs["examples"][0]


def test_the_newest_version_a_given_one_or_the_one_at_a_timestamp(tmp_path, table):
    path, times = table
    state, ex = _gen(tmp_path, input_base=path)
    assert state == "COMPLETE" and sum(ex.row_counts.values()) == 344
    assert ex.source == "delta" and ex.data_version == {"delta_version": 2, "table": path}
    assert _gen(tmp_path, input_base=path)[0] == "CACHED"
    state, v1 = _gen(tmp_path, input_base=path, source_config={"version": 1})
    assert state == "COMPLETE" and sum(v1.row_counts.values()) == 200 and v1.data_version["delta_version"] == 1
    between = datetime.datetime.fromtimestamp((times[1] + times[2]) / 2000, datetime.timezone.utc).isoformat()
    _, at = _gen(tmp_path, input_base=path, source_config={"timestamp": between})
    assert at.data_version["delta_version"] == 1 and at.input_fingerprint == v1.input_fingerprint
    _, named = _gen(tmp_path, source="delta", source_config={"path": path, "version": 1})
    assert named.input_fingerprint == v1.input_fingerprint and sum(named.row_counts.values()) == 200
    with pytest.raises(Exception, match=r"has no version at or before 2001-01-01T00:00:00Z; its first version "
                                        r"\(0\) was committed at"):
        from tfpipe.sources.delta import DeltaSource
        DeltaSource(path=path, timestamp="2001-01-01T00:00:00Z").snapshot()


def _bad_pipeline(tmp_path, gen_args: str) -> str:
    p = tmp_path / "pipeline.py"
    p.write_text("\n".join([
        "from tfpipe import Pipeline",
        "from tfpipe.components import ExampleGen, StatisticsGen",
        "",
        "def create_pipeline():",
        f"    gen = ExampleGen({gen_args})",
        "    return Pipeline('bad', [gen, StatisticsGen(examples=gen.outputs.examples)],",
        f"                    root={str(tmp_path / 'root')!r}, metadata={str(tmp_path / 'm.sqlite')!r})", ""]))
    return str(p)


@pytest.mark.parametrize("case", ["missing version", "no rows", "type change"])
def test_bad_delta_input_fails_example_gen_with_nothing_partial(tmp_path, table, case):
    path, _ = table
    if case == "missing version":
        p = _bad_pipeline(tmp_path, f"input_base={path!r}, source_config={{'version': 7}}")
        want = [f"Delta table {path} has no version 7; versions found: 0, 1, 2"]
    elif case == "no rows":
        p = _bad_pipeline(tmp_path, f"input_base={path!r}, source_config={{'version': 0}}")
        want = [f"Delta table {path} at version 0 holds no rows (columns ['species', ", "expected at least one row"]
    else:
        import pyarrow as pa
        from deltalake import write_deltalake
        t = penguin_rows()
        t = t.set_column(t.schema.get_field_index("body_mass_g"), "body_mass_g",
                         t.column("body_mass_g").cast(pa.string()))
        write_deltalake(path, t, mode="overwrite", schema_mode="overwrite")
        p = _bad_pipeline(tmp_path, f"input_base={path!r}")
        want = [f"Delta table {path}: column 'body_mass_g' changed type between versions: int64 in version 2, "
                f"string in version 3", "allow_type_changes=True"]
    _assert_failed(tmp_path, tfpipe("run", p), "ExampleGen", *want)


REPRO_PIPELINE = '''
import os
from tfpipe.components.example_gen import ExampleGen
from tfpipe import Examples, Input, Integer, Output, Pipeline, component


@component
def count_rows(examples: Input[Examples], result: Output[Integer]) -> None:
    result.write(sum(examples.row_counts.values()))


def create_pipeline():
    eg = ExampleGen(GEN, label_key="species")
    return Pipeline("repro", [count_rows(examples=eg.outputs.examples)])
'''


def _project(tmp_path, gen: str, extra: dict | None = None):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pipeline.py").write_text(REPRO_PIPELINE.replace("GEN", gen))
    for name, text in (extra or {}).items():
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    return repo


def test_reproduce_reads_the_recorded_delta_version_after_a_newer_one_exists(tmp_path):
    from deltalake import write_deltalake
    t = penguin_rows()
    path = str(tmp_path / "table")
    write_versions(path, [t.slice(0, 200)])
    repo = _project(tmp_path, "input_base=os.environ['REPRO_TABLE']")
    env = {"TFPIPE_HOME": str(tmp_path / "home"), "REPRO_TABLE": path}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "v1", cwd=str(tmp_path), env=env, check=0)
    write_deltalake(path, t.slice(200), mode="append")  # version 2
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "v2", cwd=str(tmp_path), env=env, check=0)
    cmp = tfpipe("runs", "compare", "v1", "v2", cwd=str(tmp_path), env=env, check=0).stdout
    [line] = [ln for ln in cmp.splitlines() if "ExampleGen.data_version" in ln]
    assert '"delta_version": 1' in line and '"delta_version": 2' in line, cmp
    p = tfpipe("reproduce", "v1", "-o", str(tmp_path / "again"), "--json", "-q", cwd=str(tmp_path), env=env, check=0)
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2, res
    [check] = [d for d in res["data_checks"] if d["key"] == "source_snapshot"]
    assert check["ok"] and check["data_version"] == {"delta_version": 1, "table": path}
    [count] = [r for r in res["artifacts"] if r["node"] == "count_rows"]
    assert json.load(open(os.path.join(count["reproduced_uri"], "value"))) == 200  # version 1's rows, not 344
    text = tfpipe("reproduce", "v1", "-q", cwd=str(tmp_path), env=env, check=0).stdout
    assert "data ExampleGen.source_snapshot: " in text and "delta version 1, read again as recorded" in text


COUNTER_SOURCE = '''
import hashlib
import os

import pyarrow as pa

from tfpipe.sources import Source


class Counter(Source):
    """A table that can change under the same name, with no version to read it at again."""

    def __init__(self, path):
        super().__init__(path=path)
        self.path = path

    def snapshot(self):
        n = int(open(self.path).read())
        return {"fingerprint": hashlib.sha256(str(n).encode()).hexdigest(), "data_version": {"rows": n},
                "reproducible": False}

    def read(self, snapshot):
        n = int(open(self.path).read())
        yield pa.record_batch([pa.array(["a" if i % 2 else "b" for i in range(n)])], names=["species"])
'''


def test_reproduce_says_when_a_source_cannot_be_read_again_as_it_was(tmp_path):
    size = tmp_path / "rows"
    size.write_text("30")
    repo = _project(tmp_path, "source='counter_src:Counter', source_config={'path': os.environ['ROWS']}",
                    {"counter_src.py": COUNTER_SOURCE})
    env = {"TFPIPE_HOME": str(tmp_path / "home"), "ROWS": str(size),
           "PYTHONPATH": os.pathsep.join([REPO, str(repo)])}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r1", cwd=str(tmp_path), env=env, check=0)
    # unchanged: reproduced, checked against the data as it is now
    res = json.loads(tfpipe("reproduce", "r1", "--json", "-q", cwd=str(tmp_path), env=env, check=0).stdout)
    assert res["identical"] == res["total"] == 2
    [check] = res["data_checks"]
    assert check["ok"] and not check["reproducible"] and "not reproducible" in check["how"]
    size.write_text("40")
    p = tfpipe("reproduce", "r1", "-o", str(tmp_path / "again"), "-q", cwd=str(tmp_path), env=env)
    assert p.returncode == 1
    assert ("node ExampleGen: source 'counter_src:Counter' cannot be read again as it was: its snapshot (rows=30) "
            "is not reproducible and its data changed since") in p.stderr
    assert "now rows=40" in p.stderr
    assert not (tmp_path / "again").exists()


def test_a_delta_table_on_s3(tmp_path, s3):
    from tfpipe.sources.delta import delta_storage_options
    t = penguin_rows()
    uri = f"{s3.bucket}/tables/penguins-{os.getpid()}"
    with scoped_env(**s3.env()):
        write_versions(uri, [t.slice(0, 100), t.slice(100)], storage_options=delta_storage_options(uri))
        state, ex = _gen(tmp_path, input_base=uri)
        assert state == "COMPLETE" and sum(ex.row_counts.values()) == 344
        assert ex.data_version == {"delta_version": 2, "table": uri}
        _, v1 = _gen(tmp_path, input_base=uri, source_config={"version": 1})
        assert sum(v1.row_counts.values()) == 100
