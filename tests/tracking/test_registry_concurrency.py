"""Alias changes from several processes at once, on SQLite and on a real MariaDB server:
every record states the version it replaced, no record repeats the state it found, times
follow the records' order, and the metadata, models.config, the serving link and MLflow
end in the same state. The pushed versions are recorded as the Pusher records them (a
PushedModel artifact, OUTPUT of an execution naming the pipeline) in a real store."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, tfpipe
from tfpipe.metadata import MetadataStore

MODEL = "penguin"

WORKER = r'''
import json, sys
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.registry import Registry, RegistryError
metadata, what, n, offset, mlflow_uri = sys.argv[1:]
reg = Registry(MetadataStore(metadata))
changed = []
for i in range(int(n)):
    version = "1" if (i + int(offset)) % 2 == 0 else "2"
    try:
        if what == "production":
            t = reg.promote(version, "production", model="penguin", mlflow_uri=mlflow_uri or None)
        else:
            t = reg.set_alias("penguin", what, version, mlflow_uri=mlflow_uri or None)
    except RegistryError as e:  # a registry that refuses a set to the version held
        assert "already" in str(e), e
        t = {"changed": False}
    changed.append(t.get("changed", True))
print(json.dumps(changed))
'''


def seed(metadata: str, dest: str, versions=("1", "2")) -> None:
    """Pushed versions of MODEL at ``dest``, recorded as the Pusher records them."""
    from tfpipe.artifacts import PushedModel
    store = MetadataStore(metadata)
    for v in versions:
        os.makedirs(os.path.join(dest, v))
        with open(os.path.join(dest, v, "saved_model.pb"), "w") as f:
            f.write(v)
        a = PushedModel(uri=os.path.join(dest, v), state="LIVE",
                        properties={"pushed": True, "destination": dest, "pushed_version": v})
        e = store.new_execution("Pusher", {"pipeline": MODEL, "run_id": f"run-{v}"}, [], {})
        store.publish_execution(e, "COMPLETE", {}, [], {"pushed_model": [a]})


def mlflow_with_versions(uri: str, dest: str, versions=("1", "2")) -> None:
    """MLflow's registered model as 'tfpipe mlflow export' leaves it: one model version per
    pushed version, tagged with it."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    for v in versions:
        client.create_model_version(MODEL, source=os.path.join(dest, v),
                                    tags={"tfpipe.pushed_version": v, "tfpipe.destination": dest})


def run_workers(metadata: str, what: str, procs: int, n: int, env: dict, mlflow_uri: str = "") -> list[bool]:
    e = {**os.environ, **env, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ps = [subprocess.Popen([sys.executable, "-c", WORKER, metadata, what, str(n), str(k % 2), mlflow_uri],
                           env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(procs)]
    outs = [(p.communicate(timeout=600), p.returncode) for p in ps]
    assert [rc for _, rc in outs] == [0] * procs, [err[-3000:] for (_, err), _ in outs]
    return [c for (out, _), _ in outs for c in json.loads(out.strip().splitlines()[-1])]


def check_history(store, alias: str, changed: list[bool]) -> dict:
    """Every record of ``alias`` replaced the state before it, none repeats it, times
    increase with the records' order; returns the final aliases (alias -> version)."""
    from tfpipe.tracking.aliases import pushed_versions, replay, transitions
    version = {v["id"]: v["version"] for v in pushed_versions(store)}
    recs = transitions(store, MODEL)
    ats = [t["at"] for t in recs]
    assert ats == sorted(ats) and len(set(ats)) == len(ats), "record times out of replay order"
    sets = 0
    for i, t in enumerate(recs):
        if t["kind"] not in ("alias-set", "promote") or t.get("alias") != alias:
            continue
        sets += 1
        before = replay(recs[:i])[0]
        held = version.get(before.get(alias))
        assert t["previous_version"] == (held or ""), (i, t, held)
        assert t["version"] != held, f"record {i} set {alias} to the version it already held: {t}"
    assert sets == sum(changed) and sets >= 2, (sets, changed)
    return {a: version[aid] for a, aid in replay(recs)[0].items()}


def published(dest: str) -> dict:
    from tfpipe.serving.config import CONFIG_FILE, read_config
    [entry] = read_config(os.path.join(dest, CONFIG_FILE))
    return {a: str(v) for a, v in entry.labels.items()}


def mlflow_aliases(uri: str) -> dict:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    by_mv = {str(mv.version): mv.tags["tfpipe.pushed_version"]
             for mv in client.search_model_versions(f"name = '{MODEL}'")}
    return {a: by_mv[str(mv)] for a, mv in client.get_registered_model(MODEL).aliases.items()}


def test_four_processes_setting_staging_on_sqlite_with_mlflow(tmp_path):
    md, dest = str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving")
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seed(md, dest)
    mlflow_with_versions(mlflow_uri, dest)
    changed = run_workers(md, "staging", procs=4, n=8, env={}, mlflow_uri=mlflow_uri)
    final = check_history(MetadataStore(md), "staging", changed)
    assert set(final) == {"staging"}
    assert published(dest) == final == mlflow_aliases(mlflow_uri)


def test_four_processes_promoting_to_production_on_sqlite(tmp_path):
    md, dest = str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving")
    seed(md, dest)
    changed = run_workers(md, "production", procs=4, n=10, env={})
    store = MetadataStore(md)
    final = check_history(store, "production", changed)
    assert published(dest) == final
    assert os.readlink(os.path.join(dest, "serving")) == final["production"]
    # every promotion that changed production archived the one it replaced, right before it
    from tfpipe.tracking.aliases import transitions
    recs = transitions(store, MODEL)
    for i, t in enumerate(recs):
        if t["kind"] == "promote" and t["previous_version"]:
            assert recs[i - 1]["kind"] == "replaced" and recs[i - 1]["version"] == t["previous_version"]


def test_four_processes_on_mariadb(mysql, tmp_path):
    url = mysql.create_database("registry_race")
    os.environ.update(mysql.env())
    dest = str(tmp_path / "serving")
    seed(url, dest)
    changed = run_workers(url, "staging", procs=4, n=16, env=mysql.env())
    final = check_history(MetadataStore(url), "staging", changed)
    assert published(dest) == final
    changed = run_workers(url, "production", procs=4, n=8, env=mysql.env())
    final = check_history(MetadataStore(url), "production", changed)
    assert published(dest) == final
    assert os.readlink(os.path.join(dest, "serving")) == final["production"]


def test_the_mariadb_lock_excludes_another_connection(mysql):
    """The server's named lock: held by one change, a second waits, then times out with an
    error naming the lock."""
    from tfpipe.tracking.aliases import RegistryError, registry_lock
    url = mysql.create_database("registry_lock")
    os.environ.update(mysql.env())
    a, b = MetadataStore(url), MetadataStore(url)
    with registry_lock(a):
        with pytest.raises(RegistryError, match="registry lock 'tfpipe.registry.registry_lock' still held"):
            with registry_lock(b, timeout=1):
                pass
    with registry_lock(b, timeout=1):  # released with the first change
        pass


def test_setting_the_version_already_held_records_nothing(tmp_path):
    md, dest = str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving")
    seed(md, dest)
    first = tfpipe("models", "alias", "set", f"{MODEL}@staging", "1", "--metadata", md, check=0)
    assert "-> version 1" in first.stdout
    again = tfpipe("models", "alias", "set", f"{MODEL}@staging", "1", "--metadata", md, check=0)
    assert "penguin@staging is already version 1: nothing recorded" in again.stdout
    promoted = tfpipe("models", "promote", "1", "--stage", "staging", "--metadata", md, "--json", check=0)
    assert json.loads(promoted.stdout)["changed"] is False
    from tfpipe.tracking.aliases import transitions
    assert [t["version"] for t in transitions(MetadataStore(md), MODEL)] == ["1"]


def test_a_record_written_without_the_lock_is_a_conflict(tmp_path):
    """The compare-and-set after writing: a change decided on a history that has grown
    since (another writer that did not take the lock) is reported, naming both records."""
    from tfpipe.tracking.aliases import RegistryConflict, pushed_versions, record, transitions
    md, dest = str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving")
    seed(md, dest)
    store = MetadataStore(md)
    v1, v2 = pushed_versions(store)
    seen = transitions(store, MODEL)  # the decision's view: no records yet
    record(store, v1, "none", "staging", "", "alias-set", {"alias": "staging", "previous_version": ""})
    with pytest.raises(RegistryConflict, match=r"transition #\d+ was recorded while this change .* expected the "
                                               r"record before it to be none"):
        record(store, v2, "none", "staging", "", "alias-set", {"alias": "staging", "previous_version": ""},
               based_on=seen)


HOLDER = r'''
import sys, time
from tfpipe.metadata import MetadataStore
from tfpipe.tracking.aliases import registry_lock
with registry_lock(MetadataStore(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
'''


def _killed_holder_releases(metadata: str, env: dict) -> None:
    """A process killed while it holds the lock does not leave the registry locked."""
    from tfpipe.tracking.aliases import RegistryError, registry_lock
    e = {**os.environ, **env, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-c", HOLDER, metadata], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held", p.stderr.read()[-2000:]
        with pytest.raises(RegistryError, match="still held by another change"):
            with registry_lock(MetadataStore(metadata), timeout=1):
                pass
    finally:
        p.kill()
        p.wait(timeout=60)
    with registry_lock(MetadataStore(metadata), timeout=30):
        pass


def test_a_killed_holder_releases_the_sqlite_lock(tmp_path):
    md = str(tmp_path / "metadata.sqlite")
    seed(md, str(tmp_path / "serving"))
    _killed_holder_releases(md, {})


def test_a_killed_holder_releases_the_mariadb_lock(mysql):
    url = mysql.create_database("registry_killed")
    os.environ.update(mysql.env())
    _killed_holder_releases(url, mysql.env())
