"""tfpipe's version: one source, the installed distribution's metadata (pyproject.toml's
``version``). The cache key, the default pipeline image tag and ``tfpipe --version`` read it."""
from __future__ import annotations

from importlib import metadata

__all__ = ["__version__", "DEFAULT_IMAGE"]

try:
    __version__ = metadata.version("tfpipe")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# The pipeline image a Kubeflow task or a KubernetesPodOperator runs unless the pipeline's
# settings or $TFPIPE_IMAGE name another (the Dockerfile builds it).
DEFAULT_IMAGE = f"tfpipe:{__version__}"
