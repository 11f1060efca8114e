"""tfpipe.sources.sql against real servers the session starts: MariaDB (tests/mysql_server.py)
and PostgreSQL (tests/postgres_server.py), each on a loopback port with a password given by
reference. The same tests run on both: types and NULLs, the snapshot with a version column
(reproducible: an old snapshot reads the old rows) and without (a checksum the database
computes: a changed row changes it, and an old snapshot can no longer be read), bad input,
and streaming through a server-side cursor in bounded batches."""
import socket

import pytest

from tests.conftest import scoped_env
from tfpipe.sources import load_source
from tfpipe.sources.sql import SqlSource
from tfpipe.tabular import InputDataError

DB = "sources"


class Database:
    """One test database on one server: its URL, SQL run as the test user's owner, a source."""

    def __init__(self, kind: str, server):
        self.kind, self.server = kind, server
        self.url = server.create_database(DB)
        self.password_env = server.PASSWORD_ENV

    def sql(self, statement: str) -> str:
        if self.kind == "mariadb":
            return self.server.sql(f"USE `{DB}`; {statement}")
        return self.server.sql(f"SET ROLE {self.server.USER}; {statement}", database=DB)

    def source(self, **config) -> SqlSource:
        return SqlSource(self.url, password_env=self.password_env, **config)

    def series(self, n: int) -> str:
        """SQL for the integers 1..n as a column named seq."""
        if self.kind == "mariadb":
            return f"SELECT seq FROM seq_1_to_{n}"
        return f"SELECT g AS seq FROM generate_series(1, {n}) g"


@pytest.fixture(scope="module", params=["mariadb", "postgresql"])
def db(request):
    server = request.getfixturevalue("mysql" if request.param == "mariadb" else "postgres")
    with scoped_env(**server.env()):
        yield Database(request.param, server)


def rows_of(batches, key="id"):
    out = [r for b in batches for r in b.to_pylist()]
    return sorted(out, key=lambda r: r[key])


def test_types_and_nulls_round_trip(db):
    dbl = "DOUBLE" if db.kind == "mariadb" else "DOUBLE PRECISION"
    blob = "BLOB" if db.kind == "mariadb" else "BYTEA"
    bool_ = "BOOLEAN"
    db.sql(f"CREATE TABLE typed (id INT PRIMARY KEY, name VARCHAR(20), note TEXT, w {dbl}, d DECIMAL(10,2), "
           f"big BIGINT, at TIMESTAMP NULL, day DATE, t TIME, b {blob}, flag {bool_})")
    # the first two rows are NULL in every column but id: with 2-row batches the whole first
    # batch is NULL, and the columns keep their SQL types
    db.sql("INSERT INTO typed VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
           "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
           "(3, 'Adelie', 'long text', 39.5, 1234.56, 9007199254740993, '2024-05-01 12:30:00', '2024-05-01', "
           "'10:15:30', 'ab', TRUE)")
    src = db.source(table="typed", batch_rows=2)
    snap = src.snapshot()
    assert snap["reproducible"] is False and snap["data_version"]["rows"] == 3
    batches = list(src.read(snap))
    assert [b.num_rows for b in batches] == [2, 1]
    assert len({b.schema for b in batches}) == 1
    types = {f.name: str(f.type) for f in batches[0].schema}
    assert types == {"id": "int64", "name": "string", "note": "string", "w": "double", "d": "double",
                     "big": "int64", "at": "string", "day": "string", "t": "string", "b": "binary",
                     # MySQL's BOOLEAN is TINYINT(1)
                     "flag": "int64" if db.kind == "mariadb" else "bool"}
    assert snap["data_version"]["columns"]["d"] == "float64"
    rows = rows_of(batches)
    assert rows[0] == {k: (1 if k == "id" else None) for k in types}
    assert rows[2] == {"id": 3, "name": "Adelie", "note": "long text", "w": 39.5, "d": 1234.56,
                       "big": 9007199254740993, "at": "2024-05-01T12:30:00", "day": "2024-05-01", "t": "10:15:30",
                       "b": b"ab", "flag": 1 if db.kind == "mariadb" else True}
    # text with the characters a CSV line would need quoted, an empty string (not NULL),
    # and a one-column result whose rows are NULL: rows all the same
    db.sql("INSERT INTO typed (id, name, note) VALUES (4, '', 'a \"quoted\", two\nlines\r\n and, commas')")
    src = db.source(query="SELECT id, name, note, w, d, at FROM typed", batch_rows=3)
    got = rows_of(src.read(src.snapshot()))
    assert [(r["name"], r["note"]) for r in got] == [(None, None), (None, None), ("Adelie", "long text"),
                                                     ("", 'a "quoted", two\nlines\r\n and, commas')]
    assert got[2]["w"] == 39.5 and got[2]["d"] == 1234.56 and got[2]["at"] == "2024-05-01T12:30:00"
    one = db.source(query="SELECT w FROM typed")
    ws = [r["w"] for b in one.read(one.snapshot()) for r in b.to_pylist()]
    assert len(ws) == 4 and [w for w in ws if w is not None] == [39.5]


def test_query_through_the_registry(db):
    """``source="sql"`` names this class; a query (with its own column names) works as a table does."""
    db.sql("CREATE TABLE q (id INT, species VARCHAR(10), mass INT)")
    db.sql("INSERT INTO q VALUES (1, 'Adelie', 3700), (2, 'Gentoo', 5000), (3, 'Adelie', 3500)")
    src = load_source("sql", {"url": db.url, "password_env": db.password_env,
                              "query": "SELECT species, AVG(mass) AS mean_mass, COUNT(*) AS n FROM q "
                                       "GROUP BY species;"})
    assert isinstance(src, SqlSource)
    snap = src.snapshot()
    assert snap["data_version"]["query"].startswith("SELECT species") and snap["data_version"]["rows"] == 2
    got = rows_of(src.read(snap), key="species")
    assert [(r["species"], r["mean_mass"], r["n"]) for r in got] == [("Adelie", 3600.0, 2), ("Gentoo", 5000.0, 1)]
    # SQL with a %, a ' :word' and a cast (PostgreSQL's ::) in it, read at a version (a bound parameter)
    cast = "CAST(mass AS CHAR)" if db.kind == "mariadb" else "mass::text"
    src = db.source(query=f"SELECT id, species, {cast} AS m, 'a :b' AS c FROM q WHERE species LIKE 'A%'",
                    version_column="id")
    got = rows_of(src.read(src.snapshot()))
    assert [(r["id"], r["m"], r["c"]) for r in got] == [(1, "3700", "a :b"), (3, "3500", "a :b")]


def test_version_column_snapshot_reads_the_same_rows_later(db):
    db.sql("CREATE TABLE grows (id INT, v INT, x VARCHAR(10))")
    db.sql("INSERT INTO grows VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c')")
    src = db.source(table="grows", version_column="v")
    old = src.snapshot()
    assert old["reproducible"] is True
    assert old["data_version"]["max_version"] == 2 and old["data_version"]["rows"] == 3
    assert src.snapshot()["fingerprint"] == old["fingerprint"]  # nothing changed: the same key
    db.sql("INSERT INTO grows VALUES (4, 3, 'd'), (5, 3, 'e')")
    new = src.snapshot()
    assert new["fingerprint"] != old["fingerprint"]
    assert new["data_version"]["max_version"] == 3 and new["data_version"]["rows"] == 5
    assert [r["id"] for r in rows_of(src.read(old))] == [1, 2, 3]  # the old snapshot: the old rows
    assert [r["id"] for r in rows_of(src.read(new))] == [1, 2, 3, 4, 5]
    # a row slipped in under an old version breaks the promise: said, not read
    db.sql("INSERT INTO grows VALUES (6, 1, 'late')")
    with pytest.raises(InputDataError, match=r"3 rows had v <= 2 when the snapshot was taken, 4 now"):
        list(src.read(old))


def test_checksum_changes_when_a_row_changes(db):
    db.sql("CREATE TABLE plain (id INT, x VARCHAR(10), y DOUBLE PRECISION)")
    db.sql("INSERT INTO plain VALUES (1, 'a', 1.5), (2, NULL, 2.5), (3, 'c', NULL)")
    src = db.source(table="plain")
    first = src.snapshot()
    assert first["reproducible"] is False and first["data_version"]["checksum"]
    assert src.snapshot() == first  # stable while nothing changes
    db.sql("UPDATE plain SET y = 2.75 WHERE id = 2")  # same row count
    changed = src.snapshot()
    assert changed["data_version"]["rows"] == 3
    assert changed["data_version"]["checksum"] != first["data_version"]["checksum"]
    assert changed["fingerprint"] != first["fingerprint"]
    db.sql("UPDATE plain SET x = 'a' WHERE id = 2")  # a NULL becomes a value
    assert src.snapshot()["fingerprint"] != changed["fingerprint"]
    # the first snapshot cannot be read again: the source says so instead of reading other rows
    with pytest.raises(InputDataError, match=r"changed since its snapshot.*can be read only as it is now"):
        next(src.read(first))


def test_rows_read_are_checked_against_the_snapshot_before_the_last_batch(db, monkeypatch):
    """The rows read are the snapshot's: from MariaDB each line carries its row's CRC32 and
    their sum is compared with the snapshot's checksum (no second checksum scan); with a
    version column the rows read are counted. A row changed after the snapshot (same count)
    or slipped in under an old version is an error raised before the last batch is given,
    so a reader never holds all of a result that is not the snapshot's. Values of every
    length a row packet has (a length byte, 2 and 3 length bytes) and non-ASCII text."""
    from tfpipe.sources import sql as sql_mod
    n, per = 3000, 500
    text = "MEDIUMTEXT" if db.kind == "mariadb" else "TEXT"
    db.sql(f"CREATE TABLE checked (id INT PRIMARY KEY, v INT, s VARCHAR(400), t {text})")
    rep = "REPEAT" if db.kind == "mariadb" else "repeat"
    db.sql(f"INSERT INTO checked SELECT seq, seq % 10, CONCAT('é,\"', seq), NULL FROM ({db.series(n)}) AS s")
    db.sql(f"UPDATE checked SET s = {rep}('x', 300), t = {rep}('ü', 40000) WHERE id = 7")
    db.sql(f"UPDATE checked SET t = {rep}('y', 100000) WHERE id = 2500")
    calls = []
    if db.kind == "mariadb":
        real = sql_mod._mysql_line_batches
        monkeypatch.setattr(sql_mod, "_mysql_line_batches", lambda *a: calls.append(1) or real(*a))
    src = db.source(table="checked", batch_rows=per)
    snap = src.snapshot()
    if db.kind == "mariadb":
        def no_second_scan(*a):
            raise AssertionError("the checksum was computed again to read")
        monkeypatch.setattr(SqlSource, "_checksum", no_second_scan)
    batches = list(src.read(snap))
    assert [b.num_rows for b in batches] == [per] * (n // per)
    rows = rows_of(batches)
    assert [r["id"] for r in rows] == list(range(1, n + 1))
    assert rows[0]["s"] == 'é,"1' and rows[0]["t"] is None
    assert rows[6]["s"] == "x" * 300 and rows[6]["t"] == "ü" * 40000 and rows[2499]["t"] == "y" * 100000
    assert calls == ([1] if db.kind == "mariadb" else [])  # MariaDB's lines read off the socket
    monkeypatch.undo()

    def read_until_error(source, snapshot):
        got = 0
        with pytest.raises(InputDataError) as e:
            for b in source.read(snapshot):
                got += b.num_rows
        assert got < n  # never the whole of it
        return str(e.value)

    db.sql("UPDATE checked SET s = 'changed' WHERE id = 2999")  # the same count, one value changed
    assert "changed since its snapshot" in read_until_error(src, snap)
    ver = db.source(table="checked", version_column="id", batch_rows=per)
    old = ver.snapshot()
    assert len(rows_of(ver.read(old))) == n
    db.sql("DELETE FROM checked WHERE id = 2000")
    assert f"{n:,} rows had id <= {n} when the snapshot was taken, {n - 1:,} now" in read_until_error(ver, old)


def test_column_type_changed_since_the_snapshot(db):
    db.sql("CREATE TABLE retyped (id INT, v INT, size INT)")
    db.sql("INSERT INTO retyped VALUES (1, 1, 10), (2, 1, 20)")
    src = db.source(table="retyped", version_column="v")
    snap = src.snapshot()
    db.sql("ALTER TABLE retyped MODIFY size VARCHAR(10)" if db.kind == "mariadb"
           else "ALTER TABLE retyped ALTER COLUMN size TYPE VARCHAR(10)")
    with pytest.raises(InputDataError, match=r"column 'size' was int64 when the snapshot was taken, string now"):
        list(src.read(snap))


def test_bad_input_names_what_was_expected_and_where(db, monkeypatch):
    db.sql("CREATE TABLE small (id INT, x INT)")
    db.sql("INSERT INTO small VALUES (1, 2)")
    # a server that is not there: host and port named, no password
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = db.url.replace(f":{db.server.port}/", f":{closed}/")
    with pytest.raises(InputDataError, match=rf"cannot connect to the \w+ database 'sources' at 127\.0\.0\.1:{closed}"):
        SqlSource(url, password_env=db.password_env, table="small").snapshot()
    # a wrong password: the database's refusal, without the password
    monkeypatch.setenv("TFPIPE_TEST_WRONG_PASSWORD", "wrong-secret-7321")
    with pytest.raises(InputDataError) as e:
        SqlSource(db.url.split("?")[0], password_env="TFPIPE_TEST_WRONG_PASSWORD", table="small").snapshot()
    assert "wrong-secret-7321" not in str(e.value) and db.server.password not in str(e.value)
    assert "cannot connect" in str(e.value) and ("denied" in str(e.value) or "authentication failed" in str(e.value))
    # the password's variable is not set
    with pytest.raises(InputDataError, match="environment variable TFPIPE_TEST_UNSET_VAR, which is not set"):
        SqlSource(db.url.split("?")[0], password_env="TFPIPE_TEST_UNSET_VAR", table="small").snapshot()
    # a password inline is refused before anything connects
    with pytest.raises(ValueError, match="URL with a password in it"):
        SqlSource(db.url.replace("tfpipe@", "tfpipe:hunter2@"), table="small")
    with pytest.raises(ValueError, match="password holds a password inline"):
        SqlSource(db.url.split("?")[0] + "?password=hunter2", table="small")
    # a query the database refuses: its own message
    with pytest.raises(InputDataError, match=r"(?s)(doesn't exist|does not exist).*query: SELECT \* FROM no_such"):
        db.source(query="SELECT * FROM no_such_table").snapshot()
    with pytest.raises(InputDataError, match="nope"):
        db.source(query="SELECT nope FROM small").snapshot()
    # an empty result
    with pytest.raises(InputDataError, match="returned no rows; expected at least one row"):
        db.source(query="SELECT * FROM small WHERE id > 100").snapshot()
    with pytest.raises(InputDataError, match=r"version_column 'ver' is not a column of the result; .*'id', 'x'"):
        db.source(table="small", version_column="ver").snapshot()
    # two columns of one name (MariaDB refuses the query itself)
    with pytest.raises(InputDataError, match="more than one column named id|Duplicate column name 'id'"):
        db.source(query="SELECT a.id, b.id FROM small a, small b").snapshot()
    with pytest.raises(InputDataError, match="exactly one of query= .* or table="):
        db.source()
    # a value that does not fit its column's Arrow type (an unsigned BIGINT above int64's range)
    if db.kind == "mariadb":
        big = db.source(query="SELECT id, CAST(18446744073709551615 AS UNSIGNED) AS big FROM small")
        with pytest.raises(InputDataError, match=r"rows 1 to 1 of the result do not fit .*18446744073709551615"):
            list(big.read(big.snapshot()))


def test_streams_in_bounded_batches_through_a_server_side_cursor(db):
    n, per = 200_000, 10_000
    # rows of ~130 bytes: the 26 MB result is more than the loopback socket's buffers hold, so a
    # server that sends without being asked is still sending after the first batch
    db.sql("CREATE TABLE big (id INT PRIMARY KEY, k INT, label VARCHAR(120), w DOUBLE PRECISION)")
    label = "CONCAT(REPEAT('x', 100), seq)" if db.kind == "mariadb" else "repeat('x', 100) || seq"
    db.sql(f"INSERT INTO big SELECT seq, seq % 7, {label}, seq * 0.5 FROM ({db.series(n)}) AS s")
    src = db.source(table="big", version_column="id", batch_rows=per)
    snap = src.snapshot()
    assert snap["data_version"]["rows"] == n
    it = src.read(snap)
    first = next(it)
    assert first.num_rows == per
    # while the first batch is in our hands the rest is still on the server: its SELECT is open
    # (MariaDB: still sending; PostgreSQL: a cursor fetched from batch by batch)
    if db.kind == "mariadb":
        open_queries = db.server.sql("SELECT COUNT(*) FROM information_schema.processlist WHERE command = 'Query' "
                                     "AND info LIKE '%FROM big)%' AND info NOT LIKE '%processlist%'").strip()
    else:
        open_queries = db.server.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE usename = 'tfpipe' "
                                     "AND query LIKE 'FETCH FORWARD%'").strip()
    assert open_queries == "1"
    sizes = [first.num_rows] + [b.num_rows for b in it]
    assert len(sizes) == n // per and set(sizes) == {per} and sum(sizes) == n


def test_sqlite_checksum_by_the_reader_and_a_value_of_another_type(tmp_path):
    """Another SQLAlchemy database: the reader computes the checksum; SQLite's columns may
    hold values of any type, and one that does not fit its column is named."""
    import sqlite3
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (id INTEGER, x)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(1, None), (2, 5), (3, 7)])
    src = SqlSource(f"sqlite:///{path}", table="t", batch_rows=2)
    snap = src.snapshot()
    assert snap["data_version"]["columns"] == {"id": "int64", "x": "int64"}  # x typed past its first NULL
    assert [r["x"] for r in rows_of(src.read(snap))] == [None, 5, 7]
    with sqlite3.connect(path) as c:
        c.execute("UPDATE t SET x = 'seven' WHERE id = 3")
    snap2 = src.snapshot()
    assert snap2["fingerprint"] != snap["fingerprint"]
    with pytest.raises(InputDataError, match=r"row 3 of the result, column 'x': 'seven' \(str\) is not a int64"):
        list(src.read(snap2))
