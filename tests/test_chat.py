"""Chat models without servers: message checks, kind detection, the three wire formats, and streams
over ``httpx.MockTransport`` (retries only before the first byte, breaks, error events, closing)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from client import (
    APIConnectionError,
    ChatMessage,
    ConfigurationError,
    InternalServerError,
    Predictor,
    SchemaValidationError,
    StreamEventError,
    StreamInterruptedError,
)
from client._chat._formats import Accumulator, parse_event, parse_response, request_body
from client._chat._messages import detect, validate_messages
from client._types import ColumnSpec, Signature

URL = "http://127.0.0.1:9/serving-endpoints/agent/invocations"


# --- messages and kinds --------------------------------------------------------------------


def test_a_str_is_one_user_turn_and_a_list_keeps_its_order() -> None:
    assert validate_messages("Hi") == [ChatMessage(role="user", content="Hi")]
    got = validate_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert [m.role for m in got] == ["system", "user"]


def test_every_bad_message_is_reported_at_once_with_its_index() -> None:
    with pytest.raises(SchemaValidationError) as info:
        validate_messages([{"role": "robot", "content": "x"}, {"role": "user", "content": 3}, "nope",
                           {"role": "tool", "content": "42"}])
    where = {(p.row, p.column) for p in info.value.problems}
    assert {(0, "role"), (1, "content"), (2, None), (3, "tool_call_id")} <= where
    assert "robot" in str(info.value)


@pytest.mark.parametrize("bad", ["", "   ", [], 42, [{"role": "user"}], [{"role": "assistant", "content": "hi"}]])
def test_empty_or_malformed_conversations_are_refused(bad: Any) -> None:
    with pytest.raises(SchemaValidationError):
        validate_messages(bad)


def _sig(*names: str, outputs: tuple[str, ...] = ()) -> Signature:
    return Signature(columns=tuple(ColumnSpec(name=n, type="array") for n in names),
                     outputs=tuple(ColumnSpec(name=n, type="array") for n in outputs))


def test_kind_comes_from_the_endpoint_task_then_the_metadata_then_the_signature() -> None:
    responses_sig = _sig("input")
    assert detect("agent/v2/chat", "agent/v1/responses", responses_sig) == ("chat", "chat_agent")
    assert detect(None, "llm/v1/chat", responses_sig) == ("chat", "completions")
    assert detect(None, None, responses_sig) == ("chat", "responses")
    assert detect(None, None, _sig("messages", outputs=("choices",))) == ("chat", "completions")
    assert detect(None, None, _sig("messages", outputs=("messages",))) == ("chat", "chat_agent")
    tabular = Signature(columns=(ColumnSpec(name="x", type="double"),))
    assert detect(None, None, tabular) == ("tabular", None)
    assert detect(None, None, None) == ("tabular", None)


# --- wire formats --------------------------------------------------------------------------


def test_request_bodies_per_format() -> None:
    convo = validate_messages([
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "add", "arguments": "[2,2]"}]},
        {"role": "tool", "content": "4", "tool_call_id": "c1"},
    ])
    body = request_body("responses", convo, stream=True)
    assert body["input"] == [
        {"role": "user", "content": "2+2?"},
        {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "[2,2]"},
        {"type": "function_call_output", "call_id": "c1", "output": "4"},
    ]
    assert body["stream"] is True and body["databricks_options"] == {"return_trace": True}
    cc = request_body("completions", convo, stream=False, return_trace=False)
    assert "stream" not in cc and "databricks_options" not in cc
    assert cc["messages"][1]["tool_calls"] == [{"id": "c1", "type": "function",
                                                "function": {"name": "add", "arguments": "[2,2]"}}]
    assert request_body("chat_agent", convo, stream=False)["messages"][2]["tool_call_id"] == "c1"


def _feed(fmt: Any, events: list[dict[str, Any]]) -> tuple[list[str], Accumulator]:
    acc = Accumulator()
    texts = [acc.feed(d).text for e in events for d in parse_event(fmt, e)]
    return texts, acc


def test_responses_stream_keeps_tool_calls_and_joins_text_items_like_the_whole_answer() -> None:
    call = {"type": "function_call", "id": "fc", "call_id": "c1", "name": "lookup", "arguments": "{}"}
    out = {"type": "function_call_output", "call_id": "c1", "output": "found"}
    msg1 = {"type": "message", "id": "m1", "role": "assistant", "content": [{"type": "output_text", "text": "Hel lo"}]}
    msg2 = {"type": "message", "id": "m2", "role": "assistant", "content": [{"type": "output_text", "text": "Bye"}]}
    events = [
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "Hel "},
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "lo"},
        {"type": "response.output_item.done", "item": msg1},
        {"type": "response.output_item.done", "item": call},
        {"type": "response.output_item.done", "item": out},
        {"type": "response.output_item.done", "item": msg2},  # a text item with no deltas
        {"type": "response.reasoning.delta", "delta": "hmm"},
        {"trace_id": "tr-1"},
    ]
    texts, acc = _feed("responses", events)
    whole = parse_response("responses", {"output": [msg1, call, out, msg2]})
    assert "".join(texts) == acc.text == whole.text == "Hel lo\n\nBye"
    assert acc.final_messages() == whole.messages
    assert acc.trace_id == "tr-1"
    assert acc.events == [{"type": "response.reasoning.delta", "delta": "hmm"}]  # nothing dropped


def test_chat_agent_and_completions_streams() -> None:
    texts, acc = _feed("chat_agent", [{"delta": {"role": "assistant", "content": "Hi ", "id": "a"}},
                                      {"delta": {"role": "assistant", "content": "there", "id": "a"}}])
    assert "".join(texts) == "Hi there" and acc.final_messages()[0].content == "Hi there"
    chunks = [
        {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me"}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c9", "function": {"name": "sea", "arguments": "{\"q\":"}}]}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "\"x\"}"}}]}}]},
        {"databricks_output": {"trace": {"info": {"trace_id": "tr-9"}}, "databricks_request_id": "rq-9"}},
    ]
    texts, acc = _feed("completions", chunks)
    assert "".join(texts) == "Let me"
    assert acc.final_messages()[-1].tool_calls[0].model_dump() == {"id": "c9", "name": "sea", "arguments": '{"q":"x"}'}
    assert (acc.trace_id, acc.request_id) == ("tr-9", "rq-9")
    whole = parse_response("completions", {"choices": [{"message": {"role": "assistant", "content": "Yo"}}],
                                           "databricks_output": {"databricks_request_id": "rq-1"}})
    assert whole.text == "Yo" and whole.request_id == "rq-1"


@pytest.mark.parametrize("event", [
    {"error": "boom"},  # MLflow's agent server
    {"databricks_output": {"error": {"message": "boom", "error_code": "E"}}},
    {"type": "error", "message": "boom", "code": "E"},
    {"type": "response.failed", "response": {"error": {"message": "boom"}}},
    {"error": {"message": "boom", "type": "server_error"}},  # OpenAI chat completions
])
def test_error_events_in_every_format_are_errors(event: dict[str, Any]) -> None:
    from client._chat._formats import EventError

    for fmt in ("responses", "chat_agent", "completions"):
        with pytest.raises(EventError, match="boom"):
            parse_event(fmt, event)  # type: ignore[arg-type]


# --- streams over a mock transport ---------------------------------------------------------


class Body(httpx.AsyncByteStream):
    """An SSE body sent piece by piece; it can stall or break after the pieces, and records its closing."""

    def __init__(self, pieces: list[bytes], *, then: Exception | None = None, stall: asyncio.Event | None = None):
        self.pieces, self.then, self.stall, self.closed = pieces, then, stall, asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.stall is not None:
            await self.stall.wait()
        if self.then is not None:
            raise self.then

    async def aclose(self) -> None:
        self.closed.set()


def sse(*events: Any, done: bool = True) -> list[bytes]:
    pieces = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
    return pieces + ([b"data: [DONE]\n\n"] if done else [])


def delta(text: str) -> dict[str, Any]:
    return {"type": "response.output_text.delta", "item_id": "m", "delta": text}


def agent(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Predictor:
    p = Predictor.from_endpoint(url=URL, http_transport=httpx.MockTransport(handler), validate=False, **kwargs)
    p._learned.chat_kind = ("chat", "responses")  # what the endpoint's task would say (tested above)
    return p


def chat_predictor(transport: Any, **kwargs: Any) -> Predictor:
    """An agent Predictor over a ``Transport`` of the test's own (to patch its sleep)."""
    p = Predictor(url=URL, transport=transport, validate=False, **kwargs)
    p._learned.chat_kind = ("chat", "responses")
    return p


def streaming(body: Body, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, stream=body)


async def test_keep_alives_are_skipped_and_the_request_asks_for_the_trace() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streaming(Body([b": ping\n\n", b"\n\n", *sse(delta("a"), delta("b"), {"trace_id": "tr"})]))

    p = agent(handler)
    stream = p.astream("hi")
    texts = [d.text async for d in stream]
    assert "".join(texts) == "ab" and stream.get_final_result().trace_id == "tr"
    assert seen[0].headers["x-mlflow-return-trace-id"] == "true"
    body = json.loads(seen[0].content)
    assert body["stream"] is True and body["databricks_options"] == {"return_trace": True}


async def test_retried_before_the_first_byte_only() -> None:
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"})
        return streaming(Body(sse(delta("ok"))))

    p = agent(flaky, max_retries=2)
    assert "".join([d.text async for d in p.astream("hi")]) == "ok" and len(calls) == 2

    broken: list[int] = []

    def breaks(request: httpx.Request) -> httpx.Response:
        broken.append(1)
        return streaming(Body(sse(delta("par"), delta("tial"), done=False), then=httpx.ReadError("reset")))

    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for d in agent(breaks, max_retries=3).astream("hi"):
            got.append(d.text)
    assert got == ["par", "tial"] and len(broken) == 1  # never re-sent once bytes arrived
    assert info.value.text_received == 7 and info.value.events_received == 2 and not info.value.timed_out
    assert "7 characters" in str(info.value)


async def test_a_stall_between_chunks_and_a_stream_without_done_are_interruptions() -> None:
    p = agent(lambda r: streaming(Body(sse(delta("x"), done=False), then=httpx.ReadTimeout("slow"))))
    with pytest.raises(StreamInterruptedError) as info:
        [d async for d in p.astream("hi")]
    assert info.value.timed_out and info.value.text_received == 1
    p = agent(lambda r: streaming(Body(sse(delta("x"), done=False))))
    with pytest.raises(StreamInterruptedError, match="before \\[DONE\\]"):
        [d async for d in p.astream("hi")]


async def test_an_error_event_is_a_typed_error_and_a_status_error_stays_one() -> None:
    p = agent(lambda r: streaming(Body(sse(delta("ab"), {"error": "model exploded"}))))
    with pytest.raises(StreamEventError, match="model exploded") as info:
        [d async for d in p.astream("hi")]
    assert info.value.text_received == 2
    p = agent(lambda r: httpx.Response(500, json={"error_code": "INTERNAL_ERROR", "message": "no"}), max_retries=0)
    with pytest.raises(InternalServerError):
        [d async for d in p.astream("hi")]


@pytest.mark.parametrize("data", ['{"message": "quota gone", "code": "E"}', '{"detail": "quota gone"}', '"quota gone"',
                                  "quota gone"])
async def test_an_sse_error_event_is_an_error_whatever_its_data_says(data: str) -> None:
    """``event: error`` is an error by its SSE event name, with or without an ``error``/``type`` key."""
    body = [*sse(delta("ab"), done=False), f"event: error\ndata: {data}\n\n".encode(), *sse(delta("cd"))]
    p = agent(lambda r: streaming(Body(body)))
    with pytest.raises(StreamEventError, match="quota gone") as info:
        [d async for d in p.astream("hi")]
    assert info.value.text_received == 2


async def test_leaving_early_or_cancelling_closes_the_connection() -> None:
    bodies: list[Body] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(Body(sse(delta("a"), delta("b"), done=False), stall=asyncio.Event()))
        return streaming(bodies[-1])

    p = agent(handler)
    async with p.astream("hi") as stream:
        async for _ in stream:
            break
    assert bodies[0].closed.is_set()

    async for _ in p.astream("hi"):  # no context manager: the generator's finalizer closes it
        break
    await asyncio.wait_for(bodies[1].closed.wait(), 10)

    async def read() -> None:
        async for _ in p.astream("hi"):
            pass

    task = asyncio.create_task(read())
    while len(bodies) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bodies[2].closed.is_set()


def test_sync_stream_is_the_async_one_through_the_portal_and_closes_on_break() -> None:
    bodies: list[Body] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(Body(sse(delta("a"), delta("b"), {"trace_id": "t"})))
        return streaming(bodies[-1])

    p = agent(handler)
    stream = p.stream("hi")
    assert [d.text for d in stream if d.text] == ["a", "b"] and stream.get_final_result().trace_id == "t"
    for _ in p.stream("hi"):
        break
    assert len(bodies) == 2


def test_validation_happens_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []
    p = agent(lambda r: sent.append(r) or httpx.Response(200, json={}))
    with pytest.raises(SchemaValidationError):
        p.stream([{"role": "user", "content": {"not": "text"}}])
    with pytest.raises(SchemaValidationError):
        p.chat([])
    assert sent == []


def test_chat_on_a_tabular_model_and_predict_on_a_chat_model_say_which_method() -> None:
    p = agent(lambda r: httpx.Response(200, json={"predictions": [1]}))
    with pytest.raises(ConfigurationError, match="chat"):
        p.predict([{"x": 1}])
    tabular = Predictor.from_endpoint(url=URL, http_transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"predictions": [1]})), validate=False)
    assert tabular.kind == "tabular"
    with pytest.raises(ConfigurationError, match=r"predict\(\)"):
        tabular.chat("hi")
    assert tabular.predict([{"x": 1}]).predictions == [1]


def test_a_non_streaming_server_answer_is_read_whole() -> None:
    answer = {"output": [{"type": "message", "id": "m", "role": "assistant",
                          "content": [{"type": "output_text", "text": "whole"}]}],
              "databricks_output": {"databricks_request_id": "rq"}}
    p = agent(lambda r: httpx.Response(200, json=answer, headers={"served-model-name": "agent-3"}))
    stream = p.stream("hi")
    assert "".join(d.text for d in stream) == "whole"
    reply = p.chat("hi")
    assert reply.text == "whole" and reply.request_id == "rq" and reply.served_model_name == "agent-3"
    assert stream.get_final_result().request_id == "rq"


# --- the pages' shared texts ---------------------------------------------------------------


def test_chat_pages_send_only_real_turns_and_explain_errors_readably() -> None:
    from client import AuthenticationError, RateLimitError
    from frontends.core.chat import chat_error_text, conversation

    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "**cut off**", "note": True},
               {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    assert conversation(history) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    busy = RateLimitError("slow down", status_code=429)
    assert "busy" in chat_error_text(busy)
    expired = AuthenticationError("expired", status_code=401)
    assert "sign-in has expired" in chat_error_text(expired, as_user=True)
    cut = StreamInterruptedError("x", timed_out=True, events_received=3, text_received=12)
    assert "cut off" in chat_error_text(cut) and "12 characters" in chat_error_text(cut)
    assert "model reported an error" in chat_error_text(StreamEventError("boom"))


# --- defects of the chat's own request copy (it now goes through the transport's one request) --


def test_nan_in_a_chat_request_is_refused_before_sending() -> None:
    """Chat encoded with plain ``json.dumps``, so NaN went out as the non-JSON token ``NaN``."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"output": []})

    p = agent(handler)
    with pytest.raises(SchemaValidationError, match="NaN"):
        p.chat("hi", custom_inputs={"threshold": float("nan")})
    with pytest.raises(SchemaValidationError, match="NaN"):
        [d for d in p.stream("hi", custom_inputs={"threshold": float("inf")})]
    assert seen == []


async def test_a_chat_retry_waits_with_the_transports_sleep() -> None:
    """The chat copy of the retry loop slept with ``asyncio.sleep``, not the transport's injected sleep."""
    from client._http.transport import Transport

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    answers = [httpx.Response(503, headers={"Retry-After": "7"}, json={"message": "busy"}),
               httpx.Response(200, json={"output": [{"type": "message", "id": "m", "role": "assistant",
                                                     "content": [{"type": "output_text", "text": "ok"}]}]})]
    transport = Transport(timeout=httpx.Timeout(5.0), sleep=sleep,
                          transport=httpx.MockTransport(lambda r: answers.pop(0)))
    p = chat_predictor(transport, max_retries=2)
    reply = await p.achat("hi")
    assert reply.text == "ok" and waits == [7.0]
    await p.aclose()


@pytest.mark.parametrize("messages", [[{"role": "user", "content": ""}], [{"role": "user", "content": "  \n"}],
                                      [{"role": "user", "content": [{"type": "text", "text": " "}]}],
                                      [{"role": "system", "content": ""}, {"role": "user", "content": "hi"}]])
def test_an_empty_message_is_refused_as_an_empty_string_is(messages: list[dict[str, Any]]) -> None:
    """``""`` was refused but ``[{"role": "user", "content": ""}]`` was sent."""
    with pytest.raises(SchemaValidationError, match="content is empty") as info:
        validate_messages(messages)
    assert info.value.problems[0].row == next(i for i, m in enumerate(messages) if not _text(m["content"]).strip())
    # an assistant turn that only calls a tool, and its empty tool result, are still fine
    validate_messages([{"role": "user", "content": "hi"},
                       {"role": "assistant", "content": "",
                        "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}]},
                       {"role": "tool", "content": "", "tool_call_id": "c1"}])


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def test_a_chat_message_over_the_size_limit_is_refused_before_sending() -> None:
    seen: list[httpx.Request] = []
    p = agent(lambda r: seen.append(r) or httpx.Response(200, json={"output": []}))
    big = "x" * (17 * 1024 * 1024)
    with pytest.raises(SchemaValidationError, match="Model Serving accepts at most"):
        p.chat(big)
    with pytest.raises(SchemaValidationError, match="Model Serving accepts at most"):
        [d for d in p.stream(big)]
    assert seen == []


def test_a_chat_answer_cut_after_the_request_was_sent_is_not_sent_again() -> None:
    """The server got the whole request (an agent may have acted on it); its answer broke off.
    chat() used to resend it (3 POSTs with max_retries=2); like a stream, it is not resent."""
    posts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200, headers={"content-type": "application/json"},
                              stream=Body([b'{"output": [{"type": "mess'], then=httpx.RemoteProtocolError("cut")))

    p = agent(handler, max_retries=2)
    with pytest.raises(APIConnectionError, match="not sent again"):
        p.chat("book the flight")
    assert len(posts) == 1


def test_the_gradio_chat_sends_the_models_own_text_back_not_the_text_made_safe() -> None:
    """Issue 21: Gradio's Chatbot keeps the answer as shown (an image made a link, raw HTML as
    text); the next turn sent that to the model as what it had said. It gets its own text back."""
    from contextlib import asynccontextmanager
    from types import SimpleNamespace

    from client import ChatResult
    from frontends.core.chat import conversation
    from frontends.core.markup import safe_markdown
    from frontends.core.session import AppConfig
    from frontends.gradio_ui.chat_page import answer

    raw = 'See ![chart](http://127.0.0.1:9/c.png) and <b>this</b>.'
    sent: list[list[dict[str, Any]]] = []

    class Agent:
        @asynccontextmanager
        async def astream(self, turns: list[dict[str, Any]]) -> AsyncIterator[Any]:
            sent.append(turns)

            class Stream:
                def __aiter__(self) -> AsyncIterator[Any]:
                    async def deltas() -> AsyncIterator[Any]:
                        yield SimpleNamespace(text=raw)
                    return deltas()

                def get_final_result(self) -> ChatResult:
                    return ChatResult(text=raw, messages=[], mode="direct")

            yield Stream()

    async def predictor() -> Agent:
        return Agent()

    runtime: Any = SimpleNamespace(config=AppConfig(), predictor=predictor)

    async def turn(message: str, history: list[dict[str, Any]], originals: dict[str, str]) -> tuple[Any, ...]:
        return [out async for out in answer(runtime, message, history, originals, {})][-1]

    shown, _, _, originals = asyncio.run(turn("hi", [], {}))
    assert shown == safe_markdown(raw) != raw  # the page shows the safe text...
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": shown}]
    asyncio.run(turn("and then?", history, originals))
    # ...and the model gets its own words back
    assert sent[-1] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": raw},
                        {"role": "user", "content": "and then?"}]
    assert conversation(history) == history  # without the map: what is shown
