"""Compile the IR to a KFP v2 pipeline spec (through the KFP SDK's own compiler).

Each IR node becomes one KFP task: a lightweight Python component whose base image is the
pipeline image (built from the repository's Dockerfile) and whose body only calls
``tfpipe.orchestrators.kubeflow.entry.run`` -> ``tfpipe.orchestrators.task.run_task`` -> the
launcher. Being a Python component (not a container component) is what lets ``kfp.local``'s
SubprocessRunner run the very same compiled spec offline.

What is generated is only the components' Python signatures: identifiers (the node id made
an identifier; node ids are safe names, checked when the pipeline was defined) and type
names. The node id, the IR and every parameter value reach the task as KFP inputs, never
as code; the IR and any string KFP could expand (``{{$...}}``) travel encoded
(``values.py``). The pipeline function is built from the IR's data, not from source.

- task dependencies: ``.after()`` from the IR's ``upstream`` lists;
- pipeline parameters: every parameter set on a node in the IR becomes a KFP pipeline
  parameter named ``<node>__<param>`` of the parameter's declared type, with the compiled
  value as default, plus ``tfpipe_run_id`` (empty: the KFP job name is the run id);
- KFP's own caching is off (the launcher decides cache hits and records them in ML Metadata);
- ``settings``: ``retries`` -> ``set_retry``; ``image`` (or ``$TFPIPE_IMAGE``) the container image;
  ``cpu`` / ``memory`` limits; ``env`` extra environment variables for every task;
  ``$TFPIPE_METADATA`` at compile time is passed on to the tasks (a reference to the cluster's
  ML Metadata, never a password: ``tfpipe.credentials``).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import sys
import tempfile

from tfpipe.compiler import check_ir
from tfpipe.credentials import check_env_secrets, check_no_inline_secrets
from tfpipe.parameters import check_value, pipeline_parameters
from tfpipe.version import DEFAULT_IMAGE

from ..task import METADATA_ENV
from .values import encode, encode_ir

__all__ = ["compile_kubeflow", "build_pipeline", "DEFAULT_IMAGE", "IMAGE_ENV", "KubeflowCompileError"]

IMAGE_ENV = "TFPIPE_IMAGE"
_RESERVED = {"tfpipe_ir", "tfpipe_node", "tfpipe_run_id", "tfpipe_job", "tfpipe_params"}
_PY_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


class KubeflowCompileError(ValueError):
    pass


def _ident(node_id: str) -> str:
    s = re.sub(r"\W", "_", node_id).lower()
    return s if s[:1].isalpha() else f"n_{s}"


def _kfp_params(ir: dict) -> dict[str, tuple[str, str, object, str]]:
    out = {}
    for name, (node, param, value, t) in pipeline_parameters(ir).items():
        if t is None or value is None:  # no declared type, or None: stays compiled into the IR
            continue
        if not name.isidentifier() or param in _RESERVED:
            raise KubeflowCompileError(
                f"node {node}, parameter {param}: pipeline parameter {name!r} is not a valid KFP "
                f"parameter name (expected a Python identifier not in {sorted(_RESERVED)})")
        out[name] = (node, param, check_value(t, value), t)
    return out


def _component_source(ir: dict, params: dict, task_env: dict[str, str] | None = None) -> str:
    """One component function per node: its signature is identifiers and type names only.
    ``task_env``: variables the task sets in its own environment before it runs."""
    lines = ["from kfp import dsl", ""]
    for n in ir["nodes"]:
        mine = [(p, t) for _, (node, p, _, t) in params.items() if node == n["id"]]
        for p, _ in mine:
            if not p.isidentifier():
                raise KubeflowCompileError(f"node {n['id']}: parameter name {p!r} is not an identifier")
        args = ", ".join(["tfpipe_ir: str", "tfpipe_node: str", "tfpipe_run_id: str", "tfpipe_job: str"]
                         + [f"{p}: {t}" for p, t in mine])
        overrides = ", ".join(f"{p!r}: {p}" for p, _ in mine)
        lines += ["@dsl.component(base_image=IMAGE, install_kfp_package=False)",
                  f"def {_ident(n['id'])}({args}):"]
        if task_env:
            lines.append(f"    __import__(\"os\").environ.update({dict(task_env)!r})")
        lines += ["    from tfpipe.orchestrators.kubeflow.entry import run",
                  f"    run(tfpipe_ir, tfpipe_node, tfpipe_run_id or tfpipe_job, {{{overrides}}})",
                  "", ""]
    return "\n".join(lines)


def _components(ir: dict, params: dict, image: str, task_env: dict[str, str] | None = None) -> dict:
    """node id -> the KFP component of that node (the decorators capture each function's
    source from a file written for the purpose, then removed)."""
    tmp = tempfile.mkdtemp(prefix="tfpipe-kfp-")
    path = os.path.join(tmp, "tfpipe_kfp_components.py")
    with open(path, "w") as f:
        f.write(_component_source(ir, params, task_env))
    name = f"_tfpipe_kfp_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    mod.IMAGE = image
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(name, None)
        shutil.rmtree(tmp, ignore_errors=True)
    return {n["id"]: getattr(mod, _ident(n["id"])) for n in ir["nodes"]}


def build_pipeline(ir: dict, task_env: dict[str, str] | None = None):
    """The KFP pipeline object (a GraphComponent) for ``ir``. ``task_env``: variables each
    task sets in its own environment before it runs, for kfp.local, whose subprocesses take
    the caller's environment and ignore a task's ``set_env_variable`` (containers honour it)."""
    from kfp import dsl
    check_ir(ir)
    settings = ir["pipeline"].get("settings") or {}
    image = settings.get("image") or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
    ids = [_ident(n["id"]) for n in ir["nodes"]]
    if len(set(ids)) != len(ids):
        raise KubeflowCompileError(f"node ids {[n['id'] for n in ir['nodes']]} do not map to distinct "
                                   f"KFP component names ({ids})")
    env = {k: str(v) for k, v in (settings.get("env") or {}).items()}
    if os.environ.get(METADATA_ENV):
        env.setdefault(METADATA_ENV, os.environ[METADATA_ENV])
    check_no_inline_secrets(env, "the KFP tasks' environment")
    check_env_secrets(env, "the KFP tasks' environment")
    params = _kfp_params(ir)
    comps = _components(ir, params, image, task_env)
    ir_arg = encode_ir(ir)

    def configure(task):
        task.set_caching_options(False)
        if settings.get("retries"):
            task.set_retry(int(settings["retries"]))
        if settings.get("cpu"):
            task.set_cpu_limit(str(settings["cpu"]))
        if settings.get("memory"):
            task.set_memory_limit(str(settings["memory"]))
        for k, v in env.items():
            task.set_env_variable(k, encode(v))

    names = [*params, "tfpipe_run_id"]

    def tfpipe_pipeline(*args):
        values = dict(zip(names, args))
        tasks = {}
        for n in ir["nodes"]:
            kw = {p: values[name] for name, (node, p, _, _) in params.items() if node == n["id"]}
            t = comps[n["id"]](tfpipe_ir=ir_arg, tfpipe_node=n["id"], tfpipe_run_id=values["tfpipe_run_id"],
                               tfpipe_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, **kw)
            t.set_display_name(n["id"])
            configure(t)
            for u in n["upstream"]:
                t.after(tasks[u])
            tasks[n["id"]] = t

    P = inspect.Parameter
    tfpipe_pipeline.__signature__ = inspect.Signature(
        [P(name, P.POSITIONAL_OR_KEYWORD, default=encode(v), annotation=_PY_TYPES[t])
         for name, (_, _, v, t) in params.items()]
        + [P("tfpipe_run_id", P.POSITIONAL_OR_KEYWORD, default="", annotation=str)])
    name = ir["pipeline"]["name"]
    return dsl.pipeline(name=name, description="tfpipe pipeline " + name)(tfpipe_pipeline)


def compile_kubeflow(ir: dict, output: str | None = None, task_env: dict[str, str] | None = None) -> str:
    """``tfpipe compile PIPELINE.py --target kubeflow -o pipeline.yaml``; ``task_env``: see
    ``build_pipeline``."""
    from kfp import compiler
    output = output or f"{ir['pipeline']['name']}.yaml"
    if os.path.isdir(output):
        output = os.path.join(output, f"{ir['pipeline']['name']}.yaml")
    compiler.Compiler().compile(build_pipeline(ir, task_env), package_path=output)
    return output
