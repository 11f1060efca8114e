"""``tfpipe run`` keeps the IR of a pipeline file between runs (cli/ir_cache.py): a re-run
of an unchanged file does not import it, and each thing its loading depended on, when
changed, makes the next run load the file anew and say why: the file itself, a local
module it imports, a file it reads, a directory it lists, an environment variable it
reads, the working directory, tfpipe or the installed packages. What the loading did to
the process (environment variables set, directories put on sys.path) is done again on a
hit. Through the real CLI, with trivial components (no TensorFlow)."""
import glob
import json
import os

import pytest

from tests.conftest import tfpipe

PIPELINE = '''
import json, os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "loads.log"), "a") as f:
    f.write("loaded\\n")                                     # counts the imports of this file
os.environ.setdefault("TFPIPE_TEST_FLAG", "set by the pipeline file")
from tfpipe import Pipeline
from tests.fixtures.trivial import make_numbers
from helper import OFFSET, show_env
HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline():
    with open(os.path.join(HERE, "config.json")) as f:
        n = json.load(f)["n"] + OFFSET
    shards = len(os.listdir(os.path.join(HERE, "shards")))
    n += int(os.environ.get("TFPIPE_TEST_EXTRA", "0")) + shards
    return Pipeline("irc", [make_numbers(n=n), show_env(dest=os.path.join(HERE, "env.txt"))])
'''

HELPER = '''
import os
from tfpipe import Output, String, component
OFFSET = {offset}


@component
def show_env(out: Output[String], dest: str) -> None:
    with open(dest, "w") as f:
        f.write(os.environ.get("TFPIPE_TEST_FLAG", "unset"))
    out.write("ok")
'''


@pytest.fixture
def project(tmp_path, home):
    d = tmp_path / "project"
    (d / "shards").mkdir(parents=True)
    (d / "pipeline.py").write_text(PIPELINE)
    (d / "helper.py").write_text(HELPER.format(offset=1))
    (d / "config.json").write_text('{"n": 2}')
    (d / "shards" / "a").write_text("")
    return d


def run(project, *args, env=None, cwd=None):
    return tfpipe("run", str(project / "pipeline.py"), *args, cwd=cwd or str(project), env=env, check=0).stderr


def loads(project) -> int:
    return (project / "loads.log").read_text().count("loaded")


def entry(home) -> dict:
    [path] = glob.glob(str(home / "ir-cache" / "*.json"))
    with open(path) as f:
        return json.load(f)


def test_an_unchanged_rerun_uses_the_stored_ir_without_importing_the_file(project, home):
    assert f"tfpipe: loaded {project}/pipeline.py (no IR stored)" in run(project)
    assert "tfpipe:" not in run(project, "--no-ir-cache")  # loaded anew, nothing said, nothing stored
    assert loads(project) == 2
    out = run(project)
    assert "from the cache, unchanged since" in out and loads(project) == 2  # not imported
    e = entry(home)
    assert str(project / "helper.py") in e["files"] and str(project / "config.json") in e["files"]
    assert e["dirs"] == {str(project / "shards"): ["a"]}
    assert set(e["env_read"]) >= {"TFPIPE_TEST_EXTRA"} and e["env_written"] == {
        "TFPIPE_TEST_FLAG": "set by the pipeline file"}
    [node] = [n for n in e["ir"]["nodes"] if n["id"] == "make_numbers"]
    assert node["parameters"]["n"] == 2 + 1 + 0 + 1


def test_what_the_loading_did_is_done_again_on_a_hit(project):
    """The environment variable the file set, and its directory on sys.path (show_env is
    imported from helper.py by the executor), as if the file had been imported."""
    run(project)
    (project / "env.txt").unlink()
    out = run(project, "--no-cache")
    assert "from the cache" in out and loads(project) == 1
    assert (project / "env.txt").read_text() == "set by the pipeline file"


@pytest.mark.parametrize("change,why", [
    (lambda p: (p / "pipeline.py").write_text(PIPELINE + "\n# edited\n"), "{project}/pipeline.py changed"),
    (lambda p: (p / "helper.py").write_text(HELPER.format(offset=5)), "{project}/helper.py changed"),
    (lambda p: (p / "config.json").write_text('{"n": 7}'), "{project}/config.json changed"),
    (lambda p: (p / "shards" / "b").write_text(""), "directory {project}/shards changed"),
])
def test_a_changed_file_or_directory_loads_the_file_anew(project, change, why):
    run(project)
    change(project)
    out = run(project)
    assert f"tfpipe: loaded {project}/pipeline.py ({why.format(project=project)})" in out, out
    assert loads(project) == 2
    assert "from the cache" in run(project) and loads(project) == 2  # stored again


def test_a_changed_environment_variable_or_working_directory_loads_the_file_anew(project, tmp_path):
    run(project)
    assert "(environment variable TFPIPE_TEST_EXTRA changed)" in run(project, env={"TFPIPE_TEST_EXTRA": "4"})
    assert loads(project) == 2
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "(no IR stored)" in run(project, env={"TFPIPE_TEST_EXTRA": "4"}, cwd=str(elsewhere))
    assert loads(project) == 3


def test_a_changed_tfpipe_or_installed_packages_loads_the_file_anew(project, home):
    from tfpipe.cli import ir_cache
    run(project)
    [path] = glob.glob(str(home / "ir-cache" / "*.json"))
    for key, value, why in (("tfpipe", "0.0.1", "tfpipe changed"),
                            ("site_dirs", {"/nonexistent": 1}, "installed packages changed"),
                            ("python", "/usr/bin/python0", "python changed")):
        e = entry(home)
        stored = e[key]
        e[key] = value
        with open(path, "w") as f:
            json.dump(e, f)
        assert f"({why})" in run(project)
        e = entry(home)
        assert e[key] == stored  # stored anew with the real value
    assert ir_cache.IR_CACHE_VERSION == entry(home)["ir_cache_version"]


def test_an_unreadable_cache_entry_is_a_miss(project, home):
    run(project)
    [path] = glob.glob(str(home / "ir-cache" / "*.json"))
    with open(path, "w") as f:
        f.write("{not json")
    assert "is unreadable" in run(project) and loads(project) == 2
    assert "from the cache" in run(project)


def test_secrets_are_not_stored(project, home):
    """Environment values read are kept as digests; a file that sets a secret-looking
    variable is not cached at all (its value would have to be stored to replay it)."""
    run(project, env={"TFPIPE_TEST_EXTRA": "0", "MY_API_TOKEN": "hunter2"})
    assert "hunter2" not in open(glob.glob(str(home / "ir-cache" / "*.json"))[0]).read()
    (project / "pipeline.py").write_text(PIPELINE.replace(
        'os.environ.setdefault("TFPIPE_TEST_FLAG", "set by the pipeline file")',
        'os.environ["DB_PASSWORD"] = "hunter2"'))
    out = run(project)
    assert "its IR is not cached (it sets a secret-looking environment variable" in out
    assert "hunter2" not in open(glob.glob(str(home / "ir-cache" / "*.json"))[0]).read()
    assert "from the cache" not in run(project) and loads(project) == 3


def test_a_broken_file_is_never_stored(project, home):
    run(project)
    (project / "pipeline.py").write_text(PIPELINE + "\nraise ValueError('broken')\n")
    p = tfpipe("run", str(project / "pipeline.py"), cwd=str(project))
    assert p.returncode != 0 and "ValueError: broken" in p.stderr
    p = tfpipe("run", str(project / "pipeline.py"), cwd=str(project))
    assert p.returncode != 0 and "from the cache" not in p.stderr  # the old IR is not used either


def test_what_installed_libraries_read_for_themselves_is_not_recorded(tmp_path, monkeypatch):
    """Importing TensorFlow or TFMA reads dozens of environment variables and some files of
    their own; those are not the pipeline file's dependencies, or every change of $PWD would
    throw the IR away. The file's own reads (here, this test's) are recorded, reads through
    the standard library included; the import system's scans of sys.path are not."""
    import importlib

    import click

    from tfpipe.cli import ir_cache
    (tmp_path / "cfg.json").write_text("{}")
    (tmp_path / "mod_for_ir_cache_test.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with ir_cache.record() as rec:
        click.get_app_dir("x")                          # click reads XDG_CONFIG_HOME for itself
        os.environ.get("TFPIPE_TEST_MINE")              # a read of the caller's own
        os.getenv("TFPIPE_TEST_MINE_TOO")               # through the standard library
        open(tmp_path / "cfg.json").read()
        sorted(p.name for p in tmp_path.iterdir())      # a listing, through pathlib
        importlib.import_module("mod_for_ir_cache_test")
    assert "XDG_CONFIG_HOME" not in rec.env_read
    assert {"TFPIPE_TEST_MINE", "TFPIPE_TEST_MINE_TOO"} <= set(rec.env_read)
    assert str(tmp_path / "cfg.json") in rec.files
    assert rec.dirs == {str(tmp_path)}  # the listing above, not the import's scan of sys.path
    assert not isinstance(os.environ, ir_cache._RecordingEnviron)  # restored
