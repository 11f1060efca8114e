"""The resolver hook: nodes that pick EXISTING artifacts from earlier runs instead of
running an executor.

A component declared with ``@component(name=..., resolver=fn)`` has no executor work.
The launcher calls ``fn(query, pipeline_name, params, inputs)`` where ``query`` is a
:class:`ResolverQuery` over this pipeline's record in ML Metadata (earlier runs only, by
default), ``params`` the node's parameters and ``inputs`` its resolved input artifacts
(channels of this run, if the resolver declares any). ``fn`` returns
``{output_key: [artifact, ...]}`` (an empty list or a missing key means "nothing found";
a downstream optional input then receives ``None``). The launcher records an execution
COMPLETE whose OUTPUT events point at those artifacts: nothing is created or copied, and
a resolver node is never served from cache.
"""
from __future__ import annotations

from .artifacts import Artifact
from .metadata import MetadataStore
from .state import SUCCEEDED, ArtifactState, EventKind

__all__ = ["ResolverQuery", "ResolverError"]


class ResolverError(RuntimeError):
    """A resolver returned something the node did not declare, or its query failed."""


class ResolverQuery:
    """Read-only questions about a pipeline's earlier executions, newest first."""

    def __init__(self, store: MetadataStore, pipeline: str, run_id: str | None = None):
        self.store = store
        self.pipeline = pipeline
        self.run_id = run_id
        self._execs = None

    def executions(self, include_current_run: bool = False) -> list:
        """Successful (COMPLETE or CACHED) executions of this pipeline, newest first."""
        if self._execs is None:
            ctx = self.store.context("pipeline", self.pipeline, create=False)
            execs = self.store.executions_by_context(ctx) if ctx is not None else []
            self._execs = sorted((e for e in execs if self.store.state_name(e) in SUCCEEDED),
                                 key=lambda e: e.id, reverse=True)
        if include_current_run or self.run_id is None:
            return list(self._execs)
        return [e for e in self._execs if self.store.props(e).get("run_id") != self.run_id]

    def component_of(self, execution) -> str:
        return self.store.type_name(execution.type_id, "e")

    def node_of(self, execution) -> str | None:
        return self.store.props(execution).get("node_id")

    def io_of(self, execution) -> tuple[dict[str, list[Artifact]], dict[str, list[Artifact]]]:
        return self.store.io_of(execution.id)

    def outputs(self, type_name: str | None = None, node_id: str | None = None,
                component: str | None = None, include_current_run: bool = False
                ) -> list[tuple[Artifact, object, str]]:
        """``(artifact, producing execution, output key)`` for every LIVE artifact output
        by a successful execution of this pipeline (filtered by artifact type, producing
        node id or component name), newest artifact first, each artifact once with the
        execution that first produced it (a CACHED execution re-publishes it)."""
        execs = {e.id: e for e in self.executions(include_current_run)
                 if "resolved" not in self.store.props(e)  # resolvers re-point, never produce
                 and (node_id is None or self.node_of(e) == node_id)
                 and (component is None or self.component_of(e) == component)}
        if not execs:
            return []
        if type_name:  # few queries: the artifacts of the type, then their OUTPUT events
            arts = {a.id: a for a in self.store.list_artifacts(type_name) if a.state == ArtifactState.LIVE}
            events = self.store.events_of_artifacts(sorted(arts), EventKind.OUTPUT) if arts else []
        else:
            events = self.store.events_of_executions(sorted(execs), EventKind.OUTPUT)
            arts = {a.id: a for a in self.store.get_artifacts(sorted({ev.artifact_id for ev in events}))
                    if a.state == ArtifactState.LIVE}
        first: dict[int, tuple[int, str]] = {}
        for ev in events:
            if ev.execution_id not in execs or ev.artifact_id not in arts:
                continue
            key = ev.path.steps[0].key if ev.path.steps else ""
            if ev.artifact_id not in first or ev.execution_id < first[ev.artifact_id][0]:
                first[ev.artifact_id] = (ev.execution_id, key)
        return [(arts[i], execs[first[i][0]], first[i][1]) for i in sorted(first, reverse=True)]
