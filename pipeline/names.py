"""The one rule for names that become identifiers elsewhere: pipeline names, node ids and
component names turn into Airflow DAG and task ids, KFP component and task names, ML
Metadata context and type names, and folders under the artifact root. They are checked
once, here, when a pipeline is defined (and again when an IR is loaded), so no orchestrator
ever has to escape one and none can reach outside the artifact root."""
from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "NameError_", "check_name", "is_safe_name"]

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]{0,62}"
_RX = re.compile(NAME_PATTERN + r"\Z")


class NameError_(ValueError):
    """A name is not a safe identifier."""


def is_safe_name(value) -> bool:
    return isinstance(value, str) and _RX.match(value) is not None


def check_name(kind: str, value, error: type[Exception] = NameError_) -> str:
    """``value`` if it is a safe name; else ``error`` saying what a ``kind`` must be."""
    if not is_safe_name(value):
        raise error(f"{kind} {value!r}: expected a name of letters, digits, '_' and '-', starting with a letter "
                    f"or '_', at most 63 characters ({NAME_PATTERN})")
    return value
