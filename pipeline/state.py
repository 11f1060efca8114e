"""The states an execution goes through in ML Metadata, and a run's status, as one enum; and
the states of an artifact.

An execution is RUNNING from the moment the launcher records it, then COMPLETE (its
executor ran), CACHED (an earlier execution's outputs were reused) or FAILED. A run is
RUNNING, then COMPLETE or FAILED. ``SUCCEEDED`` is what downstream nodes may consume.

An artifact is PENDING while its execution runs, then LIVE when the execution published it,
or ABANDONED when the execution failed (or was killed) before it was whole. The other
values are ML Metadata's, kept so that any artifact read back has one."""
from __future__ import annotations

import enum

__all__ = ["State", "SUCCEEDED", "FINISHED", "ArtifactState", "EventKind"]


class State(enum.StrEnum):  # a str, equal to and printed as its value
    UNKNOWN = "UNKNOWN"
    NEW = "NEW"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def succeeded(self) -> bool:
        return self in SUCCEEDED


SUCCEEDED = frozenset({State.COMPLETE, State.CACHED})
FINISHED = frozenset({State.COMPLETE, State.CACHED, State.FAILED, State.CANCELED})


class ArtifactState(enum.StrEnum):
    """ML Metadata's artifact states, by their ML Metadata names (a str: equal to the name)."""
    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    LIVE = "LIVE"
    MARKED_FOR_DELETION = "MARKED_FOR_DELETION"
    DELETED = "DELETED"
    ABANDONED = "ABANDONED"
    REFERENCE = "REFERENCE"


class EventKind(enum.StrEnum):
    """Which side of an execution an artifact is on: what it read (ML Metadata's INPUT and
    DECLARED_INPUT events) or what it wrote (OUTPUT, DECLARED_OUTPUT)."""
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
