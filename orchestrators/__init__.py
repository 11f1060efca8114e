"""Orchestrator adapters. Each consumes only the compiled IR and enters the shared
launcher (``tfpipe.launcher.run_node``) for every node."""
__all__ = ["local", "beam", "airflow", "kubeflow", "task", "taskhost"]
