"""The states an execution goes through in ML Metadata, and a run's status, as one enum.

An execution is RUNNING from the moment the launcher records it, then COMPLETE (its
executor ran), CACHED (an earlier execution's outputs were reused) or FAILED. A run is
RUNNING, then COMPLETE or FAILED. ``SUCCEEDED`` is what downstream nodes may consume."""
from __future__ import annotations

import enum

__all__ = ["State", "SUCCEEDED", "FINISHED"]


class State(str, enum.Enum):
    UNKNOWN = "UNKNOWN"
    NEW = "NEW"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value

    @property
    def succeeded(self) -> bool:
        return self in SUCCEEDED


SUCCEEDED = frozenset({State.COMPLETE, State.CACHED})
FINISHED = frozenset({State.COMPLETE, State.CACHED, State.FAILED, State.CANCELED})
