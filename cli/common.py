"""What every ``tfpipe`` command shares: exit codes, the usage error, loading a pipeline
file, and opening the ML Metadata store. Imports only the standard library at start-up."""
from __future__ import annotations

import argparse
import os

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "load_pipeline", "compile_file",
           "pipeline_function", "metadata_location", "open_store", "add_metadata_args"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command was called wrongly (exit 2): what was expected, what was found."""


def pipeline_function(path: str):
    """A pipeline file's ``create_pipeline`` function (the file imported once)."""
    from tfpipe.loader import load_module_from_file
    if not os.path.isfile(path):
        raise UsageError(f"pipeline file {path} does not exist")
    mod = load_module_from_file(path)
    if not hasattr(mod, "create_pipeline"):
        raise UsageError(f"pipeline file {path} defines no create_pipeline() function")
    return mod.create_pipeline


def load_pipeline(path: str, keywords: dict | None = None):
    """Import a pipeline file and call its ``create_pipeline(**keywords)``."""
    p = pipeline_function(path)(**(keywords or {}))
    p.source = os.path.abspath(path)
    return p


def compile_file(path: str, keywords: dict | None = None) -> dict:
    """The IR of a pipeline file, with the file it came from."""
    from tfpipe.compiler import compile_pipeline
    p = load_pipeline(path, keywords)
    ir = compile_pipeline(p)
    ir["pipeline"]["source"] = p.source
    return ir


def metadata_location(given: str | None) -> str:
    from tfpipe.graph import default_home
    return given or os.path.join(default_home(), "metadata.sqlite")


def open_store(given: str | None):
    """The ML Metadata store a tracking command reads (``--metadata`` or the default)."""
    from tfpipe.metadata import MetadataStore
    path = metadata_location(given)
    if not os.path.exists(path):
        raise UsageError(f"no metadata store at {path}; run a pipeline first or pass --metadata")
    return MetadataStore(path)


def add_metadata_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--metadata", help="SQLite ML Metadata file (default: $TFPIPE_HOME/metadata.sqlite)")
    sp.add_argument("--json", action="store_true")
