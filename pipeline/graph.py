"""The Pipeline: a named DAG of nodes, checked when it is defined."""
from __future__ import annotations

import os
from typing import Iterable

from .component import Node
from .names import check_name

__all__ = ["Pipeline", "PipelineDefinitionError", "default_home"]


class PipelineDefinitionError(ValueError):
    pass


def default_home() -> str:
    """Where artifacts and the SQLite metadata store live unless a pipeline says otherwise:
    ``$TFPIPE_HOME`` or ``./.tfpipe`` under the working directory."""
    return os.environ.get("TFPIPE_HOME") or os.path.join(os.getcwd(), ".tfpipe")


class Pipeline:
    """A pipeline: ``name``, ``root`` (artifact root), ``components``, ``metadata`` (the ML
    Metadata store: a SQLite path, a URL such as ``mysql://user@host:3306/db`` with the
    password by reference, or a dict; default ``$TFPIPE_METADATA``, else
    ``$TFPIPE_HOME/metadata.sqlite``), ``beam_pipeline_args`` and
    ``enable_cache``. Nodes upstream of the listed components are added automatically."""

    def __init__(self, name: str, components: Iterable[Node], root: str | None = None,
                 metadata: str | dict | None = None, beam_pipeline_args: list[str] | None = None,
                 enable_cache: bool = True, settings: dict | None = None):
        check_name("pipeline name", name, PipelineDefinitionError)
        self.name = name
        home = default_home()
        self.root = root or os.path.join(home, "artifacts", name)
        # a team's shared store ($TFPIPE_METADATA, e.g. mysql://user@host:3306/db) unless the
        # pipeline names one; else the SQLite file under TFPIPE_HOME
        self.metadata = metadata or os.environ.get("TFPIPE_METADATA") or os.path.join(home, "metadata.sqlite")
        self.beam_pipeline_args = list(beam_pipeline_args or [])
        self.enable_cache = enable_cache
        self.settings = dict(settings or {})  # orchestrator settings: retries, timeouts, ...
        self.nodes = self._toposort(list(components))

    @staticmethod
    def _toposort(components: list[Node]) -> list[Node]:
        # collect every node reachable upstream
        by_id: dict[str, Node] = {}
        stack = list(components)
        while stack:
            n = stack.pop()
            if not isinstance(n, Node):
                raise PipelineDefinitionError(
                    f"pipeline components must be component nodes, found {type(n).__name__} {n!r}")
            other = by_id.get(n.id)
            if other is not None and other is not n:
                raise PipelineDefinitionError(
                    f"two nodes share the id {n.id!r} ({other.spec.name} and {n.spec.name}); "
                    f"give one an explicit id=...")
            if other is None:
                by_id[n.id] = n
                stack.extend(n.upstream)
        # Kahn's algorithm, stable in the order the user listed nodes
        order_hint = {id(n): i for i, n in enumerate(components)}
        indeg = {nid: 0 for nid in by_id}
        children: dict[str, list[str]] = {nid: [] for nid in by_id}
        for n in by_id.values():
            for u in n.upstream:
                indeg[n.id] += 1
                children[u.id].append(n.id)
        ready = sorted([nid for nid, d in indeg.items() if d == 0],
                       key=lambda i: order_hint.get(id(by_id[i]), 1 << 30))
        out: list[Node] = []
        while ready:
            nid = ready.pop(0)
            out.append(by_id[nid])
            for c in children[nid]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(out) != len(by_id):
            stuck = sorted(nid for nid, d in indeg.items() if d > 0)
            raise PipelineDefinitionError(f"the pipeline has a cycle through nodes {stuck}")
        return out

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id!r} in pipeline {self.name}; nodes: {[n.id for n in self.nodes]}")

    def __repr__(self):
        return f"<Pipeline {self.name}: {[n.id for n in self.nodes]}>"
