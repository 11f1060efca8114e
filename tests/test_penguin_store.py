"""The session's penguin store (tests/conftest.py) and its copies: a copy names none of the
template's paths in ML Metadata, is a store of its own (its runs are listed and shown,
lineage reads it, its pushed model serves, a re-run of the pipeline is served from its
cache, Pusher included), and what a consumer does to its copy leaves the template and the
other copies as they were."""
import json
import os
import sqlite3
import sys

from tests.conftest import REPO, copy_penguin_store, tfpipe

NODES = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
         "latest_blessed_model_resolver", "Evaluator", "InfraValidator", "Pusher"]


def _texts_naming(metadata: str, path: str) -> int:
    db = sqlite3.connect(metadata)
    try:
        return sum(db.execute(f"SELECT count(*) FROM {t} WHERE instr({c}, ?) > 0", (path + os.sep,)).fetchone()[0]
                   for t, c in (("Artifact", "uri"), ("ArtifactProperty", "string_value"),
                                ("ExecutionProperty", "string_value"), ("ContextProperty", "string_value")))
    finally:
        db.close()


def test_a_copy_is_a_store_of_its_own(penguin_store, penguin_copy):
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner
    md = penguin_copy.metadata
    assert _texts_naming(md, penguin_store.pushed) == 0 and _texts_naming(md, penguin_copy.dir) > 0
    runs = json.loads(tfpipe("runs", "list", "--json", "--metadata", md, check=0).stdout)
    assert sorted(r["run_id"] for r in runs) == ["store-pushed", "store-trained"]
    info = json.loads(tfpipe("runs", "show", penguin_copy.run_id, "--json", "--metadata", md, check=0).stdout)
    assert info["status"] == "COMPLETE" and sorted(e["node_id"] for e in info["executions"]) == sorted(NODES)
    [pushed] = next(e for e in info["executions"] if e["node_id"] == "Pusher")["outputs"]["pushed_model"]
    lineage = tfpipe("lineage", str(pushed["id"]), "--metadata", md, check=0).stdout
    assert f"{penguin_copy.root}/Pusher/" in lineage and "<- Trainer (Trainer)" in lineage
    assert penguin_store.pushed not in lineage
    [model] = json.loads(tfpipe("models", "list", "--json", "--metadata", md, check=0).stdout)
    # a re-run: every node from this store's cache (the resolver always resolves anew)
    r = LocalRunner(verbose=False).run(compile_pipeline(create_pipeline(**penguin_copy.kw)), run_id="again")
    assert r.ok, r.error
    assert {n.node_id: n.state.value for n in r.nodes if n.state.value != "CACHED"} == \
        {"latest_blessed_model_resolver": "COMPLETE"}
    # the pushed model serves from the copy
    from tfpipe.serving.client import ServerProcess
    srv = ServerProcess.start(["--metadata", md, "--port", "0"], command=[sys.executable, "-m", "tfpipe.cli", "serve"],
                              env={"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        status, body = srv.request("GET", "/v1/models/penguin")
        assert status == 200 and [v["version"] for v in body["model_version_status"]
                                  if v["state"] == "AVAILABLE"] == [str(model["version"])], body
        status, body = srv.request("POST", "/v1/models/penguin:predict", {"instances": [
            {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218,
             "body_mass_g": 4950, "sex": "female", "year": 2009}]})
        assert status == 200 and len(body["predictions"][0]) == 3, body
        assert "loaded in" in srv.stderr() and f"from {penguin_copy.serving}/" in srv.stderr()
    finally:
        srv.stop()


def test_what_one_copy_does_leaves_the_template_and_other_copies_alone(penguin_store, penguin_copy, tmp_path):
    other = copy_penguin_store(penguin_store.pushed, tmp_path / "other")
    md = penguin_copy.metadata
    [model] = json.loads(tfpipe("models", "list", "--json", "--metadata", md, check=0).stdout)
    tfpipe("models", "alias", "set", "penguin@production", str(model["version"]), "--metadata", md, check=0)
    assert os.path.exists(os.path.join(penguin_copy.serving, "models.config"))
    for d in (penguin_store.pushed, other):
        assert not os.path.exists(os.path.join(d, "root", "serving_model", "models.config"))
        [m] = json.loads(tfpipe("models", "list", "--json", "--metadata", os.path.join(d, "metadata.sqlite"),
                                check=0).stdout)
        assert m["aliases"] == [], m
    [m] = json.loads(tfpipe("models", "list", "--json", "--metadata", md, check=0).stdout)
    assert m["aliases"] == ["production"], m
