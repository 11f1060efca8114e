"""One loaded model version (a *servable*, in TF Serving's words) and the batching queue in
front of each of its signatures.

Batching: concurrent requests for the same signature wait in an asyncio queue; whenever a
compute slot is free, everything queued (up to ``max_batch_size`` examples) goes into ONE
signature call on a worker thread, and each request gets its own rows back; a request larger
than a batch is split over several calls, and the requests with the fewest examples left
go first, so a small request waits behind at most one batch of a large one. At low load a
request never waits for company (the model is idle, its batch is itself); under load the
queue fills while the model computes, so batches grow by themselves. ``batch_timeout_s``
> 0 additionally holds a partial batch that long for more requests (TF Serving's
``batch_timeout_micros``). A batch that fails is retried request by request, so one bad
request fails alone.

In-flight accounting: a request ``acquire()``s the servable it resolved and ``release()``s
it when done; a retired servable is unloaded only when its last request has finished, so a
version switch never fails a request in flight.
"""
from __future__ import annotations

import asyncio
import os
import re
import time

from .features import ModelInfo, read_model_info

__all__ = ["Servable", "Batcher", "ModelError", "LoadError", "without_paths"]


class ModelError(RuntimeError):
    """The model's signature failed on a request; ``bad_input`` when TensorFlow rejected the
    input (HTTP 400) rather than failing itself (500)."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


class LoadError(RuntimeError):
    """A model version could not be loaded: ``str()`` for the server's log (with the
    version's directory), ``public`` for answers (/healthz, model status, 404s), which show
    no paths."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public or message


_ABS_PATH = re.compile(r"(?<![\w.~-])(?:/[^\s/'\"]+){2,}/?")


def without_paths(text: str, *roots: str) -> str:
    """``text`` with each of ``roots`` (and what is under them) named relative to it, and any
    other absolute path of two or more parts replaced by <path>."""
    for root in roots:
        if root:
            root = os.path.abspath(root)
            text = text.replace(root + os.sep, "").replace(root, "the version directory")
    return _ABS_PATH.sub("<path>", text)


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "\t [[", " [[", "[[")


def _tf_message(e) -> str:
    """The line of a TensorFlow error that says what failed, without the graph's framing
    and with at most an excerpt of the input it quotes (a parse error quotes the whole
    serialized example)."""
    from .features import excerpt
    text = getattr(e, "message", None) or str(e)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip(" ").startswith(_TF_NOISE)]
    msg = lines[0] if lines else type(e).__name__
    head, sep, _ = msg.partition("value: '")
    if sep:  # the quoted value may span lines: take it from the whole text
        quoted = text[text.index("value: '") + len("value: '"):].split("'\n", 1)[0]
        msg = f"{head}value: {excerpt(quoted, 40)}"
    return msg[:300]


def _outputs(fn, input_name: str, records: list[bytes]) -> dict:
    import tensorflow as tf
    try:
        out = fn(**{input_name: tf.constant(records, dtype=tf.string)})
    except tf.errors.InvalidArgumentError as e:
        raise ModelError(_tf_message(e), bad_input=True) from None
    except tf.errors.OpError as e:
        raise ModelError(f"{type(e).__name__}: {_tf_message(e)}") from None
    except UnicodeDecodeError:
        # TensorFlow quotes the input in a parse error and cannot turn bytes that are not
        # UTF-8 into the error's message: the input was refused
        raise ModelError("the model could not parse the examples: a {\"b64\"} value is not a serialized "
                         "tf.Example it can read", bad_input=True) from None
    return {k: v.numpy() for k, v in out.items()}


class _Pending:
    """A request in a batcher's queue: its examples, how many are handed to the model, and
    the outputs of the parts computed so far (a request larger than a batch is split)."""
    __slots__ = ("records", "fut", "sent", "parts", "got")

    def __init__(self, records: list, fut):
        self.records, self.fut = records, fut
        self.sent, self.got = 0, 0
        self.parts: list = []

    def remaining(self) -> int:
        return len(self.records) - self.sent


class Batcher:
    def __init__(self, fn, input_name: str, executor, max_batch_size: int = 64, batch_timeout_s: float = 0.0,
                 threads: int = 1):
        self.fn, self.input_name, self.executor = fn, input_name, executor
        self.max_batch_size, self.batch_timeout_s = max(1, int(max_batch_size)), float(batch_timeout_s)
        self.threads = max(1, int(threads))
        self._queue: list[_Pending] = []
        self._rows = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.examples = 0

    async def submit(self, records: list[bytes]) -> dict:
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._dispatch())
        fut = loop.create_future()
        self._queue.append(_Pending(records, fut))
        self._rows += len(records)
        self._wake.set()
        return await fut

    def _take(self) -> list:
        """The next batch: (request, start, end) parts of at most ``max_batch_size`` examples
        in all. Requests with the fewest examples left go first, so a small request never
        waits behind more than one batch of a large one (which is split, as TF Serving's
        ``enable_large_batch_splitting``); a large request fills what room is left."""
        room, parts = self.max_batch_size, []
        for p in sorted(self._queue, key=_Pending.remaining):
            if room == 0:
                break
            k = min(room, p.remaining())
            parts.append((p, p.sent, p.sent + k))
            p.sent += k
            room -= k
        self._queue = [p for p in self._queue if p.remaining() and not p.fut.done()]
        self._rows -= self.max_batch_size - room
        return parts

    async def _dispatch(self):
        slots = asyncio.Semaphore(self.threads)
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                continue
            await slots.acquire()
            if self.batch_timeout_s > 0 and self._rows < self.max_batch_size:
                await asyncio.sleep(self.batch_timeout_s)
            parts = self._take()
            if not self._queue:
                self._wake.clear()
            asyncio.get_running_loop().create_task(self._run(parts, slots))

    def _done(self, p: _Pending, start: int, end: int, outs: dict) -> None:
        if p.fut.done():
            return
        p.parts.append((start, outs))
        p.got += end - start
        if p.got >= len(p.records):
            if len(p.parts) == 1:
                p.fut.set_result(p.parts[0][1])
                return
            import numpy as np
            p.parts.sort(key=lambda x: x[0])
            p.fut.set_result({k: np.concatenate([o[k] for _, o in p.parts]) for k in p.parts[0][1]})

    def _fail(self, p: _Pending, e: BaseException) -> None:
        if not p.fut.done():
            p.fut.set_exception(e if isinstance(e, Exception) else ModelError("the server is stopping"))
        p.sent = len(p.records)  # nothing more of it is handed to the model

    async def _run(self, parts, slots):
        loop = asyncio.get_running_loop()
        try:
            records = [r for p, a, b in parts for r in p.records[a:b]] if len(parts) > 1 else \
                parts[0][0].records[parts[0][1]:parts[0][2]]
            self.batches += 1
            self.examples += len(records)
            try:
                outs = await loop.run_in_executor(self.executor, _outputs, self.fn, self.input_name, records)
            except ModelError as e:
                if len(parts) == 1:
                    self._fail(parts[0][0], e)
                    return
                for p, a, b in parts:  # one bad request must not fail the others
                    if p.fut.done():
                        continue
                    try:
                        self._done(p, a, b, await loop.run_in_executor(self.executor, _outputs, self.fn,
                                                                    self.input_name, p.records[a:b]))
                    except Exception as e2:  # noqa: BLE001 - handed to the request that caused it
                        self._fail(p, e2)
                return
            i = 0
            for p, a, b in parts:
                self._done(p, a, b, {k: v[i:i + b - a] for k, v in outs.items()})
                i += b - a
        except BaseException as e:  # noqa: BLE001 - every waiting request learns why
            for p, _, _ in parts:
                self._fail(p, e)
        finally:
            slots.release()

    def close(self):
        if self._task is not None:
            self._task.cancel()
        for p in self._queue:
            self._fail(p, ModelError("the model version was unloaded"))
        self._queue.clear()


class Servable:
    """A loaded SavedModel version with a batcher per signature."""

    def __init__(self, name: str, version: int, path: str, executor, max_batch_size: int = 64,
                 batch_timeout_s: float = 0.0, batch_threads: int = 1):
        self.name, self.version, self.path = name, int(version), path
        self.executor = executor
        self.opts = {"max_batch_size": max_batch_size, "batch_timeout_s": batch_timeout_s,
                     "threads": batch_threads}
        self.info: ModelInfo | None = None
        self.loaded = None
        self.batchers: dict[str, Batcher] = {}
        self.inflight = 0
        self.retired = False
        self.load_s: float | None = None
        self._idle: asyncio.Event | None = None

    def load(self) -> "Servable":
        """Load the SavedModel (blocking: call it on a worker thread) and warm it up."""
        import tensorflow as tf  # imported once per process, not part of a version's load time
        t0 = time.monotonic()
        try:
            self.info = read_model_info(self.path)
            self.loaded = tf.saved_model.load(self.path)
        except Exception as e:  # noqa: BLE001 - reported as the version's status
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise LoadError(f"model {self.name} version {self.version}: cannot load {self.path}: {msg}",
                            f"model {self.name} version {self.version}: cannot load it: "
                            f"{without_paths(msg, self.path)[:300]}") from None
        self._warm_up()
        self.load_s = time.monotonic() - t0
        return self

    def _warm_up(self) -> None:
        """One call of each example-parsing signature on a made-up example (zeros, empty
        strings), so the first request after a switch does not pay TensorFlow's first-call
        cost (as TF Serving's warm-up records do). A signature that refuses it is left cold."""
        from .features import warm_up_example
        for sig, spec in self.info.parse_specs.items():
            try:
                _outputs(self.loaded.signatures[sig], self.info.input_name(sig), [warm_up_example(spec)])
            except Exception:  # noqa: BLE001 - warming is best effort; requests report real errors
                pass

    def signature(self, name: str):
        return self.loaded.signatures[name]

    async def run(self, signature: str, records: list[bytes]) -> dict:
        b = self.batchers.get(signature)
        if b is None:
            b = self.batchers[signature] = Batcher(self.signature(signature), self.info.input_name(signature),
                                                   self.executor, **self.opts)
        return await b.submit(records)

    def acquire(self) -> "Servable":
        self.inflight += 1
        return self

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def retire(self, grace_s: float = 600.0) -> None:
        """Unload once every request that resolved this version has finished."""
        self.retired = True
        if self.inflight:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except asyncio.TimeoutError:
                pass
        for b in self.batchers.values():
            b.close()
        self.batchers.clear()
        self.loaded = None  # the SavedModel's memory goes with the last reference

    def stats(self) -> dict:
        return {"batches": sum(b.batches for b in self.batchers.values()),
                "examples": sum(b.examples for b in self.batchers.values()), "inflight": self.inflight,
                "load_s": self.load_s, "path": os.path.abspath(self.path)}
