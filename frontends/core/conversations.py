"""One signed-in user's saved conversations, as both chat pages use them: never raising.

:class:`UserHistory` wraps the app's :class:`~frontends.core.history.HistoryStore` (or ``None``:
history off) for one user; every failure of the database becomes a note for the page
(``note``), and the chat goes on: an answer is shown even when it could not be kept.

Turns are the pages' dicts (``frontends/core/chat.py``): ``{"role", "content"}``, plus
``message_id``, ``trace_id``, ``thumbs_up``/``comment`` (the user's vote) for a stored answer;
a failed or stopped answer is a ``note`` (shown, kept, never sent back to the model).

Example::

    history = UserHistory(store, feedback_user(headers))
    conv = history.save(None, "Hi", "Hello!", trace_id="tr-1")     # a new conversation
    turns = history.open(conv)                                      # after a restart too
    history.vote("tr-1", thumbs_up=True, comment="nice")
"""

from __future__ import annotations

import logging
from typing import Any

from frontends.core.history import (
    HISTORY_OFF,
    NOT_SAVED,
    Answer,
    ConversationNotFound,
    ConversationPage,
    HistoryError,
    HistoryStore,
    HistoryUnavailable,
    MessageTooLarge,
    StoredMessage,
)
from frontends.core.markup import image_hosts, safe_markdown

__all__ = ["GONE", "PAGE_SIZE", "UserHistory", "chatbot_turns", "page_turn"]

log = logging.getLogger(__name__)

#: A conversation opened (or continued) from a page that still showed it after it was deleted.
GONE = "That conversation does not exist (any more): a new one starts with your next message."
PAGE_SIZE = 20


def page_turn(message: StoredMessage) -> dict[str, Any]:
    """A stored message as a page's turn (pure)."""
    turn: dict[str, Any] = {"role": message.role, "content": message.content, "message_id": message.id}
    if message.role == "assistant":
        turn.update(trace_id=message.trace_id, thumbs_up=message.thumbs_up, comment=message.comment)
        if message.served_version:
            turn["caption"] = f"version {message.served_version}"
        if message.status != "ok":  # shown and kept, never sent to the model again
            turn["note"] = True
            turn["error"] = message.status == "failed"
    return turn


def chatbot_turns(turns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str], list[str | None],
                                                      list[str | None]]:
    """Stored turns as a Chatbot of role/content messages shows them (Gradio's; pure): (messages,
    shown -> the model's own text, each answer's thumbs for its ``feedback_value``, each answer's
    trace id, in order). An answer is shown made safe (``markup.safe_markdown``)."""
    hosts = image_hosts()
    messages: list[dict[str, Any]] = []
    originals: dict[str, str] = {}
    thumbs: list[str | None] = []
    traces: list[str | None] = []
    for turn in turns:
        if turn["role"] == "user":
            messages.append({"role": "user", "content": turn["content"]})
            continue
        shown = safe_markdown(turn["content"], hosts)
        messages.append({"role": "assistant", "content": shown})
        if not turn.get("note"):
            originals[shown] = turn["content"]
        up = turn.get("thumbs_up")
        thumbs.append(None if up is None else ("Like" if up else "Dislike"))
        traces.append(None if turn.get("note") else turn.get("trace_id"))
    return messages, originals, thumbs, traces


class UserHistory:
    """The signed-in ``user``'s view of ``store`` (``None``: history off). No method raises a
    :class:`HistoryError`: the page reads :attr:`note` for what to say instead."""

    def __init__(self, store: HistoryStore | None, user: str) -> None:
        self.store, self.user = store, user
        #: What the page should say about the history now (``None``: nothing to say).
        self.note: str | None = HISTORY_OFF if store is None else None

    @property
    def on(self) -> bool:
        return self.store is not None

    def _failed(self, err: HistoryError, what: str) -> None:
        if isinstance(err, HistoryUnavailable):
            self.note = NOT_SAVED
        elif isinstance(err, ConversationNotFound):
            self.note = GONE
        else:
            self.note = f"History: {err}"
        log.warning("history: %s failed (%s)", what, type(err).__name__)

    def page(self, number: int = 0) -> ConversationPage | None:
        if self.store is None:
            return None
        try:
            return self.store.conversations(self.user, number, PAGE_SIZE)
        except HistoryError as err:
            self._failed(err, "listing")
            return None

    def open(self, conversation_id: str) -> list[dict[str, Any]] | None:
        """The conversation's turns, or ``None`` (gone, someone else's, or the database down)."""
        if self.store is None:
            return None
        try:
            return [page_turn(m) for m in self.store.messages(self.user, conversation_id)]
        except HistoryError as err:
            self._failed(err, "opening")
            return None

    def title(self, conversation_id: str | None) -> str | None:
        if self.store is None or not conversation_id:
            return None
        try:
            return self.store.title(self.user, conversation_id)
        except HistoryError:
            return None

    def save(self, conversation_id: str | None, prompt: str, text: str, *, status: str = "ok",
             trace_id: str | None = None, served_version: str | None = None) -> str | None:
        """Keep one turn; the conversation's id (a new one when ``conversation_id`` is ``None`` or
        was deleted meanwhile), or ``None`` when it could not be kept (see :attr:`note`)."""
        if self.store is None:
            return None
        answer = Answer(text, status, trace_id, served_version)
        try:
            try:
                conv, _ = self.store.add_turn(self.user, conversation_id, prompt, answer)
            except ConversationNotFound:  # deleted from another page: this turn starts a new one
                conv, _ = self.store.add_turn(self.user, None, prompt, answer)
                self.note = GONE
                return conv
        except MessageTooLarge as err:
            self.note = f"Not kept in the history: {err}."
            return conversation_id
        except HistoryError as err:
            self._failed(err, "saving")
            return conversation_id
        if self.note in (NOT_SAVED, GONE):
            self.note = None  # saved again: the earlier failure is over
        return conv

    def rename(self, conversation_id: str, title: str) -> bool:
        if self.store is None:
            return False
        try:
            self.store.rename(self.user, conversation_id, title)
            return True
        except ValueError as err:
            self.note = str(err).capitalize() + "."
        except HistoryError as err:
            self._failed(err, "renaming")
        return False

    def delete(self, conversation_id: str) -> bool:
        if self.store is None:
            return False
        try:
            self.store.delete(self.user, conversation_id)
            return True
        except HistoryError as err:
            self._failed(err, "deleting")
            return False

    def vote(self, trace_id: str | None, *, thumbs_up: bool, comment: str | None = None) -> bool:
        """Remember the user's vote on their answer with ``trace_id`` (its MLflow feedback is the caller's)."""
        if self.store is None or not trace_id:
            return False
        try:
            return self.store.vote_on_trace(self.user, trace_id, thumbs_up=thumbs_up, comment=comment) is not None
        except HistoryError as err:
            self._failed(err, "voting")
            return False
