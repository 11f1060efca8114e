"""Tracking: what happens around and after runs. Runs listed and compared, the record read
back (runs, artifacts, lineage), the model registry, reproduction, monitoring, the HTML
report, the MLflow export and CI planning. Reads ML Metadata through the core; may start
an orchestrator to re-run; never imports components or the CLI. Each module is imported
by the command that needs it."""
__all__ = ["runs", "records", "results", "registry", "reproduce", "report", "report_svg", "mlflow_export",
           "monitor", "ci_plan"]
