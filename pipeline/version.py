"""tfpipe's version: one source, the literal below. pyproject.toml reads it (``dynamic =
["version"]``), so the wheel, the sdist and the installed distribution's metadata carry it;
the release workflow (.github/workflows/release.yml) refuses a tag ``vX.Y.Z`` that differs.
The cache key, the default pipeline image tag, ``tfpipe --version`` and the requirement a
``tfpipe init`` project pins (``tfpipe==<version>``) read it."""
from __future__ import annotations

__all__ = ["__version__", "DEFAULT_IMAGE"]

__version__ = "0.1.0"

# The pipeline image a Kubeflow task or a KubernetesPodOperator runs unless the pipeline's
# settings or $TFPIPE_IMAGE name another (the Dockerfile builds it).
DEFAULT_IMAGE = f"tfpipe:{__version__}"
