"""Compile the IR to a KFP v2 pipeline spec (through the KFP SDK's own compiler).

Each IR node becomes one KFP task: a lightweight Python component whose base image is
the pipeline image (built from the repository's Dockerfile) and whose body only calls
``tfpipe.orchestrators.kubeflow.entry.run`` -> ``tfpipe.orchestrators.task.run_task`` -> the launcher.
Being a Python component (not a container component) is what lets ``kfp.local``'s
SubprocessRunner run the very same compiled spec offline.

- task dependencies: ``.after()`` from the IR's ``upstream`` lists;
- pipeline parameters: every parameter set on a node in the IR becomes a KFP pipeline
  parameter named ``<node>__<param>`` with the compiled value as default, plus
  ``tfpipe_run_id`` (empty: the KFP job name is the run id);
- KFP's own caching is off (the launcher decides cache hits and records them in ML Metadata);
- ``settings``: ``retries`` -> ``set_retry``; ``image`` (or ``$TFPIPE_IMAGE``) the container image;
  ``cpu`` / ``memory`` limits; ``env`` extra environment variables for every task;
  ``$TFPIPE_METADATA`` at compile time is passed on to the tasks (the cluster's ML Metadata).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile

from tfpipe.parameters import check_value, pipeline_parameters
from tfpipe.version import DEFAULT_IMAGE

from ..task import METADATA_ENV

__all__ = ["compile_kubeflow", "build_pipeline", "DEFAULT_IMAGE", "IMAGE_ENV", "KubeflowCompileError"]

IMAGE_ENV = "TFPIPE_IMAGE"
_RESERVED = {"tfpipe_ir", "tfpipe_run_id", "tfpipe_job", "tfpipe_params"}


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


def _source(ir: dict, image: str) -> str:
    """Python source of one component function per node plus the pipeline function."""
    params = _kfp_params(ir)
    lines = ["from kfp import dsl", ""]
    for n in ir["nodes"]:
        mine = [(name, p, t) for name, (node, p, _, t) in params.items() if node == n["id"]]
        args = ", ".join(["tfpipe_ir: str", "tfpipe_run_id: str", "tfpipe_job: str"] + [f"{p}: {t}" for _, p, t in mine])
        overrides = ", ".join(f"{name!r}: {p}" for name, p, _ in mine)
        lines += [
            f"@dsl.component(base_image={image!r}, install_kfp_package=False)",
            f"def {_ident(n['id'])}({args}):",
            f"    \"\"\"tfpipe node {n['id']} ({n['component']}).\"\"\"",
            "    from tfpipe.orchestrators.kubeflow.entry import run",
            f"    run(tfpipe_ir, {n['id']!r}, tfpipe_run_id or tfpipe_job, {{{overrides}}})",
            "", ""]
    sig = ", ".join([f"{name}: {t} = {v!r}" for name, (_, _, v, t) in params.items()] + ["tfpipe_run_id: str = ''"])
    lines += [f"@dsl.pipeline(name={ir['pipeline']['name']!r}, "
              f"description='tfpipe pipeline ' + {ir['pipeline']['name']!r})",
              f"def tfpipe_pipeline({sig}):", "    tasks = {}"]
    for n in ir["nodes"]:
        mine = [(name, p) for name, (node, p, _, _) in params.items() if node == n["id"]]
        kw = ", ".join(["tfpipe_ir=IR_JSON", "tfpipe_run_id=tfpipe_run_id",
                        "tfpipe_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER"] + [f"{p}={name}" for name, p in mine])
        lines += [f"    t = {_ident(n['id'])}({kw})", f"    t.set_display_name({n['id']!r})",
                  "    configure(t)"]
        for u in n["upstream"]:
            lines.append(f"    t.after(tasks[{u!r}])")
        lines.append(f"    tasks[{n['id']!r}] = t")
    return "\n".join(lines) + "\n"


def build_pipeline(ir: dict):
    """The KFP pipeline object (a GraphComponent) for ``ir``."""
    settings = ir["pipeline"].get("settings") or {}
    image = settings.get("image") or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
    ids = [_ident(n["id"]) for n in ir["nodes"]]
    if len(set(ids)) != len(ids):
        raise KubeflowCompileError(f"node ids {[n['id'] for n in ir['nodes']]} do not map to distinct "
                                   f"KFP component names ({ids})")
    env = dict(settings.get("env") or {})
    if os.environ.get(METADATA_ENV):
        env.setdefault(METADATA_ENV, os.environ[METADATA_ENV])

    def configure(task):
        task.set_caching_options(False)
        if settings.get("retries"):
            task.set_retry(int(settings["retries"]))
        if settings.get("cpu"):
            task.set_cpu_limit(str(settings["cpu"]))
        if settings.get("memory"):
            task.set_memory_limit(str(settings["memory"]))
        for k, v in env.items():
            task.set_env_variable(k, str(v))

    src = _source(ir, image)
    tmp = tempfile.mkdtemp(prefix="tfpipe-kfp-")
    path = os.path.join(tmp, f"tfpipe_kfp_{_ident(ir['pipeline']['name'])}.py")
    with open(path, "w") as f:
        f.write(src)
    name = f"_tfpipe_kfp_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    mod.IR_JSON = json.dumps(ir, sort_keys=True)
    mod.configure = configure
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)  # the KFP decorators capture each component's source here
    finally:
        sys.modules.pop(name, None)
        shutil.rmtree(tmp, ignore_errors=True)
    return mod.tfpipe_pipeline


def compile_kubeflow(ir: dict, output: str | None = None) -> str:
    """``tfpipe compile PIPELINE.py --target kubeflow -o pipeline.yaml``."""
    from kfp import compiler
    output = output or f"{ir['pipeline']['name']}.yaml"
    if os.path.isdir(output):
        output = os.path.join(output, f"{ir['pipeline']['name']}.yaml")
    compiler.Compiler().compile(build_pipeline(ir), package_path=output)
    return output
