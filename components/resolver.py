"""Resolver: pick existing artifacts of earlier runs of this pipeline from ML Metadata.

    latest = Resolver(strategy="latest_blessed_model", model_type=Model,
                      id="latest_blessed_model_resolver")
    Evaluator(..., baseline_model=latest.outputs.model)

Strategies (as in TFX):
- ``latest_artifact``: the ``n`` newest artifacts of ``artifact_type`` (produced by node
  ``producer``, or by any node of the pipeline).
- ``latest_blessed_model``: the newest Model whose ModelBlessing (from an Evaluator of
  this pipeline) says blessed. ``candidate=trainer.outputs.model`` (optional) excludes
  the model being evaluated in this run, so an unchanged re-run finds no baseline (as in
  the run that blessed it) and every downstream node is served from cache.
- ``span_range``: ExampleGen Examples whose span lies in ``span_range=[lo, hi]`` (the
  newest version of each span), oldest span first.

A Resolver has no executor: the launcher calls the resolver function at run time, under
every orchestrator, records its execution COMPLETE with OUTPUT events on the existing
artifacts and never serves it from cache. Finding nothing is not an error: a downstream
optional input then receives ``None``.
"""
from __future__ import annotations

import os
import re

from tfpipe import Examples, Input, Model, component
from tfpipe.artifacts import Artifact
from tfpipe.state import ArtifactState

__all__ = ["Resolver", "ResolverSpec", "STRATEGIES", "ResolverDefinitionError"]

STRATEGIES = ("latest_artifact", "latest_blessed_model", "span_range")


class ResolverDefinitionError(ValueError):
    """A Resolver was declared with an unknown strategy or missing arguments."""


def _exists(a: Artifact) -> bool:
    return a.state == ArtifactState.LIVE and os.path.exists(a.uri)


def _latest_artifact(query, params, inputs):
    found = [a for a, _, _ in query.outputs(type_name=params["type_name"], node_id=params["producer"] or None)]
    return [a for a in found if _exists(a)][: params["n"]]


def _latest_blessed_model(query, params, inputs):
    exclude = {a.id for a in inputs.get("candidate", [])}
    models: dict[int, Artifact] = {}
    for blessing, execution, _ in query.outputs(type_name="ModelBlessing"):
        if not blessing.blessed:
            continue
        ins, _ = query.io_of(execution)
        for m in ins.get("model", []):
            if m.type_name == params["type_name"] and m.id not in exclude and _exists(m):
                models[m.id] = m
    return [models[i] for i in sorted(models, reverse=True)][: params["n"]]


def _span_range(query, params, inputs):
    lo, hi = params["span_range"]
    best: dict[int, Artifact] = {}
    for a, _, _ in query.outputs(type_name=params["type_name"], node_id=params["producer"] or None):
        if a.span is None or not (lo <= a.span <= hi) or not _exists(a):
            continue
        cur = best.get(a.span)
        if cur is None or ((a.version or 0), a.id) > ((cur.version or 0), cur.id):
            best[a.span] = a
    return [best[s] for s in sorted(best)]


_FNS = {"latest_artifact": _latest_artifact, "latest_blessed_model": _latest_blessed_model,
        "span_range": _span_range}


def resolve(query, pipeline_name: str, params: dict, inputs: dict) -> dict:
    found = _FNS[params["strategy"]](query, params, inputs)
    return {params["output_key"]: found}


@component(name="Resolver", resolver=resolve)
def ResolverSpec(strategy: str, type_name: str, output_key: str, producer: str = "", n: int = 1,
                 span_range: list = (), candidate: Input[Model] | None = None) -> None:
    """Interface only: ``resolve`` does the work (see the module docstring)."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def Resolver(strategy: str, *, id: str | None = None, model_type: type[Artifact] = Model,
             artifact_type: type[Artifact] | None = None, producer: str = "", n: int = 1,
             span_range: list | tuple | None = None, output_key: str | None = None, candidate=None):
    """A Resolver node; its output is ``node.outputs.<output_key>`` (``model`` for
    ``latest_blessed_model``, ``examples`` for ``span_range``, the artifact type in
    snake_case for ``latest_artifact``)."""
    if strategy not in STRATEGIES:
        raise ResolverDefinitionError(f"Resolver(id={id!r}): unknown strategy {strategy!r}; expected one of "
                                      f"{list(STRATEGIES)}")
    if n < 1:
        raise ResolverDefinitionError(f"Resolver(id={id!r}): n must be at least 1, found {n}")
    kw: dict = {}
    if strategy == "latest_blessed_model":
        atype = model_type
        if candidate is not None:
            kw["candidate"] = candidate
    elif strategy == "latest_artifact":
        if artifact_type is None:
            raise ResolverDefinitionError(f"Resolver(id={id!r}): strategy 'latest_artifact' needs "
                                          f"artifact_type=<an Artifact class, e.g. Model>")
        atype = artifact_type
    else:
        atype = artifact_type or Examples
        if not span_range or len(span_range) != 2 or span_range[0] > span_range[1]:
            raise ResolverDefinitionError(f"Resolver(id={id!r}): strategy 'span_range' needs "
                                          f"span_range=[lowest, highest], found {span_range!r}")
        kw["span_range"] = [int(span_range[0]), int(span_range[1])]
    if not (isinstance(atype, type) and issubclass(atype, Artifact)):
        raise ResolverDefinitionError(f"Resolver(id={id!r}): expected an Artifact class, found {atype!r}")
    if candidate is not None and strategy != "latest_blessed_model":
        raise ResolverDefinitionError(f"Resolver(id={id!r}): candidate= is only for 'latest_blessed_model'")
    key = output_key or {"latest_blessed_model": "model", "span_range": "examples"}.get(
        strategy, _snake(atype.TYPE_NAME))
    return ResolverSpec(strategy=strategy, type_name=atype.TYPE_NAME, output_key=key, producer=producer,
                        n=n, id=id or f"{strategy}_resolver", output_types={key: atype}, **kw)
