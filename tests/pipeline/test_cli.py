"""The tfpipe CLI as a user runs it: start-up, exit codes, inspection commands, crash
safety and concurrent runs."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO, tfpipe
from tfpipe.metadata import MetadataStore

TRIVIAL = """
from tfpipe import Pipeline
from tests.fixtures.trivial import describe, make_numbers, slow, total

def create_pipeline():
    nums = make_numbers(n={n})
    t = total(numbers=nums.outputs.numbers)
    d = describe(numbers=nums.outputs.numbers, result=t.outputs.result)
    extra = [slow(numbers=nums.outputs.numbers, seconds={slow})] if {slow} else []
    return Pipeline("cli", [d, *extra], root={root!r}, metadata={md!r})
"""


def _file(tmp_path, n=3, slow=0):
    p = tmp_path / f"pipe_{n}_{slow}.py"
    p.write_text(TRIVIAL.format(n=n, slow=slow, root=str(tmp_path / "root"), md=str(tmp_path / "m.sqlite")))
    return str(p)


def test_help_is_fast_because_nothing_heavy_is_imported():
    code = ("import sys, tfpipe.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam', 'ml_metadata',"
            " 'pyarrow', 'pandas') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "HEAVY []" in p.stdout, p.stdout + p.stderr
    assert "run" in p.stdout and "lineage" in p.stdout


def test_compiling_imports_no_tensorflow_or_beam(tmp_path):
    code = ("import sys\nfrom tfpipe.cli import main\n"
            f"rc = main(['compile', {os.path.join(REPO, 'examples', 'penguin', 'pipeline.py')!r}, "
            f"'-o', {str(tmp_path / 'ir.json')!r}])\n"
            "print('RC', rc, [m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam') "
            "if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "RC 0 []" in p.stdout, p.stdout + p.stderr
    ir = json.load(open(tmp_path / "ir.json"))
    assert ir["nodes"][0]["component"] == "ExampleGen" and ir["pipeline"]["source"].endswith("pipeline.py")


def test_exit_codes_usage_and_failure(tmp_path):
    assert tfpipe("run", str(tmp_path / "missing.py")).returncode == 2
    assert tfpipe("frobnicate").returncode == 2
    bad = tmp_path / "bad.py"
    bad.write_text("from tests.fixtures.trivial import total\n"
                   "def create_pipeline():\n    return total(offset='x')\n")
    p = tfpipe("run", str(bad))
    assert p.returncode == 1 and "parameter 'offset' expects int, found str 'x'" in p.stderr
    failing = tmp_path / "failing.py"
    failing.write_text(TRIVIAL.replace("make_numbers(n={n})", "make_numbers(n={n}, fail=True)").format(
        n=2, slow=0, root=str(tmp_path / "root"), md=str(tmp_path / "m.sqlite")))
    p = tfpipe("run", str(failing))
    assert p.returncode == 1
    assert "node make_numbers failed: ValueError: make_numbers was asked to fail (n=2)" in p.stderr


def test_run_shows_progress_and_inspection_commands(tmp_path):
    f = _file(tmp_path)
    p = tfpipe("run", f, check=0)
    assert "[1/3] make_numbers (make_numbers) running" in p.stderr
    assert "[3/3] describe done in" in p.stderr and "COMPLETE" in p.stderr
    md = ["--metadata", str(tmp_path / "m.sqlite")]
    tfpipe("run", f, check=0)
    runs = json.loads(tfpipe("runs", "list", "--json", *md, check=0).stdout)
    assert [r["status"] for r in runs] == ["COMPLETE", "COMPLETE"]
    text = tfpipe("runs", "list", *md, check=0).stdout
    assert runs[0]["run_id"] in text and "STATUS" in text
    show = json.loads(tfpipe("runs", "show", runs[1]["run_id"], "--json", *md, check=0).stdout)
    assert [e["state"] for e in show["executions"]] == ["CACHED"] * 3
    assert "CACHED FROM" in tfpipe("runs", "show", runs[1]["run_id"], *md, check=0).stdout
    assert tfpipe("runs", "show", "no-such-run", *md).returncode == 2
    arts = json.loads(tfpipe("artifacts", "list", "--type", "Integer", "--json", *md, check=0).stdout)
    assert len(arts) == 1 and arts[0]["value"] == 3
    assert tfpipe("artifacts", "list", "--type", "Nope", *md).returncode == 2
    strings = json.loads(tfpipe("artifacts", "list", "--type", "String", "--json", *md, check=0).stdout)
    lin = tfpipe("lineage", str(strings[0]["id"]), *md, check=0).stdout
    assert "String #" in lin and "<- describe" in lin and "<- total" in lin and "<- make_numbers" in lin
    tree = json.loads(tfpipe("lineage", str(strings[0]["id"]), "--json", *md, check=0).stdout)
    assert tree["produced_by"]["component"] == "describe"
    assert tfpipe("lineage", "9999", *md).returncode == 2


def test_run_killed_mid_node_leaves_nothing_live_and_next_run_recomputes(tmp_path):
    f = _file(tmp_path, slow=120)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", f], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    staging = None
    while time.monotonic() < deadline and staging is None:
        d = tmp_path / "root" / "slow" / "out"
        if d.exists():
            staging = next((x for x in d.iterdir() if x.name.startswith(".staging-") and
                            (x / "partial.txt").exists()), None)
        time.sleep(0.1)
    assert staging is not None, "the slow node never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    slow_arts = [a for a in store.list_artifacts("String") if "/slow/" in a.uri]
    assert slow_arts and all(a.state != "LIVE" for a in slow_arts)
    assert not any(os.path.exists(a.uri) for a in slow_arts)
    # the next run of the same pipeline recomputes it rather than trusting the leftovers
    p = tfpipe("run", f, env={"TFPIPE_TEST_SLOW_SECONDS": "0.1"}, check=0)
    assert "slow done in" in p.stderr and "slow cached" not in p.stderr
    live = [a for a in MetadataStore(str(tmp_path / "m.sqlite")).list_artifacts("String")
            if "/slow/" in a.uri and a.state == "LIVE"]
    assert len(live) == 1 and open(os.path.join(live[0].uri, "value")).read() == '"done"'


def test_two_runs_at_once_against_one_sqlite_store(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    files = [_file(tmp_path, n=5), _file(tmp_path, n=6)]
    procs = [subprocess.Popen([sys.executable, "-m", "tfpipe.cli", "run", f], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_o, e) in zip(procs, outs):
        assert p.returncode == 0, e
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    runs = [store.props(c) for c in store.contexts_of_type("pipeline_run")]
    assert sorted(r["status"] for r in runs) == ["COMPLETE", "COMPLETE"]
    values = sorted(a.properties["value"] for a in store.list_artifacts("Integer"))
    assert values == [10, 15]
    assert len([e for e in store.store.get_executions() if store.state_name(e) == "COMPLETE"]) == 6
