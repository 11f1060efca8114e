"""The ``tfpipe`` command: the outermost layer, the one place that may import every other."""
from .app import console_main, main

__all__ = ["main", "console_main"]
