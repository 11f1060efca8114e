"""Compile a Pipeline to its intermediate representation: plain, versioned JSON data.

Every orchestrator consumes only this IR. A node names its executor by import reference
(plus the file it came from, for components defined in a user's pipeline file), the
parameters set on it, the declared type and default of every parameter the component
takes (``parameter_specs``, as KFP's inputDefinitions: what an orchestrator exposes and
converts without guessing from values), and its inputs as (producer node, output key).
"""
from __future__ import annotations

import inspect
import json
import os
import sys

from .graph import Pipeline

__all__ = ["IR_VERSION", "compile_pipeline", "dump_ir", "load_ir", "IRError"]

IR_VERSION = "2"  # 2: parameter_specs on every node
READABLE_IR_VERSIONS = ("1", IR_VERSION)  # an IR recorded by an earlier tfpipe still runs


class IRError(ValueError):
    pass


def _executor(spec) -> dict:
    ref = {"ref": spec.executor_ref}
    mod = sys.modules.get(spec.fn.__module__)
    importable = True
    if mod is None or getattr(mod, "__spec__", None) is None or spec.fn.__module__ == "__main__":
        importable = False
    elif getattr(mod, "__tfpipe_loaded_from_file__", False):
        importable = False
    if not importable and spec.source_file:
        ref["file"] = os.path.abspath(spec.source_file)
    return ref


def _parameter_specs(spec) -> dict:
    """``{name: {"type": "int"|"float"|"str"|"bool"|"list"|"dict", "default"?: value,
    "module_file"?: true}}``; no ``default`` means the parameter is required."""
    out = {}
    for name, ps in spec.parameters.items():
        d = {"type": ps.type.__name__}
        if ps.default is not inspect.Parameter.empty:
            d["default"] = list(ps.default) if isinstance(ps.default, tuple) else ps.default
        if ps.is_module_file:
            d["module_file"] = True
        out[name] = d
    return out


def compile_pipeline(p: Pipeline) -> dict:
    nodes = []
    for n in p.nodes:
        nodes.append({
            "id": n.id,
            "component": n.spec.name,
            "executor": _executor(n.spec),
            "parameters": dict(sorted(n.parameters.items())),
            "parameter_specs": _parameter_specs(n.spec),
            "inputs": {k: {"producer": ch.producer.id, "output": ch.key, "type": ch.type.TYPE_NAME}
                       for k, ch in sorted(n.inputs.items())},
            "outputs": {k: {"type": ch.type.TYPE_NAME} for k, ch in n.outputs.items()},
            "upstream": [u.id for u in n.upstream],
            "enable_cache": n.enable_cache,
        })
    return {
        "ir_version": IR_VERSION,
        "pipeline": {
            "name": p.name,
            "root": p.root,
            "metadata": p.metadata,
            "beam_pipeline_args": p.beam_pipeline_args,
            "enable_cache": p.enable_cache,
            "settings": p.settings,
        },
        "nodes": nodes,
    }


def dump_ir(ir: dict, path: str | None = None) -> str:
    text = json.dumps(ir, indent=2, sort_keys=False) + "\n"
    if path:
        with open(path, "w") as f:
            f.write(text)
    return text


def load_ir(path: str) -> dict:
    try:
        with open(path) as f:
            ir = json.load(f)
    except FileNotFoundError:
        raise IRError(f"IR file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise IRError(f"IR file {path} is not JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    if ir.get("ir_version") not in READABLE_IR_VERSIONS:
        raise IRError(f"IR file {path}: expected ir_version one of {list(READABLE_IR_VERSIONS)}, "
                      f"found {ir.get('ir_version')!r}")
    return ir
