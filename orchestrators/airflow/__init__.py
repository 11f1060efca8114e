"""Airflow 3: the IR as a DAG (a fixed DAG module reading the IR file), and a local runner
that runs it with real Airflow (``airflow dags test``)."""
from .compiler import AirflowCompileError, compile_airflow, dag_id_of

__all__ = ["compile_airflow", "dag_id_of", "AirflowCompileError"]
