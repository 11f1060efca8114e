"""ExampleGen reading a data source (tfpipe.sources): a user's own source named as
``module:Class`` or by an entry point (the worked example of docs/data_sources.md), the
data version on the Examples, the cache key, a secret refused at compile time, and bad
sources failing ExampleGen with nothing partial."""
import importlib
import json
import os
import textwrap

import pytest

from tests.components.test_bad_input import _assert_failed
from tests.conftest import REPO, tfpipe
from tfpipe import Pipeline, compile_pipeline
from tfpipe.components import ExampleGen, StatisticsGen
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner


def _worked_example() -> str:
    """The code block of "Your own source" in docs/data_sources.md: the test runs the
    documented example itself."""
    text = open(os.path.join(REPO, "docs", "data_sources.md")).read()
    section = text[text.index("### Your own source"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    return code[:code.index("\n```")] + "\n"


USER_SOURCE = _worked_example() + '''

class Nothing(Squares):
    def read(self, snapshot):
        yield pa.record_batch([pa.array([], pa.int64())], names=["x"])
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``squares_src`` importable (as a user's module on the path), and a distribution
    ``squares-source`` that registers it in the ``tfpipe.sources`` entry point group."""
    d = tmp_path / "site"
    d.mkdir()
    (d / "squares_src.py").write_text(USER_SOURCE)
    info = d / "squares_source-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: squares-source\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tfpipe.sources]\nsquares = squares_src:Squares\n")
    monkeypatch.syspath_prepend(str(d))
    importlib.invalidate_caches()
    return d


def _run(tmp_path, **kw):
    gen = ExampleGen(**kw)
    p = Pipeline("src", [gen, StatisticsGen(examples=gen.outputs.examples)], root=str(tmp_path / "root"),
                 metadata=str(tmp_path / "m.sqlite"))
    return LocalRunner(verbose=False).run(compile_pipeline(p))


def _states(r):
    return {n.node_id: n.state for n in r.nodes}


def test_user_source_by_module_and_class(tmp_path, user_module):
    r = _run(tmp_path, source="squares_src:Squares", source_config={"n": 2500}, label_key="label")
    assert r.ok, r.error
    [ex] = r.nodes[0].outputs["examples"]
    assert sum(ex.row_counts.values()) == 2500 and set(ex.row_counts) == {"train", "eval"}
    assert ex.source == "squares_src:Squares" and ex.data_version == {"rows": 2500}
    assert ex.columns == {"x": "int64", "square": "int64", "label": "string"}
    import pyarrow.parquet as pq
    rows = sum(pq.read_table(ex.parquet_path(s)).num_rows for s in ex.split_names)
    assert rows == 2500
    # unchanged: served from the cache; another snapshot (n) runs ExampleGen and what follows
    again = _run(tmp_path, source="squares_src:Squares", source_config={"n": 2500}, label_key="label")
    assert set(_states(again).values()) == {"CACHED"}
    more = _run(tmp_path, source="squares_src:Squares", source_config={"n": 3000}, label_key="label")
    assert set(_states(more).values()) == {"COMPLETE"}
    assert sum(more.nodes[0].outputs["examples"][0].row_counts.values()) == 3000


def test_user_source_by_entry_point(tmp_path, user_module):
    r = _run(tmp_path, source="squares", source_config={"n": 10, "batch": 3})
    assert r.ok, r.error
    [ex] = r.nodes[0].outputs["examples"]
    assert sum(ex.row_counts.values()) == 10 and ex.source == "squares"
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    [e] = [e for e in store.store.get_executions() if store.props(e)["node_id"] == "ExampleGen"]
    params = json.loads(store.props(e)["parameters"])
    assert params["data_version"] == {"rows": 10}
    assert params["source_snapshot"]["reproducible"] is True
    assert params["input_fingerprint"] == params["source_snapshot"]["fingerprint"]


def test_unknown_source_names_what_is_known(tmp_path):
    r = _run(tmp_path, source="no_such_source")
    assert not r.ok
    err = str(r.error)
    assert "source 'no_such_source' is not known" in err and "'avro'" in err and "tfpipe.sources" in err


def test_a_source_config_the_class_does_not_take_names_the_keys(tmp_path, user_module):
    r = _run(tmp_path, source="squares_src:Squares", source_config={"n": 3, "rows": 5})
    assert not r.ok
    assert "source 'squares_src:Squares': cannot make it with source_config keys ['n', 'rows']" in str(r.error)
    assert "'rows'" in str(r.error)


def test_file_options_with_a_source_are_an_error(tmp_path, user_module):
    r = _run(tmp_path, source="squares_src:Squares", source_config={"n": 3}, input_pattern="*.csv", span=2)
    assert not r.ok
    assert ("ExampleGen reads source 'squares_src:Squares', but input_pattern, span (options of files under "
            "input_base) are given") in str(r.error)


def test_inline_password_in_source_config_is_refused_at_compile_time(tmp_path):
    from tfpipe.credentials import CredentialError
    gen = ExampleGen(source="sql", source_config={"url": "postgresql://db/x", "password": "hunter2"})
    with pytest.raises(CredentialError, match=r"source_config\.password holds a password inline"):
        compile_pipeline(Pipeline("s", [gen], root=str(tmp_path / "r"), metadata=str(tmp_path / "m.sqlite")))
    gen = ExampleGen(source="sql", source_config={"url": "postgresql://u:hunter2@db/x"})
    with pytest.raises(CredentialError, match="URL with a password"):
        compile_pipeline(Pipeline("s", [gen], root=str(tmp_path / "r"), metadata=str(tmp_path / "m.sqlite")))


def test_empty_source_fails_example_gen_with_nothing_partial(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "squares_src.py").write_text(USER_SOURCE)
    p = tmp_path / "pipeline.py"
    p.write_text(textwrap.dedent(f"""
        from tfpipe import Pipeline
        from tfpipe.components import ExampleGen, StatisticsGen

        def create_pipeline():
            gen = ExampleGen(source="squares_src:Nothing", source_config={{"n": 5}})
            return Pipeline("bad", [gen, StatisticsGen(examples=gen.outputs.examples)],
                            root={str(tmp_path / 'root')!r}, metadata={str(tmp_path / 'm.sqlite')!r})
    """))
    proc = tfpipe("run", str(p), env={"PYTHONPATH": os.pathsep.join([REPO, str(site)])})
    _assert_failed(tmp_path, proc, "ExampleGen",
                   "source 'squares_src:Nothing' (squares below 5) returned no rows (columns ['x']) at rows=5",
                   "expected at least one row")
