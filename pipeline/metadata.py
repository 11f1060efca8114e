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
from typing import Any, Iterable

from .artifacts import Artifact, artifact_class
from .state import State

__all__ = ["MetadataStore", "MetadataError", "connection_config"]

PIPELINE, RUN, NODE = "pipeline", "pipeline_run", "node"


class MetadataError(RuntimeError):
    pass


def _mlmd():
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    return metadata_store, metadata_store_pb2


def connection_config(metadata: str | dict):
    """A path means SQLite (created if missing); a dict may say
    ``{"mysql": {"host", "port", "database", "user", "password"}}`` or
    ``{"grpc": {"host", "port"}}`` (the ML Metadata service of a Kubeflow install)."""
    ms, pb = _mlmd()
    if isinstance(metadata, str):
        path = os.path.abspath(metadata)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cfg = pb.ConnectionConfig()
        cfg.sqlite.filename_uri = path
        cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return cfg
    if "mysql" in metadata:
        cfg = pb.ConnectionConfig()
        m = metadata["mysql"]
        cfg.mysql.host = m.get("host", "127.0.0.1")
        cfg.mysql.port = int(m.get("port", 3306))
        cfg.mysql.database = m["database"]
        cfg.mysql.user = m.get("user", "root")
        cfg.mysql.password = m.get("password", "")
        return cfg
    if "grpc" in metadata:
        cfg = pb.MetadataStoreClientConfig()
        cfg.host = metadata["grpc"].get("host", "metadata-grpc-service")
        cfg.port = int(metadata["grpc"].get("port", 8080))
        return cfg
    if "sqlite" in metadata:
        return connection_config(metadata["sqlite"])
    raise MetadataError(f"metadata connection: expected a SQLite path or a dict with 'mysql', 'grpc' "
                        f"or 'sqlite', found {metadata!r}")


def _is_transient(e: Exception) -> bool:
    msg = str(e).lower()
    return any(w in msg for w in ("locked", "busy", "aborted", "deadlock"))


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
        self.where = metadata if isinstance(metadata, str) else json.dumps(metadata)
        self.store = self._retry(lambda: ms.MetadataStore(connection_config(metadata)))
        self._type_ids: dict[tuple[str, str], int] = {}
        self._names: dict[tuple[str, int], str] = {}

    # -- plumbing -------------------------------------------------------------------
    def _retry(self, fn, attempts: int = 60):
        for i in range(attempts):
            try:
                return fn()
            except Exception as e:  # ml_metadata raises its own error classes
                if i == attempts - 1 or not _is_transient(e):
                    raise
                time.sleep(min(0.5, 0.01 * (2 ** min(i, 6))) * (0.5 + random.random()))

    def _set_props(self, target, props: dict[str, Any]) -> None:
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
            self._set_props(c.custom_properties, props or {})
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

    def update_context(self, ctx, props: dict[str, Any]) -> None:
        """Set ``props`` on the context, keeping properties another process (or a node's
        launcher) recorded since ``ctx`` was read: ML Metadata replaces them all on put."""
        fresh = self._retry(lambda: self.store.get_contexts_by_id([ctx.id])) if ctx.id else []
        for k, v in (fresh[0].custom_properties.items() if fresh else ()):
            if k not in props and k not in ctx.custom_properties:
                ctx.custom_properties[k].CopyFrom(v)
        self._set_props(ctx.custom_properties, props)
        self._retry(lambda: self.store.put_contexts([ctx]))

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
        p.state = getattr(pb.Artifact, a.state)
        self._set_props(p.properties, {k: v for k, v in a.properties.items()})
        self._set_props(p.custom_properties, a.custom)
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
        state = self.pb.Artifact.State.Name(p.state)
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

    # -- executions -------------------------------------------------------------------
    def new_execution(self, component: str, props: dict[str, Any], contexts, inputs: dict[str, list[Artifact]]):
        pb = self.pb
        e = pb.Execution(type_id=self.execution_type_id(component),
                         last_known_state=pb.Execution.RUNNING)
        self._set_props(e.custom_properties, props)
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
        self._set_props(execution.custom_properties, props)
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

    def executions_by_context(self, ctx) -> list:
        return list(self._retry(lambda: self.store.get_executions_by_context(ctx.id)))

    def executions(self, ids: Iterable[int]) -> list:
        return list(self._retry(lambda: self.store.get_executions_by_id(list(ids))))

    def find_executions(self, filter_query: str) -> list:
        opts = self._ms.ListOptions(filter_query=filter_query)
        return list(self._retry(lambda: self.store.get_executions(list_options=opts)))

    def events_of_executions(self, ids: Iterable[int]):
        return list(self._retry(lambda: self.store.get_events_by_execution_ids(list(ids))))

    def events_of_artifacts(self, ids: Iterable[int]):
        return list(self._retry(lambda: self.store.get_events_by_artifact_ids(list(ids))))

    def io_of(self, execution_id: int) -> tuple[dict[str, list[Artifact]], dict[str, list[Artifact]]]:
        """(inputs, outputs) of one execution, keyed by argument name."""
        evs = self.events_of_executions([execution_id])
        arts = {a.id: a for a in self.get_artifacts(sorted({e.artifact_id for e in evs}))}
        ins: dict[str, list] = {}
        outs: dict[str, list] = {}
        for e in sorted(evs, key=lambda e: (e.path.steps[1].index if len(e.path.steps) > 1 else 0)):
            key = e.path.steps[0].key if e.path.steps else ""
            side = ins if e.type in (self.pb.Event.INPUT, self.pb.Event.DECLARED_INPUT) else outs
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
