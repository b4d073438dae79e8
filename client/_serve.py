"""Serve a registered model locally the way Model Serving does, with MLflow's own scoring app.

The app answers at ``/invocations`` (plus ``/ping``, ``/health``, ``/version``) and at
``/serving-endpoints/{name}/invocations``, so an endpoint-mode Predictor can talk to it.
"""

from __future__ import annotations

import logging
from typing import Any

from ._registry import activate, resolve_registry_uri

logger = logging.getLogger(__name__)

__all__ = ["build_app", "serve"]


def build_app(model_uri: str, name: str, registry_uri: str | None = None) -> Any:
    """Load ``model_uri`` and return an ASGI app serving it under both paths."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.applications import Starlette
    from starlette.routing import Mount

    activate(resolve_registry_uri(registry_uri))
    model = mlflow.pyfunc.load_model(model_uri)
    scoring_app = scoring_server.init(model)
    logger.info("serving %s as endpoint %r", model_uri, name)
    return Starlette(
        routes=[
            Mount(f"/serving-endpoints/{name}", app=scoring_app),
            Mount("/", app=scoring_app),
        ]
    )


def serve(
    model_uri: str,
    name: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    registry_uri: str | None = None,
) -> None:
    """Run :func:`build_app` under uvicorn until interrupted."""
    import uvicorn

    app = build_app(model_uri, name, registry_uri)
    uvicorn.run(app, host=host, port=port, log_level="info")
