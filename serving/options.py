"""The server's command-line options, shared by ``tfpipe serve`` and ``python -m
tfpipe.serving`` (standard library only: the CLI builds its parser from it at start-up)."""
from __future__ import annotations

import argparse

__all__ = ["DEFAULT_PORT", "add_server_args", "server_kwargs"]

DEFAULT_PORT = 8501  # TF Serving's REST port
# Request limits (docs/serving.md, "Limits"): every one answered with a JSON error
MAX_BODY_BYTES = 10 * 1024 * 1024  # 413 beyond
MAX_INSTANCES = 10_000  # examples per request; 413 beyond
HEADER_TIMEOUT_S = 10.0  # from a connection's (or a kept-alive request's) first byte to its complete headers
BODY_TIMEOUT_S = 30.0  # from complete headers to the last byte of the body; 408 beyond
PARSE_THREADS = 2  # threads turning large JSON bodies into tf.Examples, off the event loop


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
    p.add_argument("--max-body-bytes", type=_at_least_zero(int), default=MAX_BODY_BYTES, metavar="BYTES",
                   help=f"largest request body; a larger one is refused with 413 (default {MAX_BODY_BYTES}, 10 MiB)")
    p.add_argument("--max-instances", type=_at_least_zero(int), default=MAX_INSTANCES, metavar="N",
                   help=f"most examples in one request; more is refused with 413 (default {MAX_INSTANCES})")
    p.add_argument("--header-timeout", type=_at_least_zero(float), default=HEADER_TIMEOUT_S, metavar="SECONDS",
                   help=f"a connection whose request headers are not complete this long after their first byte "
                        f"(or after it opened) is closed (default {HEADER_TIMEOUT_S:g}; 0 = no limit)")
    p.add_argument("--body-timeout", type=_at_least_zero(float), default=BODY_TIMEOUT_S, metavar="SECONDS",
                   help=f"a request body not received whole this long after its headers is answered 408 and "
                        f"the connection closed (default {BODY_TIMEOUT_S:g}; 0 = no limit)")
    p.add_argument("--parse-threads", type=_at_least_zero(int), default=PARSE_THREADS, metavar="N",
                   help=f"threads that parse large request bodies off the event loop (default {PARSE_THREADS}; "
                        f"bodies under 16 KiB are parsed inline)")


def server_kwargs(args) -> dict:
    return {"host": args.host, "port": args.port, "ready_file": args.ready_file, "poll_s": args.poll,
            "watch_s": args.watch, "keep_warm": args.keep_warm,
            "max_batch_size": args.max_batch_size, "batch_timeout_ms": args.batch_timeout_ms,
            "batch_threads": args.batch_threads, "default_label": args.default_label,
            "max_body_bytes": args.max_body_bytes, "max_instances": args.max_instances,
            "header_timeout_s": args.header_timeout, "body_timeout_s": args.body_timeout,
            "parse_threads": args.parse_threads}


