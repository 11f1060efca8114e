"""Airflow 3: compile the IR to a DAG file whose tasks run nodes through the launcher."""
from .compiler import AirflowCompileError, compile_airflow, dag_id_of, render_dag

__all__ = ["compile_airflow", "render_dag", "dag_id_of", "AirflowCompileError"]
