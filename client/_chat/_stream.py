"""Streamed chat answers: SSE over HTTP or a loaded model's ``predict_stream``, as ``ChatDelta`` objects.

Modelled on openai-python's ``Stream``/``AsyncStream``: an iterator that owns its source and
closes it when the loop ends, breaks early, is cancelled or fails. A request is retried only
before its first byte arrives; after that a broken or stalled stream is a ``StreamInterruptedError``
saying how much arrived, and an error event is a ``StreamEventError``. The sync ``ChatStream`` is a
thin shell over ``AsyncChatStream`` through the client's portal loop (``client/_http/sync.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import httpx

from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    ModelError,
    StreamEventError,
    StreamInterruptedError,
)
from .._http import sync as _sync
from .._http.auth import Auth
from .._http.transport import RetryConfig, Transport
from .._http.wire import encode_body
from ._formats import Accumulator, EventError, parse_event, parse_response
from ._messages import Format
from ._types import ChatDelta, ChatResult

log = logging.getLogger(__name__)

#: Asks MLflow's agent server for the trace id (Model Serving reads ``databricks_options`` instead).
RETURN_TRACE_HEADER = "x-mlflow-return-trace-id"
_DONE = "[DONE]"

EventSource = Callable[[], Awaitable[AsyncIterator[Any]]]


async def open_response(
    transport: Transport, url: str, body: dict[str, Any], *, auth: Auth, retry: RetryConfig,
    timeout: httpx.Timeout, stream: bool,
) -> httpx.Response:
    """POST ``body`` through the transport's one request method (retries, auth flow, errors) until
    a 2xx response's headers arrive. With ``stream=True`` the body is left unread for the caller,
    who must close the response: a stream is retried only before its first byte.
    """
    content = encode_body(body)  # as predictions are: NaN and infinities are refused, never sent
    headers = {"Content-Type": "application/json", RETURN_TRACE_HEADER: "true",
               "Accept": "text/event-stream" if stream else "application/json"}
    # total_timeout bounds the wait for the answer to begin (all attempts), not a long stream.
    # Streamed or not, the body is read outside the retries: once the server has the whole request
    # (an agent may already have acted on it), an answer that breaks off is never sent again.
    response, _ = await transport.request("POST", url, content=content, headers=headers, auth=auth,
                                          budget=retry.start(), timeout=timeout, stream=True)
    if not stream:
        try:
            await response.aread()
        except httpx.TimeoutException as err:
            raise APITimeoutError(request=response.request) from err
        except httpx.TransportError as err:
            raise APIConnectionError(
                f"the answer broke off after the request was sent ({type(err).__name__}); it is not sent again, "
                "as the model may have acted on it", request=response.request) from err
        finally:
            await response.aclose()
    return response


async def sse_events(response: httpx.Response, fmt: Format) -> AsyncIterator[Any]:
    """Decoded ``data:`` payloads until ``[DONE]``; a JSON (non-streamed) answer becomes its items."""
    from httpx_sse import EventSource as SSE

    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        # A server that does not stream (MLflow's scoring server) answers JSON: use it whole.
        await response.aread()
        for item in _whole_answer_events(fmt, answer_json(response)):
            yield item
        return
    async for sse in SSE(response).aiter_sse():
        data = sse.data.strip()
        if not data:  # a keep-alive
            continue
        if data == _DONE:
            return
        if sse.event == "error":  # an error by its SSE name, whatever its data holds
            yield _error_event(data)
            continue
        try:
            yield json.loads(data)
        except ValueError as err:
            raise APIResponseValidationError(f"a stream event is not JSON: {data[:100]!r}") from err
    raise _Unfinished("the stream ended before [DONE]")


def _error_event(data: str) -> dict[str, Any]:
    """An ``event: error`` as the ``{"type": "error", ...}`` event ``parse_event`` raises on."""
    try:
        payload = json.loads(data)
    except ValueError:
        payload = data
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("error") or payload.get("detail") or data
        return {**payload, "type": "error", "message": message}
    return {"type": "error", "message": str(payload)}


def answer_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as err:
        raise APIResponseValidationError(f"the answer is not JSON: {response.text[:100]!r}") from err


def _whole_answer_events(fmt: Format, body: Any) -> list[dict[str, Any]]:
    """A non-streamed answer as ``response.output_item.done``-like events, so one code path reads both."""
    try:
        answer = parse_response(fmt, body)
    except ValueError as err:
        raise APIResponseValidationError(f"not a chat answer: {err}") from err
    return [{"_whole_answer": body, "_answer": answer}]


class _Unfinished(Exception):
    pass


class AsyncChatStream:
    """An async iterator of :class:`ChatDelta` that owns its connection (or model generator).

    Leaving the loop early, cancelling or an error closes it; ``async with`` closes it for sure.
    After the loop, :meth:`get_final_result` is the whole answer as a :class:`ChatResult`.

    Example::

        async with p.astream("Tell me about iris") as stream:
            async for delta in stream:
                print(delta.text, end="")
        stream.get_final_result().trace_id
    """

    def __init__(self, fmt: Callable[[], Awaitable[Format]], open_source: Callable[[Format], Awaitable[Any]],
                 meta: Callable[[], dict[str, Any]]) -> None:
        self._outcome = _Outcome()
        # The generator must not reference this object: then dropping the stream after ``break``
        # frees the generator at once, and asyncio's finalizer closes the connection.
        self._iterator = _run(fmt, open_source, meta, self._outcome)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatDelta:
        return await self._iterator.__anext__()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and close the connection (idempotent)."""
        await self._iterator.aclose()

    def get_final_result(self) -> ChatResult:
        """The whole answer, once the stream has ended."""
        if self._outcome.result is None:
            raise RuntimeError("the stream has not finished yet")
        return self._outcome.result

    async def until_done(self) -> ChatResult:
        """Read the rest of the stream and return the whole answer."""
        async for _ in self:
            pass
        return self.get_final_result()


class _Outcome:
    result: ChatResult | None = None


async def _run(fmt_of: Callable[[], Awaitable[Format]], open_source: Callable[[Format], Awaitable[Any]],
               meta: Callable[[], dict[str, Any]], outcome: _Outcome) -> AsyncGenerator[ChatDelta, None]:
    started = time.perf_counter()
    first_text: float | None = None
    fmt = await fmt_of()
    source, close = await open_source(fmt)
    acc = Accumulator()
    try:
        async for event in source:
            acc.n_events += 1
            for delta in _deltas(fmt, event):
                delta = acc.feed(delta)
                if delta.text and first_text is None:
                    first_text = time.perf_counter()
                yield delta
    except EventError as err:
        raise StreamEventError(err.message, error_code=err.code, events_received=acc.n_events,
                               text_received=len(acc.text)) from None
    except (httpx.TimeoutException, httpx.TransportError, _Unfinished) as err:
        timed_out = isinstance(err, httpx.TimeoutException)
        what = "timed out waiting for the next chunk" if timed_out else (
            str(err) if isinstance(err, _Unfinished) else f"connection broke mid-stream: {type(err).__name__}")
        raise StreamInterruptedError(what, timed_out=timed_out, events_received=acc.n_events,
                                     text_received=len(acc.text)) from err
    finally:
        await close()
    outcome.result = ChatResult(
        text=acc.text, messages=acc.final_messages(), events=acc.events, custom_outputs=acc.custom_outputs,
        trace_id=acc.trace_id, request_id=acc.request_id, elapsed_ms=(time.perf_counter() - started) * 1000,
        first_text_ms=None if first_text is None else (first_text - started) * 1000, **meta(),
    )


def _deltas(fmt: Format, event: Any) -> list[ChatDelta]:
    if isinstance(event, dict) and "_whole_answer" in event:
        answer = event["_answer"]
        deltas = [ChatDelta(type="message", item_id=m.id, message=m, event={}) for m in answer.messages]
        deltas += [ChatDelta(type="other", event=e) for e in answer.events]
        if answer.trace_id or answer.request_id:
            deltas.append(ChatDelta(type="trace", trace_id=answer.trace_id, request_id=answer.request_id))
        return deltas
    return parse_event(fmt, event)


def http_source(transport: Transport, url: str, body_for: Callable[[Format], dict[str, Any]], *, auth: Auth,
                retry: RetryConfig, timeout: httpx.Timeout, on_response: Callable[[httpx.Response], None],
                ) -> Callable[[Format], Awaitable[Any]]:
    async def open_(fmt: Format) -> tuple[AsyncIterator[Any], Callable[[], Awaitable[None]]]:
        response = await open_response(transport, url, body_for(fmt), auth=auth, retry=retry, timeout=timeout,
                                       stream=True)
        on_response(response)
        return sse_events(response, fmt), response.aclose

    return open_


def direct_source(model: Any, body_for: Callable[[Format], dict[str, Any]]) -> Callable[[Format], Awaitable[Any]]:
    """The loaded model's ``predict_stream``, run off the event loop (see :func:`thread_events`)."""

    async def open_(fmt: Format) -> tuple[AsyncIterator[Any], Callable[[], Awaitable[None]]]:
        payload = body_for(fmt)

        def events() -> Iterator[Any]:
            yield from model.predict_stream(payload)
            trace_id = last_trace_id()  # MLflow traces a ResponsesAgent's predict_stream itself
            if trace_id:
                yield {"trace_id": trace_id}

        return thread_events(events)

    return open_


def last_trace_id() -> str | None:
    """The trace MLflow recorded last in this thread (a loaded agent's call), if any."""
    try:
        import mlflow

        return mlflow.get_last_active_trace_id(thread_local=True)
    except Exception:  # tracing is optional; an answer never fails for it
        log.debug("no trace id", exc_info=True)
        return None


_END = object()


def thread_events(
    make_iterator: Callable[[], Iterable[Any]],
) -> tuple[AsyncIterator[Any], Callable[[], Awaitable[None]]]:
    """Iterate a blocking generator in a thread of its own, handing each item to the event loop.

    One thread for the whole generator, in a copy of the caller's context: MLflow's
    ``predict_stream`` sets context variables that must be reset in the context that set them,
    and one long-lived stream must not hold a slot of the loop's small default executor. ``close``
    asks the thread to stop; it closes the generator itself, after the item in hand.
    A model's exception arrives as ``ModelError``.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def post(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def produce() -> None:
        try:
            iterator = iter(make_iterator())
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    post(item)
            finally:
                close_iterator = getattr(iterator, "close", None)
                if close_iterator is not None:
                    close_iterator()
        except Exception as err:
            post(_END, ModelError(f"the model raised {type(err).__name__}: {str(err)[:300]}"))
        else:
            post(_END)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(produce,), name="client-chat-stream", daemon=True).start()

    async def events() -> AsyncIterator[Any]:
        while True:
            item, error = await queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item

    async def close() -> None:
        stop.set()

    return events(), close


def call_model(step: Callable[[], Any]) -> Any:
    try:
        return step()
    except Exception as err:
        raise ModelError(f"the model raised {type(err).__name__}: {str(err)[:300]}") from err


class ChatStream:
    """The sync :class:`AsyncChatStream`: each step runs on the client's portal loop.

    Example::

        for delta in p.stream("Tell me about iris"):
            print(delta.text, end="", flush=True)
    """

    def __init__(self, inner: AsyncChatStream) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[ChatDelta]:
        # A generator: leaving the for loop early drops it, and its ``finally`` closes the stream.
        try:
            while True:
                try:
                    yield _sync.run(_next(self._inner))
                except StopAsyncIteration:
                    return
        finally:
            self.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and close the connection (idempotent)."""
        _sync.run(self._inner.aclose())

    def get_final_result(self) -> ChatResult:
        return self._inner.get_final_result()

    def until_done(self) -> ChatResult:
        for _ in self:
            pass
        return self.get_final_result()


async def _next(stream: AsyncChatStream) -> ChatDelta:
    return await stream.__anext__()
