"""The local orchestrator: every node in this process, one after another."""
from .runner import LocalRunner

__all__ = ["LocalRunner"]
