"""Model Serving's OpenAI-compatible routes for the one endpoint ``predictor serve`` serves.

Databricks recommends the ``openai`` package for chat models and agents::

    client = OpenAI(base_url=f"{host}/serving-endpoints", api_key=token)
    client.chat.completions.create(model="<endpoint>", messages=[...])   # ChatModel, ChatAgent
    client.responses.create(model="<endpoint>", input=[...])              # ResponsesAgent

which posts to ``{host}/serving-endpoints/chat/completions`` and ``.../responses`` with the endpoint
in ``model``. This ASGI middleware checks ``model`` and hands the request, without it, to MLflow's
agent server: its ``/invocations`` for the chat-completions and ChatAgent shapes (the model's own
answer, streamed or not), its own OpenAI route ``/responses`` for a ResponsesAgent. Nothing is
translated here but errors, which the agent server words its own way (``{"detail": ...}``, a
``{"error": "..."}`` stream event), into OpenAI's ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CHAT_COMPLETIONS_PATH", "RESPONSES_PATH", "OpenAIRoutes"]

CHAT_COMPLETIONS_PATH = "/serving-endpoints/chat/completions"
RESPONSES_PATH = "/serving-endpoints/responses"

#: Which route each chat format answers on, and what to call it in an error.
_ROUTE_OF = {"completions": CHAT_COMPLETIONS_PATH, "chat_agent": CHAT_COMPLETIONS_PATH, "responses": RESPONSES_PATH}
_INTERFACE = {"completions": "chat model", "chat_agent": "ChatAgent", "responses": "ResponsesAgent"}


class OpenAIRoutes:
    """ASGI middleware in front of ``app``: the two OpenAI routes, answered by ``agent_app`` (MLflow's
    agent server) for endpoint ``name`` serving chat format ``fmt`` (``None``: not a chat model)."""

    def __init__(self, app: Any, agent_app: Any, name: str, fmt: str | None) -> None:
        self.app, self.agent_app, self.name, self.fmt = app, agent_app, name, fmt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in (CHAT_COMPLETIONS_PATH, RESPONSES_PATH):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _error(send, 405, f"{path} takes POST", "invalid_request_error")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            await _error(send, 400, "the request body must be a JSON object", "invalid_request_error")
            return
        model = data.pop("model", None)
        if model != self.name:
            await _error(send, 404, f"The model {model!r} does not exist: this server serves endpoint {self.name!r} "
                         "(pass it as model=...)", "invalid_request_error", code="model_not_found", param="model")
            return
        if self.fmt is None or _ROUTE_OF[self.fmt] != path:
            what = f"a {_INTERFACE[self.fmt]}: use {_ROUTE_OF[self.fmt]}" if self.fmt else "not a chat model"
            await _error(send, 400, f"endpoint {self.name!r} serves {what}", "invalid_request_error")
            return
        target = "/responses" if path == RESPONSES_PATH else "/invocations"
        content = json.dumps(data).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-type")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        inner = {**scope, "path": target, "raw_path": target.encode(), "headers": headers}
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:  # the body was read: what follows is the client going away (or waiting for it)
                return await receive()
            sent = True
            return {"type": "http.request", "body": content, "more_body": False}

        await self.agent_app(inner, replay, _OpenAIErrors(send))


class _OpenAIErrors:
    """The agent server's answers, its errors reworded in OpenAI's shape; everything else untouched."""

    def __init__(self, send: Any) -> None:
        self.send, self.start, self.held = send, None, b""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            if message["status"] >= 400:
                self.start = message  # held until the whole error body is here
                return
            await self.send(message)
            return
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        if self.start is not None:
            self.held += message.get("body", b"")
            if not message.get("more_body"):
                status = self.start["status"]
                await _error(self.send, status, _detail(self.held),
                             "invalid_request_error" if status < 500 else "server_error")
            return
        body = message.get("body", b"")
        if body.startswith(b'data: {"error": '):  # the agent server's error event: one per body message
            event = json.loads(body.decode().removeprefix("data: "))
            if isinstance(event.get("error"), str):
                reworded = {"error": {"message": event["error"], "type": "server_error", "code": None}}
                message = {**message, "body": f"data: {json.dumps(reworded)}\n\n".encode()}
        await self.send(message)


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500] or "error"
    if isinstance(data, dict):
        detail = data.get("detail") or data.get("message") or data.get("error") or data
        return detail if isinstance(detail, str) else json.dumps(detail)[:500]
    return str(data)[:500]


async def _error(send: Any, status: int, message: str, kind: str, code: str | None = None,
                 param: str | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
