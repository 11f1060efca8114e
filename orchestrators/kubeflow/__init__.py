"""Kubeflow Pipelines v2 / Vertex AI: compile the IR to a KFP pipeline spec, run it with
kfp.local, submit it to a KFP cluster or Vertex AI Pipelines."""
from .compiler import (
    DEFAULT_IMAGE,
    IMAGE_ENV,
    KubeflowCompileError,
    build_pipeline,
    compile_kubeflow,
)

__all__ = ["compile_kubeflow", "build_pipeline", "DEFAULT_IMAGE", "IMAGE_ENV", "KubeflowCompileError"]
