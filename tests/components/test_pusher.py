"""The Pusher's executor on its own (no TensorFlow): the blessing gates, idempotent
re-push of the same model, versions."""
import itertools
import os

from tfpipe import InfraBlessing, Model, ModelBlessing, PushedModel
from tfpipe.components import Pusher
from tfpipe.components.pusher import versions

_N = itertools.count()


def _model(tmp_path, name, fingerprint):
    d = tmp_path / name / "Format-Serving"
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(name.encode() * 100)
    return Model(uri=str(tmp_path / name), properties={"fingerprint": fingerprint}, id=len(name), state="LIVE")


def _push(tmp_path, model, blessing=None, infra=None):
    out = PushedModel(uri=str(tmp_path / f"pushed{next(_N)}"))
    Pusher.fn(model=model, pushed_model=out, push_destination=str(tmp_path / "serving"),
              model_blessing=blessing, infra_blessing=infra)
    return out


def test_blessed_pushes_and_same_model_is_not_copied_twice(tmp_path):
    ok = ModelBlessing(properties={"blessed": True, "reasons": ["all thresholds passed"]})
    m = _model(tmp_path, "a", "fp-a")
    first = _push(tmp_path, m, ok)
    assert first.pushed and first.reason == ""
    again = _push(tmp_path, m, ok)
    assert again.pushed and again.pushed_version == first.pushed_version
    assert "nothing copied" in again.reason
    other = _push(tmp_path, _model(tmp_path, "bb", "fp-b"), ok)
    assert int(other.pushed_version) > int(first.pushed_version)
    assert versions(str(tmp_path / "serving")) == [int(first.pushed_version), int(other.pushed_version)]
    assert os.path.exists(tmp_path / "serving" / other.pushed_version / "saved_model.pb")


def test_not_blessed_or_not_infra_blessed_is_not_pushed_and_says_why(tmp_path, capsys):
    m = _model(tmp_path, "c", "fp-c")
    bad = ModelBlessing(properties={"blessed": False, "reasons": [
        "sparse_categorical_accuracy on slice island=Dream = 0.4000 fails the value threshold lower bound 0.6"]})
    r = _push(tmp_path, m, bad)
    assert r.pushed is False and r.pushed_version is None
    assert r.reason == ("not blessed by the Evaluator: sparse_categorical_accuracy on slice island=Dream = "
                        "0.4000 fails the value threshold lower bound 0.6")
    ok = ModelBlessing(properties={"blessed": True, "reasons": []})
    infra = InfraBlessing(properties={"blessed": False, "reasons": ["outputs holds non-finite values in rows [0]"]})
    r = _push(tmp_path, m, ok, infra)
    assert r.pushed is False and "not blessed by the InfraValidator: outputs holds non-finite" in r.reason
    assert versions(str(tmp_path / "serving")) == []
    assert "NOT PUSHED" in capsys.readouterr().err
