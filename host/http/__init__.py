"""The host's HTTP API, live dashboard and Prometheus metrics (docs/HTTP.md).

    settings.py   resolve_settings(cfg, override) -> HttpSettings or None (off)
    server.py     HttpServer(view, settings): binds at once (UserError if the port is taken);
                  start(), url, close()
    api.py        routes and handlers; every read goes through the coordinator's narrow view
                  (becomingone/coordinator/view.py CoordinatorView)
    events.py     dashboard snapshots and the ledger's decision/collapse timeline (SSE)
    metrics.py    /metrics (prometheus-client)
    openapi.py    /openapi.json
    responses.py  ApiError, Raw, JSON encoding
The composition root (becomingone/cell.py) starts and stops the server.
"""
from becomingone.http.settings import (ENV_HTTP, ENV_TOKEN, MIN_TOKEN, HttpSettings, is_loopback,
                                       parse_address, resolve_settings)

__all__ = ["HttpSettings", "resolve_settings", "parse_address", "is_loopback", "ENV_HTTP",
           "ENV_TOKEN", "MIN_TOKEN"]
