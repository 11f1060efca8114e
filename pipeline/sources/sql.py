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
CSV line the server renders, ending with the row's CRC32 when the snapshot is a checksum,
read off the socket and parsed by Arrow: see ``_lines_sql`` and ``_mysql_lines``). The
rows read are checked against the snapshot: a version column's row count, and from
MariaDB/MySQL the sum of the lines' CRC32s, counted as they are read (the last batch is
held back until the check passes); from other databases the checksum is computed again in
the read's transaction before the rows are read. Arrow types from the columns' SQL
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
from collections import deque
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


def _mysql_lines(res, batch_rows: int):
    """The rows of a one-column PyMySQL result being streamed (``_lines_sql``), as lists of at
    most ``batch_rows`` lines (bytes), read straight off the connection's socket: PyMySQL
    makes a packet object, two reads and a decode of every row, which costs most of a
    1M-row read; here a row is a slice of the bytes received. None when ``res`` is not
    such a result (another driver, a PyMySQL without these internals, a connection
    charset other than UTF-8): the caller then fetches through the driver. The end of
    the rows (EOF packet), an error packet and a lost connection leave the connection as
    PyMySQL itself would."""
    result = getattr(getattr(res, "cursor", None), "_result", None)
    raw = getattr(result, "connection", None)
    rfile = getattr(raw, "_rfile", None)
    if not (getattr(result, "unbuffered_active", False) and getattr(result, "field_count", 0) == 1
            and rfile is not None and hasattr(rfile, "read1") and isinstance(getattr(raw, "_next_seq_id", None), int)
            and str(getattr(raw, "encoding", "")).replace("-", "").lower() in ("utf8", "utf8mb4", "utf8mb3")
            and callable(getattr(result, "_check_packet_is_eof", None)) and callable(getattr(raw, "_force_close", None))
            and hasattr(raw, "_read_timeout")
            and isinstance(getattr(getattr(res, "cursor_strategy", None), "_rowbuffer", None), deque)):
        return None
    # the rows SQLAlchemy fetched already (it fetches the first when the result is made)
    fetched = res.cursor_strategy._rowbuffer
    first = [b"" if r[0] is None else r[0].encode("utf-8") for r in fetched]
    fetched.clear()
    return _mysql_line_batches(result, raw, rfile, batch_rows, first)


def _mysql_line_batches(result, raw, rfile, batch_rows: int, first: list[bytes]):
    from pymysql import err
    from pymysql.protocol import MysqlPacket
    if getattr(raw, "_sock", None) is not None:
        raw._sock.settimeout(raw._read_timeout)
        if hasattr(raw, "_current_timeout"):
            raw._current_timeout = raw._read_timeout
    buf, pos, seq = b"", 0, raw._next_seq_id
    lines: list[bytes] = first

    def lost(e=None):
        result.unbuffered_active = False
        raw._force_close()
        return err.OperationalError(2013, "Lost connection to MySQL server during query" + (f" ({e})" if e else ""))

    def fill(need: int):
        """buf[pos:] holds at least ``need`` bytes."""
        nonlocal buf, pos
        while len(buf) - pos < need:
            try:
                chunk = rfile.read1(1 << 20)
            except OSError as e:
                raise lost(e) from None
            if not chunk:
                raise lost()
            buf, pos = buf[pos:] + chunk, 0

    def packet() -> bytes:
        """The next packet's payload (its sequence number checked), ``pos`` past it."""
        nonlocal pos, seq
        fill(4)
        ln = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if buf[pos + 3] != seq:
            result.unbuffered_active = False
            raw._force_close()
            raise err.InternalError(f"Packet sequence number wrong - got {buf[pos + 3]} expected {seq}")
        fill(4 + ln)
        seq = (seq + 1) & 255
        payload, pos = buf[pos + 4:pos + 4 + ln], pos + 4 + ln
        return payload

    left = batch_rows - len(lines)
    while True:
        # the hot path: whole packets in the buffer, each a row of one value shorter than 251 bytes
        end = len(buf)
        while pos + 4 <= end:
            ln = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            nxt = pos + 4 + ln
            if nxt > end or not ln or buf[pos + 4] > 250 or buf[pos + 3] != seq:
                break
            lines.append(buf[pos + 5:nxt])
            pos, seq = nxt, (seq + 1) & 255
            left -= 1
            if left <= 0:
                yield lines
                lines, left = [], batch_rows
        # anything else: read more, check the sequence, join a packet of 16 MB and what follows it
        part = payload = packet()
        while len(part) == 0xFFFFFF:
            part = packet()
            payload += part
        if not payload:
            result.unbuffered_active = False
            raw._force_close()
            raise err.InternalError("an empty packet among the rows")
        head = payload[0]
        if head < 251:
            lines.append(payload[1:])
        elif head == 0xFE and len(payload) < 9:  # EOF: the rows end
            raw._next_seq_id = seq
            result._check_packet_is_eof(MysqlPacket(payload, raw.encoding))
            result.unbuffered_active = False
            result.connection = None
            result.rows = None
            if pos != len(buf):  # bytes after the end: not a state PyMySQL can go on from
                raw._force_close()
                raise err.InternalError(f"{len(buf) - pos} bytes after the end of the rows")
            if lines:
                yield lines
            return
        elif head == 0xFF:  # an error (a killed query, a timeout): PyMySQL's own exception
            raw._next_seq_id = seq
            result.unbuffered_active = False
            MysqlPacket(payload, raw.encoding).raise_for_error()
        elif head == 0xFB:  # NULL: CONCAT_WS is never NULL, but as PyMySQL would
            lines.append(b"")
        else:
            lines.append(payload[{0xFC: 3, 0xFD: 4, 0xFE: 9}[head]:])
        left -= 1
        if left <= 0:
            yield lines
            lines, left = [], batch_rows


def _mysql_row_crc(cols: list[str]) -> str:
    """MariaDB/MySQL: a row's CRC32, the term of the checksum (the same expression in the
    snapshot's SUM and on each line read, so the reader's sum equals the snapshot's)."""
    return "CRC32(CONCAT_WS(CHAR(31), " + ", ".join(f"IFNULL({c}, 0x00)" for c in cols) + "))"  # NULL is not ''


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
            return f"SELECT COUNT(*), SUM({_mysql_row_crc(cols)}) FROM ({base}) AS tfpipe_q"
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
                # what the rows read are checked against at the end (before the last batch is
                # given out): their count (version column), or their count and checksum summed
                # from each row's CRC32 the server appends to its line (MariaDB/MySQL)
                verify = None
                if self.version_column:
                    mx = _from_jsonable(dv.get("max_version"), dv.get("max_version_type", "plain"))
                    vc = self._quote(conn, self.version_column)
                    sql = f"SELECT * FROM ({base}) AS tfpipe_q WHERE {vc} <= :tfpipe_max_version"
                    params = {"tfpipe_max_version": mx}
                    verify = "rows" if "rows" in dv else None
                checksum = "checksum" in dv and not self.version_column
                lines = self._lines_sql(conn, columns, sql, crc=checksum)
                if checksum and lines:
                    verify = "checksum"
                elif checksum:
                    # no line rendering (PostgreSQL, binary columns, other databases): the
                    # checksum again, in this transaction, before the rows are read
                    n, now = self._checksum(conn, base, names)
                    self._check_checksum(dv, n, now)
                schema = pa.schema([pa.field(n, pa.type_for_alias(_ARROW[k])) for n, k in columns])
                convs = [_converter(k) for _, k in columns]
                stream = conn.execution_options(stream_results=True, yield_per=self.batch_rows)
                res = self._execute(stream, lines or sql, params)
                seen, crc, held = 0, 0, None
                try:
                    parts = _mysql_lines(res, self.batch_rows) if lines else None
                    if parts is None:
                        parts = res.partitions(self.batch_rows)
                    for part in parts:
                        if lines:
                            batch, part_crc = self._batch_of_lines(pa, schema, part, seen, checksum)
                            crc += part_crc
                        else:
                            batch = self._batch(pa, schema, convs, part, seen)
                        seen += len(part)
                        if held is not None:
                            yield held
                        held = batch
                    if verify == "rows" and seen != int(dv["rows"]):
                        raise InputDataError(
                            f"sql source {self.where}: {dv['rows']:,} rows had {self.version_column} <= "
                            f"{dv.get('max_version')} when the snapshot was taken, {seen:,} now; expected the "
                            f"same rows (rows were added with an old {self.version_column}, or deleted)")
                    if verify == "checksum":
                        self._check_checksum(dv, seen, str(crc))
                    if held is not None:
                        yield held
                except BaseException as e:
                    # an early stop or an error: drop the connection rather than drain the cursor
                    pending = getattr(getattr(res, "cursor", None), "_result", None)
                    if getattr(pending, "unbuffered_active", False):
                        pending.unbuffered_active = False  # PyMySQL would read the rest first
                    conn.invalidate()
                    if isinstance(e, sa.exc.DBAPIError) or type(e).__module__.startswith("pymysql."):
                        raise InputDataError(f"sql source: reading from {self.where} failed after {seen:,} rows: "
                                             f"{self._scrub(e)}") from None
                    raise
        finally:
            conn.close()
            engine.dispose()

    def _check_checksum(self, dv: dict, n: int, checksum: str) -> None:
        try:
            same = int(decimal.Decimal(checksum)) == int(decimal.Decimal(dv["checksum"]))
        except (ArithmeticError, ValueError, TypeError):  # the reader's own checksum, or another kind
            same = checksum == dv["checksum"]
        if not same or n != dv.get("rows", n):
            raise InputDataError(
                f"sql source {self.where}: the data changed since its snapshot ({dv.get('rows')} rows, "
                f"checksum {dv['checksum']}; now {n} rows, checksum {checksum}); a source without "
                f"version_column can be read only as it is now, not as it was")

    def _lines_sql(self, conn, columns: list[tuple[str, str]], sql: str, crc: bool = False) -> str | None:
        """MariaDB/MySQL: the rows of ``sql`` as one CSV line each, rendered by the server
        (NULL an empty field, a string quoted, '' a quoted empty string), or None when a
        column's kind has no such rendering (binary, BIT). PyMySQL parses each field of a
        row in Python; one field per row is about five times faster to fetch (and faster
        still through ``_mysql_lines``), and Arrow's CSV reader parses the lines. The
        numbers are the text the server sends for them in either case, so the values are
        the same. With ``crc``, each line ends with the row's CRC32 as the snapshot's
        checksum sums it (``_mysql_row_crc``), so the rows read are checked as they are read."""
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
        if crc:
            exprs.append(_mysql_row_crc(["tfpipe_r." + self._quote(conn, n) for n, _ in columns]))
        return f"SELECT CONCAT_WS(',', {', '.join(exprs)}) FROM ({sql}) AS tfpipe_r"

    def _batch_of_lines(self, pa, schema, rows, seen: int, crc: bool = False):
        """(a RecordBatch of the lines ``rows``, the sum of their CRC32s or 0)."""
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        if rows and isinstance(rows[0], bytes):  # from _mysql_lines
            data = b"\n".join(rows) + b"\n"
        else:
            data = "".join(r[0] + "\n" for r in rows).encode("utf-8")  # an empty line is a row of NULLs
        names, types = schema.names, schema
        if crc:
            names = names + ["\x00tfpipe_crc32"]
            types = {**{f.name: f.type for f in schema}, names[-1]: pa.int64()}
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(column_names=names, block_size=max(len(data), 1 << 20)),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                                     quoted_strings_can_be_null=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputDataError(f"sql source {self.where}: rows {seen + 1:,} to {seen + len(rows):,} of the result "
                                 f"do not fit their columns' types: {e}") from None
        table = table.combine_chunks()
        total = int(pc.sum(table.column(len(schema))).as_py() or 0) if crc else 0
        return pa.RecordBatch.from_arrays([table.column(i).chunk(0) if table.column(i).num_chunks
                                           else pa.array([], f.type) for i, f in enumerate(schema)],
                                          schema=schema), total

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
