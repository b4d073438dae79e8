"""Serve a registered model locally the way Model Serving does, with MLflow's own scoring app.

The app answers at ``/invocations`` (plus ``/ping``, ``/health``, ``/version``) and at
``/serving-endpoints/{name}/invocations``, so an endpoint-mode Predictor can talk to it. Like a
workspace endpoint, each answer carries a ``served-model-name`` header naming the served entity
(by default ``<model>-<version>``, the name a workspace gives an unnamed served entity), which
databricks-sdk reads into ``QueryEndpointResponse.served_model_name``.
"""

from __future__ import annotations

import logging
from typing import Any

from ._exceptions import ConfigurationError
from ._registry import activate, resolve_registry_uri

logger = logging.getLogger(__name__)

__all__ = ["ServedModelName", "build_app", "default_served_name", "serve"]


class ServedModelName:
    """ASGI middleware: the ``served-model-name`` header on every invocations answer."""

    def __init__(self, app: Any, served_model_name: str) -> None:
        self.app, self.header = app, (b"served-model-name", served_model_name.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/invocations"):
            await self.app(scope, receive, send)
            return

        async def send_with_name(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_name)


def default_served_name(model_uri: str, registry: str) -> str:
    """``<model>-<version>`` for a registered model (aliases resolved), as a workspace names it."""
    from ._signatures import _resolve_alias_sync, parse_model_uri

    try:
        model, version, alias = parse_model_uri(model_uri)
    except ConfigurationError:  # runs:/..., a path: no registered version to name
        return model_uri.rstrip("/").rsplit("/", 1)[-1]
    version = version or _resolve_alias_sync(registry, model, str(alias))
    return f"{model.split('.')[-1]}-{version}"


def build_app(
    model_uri: str, name: str, registry_uri: str | None = None, served_entity: str | None = None
) -> Any:
    """Load ``model_uri`` and return an ASGI app serving it under both paths, answering as
    ``served_entity`` (default: :func:`default_served_name`)."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.applications import Starlette
    from starlette.routing import Mount

    registry = resolve_registry_uri(registry_uri)
    activate(registry)
    model = mlflow.pyfunc.load_model(model_uri)
    scoring_app = scoring_server.init(model)
    served = served_entity or default_served_name(model_uri, registry)
    logger.info("serving %s as endpoint %r, served entity %r", model_uri, name, served)
    routes = [Mount(f"/serving-endpoints/{name}", app=scoring_app), Mount("/", app=scoring_app)]
    return ServedModelName(Starlette(routes=routes), served)


def serve(
    model_uri: str,
    name: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    registry_uri: str | None = None,
    served_entity: str | None = None,
) -> None:
    """Run :func:`build_app` under uvicorn until interrupted."""
    import uvicorn

    app = build_app(model_uri, name, registry_uri, served_entity)
    uvicorn.run(app, host=host, port=port, log_level="info")
