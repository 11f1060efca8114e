"""ML Metadata: the record of every artifact, execution and run, with lineage.

A thin layer over ``ml_metadata``'s MetadataStore: types registered from the artifact
classes, contexts for pipeline / pipeline_run / node, executions with typed custom
properties, and INPUT/OUTPUT events keyed by the component's argument name.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Iterable, Iterator

from .artifacts import Artifact, artifact_class
from .credentials import PASSWORD_ENV, check_no_inline_secrets, resolve_password
from .state import ArtifactState, EventKind, State

__all__ = ["MetadataStore", "MetadataError", "connection_config", "parse_location", "describe_location"]

PIPELINE, RUN, NODE = "pipeline", "pipeline_run", "node"


class MetadataError(RuntimeError):
    """The store cannot be reached or used; the message names it and says what to do."""


def _mlmd():
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    return metadata_store, metadata_store_pb2


def parse_location(metadata: str | dict) -> dict:
    """A metadata location as one of ``{"sqlite": path}``, ``{"mysql": {...}}`` or
    ``{"grpc": {...}}``. Accepted: a SQLite file path; a URL (``sqlite:///path``,
    ``mysql://user@host:port/database``, ``grpc://host:port``; query parameters
    ``password_env``, ``password_file``, ``password_secret``); a dict of those shapes; or
    either as JSON text (what ``$TFPIPE_METADATA`` may hold). A MySQL URL without a password
    reference takes the password from ``$TFPIPE_METADATA_PASSWORD`` when it is set."""
    if isinstance(metadata, str):
        text = metadata.strip()
        if text.startswith("{"):
            try:
                metadata = json.loads(text)
            except json.JSONDecodeError as e:
                raise MetadataError(f"metadata location {text[:80]!r}: not JSON "
                                    f"({e.msg} at column {e.colno})") from None
        elif "://" in text:
            return _parse_url(text)
        else:
            return {"sqlite": text}
    if not isinstance(metadata, dict) or not ({"sqlite", "mysql", "grpc"} & set(metadata)):
        raise MetadataError(f"metadata location: expected a SQLite path, a URL (sqlite:///path, "
                            f"mysql://user@host:port/db, grpc://host:port) or a dict with 'sqlite', 'mysql' or "
                            f"'grpc', found {metadata!r}")
    return metadata


def _parse_url(url: str) -> dict:
    from urllib.parse import parse_qs, unquote, urlsplit
    u = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(u.query).items()}
    scheme = u.scheme.lower()
    if scheme == "sqlite":
        return {"sqlite": unquote(u.path if not u.netloc else u.netloc + u.path)}
    if scheme in ("mysql", "mariadb"):
        if u.password:
            check_no_inline_secrets(url, "metadata URL")
        db = u.path.lstrip("/")
        if not db:
            raise MetadataError(f"metadata URL {url}: expected mysql://user@host:port/DATABASE, found no database")
        cfg = {"host": u.hostname or "127.0.0.1", "port": u.port or 3306, "database": unquote(db),
               "user": unquote(u.username or "root")}
        refs = {k: query[k] for k in ("password_env", "password_file", "password_secret") if k in query}
        cfg.update(refs or ({"password_env": PASSWORD_ENV} if PASSWORD_ENV in os.environ else {}))
        return {"mysql": cfg}
    if scheme == "grpc":
        return {"grpc": {"host": u.hostname or "metadata-grpc-service", "port": u.port or 8080}}
    raise MetadataError(f"metadata URL {url}: expected sqlite://, mysql:// or grpc://, found {scheme}://")


def describe_location(metadata: str | dict) -> str:
    """A location as a user reads it in messages (no secret in it): a path or a URL."""
    try:
        loc = parse_location(metadata)
    except Exception:
        return str(metadata)[:200]
    if "sqlite" in loc:
        return os.path.abspath(loc["sqlite"])
    if "mysql" in loc:
        m = loc["mysql"]
        return f"mysql://{m.get('user', 'root')}@{m.get('host', '127.0.0.1')}:{m.get('port', 3306)}/{m['database']}"
    g = loc["grpc"]
    return f"grpc://{g.get('host', 'metadata-grpc-service')}:{g.get('port', 8080)}"


def connection_config(metadata: str | dict):
    """The ML Metadata connection config of a location (see ``parse_location``); the
    password of a MySQL store is resolved here, from its reference, never stored."""
    ms, pb = _mlmd()
    loc = parse_location(metadata)
    where = describe_location(loc)
    if "sqlite" in loc:
        path = os.path.abspath(loc["sqlite"])
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise MetadataError(f"ML Metadata store {path}: cannot create its folder ({e.strerror}); choose a "
                                f"writable place with --metadata or $TFPIPE_HOME") from None
        cfg = pb.ConnectionConfig()
        cfg.sqlite.filename_uri = path
        cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return cfg
    if "mysql" in loc:
        m = loc["mysql"]
        check_no_inline_secrets(m, f"metadata connection {where}")
        cfg = pb.ConnectionConfig()
        cfg.mysql.host = m.get("host", "127.0.0.1")
        cfg.mysql.port = int(m.get("port", 3306))
        cfg.mysql.database = m["database"]
        cfg.mysql.user = m.get("user", "root")
        cfg.mysql.password = resolve_password(m, f"metadata connection {where}")
        return cfg
    cfg = pb.MetadataStoreClientConfig()
    cfg.host = loc["grpc"].get("host", "metadata-grpc-service")
    cfg.port = int(loc["grpc"].get("port", 8080))
    return cfg


_RECONNECT_S = 5.0


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _is_connection_lost(e: Exception) -> bool:
    """Whether ``e`` says the server connection is gone, or left ML Metadata's client unusable:
    a client that lost its server mid-transaction answers every later call with "Transaction
    already open", and only a new client recovers (or, with the server down, reports it)."""
    msg = str(e).lower()
    return any(w in msg for w in ("gone away", "lost connection", "can't connect", "connection refused",
                                  "failed to connect", "errno 111", "mysql_real_connect failed",
                                  "was not initialized", "transaction already open"))


def _open_error(where: str, e: Exception) -> str:
    msg = str(e)
    low = msg.lower()
    if "file is not a database" in low or "malformed" in low:
        return (f"ML Metadata store {where} is not an ML Metadata SQLite database (corrupt, or another kind of "
                f"file); move it aside to start a new store, or pass --metadata / set $TFPIPE_HOME to another one")
    if "cannot connect sqlite3" in low or "unable to open" in low or "readonly" in low:
        return (f"ML Metadata store {where}: cannot open it for writing; check that its folder "
                f"{os.path.dirname(where)} exists and is writable, or pass --metadata / set $TFPIPE_HOME elsewhere")
    if _is_connection_lost(e) or "access denied" in low or "unknown database" in low:
        return (f"ML Metadata store {where}: cannot connect ({_first_line(e)}); check that the server runs, the "
                f"database exists and the user and password reference are right")
    return f"ML Metadata store {where}: cannot open it: {_first_line(e)}"


def _is_transient(e: Exception) -> bool:
    msg = str(e).lower()
    return any(w in msg for w in ("locked", "busy", "aborted", "deadlock"))


def _is_schema_race(e: Exception) -> bool:
    """Another process is creating a new store's schema at this moment (MySQL): retry."""
    msg = str(e).lower()
    return any(w in msg for w in ("subset of tables", "missing tables", "already exists", "please retry",
                                  "concurrent connection"))


def _value_to_py(v) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "struct_value":
        from google.protobuf import json_format
        return json_format.MessageToDict(v.struct_value)
    return getattr(v, kind)


class MetadataStore:
    """One connection to the ML Metadata store, with retries for concurrent SQLite writers."""

    def __init__(self, metadata: str | dict):
        ms, pb = _mlmd()
        self.pb = pb
        self._ms = ms
        self.where = describe_location(metadata)
        cfg = self._cfg = connection_config(metadata)
        try:
            self.store = self._open(ms, cfg)
        except MetadataError:
            raise
        except Exception as e:  # ml_metadata's own errors: say which store and what to do
            raise MetadataError(_open_error(self.where, e)) from None
        self._type_ids: dict[tuple[str, str], int] = {}
        self._names: dict[tuple[str, int], str] = {}

    @property
    def config(self):
        """The ML Metadata connection config this store was opened with. For MySQL it holds
        the password resolved from its reference: never log or record it."""
        return self._cfg

    # -- plumbing -------------------------------------------------------------------
    def _open(self, ms, cfg):
        for i in range(40):
            try:
                return self._retry(lambda: ms.MetadataStore(cfg))
            except MetadataError:
                raise
            except Exception as e:
                if i == 39 or not _is_schema_race(e):
                    raise
                time.sleep(0.1 + 0.2 * random.random())

    def _retry(self, fn, attempts: int = 60):
        """Call ``fn``, retrying what concurrent writers cause (a locked SQLite file, a
        deadlock). A lost server connection is re-established (a new client: ML Metadata's
        own one must not be used again after it lost its server) for a few seconds, then
        reported as a MetadataError naming the store."""
        for i in range(attempts):
            try:
                return fn()
            except Exception as e:  # ml_metadata raises its own error classes
                if _is_connection_lost(e):
                    if i == attempts - 1:  # a new client each time, and still no answer
                        raise MetadataError(f"ML Metadata store {self.where}: {attempts} calls in a row failed as if "
                                            f"the server connection were lost ({_first_line(e)}); nothing was "
                                            f"recorded after this point") from None
                    self._reconnect(e)
                    continue
                if i == attempts - 1 or not _is_transient(e):
                    raise
                time.sleep(min(0.5, 0.01 * (2 ** min(i, 6))) * (0.5 + random.random()))

    def _reconnect(self, cause: Exception) -> None:
        deadline = time.monotonic() + _RECONNECT_S
        self.store = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                self.store = self._ms.MetadataStore(self._cfg)
                return
            except Exception:
                continue
        raise MetadataError(f"ML Metadata store {self.where}: lost the connection to the server "
                            f"({_first_line(cause)}); is it running and reachable? Nothing was recorded "
                            f"after this point") from None

    def set_props(self, target, props: dict[str, Any]) -> None:
        """Write ``props`` into a proto's property map (``custom_properties``/``properties``),
        typed by their Python type; None values are skipped, lists and dicts stored as JSON."""
        for k, v in props.items():
            if v is None:
                continue
            val = target[k]
            if isinstance(v, bool):
                val.bool_value = v
            elif isinstance(v, int):
                val.int_value = v
            elif isinstance(v, float):
                val.double_value = v
            elif isinstance(v, str):
                val.string_value = v
            else:
                val.string_value = json.dumps(v, sort_keys=True)

    # -- types ----------------------------------------------------------------------
    def _prop_type(self, t: type):
        pb = self.pb
        return {int: pb.INT, float: pb.DOUBLE, str: pb.STRING, bool: pb.BOOLEAN}.get(t, pb.STRING)

    def artifact_type_id(self, klass: type[Artifact]) -> int:
        key = ("a", klass.TYPE_NAME)
        if key not in self._type_ids:
            t = self.pb.ArtifactType(name=klass.TYPE_NAME)
            for k, v in klass.property_types().items():
                t.properties[k] = self._prop_type(v)
            self._type_ids[key] = self._retry(
                lambda: self.store.put_artifact_type(t, can_add_fields=True))
        return self._type_ids[key]

    def execution_type_id(self, name: str) -> int:
        key = ("e", name)
        if key not in self._type_ids:
            self._type_ids[key] = self._retry(
                lambda: self.store.put_execution_type(self.pb.ExecutionType(name=name),
                                                      can_add_fields=True))
        return self._type_ids[key]

    def context_type_id(self, name: str) -> int:
        key = ("c", name)
        if key not in self._type_ids:
            self._type_ids[key] = self._retry(
                lambda: self.store.put_context_type(self.pb.ContextType(name=name), can_add_fields=True))
        return self._type_ids[key]

    # -- contexts ---------------------------------------------------------------------
    def context(self, type_name: str, name: str, props: dict[str, Any] | None = None,
                create: bool = True):
        def get():
            return self.store.get_context_by_type_and_name(type_name, name)
        c = self._retry(get)
        if c is None and create:
            c = self.pb.Context(type_id=self.context_type_id(type_name), name=name)
            self.set_props(c.custom_properties, props or {})
            try:
                [cid] = self.store.put_contexts([c])
                c.id = cid
            except Exception as e:
                if not (_is_transient(e) or "already exists" in str(e).lower()):
                    raise
                c = self._retry(get)
                if c is None:
                    raise
        return c

    def create_context(self, type_name: str, name: str, props: dict[str, Any]) -> bool:
        """Create a new context; False when one of that type and name exists already (the
        store's unique index decides, so of several processes creating it at once exactly
        one gets True)."""
        c = self.pb.Context(type_id=self.context_type_id(type_name), name=name)
        self.set_props(c.custom_properties, props)
        for _ in range(60):
            try:
                self.store.put_contexts([c])
                return True
            except Exception as e:
                if "already exists" in str(e).lower():
                    return False
                if not _is_transient(e):
                    raise
                time.sleep(0.05 + 0.1 * random.random())
        return self._retry(lambda: self.store.get_context_by_type_and_name(type_name, name)) is None

    def update_context(self, ctx, props: dict[str, Any]) -> None:
        """Set ``props`` on the context, keeping properties another process (or a node's
        launcher) recorded since ``ctx`` was read: ML Metadata replaces them all on put."""
        fresh = self._retry(lambda: self.store.get_contexts_by_id([ctx.id])) if ctx.id else []
        for k, v in (fresh[0].custom_properties.items() if fresh else ()):
            if k not in props and k not in ctx.custom_properties:
                ctx.custom_properties[k].CopyFrom(v)
        self.set_props(ctx.custom_properties, props)
        self._retry(lambda: self.store.put_contexts([ctx]))

    def put_contexts(self, contexts: list) -> None:
        """Write contexts as they are (ML Metadata replaces their properties; see
        ``update_context`` to keep what others recorded since)."""
        self._retry(lambda: self.store.put_contexts(contexts))

    def find_contexts(self, filter_query: str) -> list:
        """Contexts matching an ML Metadata filter query (raises on a store without filter
        support)."""
        opts = self._ms.ListOptions(filter_query=filter_query)
        return list(self._retry(lambda: self.store.get_contexts(list_options=opts)))

    def pipeline_contexts(self, pipeline: str, run_id: str, node_id: str, run_props=None):
        p = self.context(PIPELINE, pipeline)
        r = self.context(RUN, f"{pipeline}.{run_id}", {"pipeline": pipeline, "run_id": run_id, **(run_props or {})})
        n = self.context(NODE, f"{pipeline}.{node_id}", {"pipeline": pipeline, "node_id": node_id})
        return p, r, n

    # -- artifacts --------------------------------------------------------------------
    def to_proto(self, a: Artifact):
        pb = self.pb
        p = pb.Artifact(type_id=self.artifact_type_id(type(a)), uri=a.uri)
        if a.id is not None:
            p.id = a.id
        p.state = getattr(pb.Artifact, ArtifactState(a.state).value)
        self.set_props(p.properties, {k: v for k, v in a.properties.items()})
        self.set_props(p.custom_properties, a.custom)
        # lists/dicts were JSON-encoded above; the artifact keeps native values
        return p

    def from_proto(self, p, type_name: str | None = None) -> Artifact:
        if type_name is None:
            type_name = self.type_name(p.type_id, "a")
        klass = artifact_class(type_name)
        props = {}
        types = klass.property_types()
        for k, v in p.properties.items():
            val = _value_to_py(v)
            if types.get(k) in (list, dict) and isinstance(val, str):
                val = json.loads(val)
            props[k] = val
        custom = {k: _value_to_py(v) for k, v in p.custom_properties.items()}
        state = ArtifactState(self.pb.Artifact.State.Name(p.state))
        return klass(uri=p.uri, properties=props, id=p.id, state=state, custom=custom)

    def type_name(self, type_id: int, kind: str) -> str:
        key = (kind, type_id)
        if key not in self._names:
            getter = {"a": self.store.get_artifact_types_by_id,
                      "e": self.store.get_execution_types_by_id,
                      "c": self.store.get_context_types_by_id}[kind]
            [t] = self._retry(lambda: getter([type_id]))
            self._names[key] = t.name
        return self._names[key]

    def put_artifacts(self, arts: list[Artifact]) -> None:
        if not arts:
            return
        ids = self._retry(lambda: self.store.put_artifacts([self.to_proto(a) for a in arts]))
        for a, i in zip(arts, ids):
            a.id = i

    def get_artifacts(self, ids: Iterable[int]) -> list[Artifact]:
        ids = list(ids)
        if not ids:
            return []
        protos = self._retry(lambda: self.store.get_artifacts_by_id(ids))
        by_id = {p.id: self.from_proto(p) for p in protos}
        return [by_id[i] for i in ids if i in by_id]

    def list_artifacts(self, type_name: str | None = None) -> list[Artifact]:
        if type_name:
            artifact_class(type_name)
            protos = self._retry(lambda: self.store.get_artifacts_by_type(type_name))
        else:
            protos = self._retry(lambda: self.store.get_artifacts())
        return [self.from_proto(p) for p in protos]

    def artifacts_by_uri(self, uri: str) -> Iterator[Artifact]:
        """The artifacts recorded at ``uri``, read at once and converted one by one as the
        caller iterates."""
        protos = self._retry(lambda: self.store.get_artifacts_by_uri(uri))
        return (self.from_proto(p) for p in protos)

    def has_artifacts_at(self, uri: str) -> bool:
        """Whether any artifact is recorded at ``uri``."""
        return bool(self._retry(lambda: self.store.get_artifacts_by_uri(uri)))

    def artifact_protos_of_type(self, type_name: str) -> list:
        """The ML Metadata records of every artifact of a type, unconverted (for bulk reads
        that need a few fields of many artifacts)."""
        return list(self._retry(lambda: self.store.get_artifacts_by_type(type_name)))

    def has_artifact_type(self, name: str) -> bool:
        """Whether an artifact type of this name is registered in the store."""
        try:
            self.store.get_artifact_type(name)
            return True
        except Exception:
            return False

    # -- executions -------------------------------------------------------------------
    def new_execution(self, component: str, props: dict[str, Any], contexts, inputs: dict[str, list[Artifact]]):
        pb = self.pb
        e = pb.Execution(type_id=self.execution_type_id(component),
                         last_known_state=pb.Execution.RUNNING)
        self.set_props(e.custom_properties, props)
        pairs = []
        for key, arts in inputs.items():
            for i, a in enumerate(arts):
                ev = pb.Event(type=pb.Event.INPUT)
                ev.path.steps.add().key = key
                ev.path.steps.add().index = i
                pairs.append((self.to_proto(a), ev))
        eid, aids, _ = self._retry(lambda: self.store.put_execution(e, pairs, []))
        e.id = eid
        self._link(contexts, eid, aids)
        return e

    def _link(self, contexts, execution_id: int, artifact_ids) -> None:
        """Associate an execution (and attribute its artifacts) with contexts. Not through
        put_execution's ``contexts``: that upserts each context with the properties it held
        when this process read it, undoing what a parallel task recorded on the run since
        (e.g. its FAILED status)."""
        pb = self.pb
        ctx_ids = [c.id for c in contexts]
        self._retry(lambda: self.store.put_attributions_and_associations(
            [pb.Attribution(context_id=c, artifact_id=a) for c in ctx_ids for a in artifact_ids],
            [pb.Association(context_id=c, execution_id=execution_id) for c in ctx_ids]))

    def publish_execution(self, execution, state: str, props: dict[str, Any], contexts,
                          outputs: dict[str, list[Artifact]], new_events: bool = True) -> None:
        """Record the execution's final state with its outputs and OUTPUT events, in one
        transaction; then link them to the contexts."""
        pb = self.pb
        execution.last_known_state = getattr(pb.Execution, State(state).value)
        self.set_props(execution.custom_properties, props)
        pairs = []
        for key, arts in outputs.items():
            for i, a in enumerate(arts):
                if not new_events:  # the OUTPUT events exist already: update the artifacts only
                    pairs.append((self.to_proto(a), None))
                    continue
                ev = pb.Event(type=pb.Event.OUTPUT)
                ev.path.steps.add().key = key
                ev.path.steps.add().index = i
                pairs.append((self.to_proto(a), ev))
        _, ids, _ = self._retry(lambda: self.store.put_execution(
            execution, pairs, [], reuse_artifact_if_already_exist_by_external_id=False))
        flat = [a for arts in outputs.values() for a in arts]
        for a, i in zip(flat, ids):
            a.id = i
        self._link(contexts, execution.id, list(ids))

    def node_executions(self, pipeline: str, node_id: str, where=None, newest_by=lambda e: e.id) -> list:
        """A node's executions over every run of its pipeline, newest first by ``newest_by``
        (default: the id), those ``where(execution)`` accepts when given; [] when the node
        never ran."""
        ctx = self.context(NODE, f"{pipeline}.{node_id}", create=False)
        if ctx is None:
            return []
        execs = self.executions_by_context(ctx)
        if where is not None:
            execs = [e for e in execs if where(e)]
        return sorted(execs, key=newest_by, reverse=True)

    def executions_by_context(self, ctx) -> list:
        return list(self._retry(lambda: self.store.get_executions_by_context(ctx.id)))

    def executions(self, ids: Iterable[int]) -> list:
        return list(self._retry(lambda: self.store.get_executions_by_id(list(ids))))

    def all_executions(self) -> list:
        return list(self._retry(lambda: self.store.get_executions()))

    def executions_of_type(self, type_name: str) -> list:
        return list(self._retry(lambda: self.store.get_executions_by_type(type_name)))

    def find_executions(self, filter_query: str) -> list:
        opts = self._ms.ListOptions(filter_query=filter_query)
        return list(self._retry(lambda: self.store.get_executions(list_options=opts)))

    def _kinds(self, kind: EventKind | None):
        ev = self.pb.Event
        if kind is None:
            return None
        return {ev.INPUT, ev.DECLARED_INPUT} if EventKind(kind) == EventKind.INPUT else {ev.OUTPUT, ev.DECLARED_OUTPUT}

    def event_kind(self, event) -> EventKind:
        """The side of its execution an ML Metadata event puts its artifact on."""
        return EventKind.INPUT if event.type in self._kinds(EventKind.INPUT) else EventKind.OUTPUT

    def events_of_executions(self, ids: Iterable[int], kind: EventKind | None = None):
        """The events of executions ``ids``; only those of ``kind`` if given."""
        return self._of_kind(self._retry(lambda: self.store.get_events_by_execution_ids(list(ids))), kind)

    def events_of_artifacts(self, ids: Iterable[int], kind: EventKind | None = None):
        """The events of artifacts ``ids``; only those of ``kind`` if given."""
        return self._of_kind(self._retry(lambda: self.store.get_events_by_artifact_ids(list(ids))), kind)

    def _of_kind(self, events, kind: EventKind | None) -> list:
        types = self._kinds(kind)
        return [e for e in events if types is None or e.type in types]

    def io_of(self, execution_id: int) -> tuple[dict[str, list[Artifact]], dict[str, list[Artifact]]]:
        """(inputs, outputs) of one execution, keyed by argument name."""
        evs = self.events_of_executions([execution_id])
        arts = {a.id: a for a in self.get_artifacts(sorted({e.artifact_id for e in evs}))}
        ins: dict[str, list] = {}
        outs: dict[str, list] = {}
        for e in sorted(evs, key=lambda e: (e.path.steps[1].index if len(e.path.steps) > 1 else 0)):
            key = e.path.steps[0].key if e.path.steps else ""
            side = ins if self.event_kind(e) == EventKind.INPUT else outs
            if e.artifact_id in arts:
                side.setdefault(key, []).append(arts[e.artifact_id])
        return ins, outs

    def props(self, proto) -> dict[str, Any]:
        return {k: _value_to_py(v) for k, v in proto.custom_properties.items()}

    def state_name(self, execution) -> State:
        return State(self.pb.Execution.State.Name(execution.last_known_state))

    def contexts_of_type(self, type_name: str) -> list:
        return list(self._retry(lambda: self.store.get_contexts_by_type(type_name)))

    def contexts_of_execution(self, eid: int) -> list:
        return list(self._retry(lambda: self.store.get_contexts_by_execution(eid)))
