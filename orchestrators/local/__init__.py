from .runner import LocalRunner, RunResult, select_nodes

__all__ = ["LocalRunner", "RunResult", "select_nodes"]
