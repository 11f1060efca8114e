"""The interpreter's gc freeze, owned in one place.

``gc.freeze()`` moves every object the collector tracks into a permanent generation its passes
skip; ``gc.unfreeze()`` moves them all back. It is one set for the whole interpreter, so two
users that freeze and unfreeze on their own undo each other: a pipeline run that unfreezes
when it ends would also give back what a model server in the same process froze.

Each user takes a ``FreezeHold``. A hold freezes through this module; the freeze is given back
(``gc.unfreeze``) only when the last hold that froze is released, and never when it was made by
code outside these holds (that freeze is left alone).
"""
from __future__ import annotations

import gc
import threading

__all__ = ["FreezeHold", "holders"]

_lock = threading.RLock()
_frozen_by: list["FreezeHold"] = []  # the holds whose freeze is in effect
_external = False  # the first hold found a freeze made outside the holds: never undo it


class FreezeHold:
    """One user's share of the interpreter's gc freeze.

    ``exclusive=True`` (a pipeline run): the hold freezes only when nothing is frozen and no
    other hold has frozen, as the interpreter stood when it was taken (``__enter__`` or
    ``take()``); otherwise ``collect_and_freeze`` only collects. ``exclusive=False`` (the model
    server): it always freezes, over what others froze."""

    def __init__(self, exclusive: bool = False):
        self.exclusive = exclusive
        self.may_freeze = not exclusive
        self.froze = False

    def take(self) -> "FreezeHold":
        with _lock:
            if self.exclusive:
                self.may_freeze = not _frozen_by and gc.get_freeze_count() == 0
        return self

    def collect_and_freeze(self, collect_frozen: bool = False) -> None:
        """Collect garbage, then freeze what is left (when this hold may). ``collect_frozen``:
        unfreeze first, so the collection also frees what earlier freezes kept."""
        global _external
        with _lock:
            if not self.may_freeze:
                gc.collect()
                return
            if not _frozen_by:
                _external = gc.get_freeze_count() > 0
            if collect_frozen:
                gc.unfreeze()
            gc.collect()
            gc.freeze()
            if not self.froze:
                self.froze = True
                _frozen_by.append(self)

    def release(self) -> None:
        """Give this hold's share back; the last hold that froze unfreezes (unless the
        freeze was there before any hold froze)."""
        with _lock:
            if not self.froze:
                return
            self.froze = False
            _frozen_by.remove(self)
            if not _frozen_by and not _external:
                gc.unfreeze()

    def __enter__(self) -> "FreezeHold":
        return self.take()

    def __exit__(self, *exc) -> None:
        self.release()


def holders() -> int:
    """How many holds have frozen and not released (for tests and diagnostics)."""
    with _lock:
        return len(_frozen_by)
