"""`tfpipe init`'s rendering and its refusals, in process and through the CLI (no TensorFlow):
user values reach generated files only as serializer-made literals, hostile values are
refused with exit 2 before anything is written, a non-empty directory is refused and
--force writes only files that do not exist. tests/cli/test_init.py uses a project as a user
would (wheel, fresh virtualenv, tests, run, CI plan, linters)."""
import ast
import json
import os
import subprocess
import sys
import tomllib

import pytest
import yaml

from tests.conftest import tfpipe
from tfpipe.tracking import scaffold
from tfpipe.tracking.scaffold import InitError, infer_columns, render_text

HOSTILE = [
    "a'b\"c",
    "{{ 7 * 7 }} {% if true %}x{% endif %}",
    "${{ github.token }} $(touch pwned) `id` ${HOME}",
    "line1\nline2: injected\r\n- item",
    "../../etc/passwd",
    "<<py:name>> <<yaml:name>>",
    "\\ \t \u2028 \x00 é",
]

EXPECTED_FILES = [
    ".dockerignore", ".github/workflows/deploy.yml", ".github/workflows/monitor.yml",
    ".github/workflows/retrain.yml", ".github/workflows/test.yml", ".gitignore", "Dockerfile", "README.md",
    "cloudbuild.yaml", "data/penguins.csv", "modules/features.py", "modules/model.py", "modules/preprocessing.py",
    "pipeline.py", "requirements.txt", "tests/test_modules.py", "tfpipe-ci.toml", "wheels/README.md"]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_serializer_reads_back_the_same_string_on_one_line(value):
    template = ("x = <<py:v>>\n"
                "key: <<yaml:v>>\n"
                "t = <<toml:v>>\n"
                "<<json:v>>\n")
    out = render_text(template, {"v": value})
    lines = out.split("\n")
    assert len(lines) == 5 and lines[-1] == "", out  # no value added a line
    assert ast.literal_eval(lines[0].split(" = ", 1)[1]) == value
    assert yaml.safe_load(lines[1])["key"] == value
    assert tomllib.loads(lines[2])["t"] == value
    assert json.loads(lines[3]) == value


def test_markers_are_replaced_in_one_pass_and_unknown_ones_fail():
    assert render_text("<<py:a>>", {"a": "<<py:b>>", "b": "x"}) == repr("<<py:b>>")
    with pytest.raises(InitError, match=r"marker <<py:missing>> names no value"):
        render_text("x = <<py:missing>>", {"a": 1}, where="t.tmpl")
    for value in HOSTILE:  # markdown and requirements.txt take plain tokens only
        with pytest.raises(InitError, match="expected a plain token"):
            render_text("<<md:v>>", {"v": value})


def test_every_template_marker_names_a_value():
    values = scaffold.ProjectSpec("demo", requirement="tfpipe==1.0").values("species", ["a"], ["b"])
    for d, _, files in os.walk(scaffold.TEMPLATE_DIR):
        for f in files:
            if f.endswith(".tmpl"):
                render_text(open(os.path.join(d, f)).read(), values, where=f)  # raises on an unknown marker


def _files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d).replace(os.sep, "/") for r, _, fs in os.walk(d) for f in fs)


def test_the_project_tree_and_its_literals(tmp_path):
    d = tmp_path / "demo"
    written = scaffold.scaffold(str(d), bucket="gs://team-ml/prefix")
    assert written == EXPECTED_FILES == _files(d)
    pipeline = (d / "pipeline.py").read_text()
    assert "os.environ.get(\"PIPELINE_BUCKET\", 'gs://team-ml/prefix')" in pipeline and "NAME = 'demo'" in pipeline
    ast.parse(pipeline)
    feats = {}
    exec((d / "modules" / "features.py").read_text(), feats)
    assert feats["LABEL_KEY"] == "species" and feats["CATEGORICAL_FEATURES"] == ["island", "sex"]
    assert "body_mass_g" in feats["NUMERIC_FEATURES"]
    cb = yaml.safe_load((d / "cloudbuild.yaml").read_text())
    assert cb["substitutions"]["_BUCKET"] == "gs://team-ml/prefix" and cb["substitutions"]["_NAME"] == "demo"
    assert cb["substitutions"]["_TARGET"] == "vertex"
    from tfpipe.version import __version__
    assert f"tfpipe=={__version__}" in (d / "requirements.txt").read_text().splitlines()
    rules = tomllib.loads((d / "tfpipe-ci.toml").read_text())["rule"]
    assert {r["action"] for r in rules} == {"nothing", "modules_only", "data_only", "full_rebuild"}


@pytest.mark.parametrize("orchestrator", ["airflow", "kubeflow"])
def test_the_orchestrator_reaches_cloudbuild_and_retrain(tmp_path, orchestrator):
    d = tmp_path / "p"
    scaffold.scaffold(str(d), name="p", orchestrator=orchestrator)
    assert yaml.safe_load((d / "cloudbuild.yaml").read_text())["substitutions"]["_TARGET"] == orchestrator
    assert yaml.safe_load((d / ".github" / "workflows" / "retrain.yml").read_text())["env"]["TFPIPE_TARGET"] \
        == orchestrator


def test_data_option_infers_columns_and_refuses_hostile_names(tmp_path):
    good = tmp_path / "flowers.csv"
    good.write_text("petal,colour,kind\n1.5,red,a\n,blue,b\n2,NA,a\n")
    assert infer_columns([str(good)], "kind") == ("kind", ["petal"], ["colour"])
    d = tmp_path / "proj"
    scaffold.scaffold(str(d), name="flowers", data=str(good), label="kind")
    assert (d / "data" / "flowers.csv").read_text() == good.read_text()
    assert not (d / "data" / "penguins.csv").exists()
    with pytest.raises(InitError, match=r"--label 'petal': expected a column of class names \(text\), found a numeric"):
        infer_columns([str(good)], "petal")
    with pytest.raises(InitError, match=r"expected --label COLUMN"):
        infer_columns([str(good)], None)
    for column in ['a"b', "x{{y}}", "$(id)", "../up"]:
        bad = tmp_path / "bad.csv"
        bad.write_text(f'ok,"{column.replace(chr(34), chr(34) * 2)}",species\n1,2,a\n')
        with pytest.raises(InitError, match="is not usable as a feature key"):
            infer_columns([str(bad)], None)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,species\n1,x\n1,2,3\n")
    with pytest.raises(InitError, match=r"ragged.csv, line 3: expected 2 columns \(as in the header\), found 3"):
        infer_columns([str(ragged)], None)


@pytest.mark.parametrize("args, expected", [
    (["--name", "x'; import os #"], "project name \"x'; import os #\": expected lower-case letters"),
    (["--name", "a\nb"], "project name 'a\\nb': expected"),
    (["--name", "{{ x }}"], "project name '{{ x }}': expected"),
    (["--bucket", "gs://b/$(touch pwned)"], "--bucket 'gs://b/$(touch pwned)': expected s3://BUCKET or gs://BUCKET"),
    (["--bucket", "gs://b/../up"], "--bucket 'gs://b/../up': expected"),
    (["--bucket", "/data/local"], "--bucket '/data/local': expected"),
    (["--data", "no-such.csv"], "--data no-such.csv: expected a CSV file or a folder of them, found nothing"),
])
def test_hostile_or_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, expected):
    d = tmp_path / "proj"
    p = tfpipe("init", str(d), *args, cwd=str(tmp_path), check=2)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("tfpipe: error: init: "), p.stderr
    assert expected in p.stderr, p.stderr
    assert not d.exists()


def test_a_non_empty_directory_is_refused_and_force_writes_only_new_files(tmp_path):
    d = tmp_path / "existing"
    d.mkdir()
    (d / "notes.txt").write_text("mine\n")
    p = tfpipe("init", str(d), check=2)
    assert p.stderr == (f"tfpipe: error: init: {d}: expected a new or empty directory, found 1 entry (notes.txt); "
                        f"--force writes beside them only when no file of the project exists\n")
    assert _files(d) == ["notes.txt"]
    tfpipe("init", str(d), "--force", check=0)
    assert (d / "notes.txt").read_text() == "mine\n" and _files(d) == sorted(EXPECTED_FILES + ["notes.txt"])
    d2 = tmp_path / "has_readme"
    d2.mkdir()
    (d2 / "README.md").write_text("my readme\n")
    p = tfpipe("init", str(d2), "--force", check=2)
    assert p.stderr == (f"tfpipe: error: init: {d2}: --force writes only files that do not exist, found 1 that "
                        f"would be overwritten (README.md)\n")
    assert _files(d2) == ["README.md"] and (d2 / "README.md").read_text() == "my readme\n"  # nothing written
    f = tmp_path / "afile"
    f.write_text("x")
    p = tfpipe("init", str(f), "--name", "p", check=2)
    assert f"{f}: expected a new or empty directory, found a file" in p.stderr


def test_data_folder_copies_every_csv_and_refuses_another_header(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("x,kind\n1,p\n2,q\n")
    (src / "b.csv").write_text("x,kind\n3,p\n")
    (src / "notes.txt").write_text("not data\n")
    d = tmp_path / "proj"
    assert [f for f in scaffold.scaffold(str(d), data=str(src), label="kind") if f.startswith("data/")] == \
        ["data/a.csv", "data/b.csv"]
    (src / "c.csv").write_text("y,kind\n3,p\n")
    with pytest.raises(InitError, match=r"c.csv: expected the header of .*a.csv \(x,kind\), found y,kind"):
        scaffold.scaffold(str(tmp_path / "proj2"), data=str(src), label="kind")
    assert not (tmp_path / "proj2").exists()


@pytest.mark.slow
def test_a_project_from_other_data_passes_its_own_tests(tmp_path):
    """Numeric features only and another label: the generated modules follow modules/features.py."""
    import csv
    rows = list(csv.DictReader(open(scaffold.BUNDLED_DATA)))
    data = tmp_path / "birds.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["bill", "flipper", "kind"])
        for r in rows:
            w.writerow([r["bill_length_mm"], r["flipper_length_mm"], r["species"]])
    d = tmp_path / "birds"
    scaffold.scaffold(str(d), data=str(data), label="kind")
    feats = {}
    exec((d / "modules" / "features.py").read_text(), feats)
    assert (feats["LABEL_KEY"], feats["NUMERIC_FEATURES"], feats["CATEGORICAL_FEATURES"]) == \
        ("kind", ["bill", "flipper"], [])
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=str(d),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "5 passed" in p.stdout, p.stdout[-4000:] + p.stderr[-2000:]


def test_workflows_pass_only_declared_substitutions_and_the_readme_names_every_variable(tmp_path):
    import re
    d = tmp_path / "proj"
    scaffold.scaffold(str(d), name="proj")
    wf = d / ".github" / "workflows"
    retrain = yaml.safe_load((wf / "retrain.yml").read_text())
    submit = "\n".join(s["run"] for s in retrain["jobs"]["cloud-build"]["steps"] if "run" in s)
    passed = set(re.findall(r"[;^](_[A-Z_]+)=", submit))
    declared = set(yaml.safe_load((d / "cloudbuild.yaml").read_text())["substitutions"])
    assert passed and passed <= declared, passed - declared
    assert "--config cloudbuild.yaml" in submit and "tfpipe ci plan" in (wf / "retrain.yml").read_text()
    used = set()
    for f in wf.glob("*.yml"):
        used |= set(re.findall(r"\$\{\{\s*vars\.([A-Z0-9_]+)", f.read_text()))
    readme = (d / "README.md").read_text()
    assert used and not [v for v in sorted(used) if f"`{v}`" not in readme], used
    on = yaml.safe_load((wf / "test.yml").read_text())[True]
    assert "pull_request" in on
    assert yaml.safe_load((wf / "monitor.yml").read_text())[True]["schedule"]
    assert "gh workflow run retrain.yml" in (wf / "monitor.yml").read_text()
    assert yaml.safe_load((wf / "deploy.yml").read_text())["jobs"]["staging"]["environment"] == "pre-production"
