"""Beam orchestrator: the whole pipeline DAG as one Apache Beam pipeline."""
from .runner import DAG_ARGS_ENV, BeamDagRunner

__all__ = ["BeamDagRunner", "DAG_ARGS_ENV"]
