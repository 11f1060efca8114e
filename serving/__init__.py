"""Serving: the registry's models behind TensorFlow Serving's REST API. Imports only the
core; components (the InfraValidator) and tracking (``tfpipe serve``, the registry) use it.
Each module is imported by what needs it:

- ``features``: a SavedModel's signatures and raw feature spec; JSON -> tf.Example
- ``config``: TF Serving's ``models.config`` (written by the registry, polled by servers)
- ``servable``: one loaded version and its batching queue
- ``manager``: which versions are served, kept in step with their sources
- ``app``: the REST API (Starlette); ``server``: the process (uvicorn), ``python -m tfpipe.serving``;
  ``options``: its command-line flags
- ``request_log``: sampled requests to Parquet (by day) or BigQuery, off the request path
- ``client``: start a server process and talk to it
"""
__all__ = ["features", "config", "servable", "manager", "app", "server", "options", "request_log", "client"]
