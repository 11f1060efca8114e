"""``tfx.v1.dsl.io``: ``fileio``."""
from . import fileio

__all__ = ["fileio"]
