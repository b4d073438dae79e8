"""Serve a registered model locally the way Model Serving does, with MLflow's own servers.

Classic models get MLflow's scoring app; chat and agent models (``metadata.task`` one of the chat
tasks) get MLflow's agent server (``mlflow.genai.agent_server``): SSE streaming when the body says
``"stream": true`` and trace ids on request. Either answers at ``/invocations`` (plus ``/ping``)
and at ``/serving-endpoints/{name}/invocations``, so an endpoint-mode Predictor can talk to it; a
chat model also at Model Serving's OpenAI-compatible ``/serving-endpoints/chat/completions`` or
``/serving-endpoints/responses`` (``openai_routes``), so the ``openai`` package can too. Like a
workspace endpoint, each answer carries a ``served-model-name`` header naming the served entity
(by default ``<model>-<version>``, the name a workspace gives an unnamed served entity), which
databricks-sdk reads into ``QueryEndpointResponse.served_model_name``.
"""

from __future__ import annotations

import logging
from typing import Any

from .._exceptions import ConfigurationError
from .._mlflow import mlflow_session, resolve_alias, use_experiment
from .openai_routes import CHAT_COMPLETIONS_PATH, RESPONSES_PATH, OpenAIRoutes

logger = logging.getLogger(__name__)

__all__ = ["ServedModelName", "build_app", "default_served_name", "serve"]


class ServedModelName:
    """ASGI middleware: the ``served-model-name`` header on every invocations answer."""

    def __init__(self, app: Any, served_model_name: str) -> None:
        self.app, self.header = app, (b"served-model-name", served_model_name.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not (scope["path"].endswith("/invocations")
                                           or scope["path"] in (CHAT_COMPLETIONS_PATH, RESPONSES_PATH)):
            await self.app(scope, receive, send)
            return

        async def send_with_name(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_name)


def default_served_name(model_uri: str, registry: str) -> str:
    """``<model>-<version>`` for a registered model (aliases resolved), as a workspace names it."""
    from .._schema.signatures import parse_model_uri

    try:
        model, version, alias = parse_model_uri(model_uri)
    except ConfigurationError:  # runs:/..., a path: no registered version to name
        return model_uri.rstrip("/").rsplit("/", 1)[-1]
    version = version or resolve_alias(registry, model, str(alias))
    return f"{model.split('.')[-1]}-{version}"


def build_app(
    model_uri: str, name: str, registry_uri: str | None = None, served_entity: str | None = None,
    experiment: str | None = None,
) -> Any:
    """Load ``model_uri`` and return an ASGI app serving it under both paths, answering as
    ``served_entity`` (default: :func:`default_served_name`). A chat model's answers are traced
    by the agent server into ``experiment`` (a name, created if missing, or an id; default:
    ``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID``, else the store's Default experiment)."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import BaseRoute, Mount, Route

    from .._chat._messages import TASK_FORMATS

    with mlflow_session(registry_uri) as registry:  # and MLflow stays there: this process serves one model
        model = mlflow.pyfunc.load_model(model_uri)
        task = (model.metadata.metadata or {}).get("task")
        chat = task in TASK_FORMATS
        if chat and experiment:
            use_experiment(experiment)
    scoring_app = agent_app(model, TASK_FORMATS[str(task)]) if chat else scoring_server.init(model)
    served = served_entity or default_served_name(model_uri, registry)
    logger.info("serving %s as endpoint %r, served entity %r%s", model_uri, name, served,
                f" (agent server, {task})" if chat else "")
    # The agent server has /health but no /ping; Model Serving and the scoring server answer both.
    routes: list[BaseRoute] = [
        Route(path, lambda _request: PlainTextResponse("\n")) for path in ("/ping", f"/serving-endpoints/{name}/ping")
    ] if chat else []
    routes += [Mount(f"/serving-endpoints/{name}", app=scoring_app), Mount("/", app=scoring_app)]
    app = OpenAIRoutes(Starlette(routes=routes), scoring_app, name, TASK_FORMATS[str(task)] if chat else None)
    return ServedModelName(app, served)


def agent_app(model: Any, fmt: str) -> Any:
    """MLflow's agent server around a loaded chat model; one per process (it keeps its handlers
    in module globals). ``predict_stream`` runs in a thread of its own, so a slow model
    never stalls the server's event loop (the agent server would iterate a sync generator on it).
    """
    import asyncio

    from mlflow.genai.agent_server import server as agent_server

    from .._chat._stream import thread_events

    def payload(request: Any) -> dict[str, Any]:
        data = request.model_dump(exclude_none=True) if hasattr(request, "model_dump") else dict(request)
        data.pop("databricks_options", None)  # Model Serving's, not the model's
        return data

    # The agent server returns the trace id on request only for a ResponsesAgent; the legacy chat
    # interfaces get it the same way here (``metadata.trace_id``, or a last ``{"trace_id"}`` event).
    ids = fmt != "responses"

    async def invoke(request: Any) -> Any:
        trace_id = _trace_id_asked() if ids else None
        answer = await asyncio.to_thread(model.predict, payload(request))
        if trace_id and isinstance(answer, dict):
            answer = {**answer, "metadata": {**(answer.get("metadata") or {}), "trace_id": trace_id}}
        return answer

    async def stream(request: Any) -> Any:
        trace_id = _trace_id_asked() if ids else None
        data = payload(request)
        events, close = thread_events(lambda: model.predict_stream(data))
        try:
            async for event in events:
                yield event
        finally:
            await close()
        if trace_id:
            yield {"trace_id": trace_id}

    agent_server._invoke_function, agent_server._stream_function = invoke, stream
    return agent_server.AgentServer("ResponsesAgent" if fmt == "responses" else None).app


def _trace_id_asked() -> str | None:
    """The agent server's span's trace id, if the request asked for it (its own header)."""
    import mlflow
    from mlflow.genai.agent_server.server import RETURN_TRACE_HEADER
    from mlflow.genai.agent_server.utils import get_request_headers

    if (get_request_headers().get(RETURN_TRACE_HEADER) or "").lower() != "true":
        return None
    span = mlflow.get_current_active_span()
    return span.trace_id if span is not None else None


def serve(
    model_uri: str,
    name: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    registry_uri: str | None = None,
    served_entity: str | None = None,
    experiment: str | None = None,
) -> None:
    """Run :func:`build_app` under uvicorn until interrupted."""
    import uvicorn

    app = build_app(model_uri, name, registry_uri, served_entity, experiment)
    uvicorn.run(app, host=host, port=port, log_level="info")
