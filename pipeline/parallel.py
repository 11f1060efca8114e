"""Run independent pieces of one executor's work in forked worker processes.

An executor that has paid for its imports (TensorFlow, TFDV, Beam: about 6 s here) can hand
independent pieces, such as the splits of StatisticsGen, to forked children, which start
with those imports already done; a fresh interpreter would import them again. Each child
runs one piece, reports success or its error over a pipe and leaves with ``os._exit``, so it
never touches the parent's open ML Metadata connection, buffers or exit handlers. A child
dies with its parent (``PR_SET_PDEATHSIG`` on Linux): a killed run leaves no worker behind.

Forking is used only where ``os.fork`` exists; callers fall back to running in-process.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import traceback
from typing import Any, Callable, Sequence

__all__ = ["can_fork", "fork_map", "WorkerError"]


class WorkerError(RuntimeError):
    """A piece failed in a forked worker; ``item`` names the piece, the message is the
    worker's ``Type: message`` and a note carries the worker's traceback."""

    def __init__(self, item: Any, message: str):
        super().__init__(message)
        self.item = item


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def _die_with_parent() -> None:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; the parent still waits for its children
        pass


def _child(fn: Callable[[Any], None], item: Any, w: int) -> None:
    _die_with_parent()
    code = 0
    try:
        fn(item)
        msg = b""
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        code = 1
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        msg = pickle.dumps((text, traceback.format_exc()))
    try:
        os.write(w, msg) if len(msg) < 60000 else os.write(w, pickle.dumps((msg[:2000].decode(errors="replace"), "")))
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def fork_map(fn: Callable[[Any], None], items: Sequence[Any], workers: int) -> None:
    """Run ``fn(item)`` for every item, at most ``workers`` at a time: ``workers - 1`` forked
    children each take one of the last items while the parent runs the rest itself. An error
    in the parent's share is raised as is (its children are killed); an error in a child's
    is raised as ``WorkerError`` (the first in item order) once every child has ended."""
    items = list(items)
    if workers <= 1 or len(items) <= 1 or not can_fork():
        for it in items:
            fn(it)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pending = list(range(1, len(items)))
    running: dict[int, tuple[int, int]] = {}  # pid -> (index, read fd)
    errors: dict[int, tuple[str, str]] = {}

    def start(i: int) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(fn, items[i], w)
        os.close(w)
        running[pid] = (i, r)

    def reap(pid: int) -> None:
        i, r = running.pop(pid)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            errors[i] = (f"worker for {items[i]} was killed by signal {os.WTERMSIG(status)}", "")
        elif os.WEXITSTATUS(status) != 0:
            try:
                errors[i] = pickle.loads(b"".join(chunks))
            except Exception:  # noqa: BLE001
                errors[i] = (f"worker for {items[i]} exited with status {os.WEXITSTATUS(status)}", "")

    try:
        while pending and len(running) < workers - 1:  # children take pieces from the end,
            start(pending.pop())
        fn(items[0])                                  # the parent from the front;
        while pending:                                # a failure here ends the children (finally)
            fn(items[pending.pop(0)])
        while running:
            # a child's pipe reaches end-of-file when it exits; then reap exactly that child
            # (never waitpid(-1), which could take another child of this process)
            ready = select.select([r for _, r in running.values()], [], [])[0]
            for pid in [p for p, (_, r) in running.items() if r in ready]:
                reap(pid)
        for i in sorted(errors):
            text, tb = errors[i]
            err = WorkerError(items[i], text)
            if tb:
                err.add_note(f"in the worker for {items[i]}:\n{tb.rstrip()}")
            raise err
    finally:
        for pid, (_, r) in list(running.items()):  # an interrupted parent takes its children down
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(r)
