"""What an executor may know about where it runs: the current execution context."""
from __future__ import annotations

import contextvars
import sys
import threading
import time
from dataclasses import dataclass, field

__all__ = ["ExecutionContext", "current", "quiet_libraries", "Interrupted", "interrupt_on_signals",
           "raise_if_interrupted", "take_interrupt", "tracking", "count", "progress_line", "KERAS_ENV", "pin_keras"]

_CURRENT: contextvars.ContextVar["ExecutionContext | None"] = contextvars.ContextVar("tfpipe_ctx", default=None)


@dataclass
class ExecutionContext:
    pipeline: str
    run_id: str
    node_id: str
    execution_id: int
    beam_pipeline_args: list[str] = field(default_factory=list)
    tmp_dir: str = ""
    verbose: bool = True
    _last: float = 0.0
    _since: dict = field(default_factory=dict)  # unit -> (time, done) of its first report

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"  [{self.node_id}] {msg}", file=sys.stderr, flush=True)

    def progress(self, done: float, total: float | None = None, unit: str = "") -> None:
        """Report how far along the node is (``done`` of ``total`` ``unit``, the rate since
        the first report, the time left at that rate): printed at most every 2 s, plus the
        final step."""
        raise_if_interrupted()
        now = time.monotonic()
        t0, d0 = self._since.setdefault(unit, (now, done))
        final = total is not None and done >= total
        if not final and now - self._last < 2.0:
            return
        self._last = now
        self.log(progress_line(done, total, unit, now - t0, done - d0))

    def beam_pipeline(self):
        """A Beam pipeline built from the pipeline's ``beam_pipeline_args``. Without a
        ``--runner`` it runs on Beam's in-process FnApiRunner, which is what the DirectRunner
        picks for a batch pipeline after two passes over the graph (about half a second for
        TFDV's statistics graph)."""
        import apache_beam as beam
        from apache_beam.options.pipeline_options import (
            PipelineOptions,
            StandardOptions,
        )
        _pickle_user_modules_by_value()
        options = PipelineOptions(self.beam_pipeline_args)
        runner = None
        if not options.view_as(StandardOptions).runner:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner
            runner = FnApiRunner()
        return beam.Pipeline(runner=runner, options=options)

    def __enter__(self):
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc):
        _CURRENT.reset(self._token)


def _pickle_user_modules_by_value() -> None:
    """Functions of a module file or pipeline file (loaded under a private name,
    ``tfpipe.loader.load_module_from_file``) travel to Beam's workers as code, not as a
    reference to a module that no SDK worker process can import (a remote worker fails
    with ``No module named 'tfpipe_user_...'``). So do the modules such a file imported
    from its own folder by bare name (TFX's penguin modules' ``from penguin_common import
    ...``): the folder is on the path of the process that loaded the file only."""
    import os

    from apache_beam.internal.cloudpickle import cloudpickle
    mods = list(sys.modules.values())
    folders = set()
    for mod in mods:
        if getattr(mod, "__tfpipe_loaded_from_file__", False):
            cloudpickle.register_pickle_by_value(mod)
            if getattr(mod, "__file__", None):
                folders.add(os.path.dirname(os.path.abspath(mod.__file__)))
    for mod in mods:
        f = getattr(mod, "__file__", None)
        if (f and "." not in getattr(mod, "__name__", ".") and not getattr(mod, "__tfpipe_loaded_from_file__", False)
                and os.path.basename(f) != "__init__.py" and os.path.dirname(os.path.abspath(f)) in folders):
            cloudpickle.register_pickle_by_value(mod)


def current() -> ExecutionContext:
    ctx = _CURRENT.get()
    if ctx is None:
        return ExecutionContext(pipeline="adhoc", run_id="adhoc", node_id="adhoc", execution_id=0)
    return ctx


def progress_line(done: float, total: float | None, unit: str, seconds: float, done_in_seconds: float) -> str:
    """``3,000,000/10,000,000 rows (30%), 410,000 rows/s, about 17 s left``."""
    head = f"{done:,.0f}/{total:,.0f} {unit} ({100.0 * done / total:.0f}%)" if total else f"{done:,.0f} {unit}"
    if seconds < 0.5 or done_in_seconds <= 0:
        return head
    rate = done_in_seconds / seconds
    word = unit.split()[0] if unit else "items"
    head += f", {rate:,.0f} {word}/s" if rate >= 10 else f", {rate:,.2f} {word}/s"
    if total and done < total:
        head += f", about {_duration((total - done) / rate)} left"
    elif total:
        head += f" in {_duration(seconds)}"
    return head


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


# Progress of work that Beam runs: a node registers what it expects (``tracking``) and a
# DoFn of its graph counts what passes (``count``). Beam's in-process runner calls the DoFn
# in this process, so its rows reach the node's log as they go; in an SDK worker process of
# another runner nothing is registered and ``count`` does nothing (the runner's own UI shows
# those workers' progress).
_TRACKERS: dict = {}
_TRACK_LOCK = threading.Lock()


class tracking:
    """``with tracking("Transform rows", total, "rows read"):`` around a Beam run: ``count(
    "Transform rows", n)`` from its DoFns reports progress on the current node's log."""

    def __init__(self, key: str, total: float | None, unit: str):
        self.key, self.total, self.unit = key, total, unit
        self.ctx = current()
        self.done = 0

    def __enter__(self):
        with _TRACK_LOCK:
            _TRACKERS[self.key] = self
        return self

    def __exit__(self, *exc):
        with _TRACK_LOCK:
            _TRACKERS.pop(self.key, None)

    def add(self, n: int) -> None:
        with _TRACK_LOCK:
            self.done += n
            done = self.done
        self.ctx.progress(done, self.total, self.unit)


def count(key: str, n: int) -> None:
    """``n`` more items of the work registered as ``key`` (see ``tracking``); nothing if
    none is registered in this process."""
    t = _TRACKERS.get(key)
    if t is not None:
        t.add(n)


def quiet_libraries() -> None:
    """Keep TensorFlow's C++ start-up chatter and vendor deprecation notices out of the
    user's progress output (set TFPIPE_DEBUG=1 to see everything). Called by every entry
    point that runs nodes: the CLI and an orchestrator's task. Also pins the Keras
    ``tf.keras`` resolves to (``pin_keras``)."""
    import os
    pin_keras()
    if os.environ.get("TFPIPE_DEBUG"):
        return
    import logging
    import warnings
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    warnings.filterwarnings("ignore", message=".*shuffle=True. was passed.*")  # Keras on a tf.data input
    for name in ("tensorflow", "absl"):  # TF's and TFMA's Python-side notices (errors still show)
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # absl keeps its own verbosity (TFT's and TFMA's notices go through it)
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


#: TensorFlow 2.16 reads it once, at the first use of ``tf.keras``: "1" routes ``tf.keras`` to
#: tf_keras (Keras 2), anything else to Keras 3 (``import keras``)
KERAS_ENV = "TF_USE_LEGACY_KERAS"


def pin_keras() -> str:
    """The one rule for which Keras a module file gets, whatever runs the node (the CLI,
    an orchestrator's task, the task host and each child it forks, a Beam SDK worker, a
    Tuner worker): ``TF_USE_LEGACY_KERAS`` as the caller's environment has it, and when it
    is unset, "0", what TensorFlow 2.16 defines (``tf.keras`` is Keras 3, the Keras that
    keras_tuner checks models against). Set before anything imports TensorFlow Transform,
    which would otherwise set it to "1" for the rest of the process and its children, so
    that ``tf.keras`` would depend on whether TFT or TFMA was imported first. Returns the
    value. (TFT then uses the tf_keras package for its own layer, which a Keras 3 model
    carries into its SavedModel like any tf.Module; docs/transform_trainer.md.)"""
    import os
    return os.environ.setdefault(KERAS_ENV, "0")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: what is running ends FAILED ("interrupted by SIGTERM"),
    its staging is removed, and the command exits 128 + the signal number."""

    def __init__(self, signum: int):
        import signal
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.run_id: str | None = None  # set by the runner whose run it ended

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: the signal whose ``Interrupted`` was raised last, until a node's failure takes it
#: (``take_interrupt``): TensorFlow's C++ code calls back into Python (an ``issubclass`` in
#: its op dispatcher) and clears whatever that raised, so an interrupt raised there is lost
_PENDING_SIGNAL: list[int] = []


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread (a SIGTERM would
    otherwise kill the process before anything could be recorded). The signal is also
    kept: ``raise_if_interrupted`` raises it again where a library swallowed it."""
    import signal

    def handler(signum, frame):
        _PENDING_SIGNAL[:] = [signum]
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def raise_if_interrupted() -> None:
    """Raise ``Interrupted`` for a SIGINT or SIGTERM that arrived and whose exception has
    not ended a node yet: called at each progress report, before a node starts and before
    it is recorded COMPLETE, so a swallowed interrupt still ends the node FAILED. Only in
    the main thread, where the handler raised it (a Beam worker thread's progress report
    leaves it to the main thread)."""
    if _PENDING_SIGNAL and threading.current_thread() is threading.main_thread():
        raise Interrupted(_PENDING_SIGNAL[0])


def take_interrupt(e: BaseException) -> None:
    """``e`` ends a node: an interrupt it carries is handled, not pending any more."""
    if isinstance(e, KeyboardInterrupt):
        _PENDING_SIGNAL.clear()
