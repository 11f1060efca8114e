"""Pipeline parameters: node parameters an orchestrator exposes by name
(``<node>__<parameter>``, e.g. Airflow's ``dag_run.conf`` or a KFP pipeline's inputs) and
applies to the IR before its nodes run.

Types come from the IR's ``parameter_specs`` (the component's declared types), never from
the values: an ``int`` parameter takes an int, a ``float`` one an int or a float (stored as
float), ``str``/``bool``/``list``/``dict`` their own kind. An IR recorded before specs
existed (ir_version 1) falls back to the kind of the compiled value."""
from __future__ import annotations

import copy

__all__ = ["ParameterError", "SEP", "parameter_name", "pipeline_parameters", "declared_parameters",
           "apply_parameters", "check_value", "TYPE_NAMES"]

SEP = "__"
TYPE_NAMES = ("int", "float", "str", "bool", "list", "dict")


class ParameterError(ValueError):
    """A pipeline parameter names no node parameter of the IR, or has the wrong type."""


def parameter_name(node_id: str, param: str) -> str:
    """The pipeline-level name of a node parameter: ``ExampleGen__label_key``."""
    return f"{node_id}{SEP}{param}"


def _kind(value) -> str | None:
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                    (dict, "dict")):
        if isinstance(value, t):
            return name
    return None


def _type_of(node: dict, param: str) -> str | None:
    spec = (node.get("parameter_specs") or {}).get(param)
    if spec is not None:
        return spec["type"]
    return _kind(node["parameters"].get(param))


def pipeline_parameters(ir: dict) -> dict[str, tuple[str, str, object, str | None]]:
    """Every parameter set on a node in the IR, as ``name -> (node, param, compiled value,
    declared type)``: the pipeline parameters an orchestrator exposes (Airflow conf, KFP
    inputs)."""
    out = {}
    for n in ir["nodes"]:
        for k, v in n["parameters"].items():
            out[parameter_name(n["id"], k)] = (n["id"], k, v, _type_of(n, k))
    return out


def declared_parameters(ir: dict) -> dict[str, tuple[str, str, str | None]]:
    """Every parameter any node takes (set or not), ``name -> (node, param, declared type)``."""
    out = {}
    for n in ir["nodes"]:
        for k in {**(n.get("parameter_specs") or {}), **n["parameters"]}:
            out[parameter_name(n["id"], k)] = (n["id"], k, _type_of(n, k))
    return out


def check_value(type_name: str | None, value):
    """``value`` as the declared type (an int for a float parameter becomes a float), or
    raise TypeError saying what was expected."""
    if type_name is None or value is None:
        return value
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool),
          "list": lambda v: isinstance(v, (list, tuple)),
          "dict": lambda v: isinstance(v, dict)}[type_name]
    if not ok(value):
        raise TypeError(f"expected {type_name}, found {type(value).__name__} {value!r}")
    if type_name == "float":
        return float(value)
    if type_name == "list":
        return list(value)
    return value


def apply_parameters(ir: dict, values: dict | None) -> dict:
    """A copy of ``ir`` with pipeline parameters applied to its nodes."""
    if not values:
        return ir
    known = declared_parameters(ir)
    ir = copy.deepcopy(ir)
    nodes = {n["id"]: n for n in ir["nodes"]}
    for name, value in values.items():
        if name not in known:
            raise ParameterError(
                f"pipeline parameter {name!r} of pipeline {ir['pipeline']['name']}: no such parameter; "
                f"expected one of {sorted(known)} (names are <node>{SEP}<parameter>)")
        node, param, type_name = known[name]
        try:
            nodes[node]["parameters"][param] = check_value(type_name, value)
        except TypeError as e:
            raise ParameterError(f"pipeline parameter {name!r} (node {node}, parameter {param}): {e}") from None
    return ir
