"""The Streamlit page for a chat model: ``st.chat_message``, ``st.chat_input``, the answer redrawn as it streams.

The conversation lives in ``st.session_state`` (one per browser session, never shared). The
model's text is shown through ``frontends.core.markup.safe_markdown`` (no image from outside
``PREDICTOR_IMAGE_HOSTS``, no raw HTML), while it streams too. Clicking
the answer's "Stop" (or sending another message) while it streams makes Streamlit rerun the
script; the interrupted stream is dropped, its generator closes the connection,
and the text that had arrived is kept with a "stopped" note. A page closed mid-answer (or
Streamlit's own toolbar Stop) stops the script with no rerun to follow: the turn is kept as
stopped right there (the toolbar's note then appears with the next message).

Under each answer: thumbs up/down and a comment (``frontends/streamlit_ui/feedback.feedback_controls``),
stored as a ``user_feedback`` assessment on the answer's trace, wherever that trace was written
(the agent server's or Model Serving's experiment in endpoint mode, the app's in direct mode).

The sidebar lists the signed-in user's saved conversations (``frontends/core/conversations.py``;
newest first, 20 a page): a click opens one (the next message continues it, its history sent to
the model), and the open one can be renamed or deleted. A long conversation opens on its latest
``SHOWN_MESSAGES`` messages, with a button above them for as many earlier ones: all 200 messages of
one, each answer with its feedback controls, were ~725 elements the script sent one by one (~2 s
to draw, most of it the script's run: benchmarks/apps_history.py). The model is still sent the
whole conversation. Each turn is kept when its answer ends
(ok, failed, or stopped), and each vote with it, so the thumbs show their state when reopened.
Without a history store, or with its database down, a note says so and the chat goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import StopException

from client import ChatStream, Predictor
from client.feedback import tag_answer_trace_later
from frontends.core.chat import caption, chat_error_text, conversation, stopped_text, tool_lines
from frontends.core.conversations import UserHistory
from frontends.core.feedback import feedback_user
from frontends.core.history import NOT_SAVED
from frontends.core.markup import image_hosts, markdown_literal, safe_markdown
from frontends.streamlit_ui.feedback import feedback_controls
from frontends.streamlit_ui.resources import history_store

_HISTORY = "chat_history"
_PENDING = "chat_pending"
_CONV = "chat_conversation"  # the open saved conversation's id (None: a new one)
_LIST_PAGE = "chat_list_page"
_NOTE = "chat_history_note"
_SHOWN = "chat_shown"  # how many of the conversation's latest messages are drawn
#: A conversation is drawn from its latest this many messages; "Show earlier messages" adds as many.
SHOWN_MESSAGES = 40


def _pieces(stream: ChatStream, pending: dict[str, Any]) -> Iterator[str]:
    for delta in stream:
        if delta.text:
            pending["text"] += delta.text
            yield delta.text


def _keep_stopped(history: UserHistory, pending: dict[str, Any]) -> str:
    """Keep an interrupted answer once: what had arrived, as stopped; the text kept (what to show).

    Two runs can get here at once: Streamlit's fast reruns start the next run (which keeps the turn
    from ``_PENDING``) while the interrupted one still streams, until its next ``st.*`` call raises
    ``StopException`` (which keeps it too, for a session that ends with no run to follow). So the
    first one keeps it under the turn's lock, and the other waits, then reads the conversation it
    went to (seen under load: the turn kept twice, 10 ms apart). Touches no ``st.*``: it also runs
    while the session is stopping, when each such call raises ``StopException`` again."""
    with pending.setdefault("lock", threading.Lock()):  # setdefault: atomic, one lock per turn
        if "kept" not in pending:
            text = stopped_text(pending["text"])
            pending["conversation"] = history.save(pending["conversation"], pending["prompt"], text,
                                                   status="stopped")
            pending["kept"] = text
        return str(pending["kept"])


def _user() -> str:
    """Who votes: the front door's ``X-Forwarded-Email`` (else "anonymous")."""
    try:
        return feedback_user(dict(st.context.headers))
    except Exception:  # no browser session (e.g. AppTest)
        return feedback_user(None)


def _shown(turn: dict[str, Any]) -> str:
    """What the page renders of a turn: a model's text loads no image from outside the allow-list."""
    return turn["content"] if turn["role"] == "user" else safe_markdown(turn["content"], image_hosts())


def _show(turn: dict[str, Any], user: str = "", history: UserHistory | None = None) -> None:
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
            trace_id = turn.get("trace_id")

            def remember(thumbs_up: bool, comment: str | None) -> None:
                if history is not None and history.vote(trace_id, thumbs_up=thumbs_up, comment=comment):
                    turn.update(thumbs_up=thumbs_up, comment=comment)

            feedback_controls(trace_id, user, key="chat", remembered=(turn.get("thumbs_up"), turn.get("comment")),
                              remember=remember)


def _user_history(user: str) -> UserHistory:
    try:
        return UserHistory(history_store(), user)
    except Exception:  # configured, but the database cannot be opened: chat on, history off
        history = UserHistory(None, user)
        history.note = NOT_SAVED
        return history


def _open(history: UserHistory, conversation_id: str | None) -> None:
    pending = st.session_state.pop(_PENDING, None)
    if pending is not None:  # a click here while an answer streamed: keep the interrupted turn first
        _keep_stopped(history, pending)
    turns = history.open(conversation_id) if conversation_id else []
    st.session_state[_HISTORY] = turns or []
    st.session_state[_CONV] = conversation_id if turns is not None else None
    st.session_state.pop(_SHOWN, None)
    _keep_note(history)


def _keep_note(history: UserHistory) -> None:
    """A note from a button's callback or before a rerun: shown on the next run."""
    if history.note and history.on:
        st.session_state[_NOTE] = history.note


def _sidebar(history: UserHistory, card: str) -> None:
    """The model card, then the user's conversations: new, open, older/newer, rename, delete."""
    current = st.session_state.get(_CONV)
    st.header("Model")
    st.markdown(card)
    st.header("Conversations")
    st.button("New conversation", key="chat-new", on_click=_open, args=(history, None),
              disabled=not st.session_state.get(_HISTORY))
    number = st.session_state.get(_LIST_PAGE, 0)
    page = history.page(number)
    note = history.note or st.session_state.pop(_NOTE, None)
    if note:
        st.caption(note)
    if page is None:
        return
    for item in page.items:  # a title is the user's text: shown as text, never as Markdown
        st.button(markdown_literal(item.title), key=f"chat-open:{item.id}", on_click=_open, args=(history, item.id),
                  type="primary" if item.id == current else "secondary", width="stretch")
    older, newer = st.columns(2)
    if page.has_more:
        older.button("Older", key="chat-older", on_click=lambda: st.session_state.update({_LIST_PAGE: number + 1}))
    if number > 0:
        newer.button("Newer", key="chat-newer", on_click=lambda: st.session_state.update({_LIST_PAGE: number - 1}))
    title = history.title(current)
    if title is None:
        return

    title_key = f"chat-title:{current}"

    def rename() -> None:
        history.rename(current, st.session_state.get(title_key) or "")
        _keep_note(history)

    def delete() -> None:
        if history.delete(current):
            _open(history, None)
        _keep_note(history)

    with st.expander("Rename or delete"):
        st.text_input("Title", value=title, key=title_key, max_chars=200)
        st.button("Rename", key="chat-rename", on_click=rename)
        st.button("Delete conversation", key="chat-delete", on_click=delete)


def render(title: str, card: str, predictor: Predictor, as_user: bool) -> None:
    """The conversation (model card and saved conversations in the sidebar, the input below the
    answers); the app puts it in its "Chat" tab, beside the same Feedback tab as the tabular page."""
    user = _user()
    history_view = _user_history(user)
    if _CONV not in st.session_state:  # a session's first run: ?conversation=<id> opens one of the user's
        _open(history_view, st.query_params.get("conversation") or None)
    history: list[dict[str, Any]] = st.session_state.setdefault(_HISTORY, [])
    pending = st.session_state.pop(_PENDING, None)
    if pending is not None:  # the last run was interrupted mid-answer: keep what had arrived, show what was kept
        history.append({"role": "assistant", "content": _keep_stopped(history_view, pending), "note": True})
        st.session_state[_CONV] = pending["conversation"]
        _keep_note(history_view)
    with st.sidebar:
        _sidebar(history_view, card)
        history = st.session_state[_HISTORY]  # a conversation opened, or a new one started
    shown = st.session_state.get(_SHOWN, SHOWN_MESSAGES)
    if len(history) > shown:  # a long conversation: its latest messages, the earlier ones on request
        earlier = len(history) - shown
        st.button(f"Show earlier messages ({earlier} more)", key="chat-earlier",
                  on_click=lambda: st.session_state.update({_SHOWN: shown + SHOWN_MESSAGES}))
    for turn in history[-shown:]:
        _show(turn, user, history_view)

    prompt = st.chat_input("Ask the model")
    if not prompt:
        return
    history.append({"role": "user", "content": prompt})
    _show(history[-1])
    with st.chat_message("assistant"):
        answer_area = st.container()  # the answer above, the Stop button below it
        st.button("Stop", key="chat-stop", icon=":material/stop_circle:")
        pending = st.session_state[_PENDING] = {"text": "", "prompt": prompt,
                                                "conversation": st.session_state.get(_CONV)}
        try:
            stream = predictor.stream(conversation(history))
            shown, hosts = answer_area.empty(), image_hosts()
            for _ in _pieces(stream, pending):  # the text so far, made safe, as write_stream would draw it
                shown.markdown(safe_markdown(pending["text"], hosts))
            result = stream.get_final_result()
        except StopException:
            # The session is ending (its page closed, or Streamlit's toolbar Stop): no run follows
            # to keep what had arrived from _PENDING, so keep it now (and only once).
            _keep_stopped(history_view, pending)
            raise
        except Exception as err:
            st.session_state.pop(_PENDING, None)
            message = chat_error_text(err, as_user=as_user)
            if pending["text"]:
                message = pending["text"] + "\n\n---\n\n" + message
            history.append({"role": "assistant", "content": message, "error": True, "note": True})
            st.session_state[_CONV] = history_view.save(st.session_state.get(_CONV), prompt, message,
                                                        status="failed")
            _keep_note(history_view)
            st.rerun()
            return
        st.session_state.pop(_PENDING, None)
        tag_answer_trace_later(result)  # so the Feedback page counts the answer (model, version, ...)
        history.append({"role": "assistant", "content": result.text, "caption": caption(result),
                        "tools": tool_lines(result), "trace_id": result.trace_id})
        st.session_state[_CONV] = history_view.save(st.session_state.get(_CONV), prompt, result.text,
                                                    trace_id=result.trace_id, served_version=result.model_version)
        _keep_note(history_view)
        st.rerun()  # redraw the answer as a history turn (with its caption), the Stop button gone
