"""Pipeline parameters: node parameters an orchestrator exposes by name
(``<node>__<parameter>``, e.g. Airflow's ``dag_run.conf`` or a KFP pipeline's inputs) and
applies to the IR before its nodes run."""
from __future__ import annotations

import copy

__all__ = ["ParameterError", "SEP", "parameter_name", "pipeline_parameters", "apply_parameters"]

SEP = "__"


class ParameterError(ValueError):
    """A pipeline parameter names no node parameter of the IR, or has the wrong type."""


def parameter_name(node_id: str, param: str) -> str:
    """The pipeline-level name of a node parameter: ``ExampleGen__label_key``."""
    return f"{node_id}{SEP}{param}"


def pipeline_parameters(ir: dict) -> dict[str, tuple[str, str, object]]:
    """Every parameter set on a node in the IR, as ``name -> (node, param, compiled value)``;
    these are the pipeline parameters an orchestrator exposes (Airflow conf, KFP inputs)."""
    out = {}
    for n in ir["nodes"]:
        for k, v in n["parameters"].items():
            out[parameter_name(n["id"], k)] = (n["id"], k, v)
    return out


def _same_kind(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return isinstance(default, float) or isinstance(value, int)
    if default is None:
        return True
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def apply_parameters(ir: dict, values: dict | None) -> dict:
    """A copy of ``ir`` with pipeline parameters applied to its nodes."""
    if not values:
        return ir
    known = pipeline_parameters(ir)
    ir = copy.deepcopy(ir)
    nodes = {n["id"]: n for n in ir["nodes"]}
    for name, value in values.items():
        if name not in known:
            raise ParameterError(
                f"pipeline parameter {name!r} of pipeline {ir['pipeline']['name']}: no such parameter; "
                f"expected one of {sorted(known)} (names are <node>{SEP}<parameter>)")
        node, param, default = known[name]
        if not _same_kind(default, value):
            raise ParameterError(
                f"pipeline parameter {name!r} (node {node}, parameter {param}): expected a "
                f"{type(default).__name__} like {default!r}, found {type(value).__name__} {value!r}")
        nodes[node]["parameters"][param] = value
    return ir
