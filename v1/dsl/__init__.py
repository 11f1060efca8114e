"""``tfx.v1.dsl`` as module files use it: ``dsl.io.fileio``. The pipeline DSL (``Pipeline``,
``Resolver``, ``Importer``, ``Channel``) is tfpipe's own (``tfpipe``, ``tfpipe.components``)."""
from . import io

__all__ = ["io"]
