"""Checking a conversation before anything is sent, and telling which chat wire format a model speaks.

Pure: no I/O. The Predictor gathers the facts (endpoint ``task``, MLmodel ``metadata.task``,
signature) and :func:`detect` decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._exceptions import SchemaProblem, SchemaValidationError
from .._types import Signature
from ._types import ROLES, ChatMessage, ToolCall

Kind = Literal["chat", "tabular", "tensor"]
#: ``completions``: OpenAI chat completions (``llm/v1/chat``, MLflow ``ChatModel``);
#: ``chat_agent``: MLflow ``ChatAgent`` (``agent/v2/chat``); ``responses``: ``ResponsesAgent``.
Format = Literal["completions", "chat_agent", "responses"]

TASK_FORMATS: dict[str, Format] = {
    "llm/v1/chat": "completions",
    "agent/v1/chat": "completions",
    "agent/v2/chat": "chat_agent",
    "agent/v1/responses": "responses",
}


def detect(
    endpoint_task: str | None, metadata_task: str | None, signature: Signature | None
) -> tuple[Kind, Format | None]:
    """The model's kind and chat format: the endpoint's ``task``, then the MLmodel's
    ``metadata.task``, then the signature's shape (a ``messages`` or ``input`` array).

    Example::

        detect("agent/v1/responses", None, None)   # ("chat", "responses")
    """
    for task in (endpoint_task, metadata_task):
        if task in TASK_FORMATS:
            return "chat", TASK_FORMATS[task]
    if signature is None:
        return "tabular", None
    if signature.is_tensor:
        return "tensor", None
    names = {c.name for c in signature.columns}
    outputs = {c.name for c in signature.outputs}
    if "input" in names and _is_array(signature, "input"):
        return "chat", "responses"
    if "messages" in names and _is_array(signature, "messages"):
        return "chat", ("completions" if "choices" in outputs else "chat_agent")
    return "tabular", None


def _is_array(signature: Signature, name: str) -> bool:
    return any(c.name == name and c.type == "array" for c in signature.columns)


def validate_messages(messages: Any) -> list[ChatMessage]:
    """A ``str`` (one user turn), or a list of ``{"role", "content"}`` dicts / :class:`ChatMessage`,
    checked in full: every problem is reported at once as a ``SchemaValidationError`` (row = the
    message's index), and nothing is sent.

    Example::

        validate_messages("Hi")   # [ChatMessage(role="user", content="Hi")]
    """
    if isinstance(messages, str):
        if not messages.strip():
            raise SchemaValidationError([SchemaProblem("the message is empty")])
        return [ChatMessage(role="user", content=messages)]
    if isinstance(messages, (ChatMessage, Mapping)):
        messages = [messages]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, bytearray)):
        raise SchemaValidationError(
            [SchemaProblem(f"expected a str or a list of messages, got {type(messages).__name__}")]
        )
    if not messages:
        raise SchemaValidationError([SchemaProblem("the conversation has no messages")])
    problems: list[SchemaProblem] = []
    out: list[ChatMessage] = []
    for i, raw in enumerate(messages):
        if isinstance(raw, ChatMessage):
            out.append(raw)
            continue
        if not isinstance(raw, Mapping):
            problems.append(SchemaProblem(f"expected a dict with 'role' and 'content', got {type(raw).__name__}",
                                          row=i))
            continue
        found = _message_problems(raw, i)
        if found:
            problems.extend(found)
            continue
        calls = raw.get("tool_calls")
        out.append(ChatMessage(
            role=raw["role"], content=_content_text(raw.get("content")), id=raw.get("id"), name=raw.get("name"),
            tool_calls=[c if isinstance(c, ToolCall) else ToolCall.model_validate(c) for c in calls] if calls else None,
            tool_call_id=raw.get("tool_call_id"),
        ))
    if problems:
        raise SchemaValidationError(problems)
    if out[-1].role not in ("user", "tool"):
        raise SchemaValidationError([SchemaProblem(
            f"the last message must be from the user (or a tool result), not {out[-1].role!r}", row=len(out) - 1,
            column="role")])
    return out


#: Roles whose message must hold text (an assistant turn may only call tools; a tool may answer "").
_MUST_SAY_SOMETHING = ("user", "system")


def _message_problems(raw: Mapping[str, Any], i: int) -> list[SchemaProblem]:
    problems = []
    role = raw.get("role")
    if role not in ROLES:
        problems.append(SchemaProblem(f"role {role!r} is not one of {', '.join(ROLES)}", row=i, column="role"))
    unknown = set(raw) - {"role", "content", "id", "name", "tool_calls", "tool_call_id"}
    if unknown:
        problems.append(SchemaProblem(f"unknown keys {sorted(unknown)}", row=i))
    content = raw.get("content")
    if content is None:
        if not raw.get("tool_calls"):
            problems.append(SchemaProblem("content is missing", row=i, column="content"))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not (isinstance(part, Mapping) and isinstance(part.get("text"), str)):
                problems.append(SchemaProblem(f"content part {j} must be a dict with a 'text' string", row=i,
                                              column="content"))
    elif not isinstance(content, str):
        problems.append(SchemaProblem(f"content must be a str or a list of text parts, got {type(content).__name__}",
                                      row=i, column="content"))
    if role in _MUST_SAY_SOMETHING and not problems and not (_content_text(content) or "").strip():
        # As a bare "" is refused: a turn with nothing in it is a caller's slip, not a question.
        problems.append(SchemaProblem("content is empty", row=i, column="content"))
    calls = raw.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(
            isinstance(c, ToolCall) or (isinstance(c, Mapping) and isinstance(c.get("id"), str)
                                        and isinstance(c.get("name"), str)) for c in calls)):
        problems.append(SchemaProblem("tool_calls must be a list of {'id', 'name', 'arguments'}", row=i,
                                      column="tool_calls"))
    if role == "tool" and not isinstance(raw.get("tool_call_id"), str):
        problems.append(SchemaProblem("a tool message needs the tool_call_id it answers", row=i,
                                      column="tool_call_id"))
    return problems


def _content_text(content: Any) -> str | None:
    if isinstance(content, list):  # text parts: the neutral model keeps their text
        return "".join(str(part["text"]) for part in content)
    return content if content is None else str(content)
