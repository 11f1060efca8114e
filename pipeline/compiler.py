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

from .credentials import check_env_secrets, check_no_inline_secrets
from .graph import Pipeline, PipelineDefinitionError
from .names import check_name

__all__ = ["IR_VERSION", "compile_pipeline", "dump_ir", "load_ir", "check_ir", "IRError"]

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
    """The IR of ``p``. Refuses a secret written into the pipeline (an inline metadata
    password, a password in a URL, a secret-looking environment variable in the settings):
    the IR is what orchestrators ship, and it must never hold one."""
    check_no_inline_secrets(p.metadata, f"Pipeline {p.name!r}: metadata")
    check_no_inline_secrets(p.root, f"Pipeline {p.name!r}: root")
    check_no_inline_secrets(p.settings, f"Pipeline {p.name!r}: settings")
    check_env_secrets((p.settings or {}).get("env") or {}, f"Pipeline {p.name!r}: settings['env']")
    for n in p.nodes:
        check_no_inline_secrets(n.parameters, f"node {n.id}: parameters")
        if n.spec.check is not None:
            params = {k: ps.default for k, ps in n.spec.parameters.items() if not ps.required}
            try:
                n.spec.check({**params, **n.parameters})
            except Exception as e:
                raise PipelineDefinitionError(f"node {n.id} ({n.spec.name}): {e}") from None
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


def check_ir(ir: dict, where: str = "IR") -> dict:
    """The names an IR carries are safe identifiers (what a Pipeline checks when defined;
    an IR may come from a file): pipeline name, node ids, component names, input, output
    and parameter keys, and every producer is a node. Returns ``ir``; raises IRError."""
    def name(kind, value):
        check_name(f"{where}: {kind}", value, IRError)

    try:
        name("pipeline name", ir["pipeline"]["name"])
        ids = set()
        for n in ir["nodes"]:
            name("node id", n["id"])
            name(f"node {n['id']}: component name", n["component"])
            for kind in ("inputs", "outputs", "parameters"):
                for k in n.get(kind) or {}:
                    if not (isinstance(k, str) and k.isidentifier()):
                        raise IRError(f"{where}: node {n['id']}: {kind[:-1]} name {k!r} is not a Python identifier")
            for k, src in (n.get("inputs") or {}).items():
                if src["producer"] not in ids:
                    raise IRError(f"{where}: node {n['id']}: input {k!r} comes from {src['producer']!r}, "
                                  f"which is not an earlier node")
            ids.add(n["id"])
    except (KeyError, TypeError) as e:
        raise IRError(f"{where}: not a tfpipe IR (missing or malformed {e})") from None
    return ir


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
    return check_ir(ir, f"IR file {path}")
