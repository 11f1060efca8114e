"""The server's command-line options, shared by ``tfpipe serve`` and ``python -m
tfpipe.serving`` (standard library only: the CLI builds its parser from it at start-up)."""
from __future__ import annotations

import argparse

__all__ = ["DEFAULT_PORT", "add_server_args", "server_kwargs"]

DEFAULT_PORT = 8501  # TF Serving's REST port


def _at_least_zero(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            v = None
        if v is None or v < 0:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number >= 0, "
                                             f"found {text!r}")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def add_server_args(p: argparse.ArgumentParser) -> None:
    """The flags ``tfpipe serve`` shares with ``python -m tfpipe.serving``."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8501; 0 = a free port)")
    p.add_argument("--ready-file", help="write {host, port, pid, models} here (JSON) once serving")
    p.add_argument("--poll", type=_at_least_zero(float), default=2.0, metavar="SECONDS",
                   help="re-read models.config / version directories this often whatever their stat says "
                        "(default 2; a fallback: changes are noticed within --watch)")
    p.add_argument("--watch", type=_at_least_zero(float), default=0.1, metavar="SECONDS",
                   help="stat models.config and the version directories this often and re-read them when they "
                        "changed (default 0.1; 0 = only --poll)")
    p.add_argument("--keep-warm", type=_at_least_zero(int), default=2, metavar="N",
                   help="versions that left models.config kept loaded per model, so promoting or rolling back "
                        "to them again is instant (default 2)")
    p.add_argument("--max-batch-size", type=int, default=64, help="examples per signature call (default 64)")
    p.add_argument("--batch-timeout-ms", type=float, default=0.0,
                   help="hold a partial batch this long for more requests (default 0: batch what is queued)")
    p.add_argument("--batch-threads", type=int, default=1, help="signature calls at once per model (default 1)")
    p.add_argument("--default-label", default="production",
                   help="the label a request without version or label goes to (default production; '' = the "
                        "highest version, as TF Serving)")
    p.add_argument("--log-requests", metavar="SINK",
                   help="log a sample of requests: a directory (Parquet, partitioned by day) or "
                        "bq://PROJECT.DATASET.TABLE")
    p.add_argument("--sample-rate", type=float, default=1.0, help="fraction of requests logged (default 1.0)")


def server_kwargs(args) -> dict:
    return {"host": args.host, "port": args.port, "ready_file": args.ready_file, "poll_s": args.poll,
            "watch_s": args.watch, "keep_warm": args.keep_warm,
            "max_batch_size": args.max_batch_size, "batch_timeout_ms": args.batch_timeout_ms,
            "batch_threads": args.batch_threads, "default_label": args.default_label}


