"""The public chat types: one message model, one streamed delta, one result, whatever the wire format."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")


class ToolCall(BaseModel):
    """A tool the model asked for: ``name`` with JSON ``arguments``, answered by a ``tool`` message."""

    id: str
    name: str
    arguments: str = ""


class ChatMessage(BaseModel):
    """One turn of a conversation, in the neutral shape every wire format maps to and from.

    Example::

        ChatMessage(role="user", content="How do I reset my password?")
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str | None = None
    #: The message (or output item) id the model gave it, when it gave one.
    id: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    #: For ``role="tool"``: which :class:`ToolCall` this answers.
    tool_call_id: str | None = None


DeltaType = Literal["text", "message", "tool_call", "trace", "other"]


class ChatDelta(BaseModel):
    """One event of a streamed answer.

    ``text`` is the piece of answer text it carries (``""`` on non-text events), so that
    ``"".join(d.text for d in stream)`` is the final :attr:`ChatResult.text`. ``type`` says what
    the event was: ``"text"``; ``"message"`` (a whole output item, e.g. a tool call or its result,
    in ``message``); ``"tool_call"`` (a piece of a chat-completions tool call); ``"trace"``
    (``trace_id``/``request_id`` for feedback); ``"other"``. ``event`` is the decoded event as sent.

    Example::

        for delta in p.stream("Hi"):
            print(delta.text, end="", flush=True)
    """

    type: DeltaType
    text: str = ""
    item_id: str | None = None
    message: ChatMessage | None = None
    trace_id: str | None = None
    request_id: str | None = None
    event: dict[str, Any] = Field(default_factory=dict)


class ChatResult(BaseModel):
    """A chat model's whole answer.

    ``text`` is the assistant's text (several text items joined by a blank line); ``messages``
    holds everything the model said in order: assistant text, tool calls, tool results.
    ``events`` keeps the events that were neither text nor a finished item (nothing is dropped).
    ``trace_id`` and ``request_id`` identify the answer for feedback, when the server gave them.

    Example::

        reply = p.chat("How do I reset my password?")
        reply.text, reply.trace_id, reply.model_version
    """

    text: str
    messages: list[ChatMessage]
    events: list[dict[str, Any]] = Field(default_factory=list)
    custom_outputs: dict[str, Any] | None = None
    request_id: str | None = None
    trace_id: str | None = None
    mode: Literal["endpoint", "direct"] = "endpoint"
    endpoint: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    served_model_name: str | None = None
    elapsed_ms: float = 0.0
    #: Streamed answers: time to the first text (``None`` if none came, or not streamed).
    first_text_ms: float | None = None

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every tool call the model made, in order."""
        return [call for m in self.messages for call in (m.tool_calls or [])]
