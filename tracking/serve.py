"""``tfpipe serve``: the registry's models on tfpipe's model server (``tfpipe.serving``).

Each registered model is served from its push destination: the ``models.config`` the
registry writes there on every alias change (the aliased versions, labels = aliases) or,
before any alias was set, the latest pushed version. The server polls that file, so
``tfpipe models promote``/``rollback``/``alias set`` reach it while it runs.
"""
from __future__ import annotations

import sys

from .registry import Registry, RegistryError

__all__ = ["registry_sources", "run_serve"]


def registry_sources(store, models: list[str] | None = None) -> list:
    """One ``BasePathSource`` per registered model (its newest push destination)."""
    from tfpipe.serving.manager import BasePathSource
    pushed = Registry(store).pushed_versions()
    names = sorted({v["model"] for v in pushed})
    if not names:
        raise RegistryError(f"no pushed model versions in the metadata store ({store.where}); a run's Pusher must "
                            f"push a blessed model before anything can be served")
    unknown = sorted(set(models or ()) - set(names))
    if unknown:
        raise RegistryError(f"no registered model(s) {unknown}; models: {names}")
    out = []
    for name in models or names:
        dests = [v["destination"] for v in pushed if v["model"] == name and v["destination"]]
        if len(set(dests)) > 1:
            print(f"[tfpipe serve] model {name} was pushed to several destinations; serving the newest, "
                  f"{dests[-1]}", file=sys.stderr)
        out.append(BasePathSource(name, dests[-1]))
    return out


def run_serve(store, models: list[str] | None = None, log_requests: str | None = None, sample_rate: float = 1.0,
              **server_kwargs) -> int:
    from tfpipe.serving.server import open_request_log, serve
    return serve(registry_sources(store, models), request_log=open_request_log(log_requests, sample_rate),
                 **server_kwargs)
