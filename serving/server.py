"""The model server process: sources -> ModelManager -> Starlette app -> uvicorn.

    python -m tfpipe.serving --model-dir SAVED_MODEL [--model-name NAME] ...
    python -m tfpipe.serving --model-base-path DIR --model-name NAME ...
    python -m tfpipe.serving --model-config-file models.config ...

(``tfpipe serve`` starts the same server on the registry's models.) It binds 127.0.0.1 by
default (``--port 0``: a free port), loads every model before it accepts requests, writes
``--ready-file`` (JSON: host, port, pid, models) once it does, answers ``/healthz``, and on
SIGTERM or Ctrl-C stops accepting, lets requests in flight finish, writes the request
log's last rows and exits 0. A model that fails to load at start-up makes it exit 1 with
the reason (later failures, after a config change, are reported and the previous version
keeps serving).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from tfpipe.files import write_file

from .options import (
    BODY_TIMEOUT_S,
    DEFAULT_PORT,
    HEADER_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    PARSE_THREADS,
    add_server_args,
    server_kwargs,
)

__all__ = ["serve", "main", "ServeError", "DEFAULT_PORT"]


class ServeError(RuntimeError):
    """The server cannot start: what was wrong with its models or its address."""


def _bind(host: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # Accepted connections inherit this: without it Nagle's algorithm and the client's
    # delayed ACK hold every response ~40 ms (uvicorn sets it only on sockets it binds).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _write_ready(path: str, info: dict) -> None:
    write_file(path, json.dumps(info))


def http_protocol(header_timeout_s: float):
    """uvicorn's httptools protocol (HTTP/1.1 parsed in C) with a limit on the time a request's
    headers take: from a connection's opening, or from the first byte of a kept-alive
    connection's next request, to its complete headers; past it the connection is closed
    (uvicorn itself only times out a connection idle between requests). The body's time is
    limited by the app."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a request's headers have begun: the clock runs

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            if header_timeout_s > 0 and self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self):
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return Protocol


def serve(sources: list, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, ready_file: str | None = None,
          poll_s: float = 2.0, watch_s: float = 0.1, keep_warm: int = 2, request_log=None,
          max_batch_size: int = 64, batch_timeout_ms: float = 0.0,
          batch_threads: int = 1, default_label: str | None = "production", graceful_s: float = 30.0,
          max_body_bytes: int = MAX_BODY_BYTES, max_instances: int = MAX_INSTANCES,
          header_timeout_s: float = HEADER_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S,
          parse_threads: int = PARSE_THREADS, log=None) -> int:
    """Run the server until SIGTERM/SIGINT; the exit status."""
    import uvicorn

    from .app import Limits, create_app
    from .manager import ModelManager

    say = log or (lambda msg: print(f"[tfpipe serve] {msg}", file=sys.stderr, flush=True))
    executor = ThreadPoolExecutor(max_workers=max(2, batch_threads + 1), thread_name_prefix="tfpipe-serve")
    manager = ModelManager(sources, executor, poll_s=poll_s, watch_s=watch_s, keep_warm=keep_warm,
                           default_label=default_label, log=say,
                           servable_opts={"max_batch_size": max_batch_size,
                                          "batch_timeout_s": batch_timeout_ms / 1000.0,
                                          "batch_threads": batch_threads})
    parse_executor = (ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="tfpipe-parse")
                      if parse_threads > 0 else None)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    failed: list[str] = []

    async def shutdown():
        await manager.close()

    app = create_app(manager, request_log, on_shutdown=[shutdown], parse_executor=parse_executor, log=say,
                     limits=Limits(max_body_bytes=max_body_bytes, max_instances=max_instances,
                                   body_timeout_s=body_timeout_s))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=graceful_s,
                            access_log=False, http=http_protocol(header_timeout_s))
    class _Server(uvicorn.Server):
        # uvicorn re-raises a captured SIGTERM after serving, which would kill the process
        # before the request log's last rows are written: the signals are handled below.
        def capture_signals(self):
            import contextlib
            return contextlib.nullcontext()

    server = _Server(config)

    async def run():
        await manager.start()  # every model loaded before the first request is accepted
        failed.extend(manager.problems())
        if failed:
            await manager.close()
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        task = loop.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            info = {"host": host, "port": bound, "pid": os.getpid(), "models": manager.summary()}
            if ready_file:
                _write_ready(ready_file, info)
            say(f"serving {', '.join(sorted(manager.models))} on http://{host}:{bound} "
                f"(TF Serving REST API: /v1/models/NAME:predict; /healthz)")
        await task

    # The event loop thread waits for the GIL while a parse thread turns a large body into
    # examples: hand it over every 1 ms instead of Python's 5, so small requests are not
    # held up by a large one's parsing (several hand-overs per request)
    sys.setswitchinterval(0.001)
    try:
        import uvloop  # libuv's event loop: the accept/read/write path in C
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    finally:
        sock.close()
        executor.shutdown(wait=False, cancel_futures=True)
        if parse_executor is not None:
            parse_executor.shutdown(wait=False, cancel_futures=True)
        if request_log is not None:
            st = request_log.close()
            say(f"request log {request_log.sink}: {st['written']} row(s) written, {st['dropped']} dropped"
                + (f", {st['errors']} error(s) (last: {st['last_error']})" if st["errors"] else ""))
    if failed:
        say(f"error: {'; '.join(failed)}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfpipe.serving",
                                description="TF Serving's REST API over SavedModels (tfpipe's model server)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model-dir", help="one SavedModel directory, served as --model-version")
    what.add_argument("--model-base-path", help="a directory of integer version directories (the Pusher's "
                                                "destination); its models.config when present")
    what.add_argument("--model-config-file", help="a TF Serving ModelServerConfig text file")
    p.add_argument("--model-name", default="default", help="the model's name in URLs (default: default)")
    p.add_argument("--model-version", type=int, default=1, help="the version of --model-dir (default 1)")
    add_server_args(p)
    return p


def open_request_log(sink: str | None, sample_rate: float):
    if not sink:
        return None
    from .request_log import RequestLog, open_sink
    return RequestLog(open_sink(sink), sample_rate=sample_rate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .manager import BasePathSource, ConfigSource, DirSource
    from .request_log import LogError
    if args.model_dir:
        sources = [DirSource(args.model_name, args.model_dir, args.model_version)]
    elif args.model_base_path:
        sources = [BasePathSource(args.model_name, args.model_base_path)]
    else:
        sources = [ConfigSource(args.model_config_file)]
    try:
        return serve(sources, request_log=open_request_log(args.log_requests, args.sample_rate),
                     **server_kwargs(args))
    except (ServeError, LogError) as e:
        print(f"[tfpipe serve] error: {e}", file=sys.stderr)
        return 1
