"""What both chat pages share, framework-neutral: the conversation sent, error texts, captions.

A page keeps its conversation in its framework's per-session state as ``{"role", "content"}``
dicts; turns the app added itself (an error, a stopped answer's note) carry ``"note": True`` and
are never sent to the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from client import ChatResult, StreamEventError, StreamInterruptedError
from frontends.core.session import describe_error

__all__ = ["STOPPED", "caption", "chat_error_text", "conversation", "stopped_text", "tool_lines"]

#: Appended to an answer the user stopped.
STOPPED = "*(stopped)*"


def stopped_text(partial: str) -> str:
    """An interrupted answer as kept and shown: what had arrived, then the stopped note (pure)."""
    return (partial + "\n\n" + STOPPED).strip()


def conversation(history: Iterable[Mapping[str, Any]],
                 originals: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The turns to send: user and assistant text, in order, without the app's own notes.

    ``originals`` maps an assistant turn's text as shown (made safe, see ``markup``) back to the
    model's own text, which is what the model gets back: a page that keeps only what it shows
    (Gradio's Chatbot) would otherwise tell the model it said something else.
    """
    out = []
    for turn in history:
        if turn.get("note") or turn.get("role") not in ("user", "assistant"):
            continue
        text = _text(turn.get("content"))
        if originals and turn["role"] == "assistant":
            text = originals.get(text, text)
        if text:
            out.append({"role": str(turn["role"]), "content": text})
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Gradio's content blocks
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    if isinstance(content, Mapping):
        return str(content.get("text", ""))
    return ""


def chat_error_text(err: BaseException, *, as_user: bool = False) -> str:
    """Markdown for a failed answer: a cut-off stream says how much arrived; the rest as for predictions."""
    if isinstance(err, StreamInterruptedError):
        why = "the endpoint went quiet" if err.timed_out else "the connection broke"
        return (f"**The answer was cut off** ({why} after {err.text_received} characters). "
                "Ask again to get the whole answer.")
    if isinstance(err, StreamEventError):
        return f"**The model reported an error:** {err.message}"
    return describe_error(err, as_user=as_user).replace("**Prediction failed:**", "**The chat failed:**")


def caption(result: ChatResult) -> str:
    """Which model answered, how, and the trace id to quote when reporting an answer."""
    text = f"model {result.model_name or '?'} version {result.model_version or '?'}, {result.mode}"
    if result.served_model_name:
        text += f", served by {result.served_model_name}"
    if result.trace_id:
        text += f" · trace {result.trace_id}"
    return text


def tool_lines(result: ChatResult) -> list[str]:
    """One line per tool call and its result, for a collapsed "tools used" section."""
    answers = {m.tool_call_id: m.content for m in result.messages if m.role == "tool"}
    return [f"`{call.name}({call.arguments})` → {answers.get(call.id, '(no result)')}" for call in result.tool_calls]
