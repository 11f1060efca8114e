"""A SQL query or table as ExampleGen's input, through SQLAlchemy: MariaDB/MySQL (PyMySQL)
and PostgreSQL (psycopg 3) are tested against real servers; another database SQLAlchemy
has a dialect and a driver for works the same way, with the checksum computed by the
reader (below).

``SqlSource(url, query=None, table=None, version_column=None, password_env=None,
password_file=None, password_secret=None, batch_rows=50_000)``:

- ``url``: a SQLAlchemy URL without a password, ``mysql://user@host:3306/db``,
  ``mariadb://...``, ``postgresql://user@host:5432/db`` (the drivers are chosen for those:
  ``mysql+pymysql``, ``postgresql+psycopg``), ``sqlite:///path``, or any
  ``dialect+driver://``. The password is given by reference, as for ML Metadata
  (tfpipe.credentials): ``password_env`` (an environment variable), ``password_file`` or
  ``password_secret`` (Google Secret Manager), as keyword arguments or as the URL's query
  parameters. A URL with ``user:password@`` is refused.
- ``query`` (SQL text, run as given) or ``table`` (a name, ``schema.table`` allowed).
- ``version_column``: a column whose value only grows as rows are added (an id, an
  ingestion time). The snapshot records its maximum and the row count, and ``read``
  returns the rows up to that maximum: the same rows later, so the snapshot is
  *reproducible*. Without one, the snapshot is a checksum of the whole result computed in
  the database (MariaDB/MySQL: the sum of each row's CRC32; PostgreSQL: the sum of each
  row's 64-bit ``hashtextextended``; other databases: by the reader, which costs a full
  read) and the row count:
  a change of any row is seen, but an old snapshot cannot be read again
  (``reproducible: False``; ``read`` of a snapshot whose checksum no longer matches fails).

Reading: one transaction at REPEATABLE READ (MariaDB/MySQL, PostgreSQL), so the check that
the data still matches the snapshot and the rows read see the same data; a server-side
cursor, so at most ``batch_rows`` rows sit in memory (from MariaDB/MySQL each row as one
CSV line the server renders, parsed by Arrow: see ``_lines_sql``); Arrow types from the columns' SQL
types, the same for every batch (a column that is NULL in the first rows keeps its type):
integers -> int64, DECIMAL/NUMERIC -> float64 (a float: digits beyond about 15 are lost),
FLOAT/REAL/DOUBLE -> float64, BOOLEAN -> bool (MySQL's BOOLEAN is TINYINT: int64), text,
enums, JSON, UUID -> string, dates, times and timestamps -> ISO 8601 strings
(``2024-05-01``, ``2024-05-01T12:30:00``), binary -> binary, NULL -> a missing value.

Errors are InputDataError naming what was expected, what was found and where (database
host and port, never a password): a server that cannot be reached, a query the database
refuses (its own message), an empty result, a column type that changed since the
snapshot, a password reference that cannot be resolved."""
from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import re
from typing import Any, Iterator

from tfpipe.credentials import check_no_inline_secrets, resolve_password
from tfpipe.tabular import InputDataError

from . import Source

__all__ = ["SqlSource"]

_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "postgresql": "postgresql+psycopg",
            "postgres": "postgresql+psycopg"}
_DEFAULT_PORT = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432}
_REFS = ("password_env", "password_file", "password_secret")
_CONNECT_TIMEOUT_S = 10

# PyMySQL's column type codes (pymysql.constants.FIELD_TYPE) -> (Arrow type, converter)
_MYSQL_TYPES = {0: "decimal", 246: "decimal", 1: "int64", 2: "int64", 3: "int64", 8: "int64", 9: "int64",
                13: "int64", 16: "bit", 4: "float64", 5: "float64", 7: "time", 10: "time", 11: "time",
                12: "time", 14: "time", 15: "string", 245: "string", 247: "string", 248: "string",
                249: "text", 250: "text", 251: "text", 252: "text", 253: "text", 254: "text",
                255: "binary", 6: None}
# PostgreSQL type OIDs (psycopg's description type_code)
_PG_TYPES = {16: "bool", 20: "int64", 21: "int64", 23: "int64", 26: "int64", 700: "float64", 701: "float64",
             1700: "decimal", 25: "string", 1043: "string", 1042: "string", 18: "string", 19: "string",
             114: "json", 3802: "json", 2950: "string", 142: "string", 1186: "string",
             1082: "time", 1083: "time", 1114: "time", 1184: "time", 1266: "time", 17: "binary"}
# kinds the server renders as CSV text for the fast MariaDB/MySQL read (_lines_sql)
_LINE_KINDS = {"int64", "float64", "decimal", "string", "text", "json", "time"}
# what each kind is in Arrow
_ARROW = {"int64": "int64", "bit": "int64", "float64": "float64", "decimal": "float64", "bool": "bool",
          "string": "string", "text": "string", "json": "string", "time": "string", "binary": "binary"}


def _iso(v):
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):  # MySQL TIME
        sign, s = ("-", -v) if v < datetime.timedelta(0) else ("", v)
        secs = int(s.total_seconds())
        frac = f".{s.microseconds:06d}" if s.microseconds else ""
        return f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}{frac}"
    return str(v)


def _to_str(v):
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8")
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)):
        return _iso(v)
    return str(v)


def _converter(kind: str):
    """A function of a column's values (a sequence) to what pa.array takes, or None when the
    driver's values go as they are."""
    if kind == "decimal":
        return lambda col: [None if v is None else float(v) for v in col]
    if kind == "bit":
        return lambda col: [None if v is None else (int.from_bytes(v, "big") if isinstance(v, bytes) else int(v))
                            for v in col]
    if kind == "time":
        return lambda col: [None if v is None else _iso(v) for v in col]
    if kind in ("text", "json", "string"):
        return lambda col: [v if v is None or isinstance(v, str) else _to_str(v) for v in col]
    if kind == "binary":
        return lambda col: [None if v is None else bytes(v) if not isinstance(v, str) else v.encode() for v in col]
    return None


def _kind_of_value(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, decimal.Decimal):
        return "decimal"
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)):
        return "time"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(v, (dict, list)):
        return "json"
    return "string"


def _jsonable(v) -> tuple[Any, str]:
    """(a JSON value, its kind) of a version column's maximum, to bind it again in read()."""
    if isinstance(v, bool) or v is None:
        return v, "plain"
    if isinstance(v, int):
        return v, "int"
    if isinstance(v, float):
        return v, "float"
    if isinstance(v, decimal.Decimal):
        return str(v), "decimal"
    if isinstance(v, datetime.datetime):
        return v.isoformat(), "datetime"
    if isinstance(v, datetime.date):
        return v.isoformat(), "date"
    if isinstance(v, datetime.time):
        return v.isoformat(), "timeofday"
    if isinstance(v, datetime.timedelta):
        return v.total_seconds(), "timedelta"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex(), "bytes"
    return str(v), "str"


def _from_jsonable(v, kind: str):
    return {"int": int, "float": float, "decimal": decimal.Decimal, "datetime": datetime.datetime.fromisoformat,
            "date": datetime.date.fromisoformat, "timeofday": datetime.time.fromisoformat,
            "timedelta": lambda s: datetime.timedelta(seconds=s), "bytes": bytes.fromhex,
            }.get(kind, lambda x: x)(v)


class SqlSource(Source):
    kind = "sql"

    def __init__(self, url: str, query: str | None = None, table: str | None = None,
                 version_column: str | None = None, password_env: str | None = None,
                 password_file: str | None = None, password_secret: str | None = None,
                 batch_rows: int = 50_000, allow_type_changes: bool = False, **unknown: Any):
        # allow_type_changes: read by ExampleGen's check against its previous run's columns
        config = {k: v for k, v in dict(url=url, query=query, table=table, version_column=version_column,
                                        password_env=password_env, password_file=password_file,
                                        password_secret=password_secret, batch_rows=batch_rows).items()
                  if v is not None}
        check_no_inline_secrets({**config, **unknown}, "sql source")
        if unknown:
            raise InputDataError(f"sql source: unknown option(s) {sorted(unknown)}; expected url, query or table, "
                                 f"version_column, password_env/password_file/password_secret, batch_rows, "
                                 f"allow_type_changes")
        super().__init__(**config)
        if not isinstance(url, str) or "://" not in url:
            raise InputDataError(f"sql source: url {url!r}: expected a SQLAlchemy URL such as "
                                 f"mysql://user@host:3306/database or postgresql://user@host:5432/database")
        if bool(query) == bool(table):
            raise InputDataError("sql source: expected exactly one of query= (SQL text) or table= (a table name); "
                                 f"found {'both' if query else 'neither'}")
        if not isinstance(batch_rows, int) or batch_rows < 1:
            raise InputDataError(f"sql source: batch_rows {batch_rows!r}: expected a positive integer")
        self.query = query.strip().rstrip(";").strip() if query else None
        self.table = table
        self.version_column = version_column
        self.batch_rows = batch_rows
        scheme, _, rest = url.partition("://")
        base_scheme = scheme.split("+")[0].lower()
        self._drivername = _DRIVERS.get(scheme.lower(), scheme)
        self._backend = "postgresql" if base_scheme == "postgres" else base_scheme
        path, _, qs = rest.partition("?")
        params = dict(p.partition("=")[::2] for p in qs.split("&") if p)
        check_no_inline_secrets(params, "sql source: the url's query")
        self._refs = {k: params.pop(k) for k in _REFS if k in params}
        self._refs.update({k: config[k] for k in _REFS if k in config})
        self._url = f"{self._drivername}://{path}" + ("?" + "&".join(f"{k}={v}" for k, v in params.items())
                                                    if params else "")
        from sqlalchemy.engine import make_url
        try:
            u = make_url(self._url)
        except Exception as e:
            raise InputDataError(f"sql source: url {url!r} is not a SQLAlchemy URL: {e}") from None
        self._user, self._host, self._database = u.username, u.host, u.database
        self._port = u.port or _DEFAULT_PORT.get(self._backend)
        where = f"{self._backend}://{self._user + '@' if self._user else ''}"
        if self._host:
            where += f"{self._host}:{self._port}" if self._port else self._host
        self.where = where + f"/{self._database or ''}"

    # -- connection ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"sql {self.where} " + (f"table {self.table}" if self.table else "query")

    def _engine(self):
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool
        try:
            password = resolve_password(self._refs, f"sql source {self.where}")
        except ValueError as e:
            raise InputDataError(str(e)) from None
        self._password = password
        u = make_url(self._url)
        if password:
            u = u.set(password=password)
        args = {}
        if self._backend in ("mysql", "mariadb", "postgresql"):
            args["connect_timeout"] = _CONNECT_TIMEOUT_S
        try:
            return sa.create_engine(u, poolclass=NullPool, connect_args=args)
        except ImportError as e:
            raise InputDataError(f"sql source {self.where}: the driver for {self._drivername} is not installed "
                                 f"({e}); install it where the pipeline runs") from None
        except Exception as e:
            raise InputDataError(f"sql source {self.where}: cannot use the URL: {self._scrub(e)}") from None

    def _scrub(self, e) -> str:
        """The database's message in one line, without the password."""
        text = str(getattr(e, "orig", None) or e).strip()
        text = re.split(r"\n\(Background on this error", text)[0]
        # PostgreSQL's LINE 1: ... and its caret line say where; the message and HINT say what
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
        text = "; ".join(ln for ln in lines if not ln.startswith("LINE ")) or text
        pw = getattr(self, "_password", "")
        return text.replace(pw, "***") if pw else text

    def _connect(self):
        engine = self._engine()
        try:
            conn = engine.connect()
        except Exception as e:
            engine.dispose()
            hostport = f"{self._host}:{self._port}" if self._host else (self._database or "?")
            raise InputDataError(
                f"sql source: cannot connect to the {self._backend} database {self._database!r} at {hostport}"
                f"{' as user ' + self._user if self._user else ''}: {self._scrub(e)}; expected a {self._backend} "
                f"server there that this user can log in to") from None
        if self._backend in ("mysql", "mariadb", "postgresql"):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return engine, conn

    def _failed(self, e, what: str) -> InputDataError:
        sql = self.query if self.query else f"table {self.table}"
        return InputDataError(f"sql source {self.where}: {what} failed: {self._scrub(e)} (query: {sql[:500]})")

    # -- SQL text ----------------------------------------------------------------------------
    def _quote(self, conn, name: str) -> str:
        prep = conn.dialect.identifier_preparer
        return prep.quote(name)

    def _base(self, conn) -> str:
        if self.query:
            # sa.text() would take ' :name' in the user's SQL for a bind parameter
            return re.sub(r"(?<!\\):", r"\\:", self.query)
        return "SELECT * FROM " + ".".join(self._quote(conn, p) for p in self.table.split("."))

    def _execute(self, conn, sql: str, params=None, what="the query"):
        import sqlalchemy as sa
        try:
            return conn.execute(sa.text(sql), params or {})
        except sa.exc.StatementError as e:  # the DBAPI's errors, and SQLAlchemy's own about a statement
            if getattr(e, "connection_invalidated", False) or isinstance(e, sa.exc.OperationalError) \
                    and self._is_lost(e):
                raise InputDataError(f"sql source: lost the connection to {self.where} during {what}: "
                                     f"{self._scrub(e)}") from None
            raise self._failed(e, what) from None

    @staticmethod
    def _is_lost(e) -> bool:
        msg = str(e).lower()
        return any(w in msg for w in ("lost connection", "gone away", "server closed the connection",
                                      "connection refused", "terminating connection", "consuming input failed"))

    # -- columns -----------------------------------------------------------------------------
    def _columns(self, conn, base: str) -> list[tuple[str, str]]:
        """[(name, kind)] of the result, from the driver's description; kinds the driver does
        not tell are found from the first non-NULL value of that column."""
        res = self._execute(conn, f"SELECT * FROM ({base}) AS tfpipe_q WHERE 1 = 0", what="the query")
        desc = list(res.cursor.description or [])
        # PyMySQL: a string-or-blob column is binary when its charset is 63
        fields = getattr(getattr(res.cursor, "_result", None), "fields", None) or []
        binary = [getattr(f, "charsetnr", 0) == 63 for f in fields] or [False] * len(desc)
        res.close()
        names = [d[0] for d in desc]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputDataError(f"sql source {self.where}: the result has more than one column named "
                                 f"{', '.join(dup)}; expected distinct column names (use AS in the query)")
        kinds = []
        for d, is_binary in zip(desc, binary):
            if self._backend in ("mysql", "mariadb"):
                kind = _MYSQL_TYPES.get(d[1])
                kind = "binary" if kind == "text" and is_binary else kind
            elif self._backend == "postgresql":
                kind = _PG_TYPES.get(d[1])
            else:
                kind = None
            kinds.append(kind)
        for i, (name, kind) in enumerate(zip(names, kinds)):
            if kind is None:
                col = self._quote(conn, name)
                r = self._execute(conn, f"SELECT {col} FROM ({base}) AS tfpipe_q WHERE {col} IS NOT NULL",
                                  what="the query")
                row = r.first()
                kinds[i] = _kind_of_value(row[0]) if row is not None else "string"
        return list(zip(names, kinds))

    # -- snapshot ----------------------------------------------------------------------------
    def _checksum_sql(self, conn, base: str, names: list[str]) -> str | None:
        cols = [self._quote(conn, n) for n in names]
        # a sum over the rows of a hash of each row: any changed, added or removed row changes
        # it; the cheapest hashes each database has (an MD5 costs twice a CRC32 in MariaDB)
        if self._backend in ("mysql", "mariadb"):
            row = ", ".join(f"IFNULL({c}, 0x00)" for c in cols)  # NULL told apart from ''
            return f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS(CHAR(31), {row}))) FROM ({base}) AS tfpipe_q"
        if self._backend == "postgresql":
            return f"SELECT COUNT(*), SUM(hashtextextended(tfpipe_q::text, 0)) FROM ({base}) AS tfpipe_q"
        return None

    def _checksum(self, conn, base: str, names: list[str]) -> tuple[int, str]:
        sql = self._checksum_sql(conn, base, names)
        if sql is not None:
            n, h = self._execute(conn, sql, what="the checksum query").one()
            return int(n), str(h or 0)
        # other databases: computed here, over the rows streamed (a full read)
        total, n = 0, 0
        res = self._execute(conn.execution_options(stream_results=True, yield_per=self.batch_rows), base)
        for part in res.partitions():
            for row in part:
                digest = hashlib.md5(repr(tuple(row)).encode()).digest()
                total += int.from_bytes(digest[:8], "big") >> 4
                n += 1
        return n, str(total)

    def _version(self, conn, base: str, names: list[str]) -> tuple[int, Any]:
        vc = self.version_column
        if vc not in names:
            raise InputDataError(f"sql source {self.where}: version_column {vc!r} is not a column of the result; "
                                 f"columns found: {names}")
        n, mx = self._execute(conn, f"SELECT COUNT(*), MAX({self._quote(conn, vc)}) FROM ({base}) AS tfpipe_q",
                              what="the version query").one()
        return int(n), mx

    def snapshot(self) -> dict:
        engine, conn = self._connect()
        try:
            with conn.begin():
                base = self._base(conn)
                columns = self._columns(conn, base)
                names = [n for n, _ in columns]
                dv: dict[str, Any] = {"database": self.where}
                dv["query" if self.query else "table"] = self.query or self.table
                dv["columns"] = {n: _ARROW[k] for n, k in columns}
                if self.version_column:
                    rows, mx = self._version(conn, base, names)
                    dv["version_column"] = self.version_column
                    dv["max_version"], dv["max_version_type"] = _jsonable(mx)
                else:
                    rows, checksum = self._checksum(conn, base, names)
                    dv["checksum"] = checksum
                dv["rows"] = rows
        finally:
            conn.close()
            engine.dispose()
        what = f"the query {self.query[:200]!r}" if self.query else f"table {self.table}"
        if rows == 0:
            raise InputDataError(f"sql source {self.where}: {what} returned no rows; expected at least one row")
        if self.version_column and dv["max_version"] is None:
            raise InputDataError(f"sql source {self.where}: version_column {self.version_column!r} of {what} is "
                                 f"NULL on every row; expected a value that grows as rows are added")
        ident = {k: v for k, v in dv.items() if k != "database"}
        fp = "sql:" + hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
        return {"fingerprint": fp, "data_version": dv, "reproducible": bool(self.version_column)}

    # -- read --------------------------------------------------------------------------------
    def read(self, snapshot: dict) -> Iterator[Any]:
        import pyarrow as pa
        import sqlalchemy as sa
        dv = snapshot.get("data_version") or {}
        engine, conn = self._connect()
        try:
            with conn.begin():
                base = self._base(conn)
                columns = self._columns(conn, base)
                self._check_columns(dv, columns)
                names = [n for n, _ in columns]
                sql, params = base, {}
                if self.version_column:
                    mx = _from_jsonable(dv.get("max_version"), dv.get("max_version_type", "plain"))
                    vc = self._quote(conn, self.version_column)
                    sql = f"SELECT * FROM ({base}) AS tfpipe_q WHERE {vc} <= :tfpipe_max_version"
                    params = {"tfpipe_max_version": mx}
                    n, _ = self._execute(conn, f"SELECT COUNT(*), 0 FROM ({sql}) AS tfpipe_v", params,
                                         what="the version query").one()
                    if "rows" in dv and int(n) != int(dv["rows"]):
                        raise InputDataError(
                            f"sql source {self.where}: {dv['rows']:,} rows had {self.version_column} <= "
                            f"{dv.get('max_version')} when the snapshot was taken, {int(n):,} now; expected the "
                            f"same rows (rows were added with an old {self.version_column}, or deleted)")
                elif "checksum" in dv:
                    n, checksum = self._checksum(conn, base, names)
                    if checksum != dv["checksum"] or n != dv.get("rows", n):
                        raise InputDataError(
                            f"sql source {self.where}: the data changed since its snapshot ({dv.get('rows')} rows, "
                            f"checksum {dv['checksum']}; now {n} rows, checksum {checksum}); a source without "
                            f"version_column can be read only as it is now, not as it was")
                schema = pa.schema([pa.field(n, pa.type_for_alias(_ARROW[k])) for n, k in columns])
                convs = [_converter(k) for _, k in columns]
                lines = self._lines_sql(conn, columns, sql)
                stream = conn.execution_options(stream_results=True, yield_per=self.batch_rows)
                res = self._execute(stream, lines or sql, params)
                seen = 0
                try:
                    for part in res.partitions(self.batch_rows):
                        yield (self._batch_of_lines(pa, schema, part, seen) if lines
                               else self._batch(pa, schema, convs, part, seen))
                        seen += len(part)
                except BaseException as e:
                    # an early stop or an error: drop the connection rather than drain the cursor
                    pending = getattr(getattr(res, "cursor", None), "_result", None)
                    if getattr(pending, "unbuffered_active", False):
                        pending.unbuffered_active = False  # PyMySQL would read the rest first
                    conn.invalidate()
                    if isinstance(e, sa.exc.DBAPIError):
                        raise InputDataError(f"sql source: reading from {self.where} failed after {seen:,} rows: "
                                             f"{self._scrub(e)}") from None
                    raise
        finally:
            conn.close()
            engine.dispose()

    def _lines_sql(self, conn, columns: list[tuple[str, str]], sql: str) -> str | None:
        """MariaDB/MySQL: the rows of ``sql`` as one CSV line each, rendered by the server
        (NULL an empty field, a string quoted, '' a quoted empty string), or None when a
        column's kind has no such rendering (binary, BIT). PyMySQL parses each field of a
        row in Python; one field per row is about five times faster to fetch, and Arrow's
        CSV reader parses the lines. The numbers are the text the server sends for them in
        either case, so the values are the same."""
        if self._backend not in ("mysql", "mariadb") or any(k not in _LINE_KINDS for _, k in columns):
            return None
        exprs = []
        for name, kind in columns:
            c = "tfpipe_r." + self._quote(conn, name)
            if kind in ("int64", "float64", "decimal"):
                exprs.append(f"COALESCE({c}, '')")
            else:
                text = f"REPLACE(CAST({c} AS CHAR), ' ', 'T')" if kind == "time" else f"CONVERT({c} USING utf8mb4)"
                exprs.append(f"IF({c} IS NULL, '', CONCAT('\"', REPLACE({text}, '\"', '\"\"'), '\"'))")
        return f"SELECT CONCAT_WS(',', {', '.join(exprs)}) FROM ({sql}) AS tfpipe_r"

    def _batch_of_lines(self, pa, schema, rows, seen: int):
        import pyarrow.csv as pacsv
        data = "".join(r[0] + "\n" for r in rows).encode("utf-8")  # an empty line is a row of NULLs
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(column_names=schema.names, block_size=max(len(data), 1 << 20)),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types=schema, null_values=[""], strings_can_be_null=True,
                                                     quoted_strings_can_be_null=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputDataError(f"sql source {self.where}: rows {seen + 1:,} to {seen + len(rows):,} of the result "
                                 f"do not fit their columns' types: {e}") from None
        table = table.combine_chunks()
        return pa.RecordBatch.from_arrays([table.column(i).chunk(0) if table.column(i).num_chunks
                                           else pa.array([], f.type) for i, f in enumerate(schema)], schema=schema)

    def _check_columns(self, dv: dict, columns: list[tuple[str, str]]) -> None:
        then = dv.get("columns")
        if not then:
            return
        now = {n: _ARROW[k] for n, k in columns}
        if set(then) != set(now):
            raise InputDataError(f"sql source {self.where}: the columns changed since the snapshot: expected "
                                 f"{list(then)}, found {list(now)}")
        for n, t in then.items():
            if now[n] != t:
                raise InputDataError(f"sql source {self.where}: column {n!r} was {t} when the snapshot was taken, "
                                     f"{now[n]} now; expected the same type (the column's type changed)")

    def _batch(self, pa, schema, convs, rows, seen: int):
        cols = list(zip(*rows)) if rows else [[] for _ in schema]
        arrays = []
        for i, (field, conv) in enumerate(zip(schema, convs)):
            values = cols[i]
            try:
                arrays.append(pa.array(conv(values) if conv else values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, UnicodeDecodeError, OverflowError):
                raise self._bad_value(pa, field, conv, values, seen) from None
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _bad_value(self, pa, field, conv, values, seen: int) -> InputDataError:
        for j, v in enumerate(values):
            try:
                pa.array(conv([v]) if conv else [v], type=field.type)
            except Exception:
                return InputDataError(
                    f"sql source {self.where}: row {seen + j + 1:,} of the result, column {field.name!r}: "
                    f"{str(v)[:100]!r} ({type(v).__name__}) is not a {field.type} like the column's other values")
        return InputDataError(f"sql source {self.where}: column {field.name!r} cannot be read as {field.type}")
