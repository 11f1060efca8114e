"""runs list (data, code, metrics) and runs compare (differences, highlighting, --json)."""
import json

from tests.conftest import tfpipe
from tests.fixtures.trivial import make_numbers, total
from tfpipe import Pipeline, compile_pipeline
from tfpipe.metadata import MetadataStore
from tfpipe.orchestrators.local import LocalRunner
from tfpipe.tracking.runs import SUMMARY, compare_runs, format_compare, list_runs, ordered_metrics


def _trivial(tmp_path, offset):
    nums = make_numbers(n=4)
    t = total(numbers=nums.outputs.numbers, offset=offset)
    return compile_pipeline(Pipeline("trivial", [t], root=str(tmp_path / "root"),
                                     metadata=str(tmp_path / "m.sqlite")))


def test_compare_trivial_runs_marks_only_what_differs(tmp_path):
    r1 = LocalRunner(verbose=False).run(_trivial(tmp_path, 0))
    r2 = LocalRunner(verbose=False).run(_trivial(tmp_path, 5))
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    cmp = compare_runs(store, [r1.run_id, r2.run_id])
    params = {(r["node"], r["parameter"]): r for r in cmp["parameters"]}
    assert params[("total", "offset")]["values"] == [0, 5] and params[("total", "offset")]["differs"]
    assert not params[("make_numbers", "n")]["differs"]
    arts = {(r["node"], r["output"]): r for r in cmp["artifacts"]}
    assert not arts[("make_numbers", "numbers")]["changed"]  # cache hit: the same artifact
    assert arts[("make_numbers", "numbers")]["cached"] == [False, True]
    assert arts[("total", "result")]["changed"]
    plain = format_compare(cmp, color=False)
    line = next(x for x in plain.splitlines() if "total.offset" in x)
    assert line.startswith("* ") and "\x1b[" not in plain
    assert "make_numbers.n " not in plain  # identical parameters are counted, not listed
    colored = format_compare(cmp, color=True)
    assert "\x1b[1;33m" in next(x for x in colored.splitlines() if "total.offset" in x)
    # unknown run: a clear error, usage exit status
    p = tfpipe("runs", "compare", r1.run_id, "no-such-run", "--metadata", str(tmp_path / "m.sqlite"))
    assert p.returncode == 2 and "no run 'no-such-run'" in p.stderr


def test_runs_list_shows_data_code_and_metrics(penguin):
    store = MetadataStore(penguin.metadata)
    rows = {r["run_id"]: r for r in list_runs(store)}
    r1, r2 = (rows[r] for r in penguin.runs)
    assert r1["status"] == r2["status"] == "COMPLETE"
    assert r1["data_fingerprint"] == r2["data_fingerprint"] and len(r1["data_fingerprint"]) == 64
    assert r1["data_span"] == "0"
    assert 0.0 <= r2["metrics"]["sparse_categorical_accuracy"] <= 1.0 and r2["blessed"] is True
    assert r1["nodes"] == r2["nodes"] == 9 and r1["cached"] == 0 and r2["cached"] == 6
    # the summary is cached on the run context and read back the same
    ctx = store.store.get_contexts_by_id([r2["context_id"]])[0]
    assert SUMMARY in ctx.custom_properties
    again = {r["run_id"]: r for r in list_runs(MetadataStore(penguin.metadata))}
    assert again[penguin.runs[1]]["metrics"] == r2["metrics"]
    out = tfpipe("runs", "list", "--metadata", penguin.metadata, check=0).stdout
    line = next(x for x in out.splitlines() if x.startswith(penguin.runs[1]))
    assert out.splitlines()[0] == f"pipeline {r2['pipeline']}"  # one pipeline: named once, not on each line
    assert " yes " in line and r2["data_fingerprint"][:6] in line
    assert all(len(x) <= 120 for x in out.splitlines())
    # metrics in one order, the most telling first, whether the summary was just computed or
    # read back from its cache (stored with sorted keys), row after row, listing after listing
    assert list(r2["metrics"]) == list(again[penguin.runs[1]]["metrics"]) == ["sparse_categorical_accuracy",
                                                                             "example_count"]
    assert list(ordered_metrics({"loss": 1, "example_count": 2, "auc": 3, "zeta": 4, "accuracy": 5})) == [
        "accuracy", "auc", "loss", "example_count", "zeta"]
    again_text = tfpipe("runs", "list", "--metadata", penguin.metadata, check=0).stdout
    assert again_text == out and line.split(" yes ")[1].strip().startswith("sparse_c..racy=")


def test_runs_list_fits_120_columns_cutting_metrics_and_parameters_after_whole_words():
    from tfpipe.tracking.runs import format_runs
    rows = [{"run_id": f"20261206-0125{i:02d}-b04cca", "pipeline": p, "status": "COMPLETE", "started_at": 1.8e9,
             "duration_s": 29.1, "git_commit": "4c8e05358bdd", "git_dirty": i == 1, "data_fingerprint": "3bb2eb931d",
             "nodes": 10, "cached": 5, "blessed": i != 2, "sweep": "lr" if i == 0 else None,
             "metrics": {"sparse_categorical_accuracy": 0.98, "example_count": 96, "auc": 0.91, "loss": 0.2},
             "params": {"Trainer.learning_rate": 0.001, "Trainer.units": 128, "Trainer.custom_config": "x" * 80}}
            for i, p in enumerate(("penguin", "penguin-with-a-long-name", "penguin"))]
    text = format_runs(rows)
    lines = text.splitlines()
    assert all(len(x) <= 120 for x in lines), [len(x) for x in lines]
    assert lines[0].split() == ["RUN", "PIPELINE", "STATUS", "STARTED", "TIME", "COMMIT", "DATA", "CACHED",
                                "BLESSED", "METRICS", "PARAMS"]  # a sweep's name: runs show
    assert lines[1].startswith("20261206-012500-b04cca") and " NO " in lines[3] and "4c8e053*" in lines[2]
    assert "after a commit" in lines[-1]
    # one pipeline and no parameters: the metrics have the room, cut after a whole metric
    text = format_runs([{**r, "pipeline": "penguin", "params": None} for r in rows])
    assert text.splitlines()[0] == "pipeline penguin" and all(len(x) <= 120 for x in text.splitlines())
    assert "yes      sparse_c..racy=0.98 ..." in text.splitlines()[2]


def test_compare_penguin_runs_parameters_data_metrics_artifacts(penguin):
    a, b = penguin.runs
    p = tfpipe("runs", "compare", a, b, "--json", "--metadata", penguin.metadata, check=0)
    cmp = json.loads(p.stdout)
    diff_params = {(r["node"], r["parameter"]) for r in cmp["parameters"] if r["differs"]}
    assert diff_params == {("Trainer", "custom_config")}
    data = {(r["node"], r["parameter"]): r for r in cmp["data"]}
    assert not data[("ExampleGen", "input_fingerprint")]["differs"]
    arts = {(r["node"], r["output"]): r for r in cmp["artifacts"]}
    assert not arts[("Transform", "transform_graph")]["changed"]
    assert arts[("Trainer", "model")]["changed"] and arts[("Trainer", "model_run")]["changed"]
    assert arts[("Pusher", "pushed_model")]["changed"]
    slices = {r["slice"] for r in cmp["metrics"]}
    assert "Overall" in slices and any(s.startswith("island") for s in slices)
    acc = next(r for r in cmp["metrics"] if r["slice"] == "Overall" and r["metric"] == "sparse_categorical_accuracy")
    assert all(isinstance(v, float) for v in acc["values"])
    assert [len(r["final_history"]) > 0 for r in cmp["runs"]] == [True, True]
    training = {r["metric"]: r for r in cmp["training"]}
    assert training["epochs"]["values"] == [2, 3] and training["epochs"]["differs"]
    text = tfpipe("runs", "compare", a, b, "--metadata", penguin.metadata, check=0).stdout
    assert "* Trainer.custom_config" in text and "(rows marked * differ" in text
    assert "training (last epoch)" in text and "* epochs" in text


def test_the_thresholds_a_run_shows_are_those_on_the_overall_slice():
    """A metric's own threshold and its per-slice thresholds whose slicing specs hold the
    overall slice, as examples/penguin (and TFX's penguin example) give the change threshold;
    a threshold on island slices only is not the overall one."""
    from examples.penguin.pipeline import EVAL_CONFIG
    from tfpipe.tracking.results import thresholds_from_eval_config
    cfg = json.loads(json.dumps(EVAL_CONFIG))
    cfg["metrics_specs"][0]["metrics"][0]["per_slice_thresholds"].append(
        {"slicing_specs": [{"feature_keys": ["island"]}], "threshold": {"value_threshold": {"upper_bound": 0.99}}})
    assert thresholds_from_eval_config(cfg) == {"sparse_categorical_accuracy": {
        "lower_bound": 0.6, "change_direction": "HIGHER_IS_BETTER", "change_absolute": -0.05}}
