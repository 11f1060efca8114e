"""Model registry: versions pushed by the real Pusher, promotion, rollback with the
atomic serving switch, transitions recorded in ML Metadata, lineage of a version."""
import json
import os
import threading

import pytest

from tests.conftest import tfpipe
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.registry import Registry, RegistryError, switch_serving


def test_switch_serving_is_atomic_for_a_concurrent_reader(tmp_path):
    for v in ("1", "2"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "saved_model.pb").write_text(v)
    switch_serving(str(tmp_path), "1")
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append((tmp_path / "serving" / "saved_model.pb").read_text())
            except OSError as e:  # the link missing or dangling even once is a failure
                seen.append(f"error {e}")

    t = threading.Thread(target=reader)
    t.start()
    for i in range(300):
        switch_serving(str(tmp_path), "2" if i % 2 == 0 else "1")
    stop.set()
    t.join()
    assert seen and all(s in ("1", "2") for s in seen), [s for s in seen if s not in ("1", "2")][:3]
    assert os.readlink(tmp_path / "serving") == "1"  # relative: the destination may move
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".serving")]
    (tmp_path / "real").mkdir()
    with pytest.raises(RegistryError, match="not a symlink"):
        switch_serving(str(tmp_path), "1", link="real")
    with pytest.raises(RegistryError, match="does not exist"):
        switch_serving(str(tmp_path), "7")


def test_promote_rollback_and_transitions(penguin, monkeypatch):
    md = penguin.metadata
    rows = Registry(MetadataStore(md)).list_versions()
    assert len(rows) == 2 and {r["stage"] for r in rows} == {"none"}
    v1, v2 = (r["version"] for r in rows)
    assert sorted(d for d in os.listdir(penguin.push) if d.isdigit()) == sorted([v1, v2])
    env = {"TFPIPE_USER": "alice"}
    tfpipe("models", "promote", v1, "--stage", "production", "--reason", "first model", "--metadata", md,
           env=env, check=0)
    assert os.readlink(os.path.join(penguin.push, "serving")) == v1
    tfpipe("models", "promote", v2, "--stage", "staging", "--metadata", md, env=env, check=0)
    out = tfpipe("models", "promote", v2, "--stage", "production", "--reason", "more epochs", "--metadata", md,
                 env={"TFPIPE_USER": "bob"}, check=0).stdout
    assert f"version {v2}: staging -> production by bob" in out
    assert os.readlink(os.path.join(penguin.push, "serving")) == v2
    stages = {r["version"]: r["stage"] for r in Registry(MetadataStore(md)).list_versions()}
    assert stages == {v1: "archived", v2: "production"}

    out = tfpipe("models", "rollback", "--reason", "accuracy dropped", "--metadata", md,
                 env={"TFPIPE_USER": "carol"}, check=0).stdout
    assert f"rolled back from version {v2} to {v1} by carol" in out
    assert os.readlink(os.path.join(penguin.push, "serving")) == v1
    assert (open(os.path.join(penguin.push, "serving", "tfpipe_push.json")).read())
    shown = json.loads(tfpipe("models", "show", "production", "--json", "--metadata", md, check=0).stdout)
    assert shown["version"] == v1 and shown["stage"] == "production"
    listing = tfpipe("models", "list", "--metadata", md, check=0).stdout
    assert "PRODUCTION" in next(x for x in listing.splitlines() if f" {v1} " in x)
    # nothing earlier to return to: refused, serving unchanged
    p = tfpipe("models", "rollback", "--metadata", md)
    assert p.returncode == 1 and "no earlier production version" in p.stderr
    assert os.readlink(os.path.join(penguin.push, "serving")) == v1

    # every transition is an execution in ML Metadata with who/when/why and an INPUT event
    store = MetadataStore(md)
    trans = Registry(store).transitions()
    kinds = [(t["version"], t["from_stage"], t["to_stage"], t["user"], t["kind"]) for t in trans]
    assert kinds == [(v1, "none", "production", "alice", "promote"), (v2, "none", "staging", "alice", "promote"),
                     (v1, "production", "archived", "bob", "replaced"),
                     (v2, "staging", "production", "bob", "promote"),
                     (v2, "production", "archived", "carol", "rolled-back"),
                     (v1, "archived", "production", "carol", "rollback")]
    assert trans[3]["reason"] == "more epochs" and trans[-1]["reason"] == "accuracy dropped"
    assert all(t["at"] > 0 for t in trans)
    ex = store.store.get_executions_by_type("ModelTransition")
    events = store.events_of_executions([e.id for e in ex])
    pushed_ids = {a.id for a in store.list_artifacts("PushedModel")}
    assert len(events) == len(ex) and all(e.artifact_id in pushed_ids and store.event_kind(e) == "INPUT"
                                          for e in events)


def test_lineage_of_a_version(penguin):
    rows = Registry(MetadataStore(penguin.metadata)).list_versions()
    v2 = rows[-1]["version"]
    info = json.loads(tfpipe("models", "show", v2, "--json", "--metadata", penguin.metadata, check=0).stdout)
    lin = info["lineage"]
    [data] = lin["data"]
    assert data["span"] == 0 and len(data["input_fingerprint"]) == 64 and data["row_counts"]["train"] > 0
    assert len(lin["schema"]) == 1 and len(lin["transform"]) == 1 and len(lin["model"]) == 1
    assert lin["model"][0]["role"] == "candidate"
    assert len(lin["hyperparameters"]) == 1  # the Tuner's best hyperparameters
    assert lin["evaluation"][0]["slices"]["Overall"]["example_count"] > 0
    assert lin["blessing"][0]["blessed"] is True
    trainer = next(e for e in lin["executions"] if e["component"] == "Trainer")
    assert trainer["parameters"]["custom_config"] == {"epochs": 3}
    assert trainer["run_id"] == penguin.runs[1]
    assert lin["code_commits"] and all(c for c in lin["code_commits"])
    text = tfpipe("models", "show", v2, "--metadata", penguin.metadata, check=0).stdout
    for word in ("data: Examples", "schema: #", "transform: #", "evaluation: #", "code commits:", "Trainer (Trainer)",
                 "model (candidate): #"):
        assert word in text


def test_lineage_tells_the_baseline_and_a_warm_start_from_the_model():
    """A Model reached through the Evaluator's baseline_model (or a Trainer's base_model) is
    labelled as such in the summary that models show and the report print."""
    from tfpipe.tracking.lineage_summary import summarize_lineage

    def art(i, t):
        return {"id": i, "type": t, "uri": f"/m/{i}", "state": "LIVE", "properties": {"fingerprint": f"f{i}"}}

    def made(i, node, inputs):
        return {"execution_id": i, "node_id": node, "component": node, "run_id": "r", "git_commit": "c",
                "git_dirty": False, "code_version": "1", "data_fingerprint": "", "parameters": {}}, inputs

    def node(a, pb=None):
        n = {"artifact": a}
        if pb:
            n["produced_by"], n["inputs"] = pb
        return n
    warm = node(art(1, "Model"))
    candidate = node(art(2, "Model"), made(10, "Trainer", {"base_model": [warm]}))
    baseline = node(art(3, "Model"))
    blessing = node(art(4, "ModelBlessing"), made(11, "Evaluator", {"model": [candidate],
                                                                     "baseline_model": [baseline]}))
    pushed = node(art(5, "PushedModel"), made(12, "Pusher", {"model": [candidate], "model_blessing": [blessing]}))
    roles = {m["id"]: m["role"] for m in summarize_lineage(pushed)["model"]}
    assert roles == {2: "candidate", 1: "warm-start base", 3: "baseline"}
