"""The ``tfpipe`` command: the parser assembled from the command modules, and ``main``.
Start-up imports nothing heavy: TensorFlow, TFDV and Beam load only inside the executors
that need them."""
from __future__ import annotations

import argparse
import os
import sys

from . import ci, pipelines, scaffold, tracking
from .common import EXIT_FAILED, EXIT_USAGE, UsageError

__all__ = ["main", "console_main", "build_parser"]


def _version() -> str:
    from tfpipe.version import __version__
    return __version__


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"tfpipe {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfpipe", description="TFX-style ML pipelines: run, compile, inspect.")
    p.add_argument("--version", action=_Version, help="print tfpipe's version and exit")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    pipelines.add_commands(sub)
    tracking.add_commands(sub)
    ci.add_commands(sub)
    scaffold.add_commands(sub)
    return p


def _usage_errors() -> tuple:
    """Errors that mean the command was called wrongly (exit 2), wherever they are raised."""
    from tfpipe.parameters import ParameterError
    from tfpipe.runner import RunIdInUse, SelectionError
    from tfpipe.tracking.records import NotFound
    from tfpipe.tracking.registry import RegistryUsageError
    return UsageError, NotFound, SelectionError, RunIdInUse, ParameterError, RegistryUsageError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfpipe.runtime import Interrupted, interrupt_on_signals, quiet_libraries
    quiet_libraries()
    interrupt_on_signals()
    try:
        return args.fn(args)
    except KeyboardInterrupt as e:  # SIGINT / SIGTERM: recorded already, one line, no traceback
        run = getattr(e, "run_id", None)
        print(f"tfpipe: {str(e) or 'interrupted'}" + (f"; run {run} marked FAILED, its staging removed" if run else ""),
              file=sys.stderr, flush=True)
        return e.exit_code if isinstance(e, Interrupted) else 130
    except Exception as e:  # a usage error, a definition error in the user's pipeline, a bad store, ...
        if os.environ.get("TFPIPE_DEBUG"):
            raise
        from tfpipe.credentials import CredentialError
        from tfpipe.metadata import MetadataError

        from .common import PipelineFileError
        if isinstance(e, _usage_errors()):
            print(f"tfpipe: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        plain = isinstance(e, (PipelineFileError, MetadataError, CredentialError))
        print(f"tfpipe: error: {e}" if plain else f"tfpipe: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED


def console_main() -> None:
    """The ``tfpipe`` console script. After a run that loaded TensorFlow, it leaves without
    the interpreter's final garbage collection, where TensorFlow's traced functions print
    ignored TypeErrors; everything the run wrote is already closed and flushed."""
    rc = main()
    if "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)
