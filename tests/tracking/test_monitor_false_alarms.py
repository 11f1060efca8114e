"""tfpipe monitor does not cry wolf and still sees a real shift: twenty unshifted samples
of 200 rows of penguin (against the pipeline's own training statistics) and of a sparse
dataset (the handwritten digits, below) raise no alarm; one feature moved by one standard
deviation, or one category's share doubled, is flagged in every sample. Too few examples
give no verdict; the label and the request log's own columns are never compared.

The sparse dataset, tests/fixtures/digits.csv.gz, is the UCI "Optical Recognition of
Handwritten Digits" test set (E. Alpaydin, C. Kaynak; CC BY 4.0) exactly as scikit-learn
ships it (sklearn/datasets/data/digits.csv.gz, what ``load_digits`` reads): 1,797 rows of
64 pixel values 0..16 (8x8), then the digit; most border pixels are 0 in 97-99.8 % of rows."""
import csv
import gzip
import os

import numpy as np
import pytest

from tests.conftest import REPO
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.registry import Registry

PENGUINS = os.path.join(REPO, "examples", "penguin", "data", "penguins.csv")
DIGITS = os.path.join(REPO, "tests", "fixtures", "digits.csv.gz")
SAMPLES, ROWS = 20, 200
NAMES = [f"pixel_{i}" for i in range(64)] + ["digit"]


def _table(matrix):
    import pyarrow as pa
    return pa.table({n: matrix[:, i] for i, n in enumerate(NAMES)})


@pytest.fixture(scope="module")
def digits():
    """The digits, their TFDV statistics (the training statistics) and inferred schema."""
    import tensorflow_data_validation as tfdv

    from tfpipe.tracking.monitor import _stats_of_table
    x = np.loadtxt(gzip.open(DIGITS, "rt"), delimiter=",").astype(np.int64)
    train = _stats_of_table(_table(x), "digits")
    return x, train, tfdv.infer_schema(train)


def _samples(n, seed):
    return [np.random.default_rng(seed + k).choice(n, ROWS, replace=False) for k in range(SAMPLES)]


def test_unshifted_digit_samples_raise_no_alarm(digits):
    from tfpipe.tracking.monitor import compare
    x, train, schema = digits
    sparse = [i for i in range(64) if 0.97 <= (x[:, i] == 0).mean() < 1]
    assert len(sparse) >= 8  # the features that were at skew 1.0
    first = compare(train, schema, "digit", _table(x[:ROWS]))  # the measured case: the first 200 rows
    assert first["exceeded"] == [] and not first["drifted"], first["exceeded"]
    skews = {r["feature"]: r["skew"] for r in first["features"]}
    assert max(skews[f"pixel_{i}"]["value"] for i in sparse) < 0.05
    assert all(skews[f"pixel_{i}"]["value"] < 1e-9 for i in range(64) if (x[:, i] == 0).all())
    assert "digit" not in skews and first["anomalies"] == {}  # the label: neither compared nor "New column"
    alarms = [compare(train, schema, "digit", _table(x[idx]))["exceeded"] for idx in _samples(len(x), 0)]
    assert alarms == [[]] * SAMPLES


@pytest.mark.parametrize("pixel", [20, 7])  # 25 % zeros; 97 % zeros
def test_a_digit_pixel_moved_by_one_sd_is_flagged_every_time(digits, pixel):
    from tfpipe.tracking.monitor import compare
    x, train, schema = digits
    sd = x[:, pixel].std()
    for idx in _samples(len(x), 100):
        shifted = x[idx].astype(float)
        shifted[:, pixel] += sd
        res = compare(train, schema, "digit", _table(shifted))
        assert f"pixel_{pixel}" in res["exceeded"], next(r for r in res["features"] if r["feature"] == f"pixel_{pixel}")
        assert res["exceeded"] == [f"pixel_{pixel}"]  # only it


def _penguin_rows():
    return list(csv.DictReader(open(PENGUINS)))


def _write(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _penguin_monitor(penguin, path):
    from tfpipe.tracking.monitor import monitor
    v = Registry(MetadataStore(penguin.metadata)).list_versions()[-1]["version"]
    return monitor(MetadataStore(penguin.metadata), data=path, version=v)


def test_penguin_samples_unshifted_and_shifted(penguin, tmp_path):
    rows = _penguin_rows()
    mass = np.array([float(r["body_mass_g"]) for r in rows if r["body_mass_g"] not in ("", "NA")])
    for k, idx in enumerate(_samples(len(rows), 200)):
        sample = [dict(rows[i]) for i in idx]
        res = _penguin_monitor(penguin, _write(sample, tmp_path / f"same-{k}.csv"))
        assert res["exceeded"] == [], (k, [r for r in res["features"] if r["feature"] in res["exceeded"]])
        assert "species" not in res["anomalies"] and "species" not in {r["feature"] for r in res["features"]}
        for r in sample:  # the same rows, heavier by one standard deviation
            if r["body_mass_g"] not in ("", "NA"):
                r["body_mass_g"] = str(float(r["body_mass_g"]) + mass.std())
        res = _penguin_monitor(penguin, _write(sample, tmp_path / f"heavier-{k}.csv"))
        assert res["exceeded"] == ["body_mass_g"], (k, res["exceeded"])


def test_a_penguin_island_share_doubled_is_flagged_every_time(penguin, tmp_path):
    rows = _penguin_rows()
    torgersen = [r for r in rows if r["island"] == "Torgersen"]
    others = [r for r in rows if r["island"] != "Torgersen"]
    share = len(torgersen) / len(rows)
    n = round(2 * share * ROWS)
    for k in range(SAMPLES):
        rng = np.random.default_rng(300 + k)
        sample = ([torgersen[i] for i in rng.choice(len(torgersen), n, replace=True)]
                  + [others[i] for i in rng.choice(len(others), ROWS - n, replace=False)])
        res = _penguin_monitor(penguin, _write(sample, tmp_path / f"torgersen-{k}.csv"))
        assert "island" in res["exceeded"], (k, next(r for r in res["features"] if r["feature"] == "island"))


def test_too_few_examples_give_no_verdict(penguin, tmp_path, capsys):
    from tfpipe.tracking.monitor import format_monitor, run_monitor
    rows = _penguin_rows()
    few = [dict(r, island="Dream") for r in rows[:40]]  # shifted, but 40 rows say little
    path = _write(few, tmp_path / "few.csv")
    res = _penguin_monitor(penguin, path)
    assert not res["drifted"] and res["exceeded"] == []
    assert set(res["too_few"]) == {r["feature"] for r in res["features"] if "skew" in r}
    assert "too few examples (40 < 100): no verdict" in format_monitor(res)
    v = Registry(MetadataStore(penguin.metadata)).list_versions()[-1]["version"]
    assert run_monitor(MetadataStore(penguin.metadata), data=path, version=v, min_examples=20) == 1
    assert run_monitor(MetadataStore(penguin.metadata), data=path, version=v, min_examples=0) == 2
    assert "expected a positive number" in capsys.readouterr().err
    assert run_monitor(MetadataStore(penguin.metadata), data=path, version=v, false_alarm_rate=1.5) == 2
    assert "--false-alarm-rate 1.5: expected a probability between 0 and 1" in capsys.readouterr().err


def test_the_request_logs_own_columns_are_not_features(digits):
    """A feature named like a column of the request log (here ``label``) is that feature;
    the log's own ``label`` (the serving label a request reached) is not compared."""
    import pyarrow as pa

    from tfpipe.tracking.monitor import _log_features, compare
    x, train, schema = digits
    renamed = type(train)()
    renamed.CopyFrom(train)
    for f in renamed.datasets[0].features:
        if f.path.step[0] == "pixel_20":
            f.path.step[0] = "label"
    schema = type(schema)()
    schema.CopyFrom(digits[2])
    next(f for f in schema.feature if f.name == "pixel_20").name = "label"
    names = ["label" if n == "pixel_20" else n for n in NAMES[:-1]]
    rows = x[:ROWS]
    shifted = rows.copy()
    shifted[:, 20] += int(round(x[:, 20].std()))  # whole pixels: the feature stays an INT
    for data, flagged in ((rows, []), (shifted, ["label"])):
        feats = pa.StructArray.from_arrays([pa.array([[v] for v in data[:, i]]) for i in range(64)], names=names)
        log = pa.table({"time": pa.array([0] * ROWS, pa.int64()), "model": ["digits"] * ROWS,
                        "version": [1] * ROWS, "label": ["production"] * ROWS, "features": feats})
        res = compare(renamed, schema, "digit", _log_features(log, "--requests log"), unit="requests")
        assert res["exceeded"] == flagged and res["anomalies"] == {}
        assert {r["feature"] for r in res["features"]} == set(names)
    with pytest.raises(Exception, match="expected request-log rows with a 'features' struct column"):
        _log_features(pa.table({"label": ["production"]}), "--requests log")
