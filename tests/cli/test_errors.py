"""The CLI's errors as a user meets them: every usage error exits 2 with a message naming
what was expected and found; a failure in the user's pipeline file names their file and
line; a store that cannot be used is named with what to do. One line or paragraph each,
never a traceback."""
import pytest

from tests.conftest import tfpipe

PIPELINE = '''
from tfpipe import Output, Pipeline, PushedModel, component
from tests.fixtures.trivial import make_numbers, total


@component
def push(pushed_model: Output[PushedModel], version: str = "1") -> None:
    import os
    os.makedirs(pushed_model.uri, exist_ok=True)
    pushed_model.pushed = True
    pushed_model.destination = pushed_model.uri
    pushed_model.pushed_version = version


def create_pipeline():
    nums = make_numbers(n=3)
    return Pipeline(NAME, [total(numbers=nums.outputs.numbers), push()], root=ROOT, metadata=MD)
'''


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two pipelines, each run once and each registering a model version: a store where
    `models rollback` without --model is ambiguous."""
    d = tmp_path_factory.mktemp("cli-errors")
    files = {}
    for name in ("alpha", "beta"):
        f = d / f"{name}.py"
        f.write_text(PIPELINE.replace("NAME", repr(name)).replace("ROOT", repr(str(d / "root")))
                     .replace("MD", repr(str(d / "m.sqlite"))))
        tfpipe("run", str(f), "--run-id", f"{name}-1", "-q", check=0)
        files[name] = str(f)
    return d, files


def _usage(*args, fragment: str):
    p = tfpipe(*args)
    assert p.returncode == 2, f"tfpipe {' '.join(args)} exited {p.returncode}:\n{p.stderr[-2000:]}"
    assert fragment in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_usage_errors_exit_2_everywhere(store, tmp_path):
    d, files = store
    md = str(d / "m.sqlite")
    alpha = files["alpha"]
    cases = [
        ((), "the following arguments are required: COMMAND"),
        (("run", str(tmp_path / "nope.py")), "does not exist"),
        (("run", alpha, "--target", "nope"), "invalid choice: 'nope'"),
        (("run", alpha, "--from", "NoSuchNode"),
         "--from 'NoSuchNode': no such node; nodes are ['push', 'make_numbers', 'total']"),
        (("run", alpha, "--to", "nope"), "--to 'nope': no such node"),
        (("run", alpha, "--run-id", "alpha-1"), "run id 'alpha-1' is already used"),
        (("compile", alpha, "--target", "nope"), "--target nope: not available; expected one of ['ir', 'airflow', "
                                                 "'kubeflow']"),
        (("runs", "show", "nope", "--metadata", md), "no run 'nope' in the metadata store"),
        (("runs", "list", "--metadata", str(tmp_path / "none.sqlite")), "no metadata store at"),
        (("lineage", "99999", "--metadata", md), "no artifact with id 99999"),
        (("models", "rollback", "--metadata", md), "several registered models ['alpha', 'beta']; pass --model"),
        (("models", "promote", "7", "--stage", "production", "--metadata", md), "no model version '7'"),
        (("submit", alpha, "--target", "vertex", "--region", "us-central1", "--pipeline-root", "gs://b/r"),
         "needs --project"),
        (("mlflow", "export", "alpha-1", "--metadata", md), "no MLflow tracking URI"),
        (("reproduce", "nope", "--metadata", md), "no run 'nope'"),
        (("report", "nope", "--metadata", md, "-o", str(tmp_path / "r.html")), "no run 'nope'"),
        (("ci", "plan", "--base", "nope", "--head", "HEAD", "--repo", str(tmp_path)), "not a git repository"),
    ]
    for args, fragment in cases:
        _usage(*args, fragment=fragment)


def test_a_failure_in_create_pipeline_names_the_users_file_and_line(tmp_path):
    f = tmp_path / "pipe.py"
    f.write_text("from tfpipe import Pipeline\n"
                 "from tests.fixtures.trivial import make_numbers\n"
                 "\n"
                 "SETTINGS = {}\n"
                 "\n"
                 "def create_pipeline():\n"
                 "    n = SETTINGS['missing_key']\n"
                 "    return Pipeline('p', [make_numbers(n=n)])\n")
    p = tfpipe("run", str(f))
    assert p.returncode == 1
    line = p.stderr.strip()
    assert line == (f"tfpipe: error: pipeline file {f}: create_pipeline() failed at {f}, line 7 "
                    f"(in create_pipeline): n = SETTINGS['missing_key']: KeyError: 'missing_key'")


def test_a_wiring_error_names_the_users_line_that_wired_it(tmp_path):
    f = tmp_path / "pipe.py"
    f.write_text("from tfpipe import Pipeline\n"
                 "from tests.fixtures.trivial import make_numbers\n"
                 "\n"
                 "def create_pipeline():\n"
                 "    return Pipeline('p', [make_numbers(n='three')])\n")
    p = tfpipe("compile", str(f))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"create_pipeline() failed at {f}, line 5" in p.stderr
    assert "WiringError: make_numbers(id='make_numbers'): parameter 'n' expects int, found str 'three'" in p.stderr


def test_an_error_importing_the_pipeline_file_names_its_line(tmp_path):
    f = tmp_path / "pipe.py"
    f.write_text("import os\n\nDATA = os.environ['NO_SUCH_VARIABLE_SET']\n\ndef create_pipeline():\n    pass\n")
    p = tfpipe("compile", str(f))
    assert p.returncode == 1
    assert f"pipeline file {f}: importing it failed at {f}, line 3" in p.stderr and "KeyError" in p.stderr


def test_a_corrupt_metadata_store_is_named_with_what_to_do(tmp_path):
    bad = tmp_path / "metadata.sqlite"
    bad.write_bytes(b"this is not an ML Metadata database" * 50)
    p = tfpipe("runs", "list", "--metadata", str(bad))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (f"tfpipe: error: ML Metadata store {bad} is not an ML Metadata SQLite database "
                                f"(corrupt, or another kind of file); move it aside to start a new store, or pass "
                                f"--metadata / set $TFPIPE_HOME to another one")
    assert "CREATE TABLE" not in p.stderr


def test_a_metadata_folder_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    f = tmp_path / "pipe.py"
    f.write_text("from tfpipe import Pipeline\nfrom tests.fixtures.trivial import make_numbers\n\n"
                 f"def create_pipeline():\n    return Pipeline('p', [make_numbers()], root={str(tmp_path / 'r')!r}, "
                 f"metadata={str(blocker / 'm.sqlite')!r})\n")
    p = tfpipe("run", str(f))
    assert p.returncode == 1
    assert f"ML Metadata store {blocker / 'm.sqlite'}: cannot create its folder" in p.stderr
    assert "--metadata or $TFPIPE_HOME" in p.stderr
