"""The penguin pipeline from a SQL table to a pushed model, on each server the tests start:
MariaDB (tests/mysql_server.py) with a version column, PostgreSQL (tests/postgres_server.py)
without one (the checksum the database computes). The palmerpenguins rows are loaded into
a table with the types a schema would give them (missing values NULL); the Examples record
the data version; a re-run with the rows unchanged is served from the cache; a changed
table (a row appended with a higher version; a row updated in place) re-runs ExampleGen."""
import csv
import os
import socket

import pytest

from examples.penguin.pipeline import DATA, create_pipeline
from tests.components.test_bad_input import _assert_failed
from tests.conftest import scoped_env, tfpipe
from tfpipe import compile_pipeline
from tfpipe.components.pusher import versions
from tfpipe.orchestrators.local import LocalRunner
from tfpipe.sources.sql import SqlSource

COLUMNS = [("species", "VARCHAR(20)"), ("island", "VARCHAR(20)"), ("bill_length_mm", "DOUBLE PRECISION"),
           ("bill_depth_mm", "DOUBLE PRECISION"), ("flipper_length_mm", "INT"), ("body_mass_g", "INT"),
           ("sex", "VARCHAR(10)"), ("year", "INT")]


def penguin_rows() -> list[dict]:
    with open(os.path.join(DATA, "penguins.csv"), newline="") as f:
        return list(csv.DictReader(f))


def load_penguins(sql, table: str) -> int:
    """The CSV's rows into ``table`` (with an ``id`` 1..n first); NA -> NULL."""
    sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, " + ", ".join(f"{n} {t}" for n, t in COLUMNS) + ")")
    rows = penguin_rows()
    values = []
    for i, r in enumerate(rows, 1):
        vals = [str(i)]
        for name, typ in COLUMNS:
            v = r[name]
            vals.append("NULL" if v in ("", "NA") else f"'{v}'" if typ.startswith("VARCHAR") else v)
        values.append("(" + ", ".join(vals) + ")")
    sql(f"INSERT INTO {table} VALUES " + ", ".join(values))
    return len(rows)


def run(tmp, source_config, to_node=None):
    kw = dict(root=str(tmp / "root"), metadata=str(tmp / "m.sqlite"), train_steps=200, name="penguin_sql",
              source="sql", source_config=source_config)
    r = LocalRunner(verbose=False).run(compile_pipeline(create_pipeline(**kw)), to_node=to_node)
    assert r.ok, r.error
    return r, kw


def states(r) -> dict:
    return {n.node_id: n.state for n in r.nodes}


@pytest.mark.slow
@pytest.mark.services  # asks for the mysql or postgres fixture below
@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_penguin_pipeline_from_a_sql_table_to_a_pushed_model(kind, request, tmp_path):
    server = request.getfixturevalue("mysql" if kind == "mariadb" else "postgres")
    url = server.create_database("penguins_e2e")
    if kind == "mariadb":
        def sql(s):
            return server.sql(f"USE penguins_e2e; {s}")
        config = {"url": url, "table": "penguins", "version_column": "id"}  # password_env in the URL
    else:
        def sql(s):
            return server.sql(f"SET ROLE {server.USER}; {s}", database="penguins_e2e")
        config = {"url": url, "table": "penguins", "password_env": server.PASSWORD_ENV}
    n = load_penguins(sql, "penguins")
    with scoped_env(**server.env()):
        r1, kw = run(tmp_path, config)
        assert set(states(r1).values()) == {"COMPLETE"}, states(r1)
        outputs = {nd.node_id: nd.outputs for nd in r1.nodes}
        [examples] = outputs["ExampleGen"]["examples"]
        assert sum(examples.row_counts.values()) == n and examples.source == "sql"
        dv = examples.data_version
        assert dv["table"] == "penguins" and dv["rows"] == n
        assert dv["columns"]["body_mass_g"] == "int64" and dv["columns"]["bill_length_mm"] == "float64"
        if kind == "mariadb":
            assert dv["max_version"] == n
        else:
            assert dv["checksum"] and "max_version" not in dv
        assert url.split("@")[1].split("/")[0] in dv["database"] and server.password not in str(dv)
        [pushed] = outputs["Pusher"]["pushed_model"]
        assert pushed.pushed is True
        [v] = versions(os.path.join(kw["root"], "serving_model"))
        assert os.path.exists(os.path.join(kw["root"], "serving_model", str(v), "saved_model.pb"))

        # the same rows: ExampleGen (and all that follows) from the cache
        r2, _ = run(tmp_path, config, to_node="StatisticsGen")
        assert states(r2) == {"ExampleGen": "CACHED", "StatisticsGen": "CACHED"}

        # a changed table: ExampleGen reads it again
        if kind == "mariadb":
            sql(f"INSERT INTO penguins SELECT {n} + 1, species, island, bill_length_mm, bill_depth_mm, "
                "flipper_length_mm, body_mass_g, sex, year FROM penguins WHERE id = 1")
        else:
            sql("UPDATE penguins SET body_mass_g = body_mass_g + 1 WHERE id = 7")
        r3, _ = run(tmp_path, config, to_node="StatisticsGen")
        assert states(r3) == {"ExampleGen": "COMPLETE", "StatisticsGen": "COMPLETE"}
        [ex3] = r3.nodes[0].outputs["examples"]
        assert sum(ex3.row_counts.values()) == (n + 1 if kind == "mariadb" else n)
        assert ex3.data_version != dv


def _bad_pipeline(tmp_path, config: dict, snapshot: dict | None = None) -> str:
    p = tmp_path / "pipeline.py"
    pinned = f", source_snapshot={snapshot!r}" if snapshot else ""
    p.write_text("from tfpipe import Pipeline\n"
                 "from tfpipe.components import ExampleGen, StatisticsGen\n\n\n"
                 "def create_pipeline():\n"
                 f"    gen = ExampleGen(source='sql', source_config={config!r}{pinned})\n"
                 "    return Pipeline('bad_sql', [gen, StatisticsGen(examples=gen.outputs.examples)],\n"
                 f"                    root={str(tmp_path / 'root')!r}, metadata={str(tmp_path / 'm.sqlite')!r})\n")
    return str(p)


def test_bad_sql_input_fails_example_gen_with_nothing_partial(mysql, postgres, tmp_path_factory):
    """Through the real CLI: an unreachable server (host and port, no password), a query the
    database refuses (its message), an empty result, rows changed since the snapshot read
    (found when the rows read are checked, at the end of the read): each a FAILED
    ExampleGen, nothing written, nothing downstream run."""
    my_url = mysql.create_database("bad_sql")
    mysql.sql("USE bad_sql; CREATE TABLE IF NOT EXISTS t (id INT, x INT); DELETE FROM t")
    pg_url = postgres.create_database("bad_sql")
    postgres.sql(f"SET ROLE {postgres.USER}; CREATE TABLE IF NOT EXISTS t (id INT, x INT)", database="bad_sql")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**mysql.env(), **postgres.env()}
    cases = [
        ({"url": my_url.replace(f":{mysql.port}/", f":{closed}/"), "table": "t"},
         [f"cannot connect to the mysql database 'bad_sql' at 127.0.0.1:{closed} as user tfpipe",
          "Connection refused"]),
        ({"url": pg_url, "password_env": postgres.PASSWORD_ENV, "query": "SELECT nope FROM t"},
         ['column "nope" does not exist', "(query: SELECT nope FROM t)"]),
        ({"url": my_url, "query": "SELECT * FROM t WHERE x > 0"},
         ["the query 'SELECT * FROM t WHERE x > 0' returned no rows; expected at least one row"]),
    ]
    for i, (config, fragments) in enumerate(cases):
        tmp = tmp_path_factory.mktemp(f"bad_sql_{i}")
        proc = tfpipe("run", _bad_pipeline(tmp, config), env=env)
        _assert_failed(tmp, proc, "ExampleGen", *fragments)
        assert mysql.password not in proc.stderr and postgres.password not in proc.stderr
    # a snapshot (pinned, as reproduce pins it) whose rows changed after it was taken: from
    # MariaDB the change is found from the rows' CRC32s once all are read, in batches of 2
    mysql.sql("USE bad_sql; DROP TABLE IF EXISTS moved; CREATE TABLE moved (id INT, x INT); "
              "INSERT INTO moved VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)")
    config = {"url": my_url, "table": "moved", "batch_rows": 2}
    with scoped_env(**mysql.env()):
        stale = SqlSource(**config).snapshot()
    mysql.sql("USE bad_sql; UPDATE moved SET x = 40 WHERE id = 4")
    tmp = tmp_path_factory.mktemp("bad_sql_changed")
    proc = tfpipe("run", _bad_pipeline(tmp, config, stale), env=env)
    _assert_failed(tmp, proc, "ExampleGen", "the data changed since its snapshot (5 rows",
                   "can be read only as it is now")


def test_reproduce_reads_a_versioned_table_again_and_refuses_a_changed_unversioned_one(mysql, postgres, tmp_path):
    """``tfpipe reproduce``: a MariaDB table with a version column is read again as recorded
    after rows were added; a PostgreSQL table without one is reproduced while unchanged, and
    refused plainly once a row changed."""
    import json

    from tests.components.test_delta_source import _project
    my_url = mysql.create_database("repro_sql")
    n = load_penguins(lambda s: mysql.sql(f"USE repro_sql; {s}"), "penguins")
    pg_url = postgres.create_database("repro_sql")
    load_penguins(lambda s: postgres.sql(f"SET ROLE {postgres.USER}; {s}", database="repro_sql"), "penguins")
    env = {**mysql.env(), **postgres.env(), "MY_URL": my_url, "PG_URL": pg_url}

    versioned = tmp_path / "versioned"
    versioned.mkdir()
    repo = _project(versioned, "source='sql', source_config={'url': os.environ['MY_URL'], 'table': 'penguins', "
                               "'version_column': 'id'}")
    e = {**env, "TFPIPE_HOME": str(versioned / "home")}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "v1", cwd=str(versioned), env=e, check=0)
    mysql.sql("USE repro_sql; INSERT INTO penguins SELECT id + 1000, species, island, bill_length_mm, "
              "bill_depth_mm, flipper_length_mm, body_mass_g, sex, year FROM penguins WHERE id <= 10")
    res = json.loads(tfpipe("reproduce", "v1", "-o", str(versioned / "again"), "--json", "-q", cwd=str(versioned),
                            env=e, check=0).stdout)
    assert res["status"] == "COMPLETE" and res["identical"] == res["total"] == 2, res
    [check] = res["data_checks"]
    assert check["ok"] and check["reproducible"] and check["data_version"]["max_version"] == n
    [count] = [r for r in res["artifacts"] if r["node"] == "count_rows"]
    assert json.load(open(os.path.join(count["reproduced_uri"], "value"))) == n  # not n + 10

    plain = tmp_path / "plain"
    plain.mkdir()
    repo = _project(plain, "source='sql', source_config={'url': os.environ['PG_URL'], 'table': 'penguins', "
                           f"'password_env': {postgres.PASSWORD_ENV!r}}}")
    e = {**env, "TFPIPE_HOME": str(plain / "home")}
    tfpipe("run", str(repo / "pipeline.py"), "-q", "--run-id", "p1", cwd=str(plain), env=e, check=0)
    res = json.loads(tfpipe("reproduce", "p1", "--json", "-q", cwd=str(plain), env=e, check=0).stdout)
    [check] = res["data_checks"]
    assert check["ok"] and not check["reproducible"] and "not reproducible" in check["how"]
    postgres.sql(f"SET ROLE {postgres.USER}; UPDATE penguins SET sex = NULL WHERE id = 3", database="repro_sql")
    p = tfpipe("reproduce", "p1", "-o", str(plain / "again"), "-q", cwd=str(plain), env=e)
    assert p.returncode == 1
    assert "node ExampleGen: source 'sql' cannot be read again as it was: its snapshot" in p.stderr
    assert "is not reproducible and its data changed since" in p.stderr
    assert postgres.password not in p.stderr and not (plain / "again").exists()


def test_a_column_type_changed_since_the_last_run_fails_example_gen(mysql, tmp_path):
    """A SQL table keeps no schema history: a column whose type changed since ExampleGen's
    last COMPLETE run fails the next run (naming column, both types and both data versions),
    nothing of it published and nothing downstream run; allow_type_changes accepts it."""
    from tfpipe.metadata import MetadataStore
    url = mysql.create_database("type_change")
    mysql.sql("USE type_change; CREATE TABLE t (id INT, x INT, label VARCHAR(5)); "
              "INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'a')")
    env = mysql.env()
    config = {"url": url, "table": "t"}
    tfpipe("run", _bad_pipeline(tmp_path, config), env=env, check=0)
    mysql.sql("USE type_change; ALTER TABLE t MODIFY x VARCHAR(10); UPDATE t SET x = CONCAT('v', x)")
    proc = tfpipe("run", _bad_pipeline(tmp_path, config), env=env)
    assert proc.returncode == 1
    assert "column 'x' was int64, is now string" in proc.stderr and "allow_type_changes" in proc.stderr
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    execs = sorted(store.store.get_executions(), key=lambda e: e.id)
    assert [(store.props(e)["node_id"], store.state_name(e)) for e in execs] == [
        ("ExampleGen", "COMPLETE"), ("StatisticsGen", "COMPLETE"), ("ExampleGen", "FAILED")]
    assert "column 'x' was int64, is now string" in store.props(execs[-1])["error"]
    assert len([a for a in store.list_artifacts("Examples") if a.state == "LIVE"]) == 1
    assert mysql.password not in proc.stderr
    tfpipe("run", _bad_pipeline(tmp_path, {**config, "allow_type_changes": True}), env=env, check=0)
