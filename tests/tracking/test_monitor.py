"""tfpipe monitor --data: TFDV skew of new data against a model version's training data
(found through lineage) and drift against the previous batch, label excluded, with exit
codes a scheduler can act on. (False alarms and the sample size: test_monitor_false_alarms.py.)
(The request log, --requests, is tested with the server in test_serving.py.)"""
import csv
import json
import os

import pytest

from tests.conftest import REPO
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.registry import Registry

PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """Serving data where every penguin lives on Dream and weighs 60 % more."""
    d = tmp_path_factory.mktemp("monitor")
    rows = list(csv.DictReader(open(PENGUINS)))
    path = d / "shifted.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            r["island"] = "Dream"
            if r["body_mass_g"] not in ("", "NA"):
                r["body_mass_g"] = str(int(float(r["body_mass_g"]) * 1.6))
            w.writerow(r)
    return path


def _version(penguin):
    return Registry(MetadataStore(penguin.metadata)).list_versions()[-1]["version"]


def test_monitor_exit_codes(penguin, shifted, tmp_path):
    from tfpipe.tracking.monitor import format_monitor, monitor, run_monitor
    store = MetadataStore(penguin.metadata)
    v = _version(penguin)
    # the training data itself: nothing exceeds the thresholds; the label is not monitored
    same = monitor(store, data=PENGUINS, version=v, drift_threshold=0.3)
    assert not same["drifted"] and same["num_examples"] == 344 and same["label"] == "species"
    kinds = {r["feature"]: r for r in same["features"]}
    assert "species" not in kinds
    # the label is in the training data, not in serving data: never "New column" nor compared
    assert "species" not in same["anomalies"] and "New column" not in format_monitor(same)
    assert kinds["island"]["skew"]["comparator"] == "L_INFTY" and kinds["island"]["kind"] == "categorical"
    assert kinds["body_mass_g"]["skew"]["comparator"] == "JENSEN_SHANNON_DIVERGENCE"
    assert all(r["skew"]["value"] < 0.3 for r in same["features"] if "skew" in r)
    assert not same["drift_measured"] and not any("drift" in r for r in same["features"])
    assert run_monitor(store, data=PENGUINS, version=v) == 0
    # bad input: exit 2, not the "retrain" status
    assert run_monitor(store, data=str(tmp_path / "missing.csv"), version=v) == 2
    assert run_monitor(store, data=PENGUINS, version="no-such-version") == 2
    assert run_monitor(store, data=PENGUINS, version=v, thresholds=["nope=0.1"]) == 2
    assert run_monitor(store, data=PENGUINS, version=v, thresholds=["species=0.1"]) == 2


def test_skew_and_drift_are_different_comparisons(penguin, shifted):
    """Skew: the shifted batch vs training; drift: vs the batch before (here the shifted
    batch itself, so no drift at all while the skew is large)."""
    from tfpipe.tracking.monitor import monitor
    res = monitor(MetadataStore(penguin.metadata), data=str(shifted), previous=str(shifted),
                  version=_version(penguin))
    rows = {r["feature"]: r for r in res["features"]}
    assert res["drift_measured"]
    assert rows["island"]["skew"]["value"] > 0.3 and rows["island"]["skew"]["exceeded"]
    assert rows["island"]["drift"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert not rows["island"]["drift"]["exceeded"]
    res = monitor(MetadataStore(penguin.metadata), data=str(shifted), previous=PENGUINS,
                  version=_version(penguin), thresholds={("drift", "island"): 0.9})
    rows = {r["feature"]: r for r in res["features"]}
    assert rows["island"]["drift"]["threshold"] == pytest.approx(0.9) and not rows["island"]["drift"]["exceeded"]
    assert rows["island"]["skew"]["threshold"] == pytest.approx(0.05) and rows["island"]["skew"]["exceeded"]


def test_monitor_cli_flags_drift(penguin, shifted, tmp_path, capsys):
    from tfpipe.cli import (
        main,  # the CLI in this process: TFDV is imported once for the module
    )
    v = _version(penguin)
    out = tmp_path / "monitor.json"
    code = main(["monitor", "--data", str(shifted), "--version", v, "--threshold", "bill_length_mm=0.9",
                 "-o", str(out), "--metadata", penguin.metadata])
    stdout = capsys.readouterr().out
    assert code == 1, stdout
    res = json.loads(out.read_text())
    assert {"island", "body_mass_g"} <= set(res["exceeded"]) and "bill_length_mm" not in res["exceeded"]
    rows = {r["feature"]: r for r in res["features"]}
    assert rows["island"]["skew"]["value"] > 0.3 and rows["island"]["skew"]["exceeded"]
    assert rows["bill_length_mm"]["skew"]["threshold"] == pytest.approx(0.9)
    assert res["training_statistics"].startswith(penguin.root)  # found through the model's lineage
    line = next(x for x in stdout.splitlines() if x.strip().startswith("island"))
    assert "EXCEEDED" in line and "EXCEEDED:" in stdout and "drift: not measured" in stdout
    # usage errors of the command line: exit 2 (not the retrain status)
    assert main(["monitor", "--data", str(shifted), "--version", v, "--threshold", "island",
                 "--metadata", penguin.metadata]) == 2
    assert "expected FEATURE=NUMBER" in capsys.readouterr().err
    # --model names a registered model, as in `tfpipe models`; a version there is pointed out
    assert main(["monitor", "--data", str(shifted), "--model", v, "--metadata", penguin.metadata]) == 2
    assert f"pass --version {v}" in capsys.readouterr().err
