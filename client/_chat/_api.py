"""What ``Predictor.kind``, ``chat``, ``achat``, ``stream`` and ``astream`` do, kept out of ``_predictor``.

Each function is handed a ``ModelHandle`` (``client._settings``): the settings, the transport,
the credentials, the model loaded in process and how to learn the model's identity, never the
Predictor. The wire formats live in ``_formats`` and the streaming in ``_stream``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from .._exceptions import APIResponseValidationError, ConfigurationError, PredictorError
from ._formats import parse_response, request_body
from ._messages import TASK_FORMATS, Format, Kind, detect, validate_messages
from ._stream import AsyncChatStream, answer_json, call_model, direct_source, http_source, last_trace_id, open_response
from ._types import ChatMessage, ChatResult

if TYPE_CHECKING:
    from .._settings import ModelHandle
    from .._types import Signature

log = logging.getLogger(__name__)

_task_cache: dict[tuple[str, str, str], str | None] = {}
_task_lock = threading.Lock()


async def resolve(h: ModelHandle) -> tuple[Kind, Format | None]:
    """The model's kind and chat format, found once (see ``_messages.detect`` for the order)."""
    if h.learned.chat_kind is not None:
        return h.learned.chat_kind  # type: ignore[return-value]  # what detect() returned
    s = h.settings
    if s.app is not None:  # an agent in a Databricks App speaks the Responses API (its /responses route)
        h.learned.chat_kind = ("chat", "responses")
        return "chat", "responses"
    endpoint_task = metadata_task = None
    if (api := h.workspace_api()) is not None and s.endpoint is not None:
        from .._schema.signatures import get_endpoint

        try:
            endpoint_task = (await get_endpoint(api, s.endpoint)).get("task")
        except Exception as err:  # the next sources decide; the call itself reports a dead endpoint
            log.debug("reading endpoint %s for its task failed: %s", s.endpoint, err)
    signature = name = version = None
    try:
        identity = await h.identity()
        signature, name, version = identity.signature, identity.name, identity.version
    except PredictorError:
        if endpoint_task not in TASK_FORMATS:
            raise
        log.debug("no signature for chat endpoint %s", s.endpoint, exc_info=True)
    if endpoint_task not in TASK_FORMATS:
        if h.direct is not None:
            metadata_task = h.direct.task
        elif name is not None and version is not None and _shape_leaves_open(signature):
            metadata_task = await _registry_task(s.registry_uri, name, version, s.endpoint)
    found = detect(endpoint_task, metadata_task, signature)
    h.learned.chat_kind = found
    return found


def _shape_leaves_open(signature: Signature | None) -> bool:
    """Whether the registry's ``metadata.task`` could change what the signature says: only for no
    signature, or a chat-shaped one (the task then picks the format). A column signature without a
    ``messages``/``input`` array is a tabular model's: an app on such an endpoint need not import
    MLflow (seconds) and ask the registry before its form can be drawn."""
    return signature is None or detect(None, None, signature)[0] == "chat"


async def _registry_task(registry_uri: str | None, name: str, version: str, endpoint: str | None) -> str | None:
    from .._mlflow import resolve_registry_uri

    registry = resolve_registry_uri(registry_uri or ("databricks-uc" if endpoint else None))
    key = (registry, name, version)
    with _task_lock:
        if key in _task_cache:
            return _task_cache[key]
    task = await asyncio.to_thread(_read_task, registry, name, version)
    with _task_lock:
        _task_cache[key] = task
    return task


def _read_task(registry: str, name: str, version: str) -> str | None:
    import mlflow

    from .._mlflow import mlflow_session

    with mlflow_session(registry):
        try:
            metadata = mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}
        except Exception as err:  # the signature was read a moment ago; this only adds the task
            log.debug("reading metadata of %s/%s failed: %s", name, version, err)
            return None
    task = metadata.get("task")
    return str(task) if task else None


async def refuse_chat(h: ModelHandle) -> None:
    """``predict`` on a chat model: say which method to use instead. With ``validate=False`` the
    caller asked for no lookups, so only an already-known kind is checked."""
    if not h.settings.validate and h.learned.chat_kind is None:
        return
    await resolve(h)
    refuse_known_chat(h)


def refuse_known_chat(h: ModelHandle) -> None:
    """:func:`refuse_chat` once the kind is known (or left unchecked): no lookup, no await."""
    if h.learned.chat_kind is not None and h.learned.chat_kind[0] == "chat":
        raise ConfigurationError(
            f"{h.settings.target} is a chat model: use chat()/achat() or stream()/astream(), not predict()")


async def _chat_format(h: ModelHandle) -> Format:
    kind, fmt = await resolve(h)
    if kind != "chat" or fmt is None:
        s = h.settings
        hint = "" if s.model_uri or s.endpoint or s.direct else " (pass model_uri=... so its kind can be read)"
        raise ConfigurationError(f"{s.target} is a {kind} model: use predict()/apredict(), not chat(){hint}")
    return fmt


def _meta(h: ModelHandle, served: str | None = None) -> dict[str, Any]:
    identity = h.known()
    return {"mode": h.settings.mode, "endpoint": h.settings.endpoint, "model_name": identity.name,
            "model_version": identity.version, "served_model_name": served}


async def achat(h: ModelHandle, messages: Any, *, custom_inputs: dict[str, Any] | None, timeout: Any,
                max_retries: Any) -> ChatResult:
    conversation = validate_messages(messages)
    fmt = await _chat_format(h)
    started = time.perf_counter()
    served = request_id = None
    answer_body: Any
    if h.direct is not None:
        body = request_body(fmt, conversation, stream=False, custom_inputs=custom_inputs, return_trace=False)
        model = h.direct.pyfunc
        answer_body, trace_id = await asyncio.to_thread(call_model, lambda: (model.predict(body), last_trace_id()))
        if isinstance(answer_body, dict) and trace_id:
            answer_body = {**answer_body, "metadata": {**(answer_body.get("metadata") or {}), "trace_id": trace_id}}
    else:
        retry, http_timeout = h.settings.for_call(timeout, max_retries)
        body = request_body(fmt, conversation, stream=False, custom_inputs=custom_inputs)
        assert h.settings.url is not None
        response = await open_response(h.transport, h.settings.url, body, auth=h.auth, retry=retry,
                                       timeout=http_timeout, stream=False)
        served, request_id = response.headers.get("served-model-name"), response.headers.get("x-request-id")
        answer_body = answer_json(response)
    try:
        answer = parse_response(fmt, answer_body)
    except ValueError as err:
        raise APIResponseValidationError(f"not a chat answer: {err}") from err
    return ChatResult(
        text=answer.text, messages=answer.messages, events=answer.events, custom_outputs=answer.custom_outputs,
        trace_id=answer.trace_id, request_id=answer.request_id or request_id,
        elapsed_ms=(time.perf_counter() - started) * 1000, **_meta(h, served),
    )


def astream(h: ModelHandle, messages: Any, *, custom_inputs: dict[str, Any] | None, timeout: Any,
            max_retries: Any) -> AsyncChatStream:
    conversation: list[ChatMessage] = validate_messages(messages)  # before anything is sent
    served: dict[str, str | None] = {"served": None, "request_id": None}

    def body_for(fmt: Format) -> dict[str, Any]:
        return request_body(fmt, conversation, stream=h.direct is None, custom_inputs=custom_inputs,
                            return_trace=h.direct is None)

    if h.direct is not None:
        direct = h.direct

        async def open_direct(fmt: Format) -> Any:
            await direct.load()
            return await direct_source(direct.pyfunc, body_for)(fmt)

        opener: Callable[[Format], Awaitable[Any]] = open_direct
    else:
        retry, http_timeout = h.settings.for_call(timeout, max_retries)

        def on_response(response: httpx.Response) -> None:
            served["served"] = response.headers.get("served-model-name")
            served["request_id"] = response.headers.get("x-request-id")

        assert h.settings.url is not None
        opener = http_source(h.transport, h.settings.url, body_for, auth=h.auth, retry=retry, timeout=http_timeout,
                             on_response=on_response)

    def meta() -> dict[str, Any]:
        return _meta(h, served["served"])

    return AsyncChatStream(lambda: _chat_format(h), opener, meta)
