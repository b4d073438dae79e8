"""The Streamlit page for a chat model: ``st.chat_message``, ``st.chat_input``, the answer redrawn as it streams.

The conversation lives in ``st.session_state`` (one per browser session, never shared). The
model's text is shown through ``frontends.core.markup.safe_markdown`` (no image from outside
``PREDICTOR_IMAGE_HOSTS``, no raw HTML), while it streams too. Clicking
the answer's "Stop" (or sending another message) while it streams makes Streamlit rerun the
script; the interrupted stream is dropped, its generator closes the connection,
and the text that had arrived is kept with a "stopped" note. (Streamlit's own toolbar Stop halts
the run without a rerun: the note then appears with the next message.)

Under each answer: thumbs up/down and a comment (``frontends/streamlit_ui/feedback.feedback_controls``),
stored as a ``user_feedback`` assessment on the answer's trace, wherever that trace was written
(the agent server's or Model Serving's experiment in endpoint mode, the app's in direct mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import streamlit as st

from client import ChatStream, Predictor
from client.feedback import tag_answer_trace_later
from frontends.core.chat import STOPPED, caption, chat_error_text, conversation, tool_lines
from frontends.core.feedback import feedback_user
from frontends.core.markup import image_hosts, safe_markdown
from frontends.streamlit_ui.feedback import feedback_controls

_HISTORY = "chat_history"
_PENDING = "chat_pending"


def _pieces(stream: ChatStream, pending: dict[str, Any]) -> Iterator[str]:
    for delta in stream:
        if delta.text:
            pending["text"] += delta.text
            yield delta.text


def _user() -> str:
    """Who votes: the front door's ``X-Forwarded-Email`` (else "anonymous")."""
    try:
        return feedback_user(dict(st.context.headers))
    except Exception:  # no browser session (e.g. AppTest)
        return feedback_user(None)


def _shown(turn: dict[str, Any]) -> str:
    """What the page renders of a turn: a model's text loads no image from outside the allow-list."""
    return turn["content"] if turn["role"] == "user" else safe_markdown(turn["content"], image_hosts())


def _show(turn: dict[str, Any], user: str = "") -> None:
    with st.chat_message(turn["role"]):
        if turn.get("error"):
            st.error(_shown(turn))
        else:
            st.markdown(_shown(turn))
        for line in turn.get("tools", []):
            st.caption(safe_markdown("Tool: " + line, image_hosts()))
        if turn.get("caption"):
            st.caption(turn["caption"])
        if turn["role"] == "assistant" and not turn.get("note"):  # a whole answer, not an error or a stopped one
            feedback_controls(turn.get("trace_id"), user, key="chat")


def render(title: str, card: str, predictor: Predictor, as_user: bool) -> None:
    """The conversation (model card in the sidebar, the input below the answers); the app puts
    it in its "Chat" tab, beside the same Feedback tab as the tabular page."""
    history: list[dict[str, Any]] = st.session_state.setdefault(_HISTORY, [])
    with st.sidebar:
        st.header("Model")
        st.markdown(card)
        if st.button("New conversation", key="chat-new", disabled=not history):
            history.clear()
            st.session_state.pop(_PENDING, None)
    pending = st.session_state.pop(_PENDING, None)
    if pending is not None:  # the last run was interrupted mid-answer: keep what had arrived
        history.append({"role": "assistant", "content": (pending["text"] + "\n\n" + STOPPED).strip(), "note": True})
    user = _user()
    for turn in history:
        _show(turn, user)

    prompt = st.chat_input("Ask the model")
    if not prompt:
        return
    history.append({"role": "user", "content": prompt})
    _show(history[-1])
    with st.chat_message("assistant"):
        answer_area = st.container()  # the answer above, the Stop button below it
        st.button("Stop", key="chat-stop", icon=":material/stop_circle:")
        pending = st.session_state[_PENDING] = {"text": ""}
        try:
            stream = predictor.stream(conversation(history))
            shown, hosts = answer_area.empty(), image_hosts()
            for _ in _pieces(stream, pending):  # the text so far, made safe, as write_stream would draw it
                shown.markdown(safe_markdown(pending["text"], hosts))
            result = stream.get_final_result()
        except Exception as err:
            st.session_state.pop(_PENDING, None)
            message = chat_error_text(err, as_user=as_user)
            if pending["text"]:
                message = pending["text"] + "\n\n---\n\n" + message
            history.append({"role": "assistant", "content": message, "error": True, "note": True})
            st.rerun()
            return
        st.session_state.pop(_PENDING, None)
        tag_answer_trace_later(result)  # so the Feedback page counts the answer (model, version, ...)
        history.append({"role": "assistant", "content": result.text, "caption": caption(result),
                        "tools": tool_lines(result), "trace_id": result.trace_id})
        st.rerun()  # redraw the answer as a history turn (with its caption), the Stop button gone
