"""The three chat wire formats, to and from the neutral types. Pure: no I/O, tested without servers.

- ``completions``: OpenAI chat completions (``llm/v1/chat``; MLflow ``ChatModel``, ``agent/v1/chat``)
- ``chat_agent``: MLflow ``ChatAgent`` (``agent/v2/chat``): ``messages`` in and out, ``delta`` chunks
- ``responses``: MLflow ``ResponsesAgent`` (``agent/v1/responses``): ``input`` items in, ``output``
  items out, ``response.output_text.delta`` / ``response.output_item.done`` events

Trace and request ids come from Model Serving's ``databricks_output`` or MLflow's agent server
(``metadata.trace_id`` in an answer, a ``{"trace_id"}`` event in a stream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._messages import Format
from ._types import ChatDelta, ChatMessage, ToolCall

#: A text item that follows another one starts with this, in the deltas and in the final text alike.
ITEM_SEPARATOR = "\n\n"


class EventError(Exception):
    """An error event in a stream (turned into ``StreamEventError`` with the counts by the stream)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# --- requests ------------------------------------------------------------------------------


def request_body(fmt: Format, messages: list[ChatMessage], *, stream: bool,
                 custom_inputs: dict[str, Any] | None = None, return_trace: bool = True) -> dict[str, Any]:
    """The JSON body for ``messages`` in ``fmt``; asks Model Serving for the trace when ``return_trace``.

    Example::

        request_body("responses", [ChatMessage(role="user", content="Hi")], stream=True)
        # {"input": [{"role": "user", "content": "Hi"}], "stream": True, ...}
    """
    body: dict[str, Any]
    if fmt == "responses":
        body = {"input": [item for m in messages for item in _responses_items(m)]}
    elif fmt == "chat_agent":
        body = {"messages": [_chat_agent_message(m) for m in messages]}
    else:
        body = {"messages": [_completions_message(m) for m in messages]}
    if custom_inputs is not None:
        body["custom_inputs"] = custom_inputs
    if stream:
        body["stream"] = True
    if return_trace:
        body["databricks_options"] = {"return_trace": True}
    return body


def _responses_items(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content or ""}]
    items: list[dict[str, Any]] = []
    if m.content:
        items.append({"role": m.role, "content": m.content})
    for call in m.tool_calls or []:
        items.append({"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments})
    return items


def _chat_agent_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content or ""}
    for key in ("id", "name", "tool_call_id"):
        if getattr(m, key) is not None:
            out[key] = getattr(m, key)
    if m.tool_calls:
        out["tool_calls"] = [_openai_call(c) for c in m.tool_calls]
    return out


def _completions_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        out["tool_calls"] = [_openai_call(c) for c in m.tool_calls]
    return out


def _openai_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


# --- whole answers -------------------------------------------------------------------------


@dataclass
class Answer:
    """A whole answer, decoded: what the model said and the ids that came with it."""

    messages: list[ChatMessage] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    custom_outputs: dict[str, Any] | None = None
    trace_id: str | None = None
    request_id: str | None = None

    @property
    def text(self) -> str:
        return ITEM_SEPARATOR.join(m.content for m in self.messages if m.role == "assistant" and m.content)


def parse_response(fmt: Format, body: Any) -> Answer:
    """Decode a non-streamed answer; raises ``ValueError`` naming what is missing."""
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    answer = Answer(custom_outputs=body.get("custom_outputs"))
    answer.trace_id, answer.request_id = _ids(body)
    if fmt == "responses":
        output = body.get("output")
        if not isinstance(output, list):
            raise ValueError("a ResponsesAgent answer needs an 'output' list")
        for item in output:
            message = item_message(item)
            if message is None:
                answer.events.append(item)
            else:
                answer.messages.append(message)
    elif fmt == "chat_agent":
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ValueError("a ChatAgent answer needs a 'messages' list")
        answer.messages = [_from_openai_message(m) for m in messages]
    else:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0].get("message"), dict):
            raise ValueError("a chat completion needs 'choices[0].message'")
        answer.messages = [_from_openai_message(choices[0]["message"])]
    return answer


def item_message(item: Any) -> ChatMessage | None:
    """A Responses output item as a message (text, tool call, tool result); ``None`` for other items."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "message":
        parts = item.get("content") or []
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "output_text")
        return ChatMessage(role=item.get("role", "assistant"), content=text, id=item.get("id"))
    if kind == "function_call":
        call = ToolCall(id=str(item.get("call_id") or item.get("id") or ""), name=str(item.get("name", "")),
                        arguments=str(item.get("arguments", "")))
        return ChatMessage(role="assistant", tool_calls=[call], id=item.get("id"))
    if kind == "function_call_output":
        output = item.get("output")
        return ChatMessage(role="tool", tool_call_id=str(item.get("call_id", "")), id=item.get("id"),
                           content=output if isinstance(output, str) else json.dumps(output))
    return None


def _from_openai_message(m: dict[str, Any]) -> ChatMessage:
    calls = [ToolCall(id=str(c.get("id", "")), name=str((c.get("function") or {}).get("name", "")),
                      arguments=str((c.get("function") or {}).get("arguments", "")))
             for c in m.get("tool_calls") or []]
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ChatMessage(role=m.get("role", "assistant"), content=content, id=m.get("id"), name=m.get("name"),
                       tool_calls=calls or None, tool_call_id=m.get("tool_call_id"))


def _ids(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(trace_id, request_id)`` from Model Serving's ``databricks_output`` or the agent server's."""
    trace_id = None
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("trace_id"):
        trace_id = str(metadata["trace_id"])
    if body.get("trace_id"):
        trace_id = str(body["trace_id"])
    out = body.get("databricks_output")
    request_id = None
    if isinstance(out, dict):
        info = (out.get("trace") or {}).get("info") if isinstance(out.get("trace"), dict) else None
        if isinstance(info, dict) and (info.get("trace_id") or info.get("request_id")):
            trace_id = str(info.get("trace_id") or info.get("request_id"))
        if out.get("databricks_request_id"):
            request_id = str(out["databricks_request_id"])
    return trace_id, request_id


# --- stream events -------------------------------------------------------------------------


def parse_event(fmt: Format, event: Any) -> list[ChatDelta]:
    """One decoded SSE ``data`` object as deltas; raises :class:`EventError` on an error event."""
    if not isinstance(event, dict):
        return [ChatDelta(type="other", event={"value": event})]
    _raise_if_error(event)
    deltas: list[ChatDelta] = []
    trace_id, request_id = _ids(event)
    if fmt == "responses":
        deltas.extend(_responses_deltas(event))
    elif fmt == "chat_agent":
        deltas.extend(_chat_agent_deltas(event))
    else:
        deltas.extend(_completions_deltas(event))
    if trace_id or request_id:
        deltas.append(ChatDelta(type="trace", trace_id=trace_id, request_id=request_id, event=event))
    return deltas or [ChatDelta(type="other", event=event)]


def _raise_if_error(event: dict[str, Any]) -> None:
    error = event.get("error")
    out = event.get("databricks_output")
    if error is None and isinstance(out, dict):
        error = out.get("error")
    kind = event.get("type")
    if error is None and kind in ("error", "response.error"):
        error = event
    if error is None and kind == "response.failed":
        error = (event.get("response") or {}).get("error") or event
    if error is None:
        return
    if isinstance(error, dict):
        raise EventError(str(error.get("message") or error), error.get("code") or error.get("error_code"))
    raise EventError(str(error))


def _responses_deltas(event: dict[str, Any]) -> list[ChatDelta]:
    kind = event.get("type")
    if kind == "response.output_text.delta":
        return [ChatDelta(type="text", text=str(event.get("delta", "")), item_id=event.get("item_id"), event=event)]
    if kind == "response.output_item.done":
        item = event.get("item")
        message = item_message(item)
        if message is not None:
            return [ChatDelta(type="message", item_id=message.id, message=message, event=event)]
    return []


def _chat_agent_deltas(event: dict[str, Any]) -> list[ChatDelta]:
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return []
    message = _from_openai_message(delta)
    if message.role == "assistant" and not message.tool_calls:
        return [ChatDelta(type="text", text=message.content or "", item_id=message.id, event=event)]
    return [ChatDelta(type="message", item_id=message.id, message=message, event=event)]


def _completions_deltas(event: dict[str, Any]) -> list[ChatDelta]:
    out: list[ChatDelta] = []
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            out.append(ChatDelta(type="text", text=str(delta["content"]), item_id=event.get("id"), event=event))
        if delta.get("tool_calls"):
            out.append(ChatDelta(type="tool_call", item_id=event.get("id"), event=event))
    return out


# --- putting a stream back together --------------------------------------------------------


class Accumulator:
    """Builds the final answer from the deltas of a stream, and gives each delta its share of the
    final text: a text item after another starts with :data:`ITEM_SEPARATOR`, and a finished text
    item that came without text deltas carries its whole text, so ``"".join(d.text)`` is the text.
    """

    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []
        self.events: list[dict[str, Any]] = []
        self.text = ""
        self.n_events = 0
        self.trace_id: str | None = None
        self.request_id: str | None = None
        self.custom_outputs: dict[str, Any] | None = None
        self._text_items: dict[str | None, int] = {}
        self._tool_parts: dict[int, dict[str, str]] = {}
        self._starts_item = False
        self._pieces: dict[int, list[str]] = {}  # text of items still streaming, by message index

    def feed(self, delta: ChatDelta) -> ChatDelta:
        if isinstance(delta.event.get("custom_outputs"), dict):
            self.custom_outputs = delta.event["custom_outputs"]
        if delta.type == "text":
            return self._text(delta)
        if delta.type == "message" and delta.message is not None:
            return self._message(delta, delta.message)
        if delta.type == "tool_call":
            self._tool_call(delta.event)
        elif delta.type == "trace":
            self.trace_id = delta.trace_id or self.trace_id
            self.request_id = delta.request_id or self.request_id
        else:
            self.events.append(delta.event)
        return delta

    def _share(self, text: str) -> str:
        share = (ITEM_SEPARATOR if self.text and text and self._starts_item else "") + text
        self.text += share
        return share

    def _text(self, delta: ChatDelta) -> ChatDelta:
        index = self._text_items.get(delta.item_id)
        if index is None:
            index = self._text_items[delta.item_id] = len(self.messages)
            self.messages.append(ChatMessage(role="assistant", content="", id=delta.item_id))
            self._pieces[index] = []
        pieces = self._pieces[index]
        self._starts_item = not any(pieces)
        share = self._share(delta.text)
        pieces.append(delta.text)  # joined once, in final_messages(): no copy per chunk
        return delta.model_copy(update={"text": share}) if share != delta.text else delta

    def _message(self, delta: ChatDelta, message: ChatMessage) -> ChatDelta:
        index = self._text_items.get(message.id) if message.id is not None else None
        if index is not None:  # the finished form of an item whose text already streamed
            self.messages[index] = message
            self._pieces.pop(index, None)
            return delta
        self.messages.append(message)
        if message.role == "assistant" and message.content:
            self._starts_item = True
            return delta.model_copy(update={"text": self._share(message.content)})
        return delta

    def _tool_call(self, event: dict[str, Any]) -> None:
        for choice in event.get("choices") or []:
            for part in (choice.get("delta") or {}).get("tool_calls") or []:
                slot = self._tool_parts.setdefault(int(part.get("index", 0)), {"id": "", "name": "", "arguments": ""})
                function = part.get("function") or {}
                slot["id"] = part.get("id") or slot["id"]
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""

    def final_messages(self) -> list[ChatMessage]:
        messages = [m.model_copy(update={"content": "".join(self._pieces[i])}) if i in self._pieces else m
                    for i, m in enumerate(self.messages)]
        if not self._tool_parts:
            return messages
        calls = [ToolCall(**self._tool_parts[i]) for i in sorted(self._tool_parts)]
        return [*messages, ChatMessage(role="assistant", tool_calls=calls)]
