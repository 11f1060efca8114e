"""The ``tfpipe`` command: the parser assembled from the command modules, and ``main``.
Start-up imports nothing heavy: TensorFlow, TFDV and Beam load only inside the executors
that need them."""
from __future__ import annotations

import argparse
import os
import sys

from . import ci, pipelines, tracking
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfpipe.runtime import quiet_libraries
    quiet_libraries()
    try:
        return args.fn(args)
    except UsageError as e:
        print(f"tfpipe: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a definition error in the user's pipeline, a bad store, ...
        from tfpipe.tracking.inspect import NotFound
        if isinstance(e, NotFound):
            print(f"tfpipe: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(f"tfpipe: error: {type(e).__name__}: {e}", file=sys.stderr)
        if os.environ.get("TFPIPE_DEBUG"):
            raise
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
