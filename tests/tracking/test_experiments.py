"""Experiments on real runs of a user's repository (its own pipeline file and penguin module
files, committed in git): a change to the trainer module is visible in compare (which
file, and a diff); reproduce compares the outputs by content, re-uses the recorded
baseline read-only, and says how the environment differs; reproduce --env re-creates the
environment from the recorded lock."""
import json
import os
import shutil
import subprocess
import types

import pytest

from tests.conftest import REPO, tfpipe
from tests.tracking.conftest import git

PENGUIN = os.path.join(REPO, "examples", "penguin")

PIPELINE = '''
import os

from tfpipe import Model, Pipeline
from tfpipe.components import Evaluator, ExampleGen, Resolver, SchemaGen, StatisticsGen, Trainer, Transform

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_CONFIG = {"model_specs": [{"label_key": "species", "prediction_key": "outputs",
                                "preprocessing_function_names": ["transform_features"]}],
               "slicing_specs": [{}],
               "metrics_specs": [{"metrics": [{"class_name": "SparseCategoricalAccuracy",
                                               "threshold": {"value_threshold": {"lower_bound": 0.0}}},
                                              {"class_name": "ExampleCount"}]}]}


def create_pipeline():
    home = os.environ["TFPIPE_HOME"]
    eg = ExampleGen(input_base=os.environ["REPRO_DATA"], label_key="species")
    stats = StatisticsGen(examples=eg.outputs.examples)
    schema = SchemaGen(statistics=stats.outputs.statistics)
    transform = Transform(examples=eg.outputs.examples, schema=schema.outputs.schema,
                          module_file=os.path.join(HERE, "penguin_transform.py"))
    trainer = Trainer(examples=transform.outputs.transformed_examples, transform_graph=transform.outputs.transform_graph,
                      schema=schema.outputs.schema, module_file=os.path.join(HERE, "penguin_utils.py"),
                      train_steps=8, eval_steps=2, custom_config={"epochs": 2})
    baseline = Resolver(strategy="latest_blessed_model", model_type=Model, candidate=trainer.outputs.model,
                        id="latest_blessed_model_resolver")
    evaluator = Evaluator(examples=eg.outputs.examples, model=trainer.outputs.model,
                          baseline_model=baseline.outputs.model, eval_config=EVAL_CONFIG)
    return Pipeline("modrepo", [evaluator], root=os.path.join(home, "root"),
                    metadata=os.path.join(home, "metadata.sqlite"), beam_pipeline_args=["--direct_num_workers=1"])
'''  # noqa: E501 (the user's pipeline file, written as it is)

UNITS_BEFORE = 'd = keras.layers.Dense(int(hp.get("units", 8)), activation="relu")(d)'
UNITS_AFTER = 'd = keras.layers.Dense(int(hp.get("units", 4)), activation="relu")(d)'


@pytest.fixture(scope="module")
def modrepo(tmp_path_factory):
    """Run r1 at the first commit; the trainer module's default units 8 -> 4, committed;
    run r2 (its Resolver picks r1's blessed model as the baseline)."""
    tmp = tmp_path_factory.mktemp("modrepo")
    repo, data = tmp / "repo", tmp / "data"
    repo.mkdir()
    data.mkdir()
    shutil.copyfile(os.path.join(PENGUIN, "data", "penguins.csv"), data / "penguins.csv")
    (repo / "pipeline.py").write_text(PIPELINE)
    for f in ("penguin_utils.py", "penguin_transform.py"):
        shutil.copyfile(os.path.join(PENGUIN, f), repo / f)
    assert UNITS_BEFORE in (repo / "penguin_utils.py").read_text()
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    env = {"TFPIPE_HOME": str(tmp / "home"), "REPRO_DATA": str(data)}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r1", cwd=str(tmp), env=env, check=0)
    util = repo / "penguin_utils.py"
    util.write_text(util.read_text().replace(UNITS_BEFORE, UNITS_AFTER))
    git(repo, "commit", "-qam", "fewer units")
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "r2", cwd=str(tmp), env=env, check=0)
    return types.SimpleNamespace(tmp=tmp, repo=repo, env=env, metadata=str(tmp / "home" / "metadata.sqlite"))


def test_a_trainer_module_change_is_visible_in_compare(modrepo):
    md = modrepo.metadata
    cmp = json.loads(tfpipe("runs", "compare", "r1", "r2", "--json", "--metadata", md, check=0).stdout)
    files = {(r["node"], os.path.basename(r["file"])): r for r in cmp["code_files"]}
    assert files[("Trainer", "penguin_utils.py")]["differs"]
    assert not files[("Trainer", "penguin_transform.py")]["differs"]  # imported by the trainer module, unchanged
    assert not files[("Transform", "penguin_transform.py")]["differs"]
    assert ("Transform", "penguin_utils.py") not in files
    assert cmp["summary"]["code_files"] == 1
    # the code versions of the components are the same: only the user's file changed
    assert not any(r["differs"] for r in cmp["code"] if r["field"] == "code_version")
    text = tfpipe("runs", "compare", "r1", "r2", "--diff", "--metadata", md, check=0).stdout
    line = next(x for x in text.splitlines() if "Trainer: penguin_utils.py" in x)
    assert line.startswith("* ")
    assert f"    -        {UNITS_BEFORE}" in text and f"    +        {UNITS_AFTER}" in text
    assert "diff of penguin_utils.py (Trainer), to r2:" in text
    # lineage of r2's model names the files and their hashes
    cmp_arts = {(r["node"], r["output"]): r for r in cmp["artifacts"]}
    model_id = cmp_arts[("Trainer", "model")]["ids"][1]
    lin = tfpipe("lineage", str(model_id), "--metadata", md, check=0).stdout
    assert "code file " in lin and "penguin_utils.py sha256=" in lin


def test_compare_diff_says_why_when_the_code_was_not_committed(modrepo, tmp_path):
    from tfpipe.tracking.codefiles import file_at_commit
    util = str(modrepo.repo / "penguin_utils.py")
    head = git(modrepo.repo, "rev-parse", "HEAD").strip()
    text, why = file_at_commit(util, head, "0" * 64)
    assert text is None and "uncommitted changes" in why
    text, why = file_at_commit(util, head, None)
    assert UNITS_AFTER.encode() in text and why == ""


def test_reproduce_compares_content_reuses_the_baseline_and_checks_the_environment(modrepo):
    out = modrepo.tmp / "again"
    p = tfpipe("reproduce", "r2", "-o", str(out), "--json", "-q", cwd=str(modrepo.tmp), env=modrepo.env, check=0)
    res = json.loads(p.stdout)
    assert res["status"] == "COMPLETE"
    arts = {(r["node"], r["output"]): r for r in res["artifacts"]}
    for key in (("Transform", "transformed_examples"), ("Transform", "transform_graph"), ("ExampleGen", "examples"),
                ("StatisticsGen", "statistics"), ("SchemaGen", "schema")):
        assert arts[key]["identical"], arts[key]
        assert arts[key]["how"]
    te = arts[("Transform", "transformed_examples")]
    assert te["how"] in ("bytes", "tf.Examples as protos, in order")
    # the Resolver's pick of the run (r1's blessed model) is re-used read-only, so the
    # Evaluator's comparison against the baseline is reproduced
    pinned = res["baseline"]["pinned"]["latest_blessed_model_resolver"]["model"]
    assert len(pinned) == 1 and not res["baseline"]["not_reproduced"]
    assert arts[("latest_blessed_model_resolver", "model")]["identical"]
    evaluation = json.load(open(os.path.join(arts[("Evaluator", "evaluation")]["reproduced_uri"], "metrics.json")))
    assert any(s.get("baseline") for s in evaluation["slices"])
    # the run's environment is this one
    env = res["environment"]
    assert env["hash"] and os.path.isfile(env["lock"])
    assert env["differences"] == {"python": None, "changed": [], "missing": [], "added": [], "tfpipe": None}
    text = tfpipe("reproduce", "r2", "-q", cwd=str(modrepo.tmp), env=modrepo.env, check=0).stdout
    assert "identical to the recorded one" in text
    assert "baseline: latest_blessed_model_resolver picks what it picked in the run, reused read-only" in text
    assert "identical  Transform.transformed_examples (Examples)" in text


def test_reproduce_says_plainly_when_the_baseline_is_gone(modrepo):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.records import run_context
    from tfpipe.tracking.reproduce import format_reproduction, pin_resolved
    store = MetadataStore(modrepo.metadata)
    ir = json.loads(store.props(run_context(store, "r2"))["ir"])
    res = pin_resolved(store, "r2", ir)
    [uri] = [d["uri"] for ds in res["pinned"]["latest_blessed_model_resolver"].values() for d in ds]
    moved = uri + ".moved"
    os.rename(uri, moved)
    try:
        res = pin_resolved(store, "r2", json.loads(json.dumps(ir)))
    finally:
        os.rename(moved, uri)
    assert not res["pinned"] and "is gone" in res["not_reproduced"]["latest_blessed_model_resolver"]
    text = format_reproduction({"run_id": "r2", "reproduced_run_id": "x", "status": "COMPLETE", "commit": "0" * 40,
                                "allowed_dirty": False, "out_dir": "d", "data_checks": [], "artifacts": [],
                                "identical": 0, "total": 0, "baseline": res})
    assert "baseline comparison not reproduced: latest_blessed_model_resolver's pick of the run is not available" \
           in text
    r1 = pin_resolved(store, "r1", json.loads(json.dumps(ir)))
    assert r1["nothing"] == ["latest_blessed_model_resolver"]  # the first run had no baseline to reproduce


def test_environment_differences_are_listed(modrepo):
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.envs import format_differences, lock_differences, run_lock
    from tfpipe.tracking.records import show_run
    store = MetadataStore(modrepo.metadata)
    info = show_run(store, "r1")
    lock, path = run_lock(store, info["environment_hash"])
    assert lock["packages"]["tensorflow"] == "2.16.2" and "tfpipe" not in lock["packages"]
    assert lock["tfpipe"]["source"] == REPO and lock["python"].startswith("3.11")
    # one lock per distinct environment: both runs and all their executions point at it
    assert show_run(store, "r2")["environment_hash"] == info["environment_hash"]
    assert {e["environment_hash"] for e in info["executions"]} == {info["environment_hash"]}
    assert len(store.list_artifacts("EnvironmentLock")) == 1
    current = json.loads(json.dumps(lock))
    current["packages"]["numpy"] = "9.9.9"
    del current["packages"]["pandas"]
    current["packages"]["left-pad"] = "1.0"
    d = lock_differences(lock, current)
    assert d["changed"] == [["numpy", lock["packages"]["numpy"], "9.9.9"]]
    assert d["missing"] == [["pandas", lock["packages"]["pandas"]]] and d["added"] == [["left-pad", "1.0"]]
    text = "\n".join(format_differences(d))
    assert "numpy 1.26.4 (recorded) vs 9.9.9 (here)" in text and "pandas" in text


@pytest.mark.slow
def test_reproduce_env_builds_the_virtualenv_from_the_recorded_lock(modrepo, tmp_path, monkeypatch):
    """The slow one: a virtualenv with every recorded distribution at its recorded version
    (pip, from the package registry and its local cache), tfpipe from its recorded commit,
    and the run re-made in it."""
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.envs import build_environment, run_lock
    from tfpipe.tracking.records import show_run
    cache = tmp_path / "envs"
    monkeypatch.setenv("TFPIPE_ENV_CACHE", str(cache))
    env = {**modrepo.env, "TFPIPE_ENV_CACHE": str(cache)}
    out = tmp_path / "again"
    p = tfpipe("reproduce", "r1", "--env", "-o", str(out), "--json", "-q", cwd=str(modrepo.tmp), env=env,
               timeout=3000, check=0)
    res = json.loads(p.stdout)
    store = MetadataStore(modrepo.metadata)
    h = show_run(store, "r1")["environment_hash"]
    assert res["status"] == "COMPLETE" and res["python"] == str(cache / h / "bin" / "python")
    assert res["environment"]["built"].startswith(f"built {cache / h}")
    lock, _ = run_lock(store, h)
    listed = json.loads(subprocess.run([res["python"], "-m", "pip", "list", "--format", "json"], capture_output=True,
                                       text=True, check=True).stdout)
    from tfpipe.provenance import normalize_name
    installed = {normalize_name(d["name"]): d["version"] for d in listed}
    assert installed.pop("tfpipe") == lock["tfpipe"]["version"]
    assert installed == lock["packages"]
    # tfpipe was installed from its recorded commit, not linked to this checkout
    where = subprocess.run([res["python"], "-c", "import tfpipe, os; print(os.path.dirname(tfpipe.__file__))"],
                           capture_output=True, text=True, check=True, cwd=str(tmp_path)).stdout.strip()
    assert where.startswith(str(cache / h)) and "site-packages" in where
    arts = {(r["node"], r["output"]): r for r in res["artifacts"]}
    assert arts[("Transform", "transformed_examples")]["identical"]
    # built once: the next reproduction re-uses it
    py, how = build_environment(lock, h, verbose=False)
    assert py == res["python"] and how.startswith("reused")


def test_examples_are_compared_as_protos_in_order(modrepo, tmp_path):
    """Re-written TFRecords (gzip, so other bytes) of the same tf.Examples are the same
    content; one changed value in one example is not, and the verdict says where."""
    import glob

    import tensorflow as tf

    from tfpipe.tracking.content import _tfrecords, compare_content
    [src] = glob.glob(os.path.join(str(modrepo.tmp), "home", "root", "Transform", "transformed_examples", "*"))
    props = {"split_names": ["train", "eval"], "payload_format": "FORMAT_TF_EXAMPLE"}

    def rewrite(dest, change_index=None):
        shutil.copytree(src, dest)
        [f] = glob.glob(os.path.join(dest, "Split-train", "transformed_examples-*"))
        records = list(_tfrecords([f]))
        os.remove(f)
        with tf.io.TFRecordWriter(f + ".gz", options="GZIP") as w:
            for i, r in enumerate(records):
                if i == change_index:
                    ex = tf.train.Example.FromString(r)
                    feat = ex.features.feature
                    name = next(k for k in sorted(feat) if feat[k].float_list.value)
                    feat[name].float_list.value[0] += 1.0
                    r = ex.SerializeToString()
                w.write(r)
        return len(records)

    n = rewrite(tmp_path / "same")
    v = compare_content("Examples", src, str(tmp_path / "same"), "a", "b", props)
    assert v["identical"] and v["how"] == "tf.Examples as protos, in order" and v["detail"] == "344 examples equal"
    assert n > 10
    rewrite(tmp_path / "changed", change_index=5)
    v = compare_content("Examples", src, str(tmp_path / "changed"), "a", "b", props)
    assert not v["identical"] and v["detail"] == "split train: example 5 differs"
    # a Schema is compared as a proto, not as text
    [schema] = glob.glob(os.path.join(str(modrepo.tmp), "home", "root", "SchemaGen", "schema", "*"))
    shutil.copytree(schema, tmp_path / "schema")
    path = tmp_path / "schema" / "schema.pbtxt"
    path.write_text("# the same schema, other bytes\n" + path.read_text())
    assert compare_content("Schema", schema, str(tmp_path / "schema"), "a", "b")["identical"]
