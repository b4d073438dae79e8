"""Saved conversations in a real browser, both apps, two users through the front door.

The Streamlit app keeps its history on the session's throwaway PostgreSQL cluster (an ordinary
role, password over TCP), the Gradio app on SQLite: each app is started once, in direct mode on
the demo agent. In one test per app: alice asks, votes thumbs down on the answer; bob, signed in
as himself, lists only his own conversations, and alice's conversation id in the page's URL
(``?conversation=<id>``, the one id a client chooses) opens nothing of hers, and he renames and
deletes a conversation of his own; then the app is
restarted (a second process on the same database, booted beside the first, takes over once
the first is stopped), and alice finds her conversation, its answer and her vote (the thumbs show it),
continues it, and the database holds the four turns, in order, under her name only.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from _browser import ARTIFACTS, launch_app, open_page, streamlit_idle, wait_ready
from front_door import FrontDoor, User

from frontends.core.chat import STOPPED
from frontends.core.conversations import GONE
from frontends.core.history import HistoryStore

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AGENT = "models:/main.default.assistant@champion"
FIRST = "Which iris is 5.1 3.5 1.4 0.2?"
SECOND = "And 6.7 3.0 5.2 2.3?"
THIRD = "And 5.9 3.0 4.2 1.5?"
HOSTILE_TITLE = "<b>hello</b> **there** [x](y)"
TIMEOUT = 60_000
KINDS = ["streamlit", "gradio"]


@pytest.fixture(scope="module")
def history_urls(postgres, tmp_path_factory) -> dict[str, str]:
    postgres.sql("CREATE ROLE history_app LOGIN PASSWORD 'history-pw'")
    postgres.sql("CREATE DATABASE history_db OWNER history_app")
    return {"streamlit": postgres.url("history_app", "history_db", password="history-pw"),
            "gradio": f"sqlite:///{tmp_path_factory.mktemp('history-gradio') / 'history.db'}"}


class Chat:
    """What a user does on either page: send, wait for the answer, vote, open from the list."""

    def __init__(self, page: Any, kind: str) -> None:
        self.page, self.kind = page, kind
        page.set_default_timeout(TIMEOUT)

    def open(self, url: str) -> Chat:
        self.page.goto(url, timeout=TIMEOUT)
        self.page.get_by_placeholder("Ask the model").wait_for(timeout=120_000)
        self.idle()
        return self

    def idle(self) -> None:
        if self.kind == "streamlit":
            streamlit_idle(self.page)

    def start(self, text: str) -> None:
        box = self.page.get_by_placeholder("Ask the model") if self.kind == "streamlit" else \
            self.page.get_by_test_id("textbox").first
        box.fill(text)
        box.press("Enter")

    def send(self, text: str, expect_in_answer: str) -> None:
        from playwright.sync_api import expect

        self.start(text)
        expect(self.answers().last).to_contain_text(expect_in_answer, timeout=TIMEOUT)
        # The turn is kept when its answer ends, a moment after its text is drawn: wait for the
        # answer's Stop button to go. Leaving earlier (a loaded run: the page closed 10 s after the
        # text, the Streamlit script still running) ended the session before it saved the turn.
        expect(self.stop_button()).to_be_hidden(timeout=TIMEOUT)
        self.idle()

    def stop_button(self) -> Any:
        if self.kind == "streamlit":
            return self.page.locator('[data-testid="stChatMessage"]').get_by_role("button", name="Stop")
        return self.page.get_by_test_id("stop-button")

    def answers(self) -> Any:
        if self.kind == "streamlit":
            return self.page.locator('[data-testid="stChatMessage"]').filter(
                has=self.page.locator('[data-testid="stChatMessageAvatarAssistant"]'))
        return self.page.locator('[data-testid="bot"]')

    def thumbs_down_first_answer(self) -> None:
        from playwright.sync_api import expect

        if self.kind == "streamlit":
            self.answers().first.get_by_role("radio", name="Thumbs down").click()
        else:
            self.page.get_by_role("button", name="Dislike").first.click()
        expect(self.page.get_by_text("Feedback saved: thumbs down")).to_be_visible(timeout=TIMEOUT)
        self.idle()

    def expect_first_answer_thumbs_down(self) -> None:
        from playwright.sync_api import expect

        if self.kind == "streamlit":
            expect(self.answers().first.get_by_role("radio", name="Thumbs down")).to_be_checked(timeout=TIMEOUT)
        else:
            expect(self.page.get_by_role("button", name="Disliked").first).to_be_visible(timeout=TIMEOUT)

    def conversation(self, title: str) -> Any:
        if self.kind == "streamlit":
            return self.page.get_by_role("button", name=title, exact=True)
        return self.page.get_by_role("radio", name=title, exact=True)

    def rename(self, title: str) -> None:
        from playwright.sync_api import expect

        if self.kind == "streamlit":  # Gradio's is drawn open (frontends/gradio_ui/chat_page.py says why)
            self.page.get_by_text("Rename or delete").click()
        box = self.page.get_by_label("Title", exact=True)
        box.fill(title)
        expect(box).to_have_value(title)
        if self.kind == "streamlit":
            box.press("Enter")  # commit the text (a rerun) before the click
            self.idle()
        self.page.get_by_role("button", name="Rename", exact=True).click()
        self.idle()

    def delete(self) -> None:
        self.page.get_by_role("button", name="Delete conversation").click()
        self.idle()

    def shot(self, name: str) -> None:
        self.idle()
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _messages_once_saved(store: HistoryStore, user: str, conversation_id: str, count: int) -> list[Any]:
    """The conversation's messages once ``count`` are saved. The page saves a turn after drawing its
    answer, so the answer is visible a moment before its row exists (seconds on a loaded machine: the
    second turn was once read too early, 2 rows of 4)."""
    deadline = time.monotonic() + TIMEOUT / 1000
    while len(turns := store.messages(user, conversation_id)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return turns


@pytest.mark.parametrize("kind", KINDS)
def test_two_users_keep_their_own_conversations_and_votes_across_a_restart(
        kind: str, history_urls: dict[str, str], agent_registry: str, context: Any, tmp_path_factory) -> None:
    from playwright.sync_api import expect

    env = {"PREDICTOR_MODEL_URI": AGENT, "PREDICTOR_REGISTRY_URI": agent_registry,
           "MLFLOW_TRACKING_URI": agent_registry, "MLFLOW_REGISTRY_URI": agent_registry,
           "PREDICTOR_HISTORY": history_urls[kind], "PREDICTOR_HISTORY_SCHEMA": "browser_history"}
    logs = tmp_path_factory.mktemp(f"history-{kind}")
    store = HistoryStore.connect(history_urls[kind], schema="browser_history")  # what the test reads
    alice, bob = User.named("alice", token=None), User.named("bob", token=None)
    # The process that takes over after the restart boots beside the first (a start is the
    # costliest step); it serves nobody until the first one is stopped, and no state but the database's
    # passes between them.
    first, restarted = launch_app(kind, env, logs / "first.log"), launch_app(kind, env, logs / "restarted.log")
    server, pages = first, []
    try:
        wait_ready(first)
        with FrontDoor(server.url, alice) as door_a, FrontDoor(server.url, bob) as door_b:
            pages.append(open_page(context))
            chat_a = Chat(pages[-1], kind).open(door_a.url)
            chat_a.send(FIRST, "setosa")
            expect(chat_a.conversation(FIRST)).to_be_visible()  # listed once the turn is kept
            chat_a.thumbs_down_first_answer()
            [conv] = store.conversations(alice.email).items

            pages.append(open_page(context))
            chat_b = Chat(pages[-1], kind).open(f"{door_b.url}/?conversation={conv.id}")  # alice's id, crafted
            expect(pages[-1].get_by_text(GONE)).to_be_visible()
            assert chat_b.answers().count() == 0 and chat_b.conversation(FIRST).count() == 0
            chat_b.send(HOSTILE_TITLE, "I answer questions")
            expect(chat_b.conversation(HOSTILE_TITLE)).to_be_visible()  # its title as typed: text, not markup
            assert chat_b.conversation(FIRST).count() == 0
            assert "setosa" not in pages[-1].content()
            chat_b.rename("bob's chat")  # his own: renamed, then deleted
            expect(chat_b.conversation("bob's chat")).to_be_visible()
            assert [c.title for c in store.conversations(bob.email).items] == ["bob's chat"]
            chat_b.delete()
            expect(chat_b.conversation("bob's chat")).to_have_count(0)
            chat_b.send(HOSTILE_TITLE, "I answer questions")  # and a new one
            expect(chat_b.conversation(HOSTILE_TITLE)).to_be_visible()
            while pages:  # before their front doors close: a page left on a closed port keeps reconnecting
                pages.pop().close()
        server.stop()

        # the app "restarts": a new process on the same database
        server = wait_ready(restarted)
        with FrontDoor(server.url, alice) as door_a:
            pages.append(open_page(context))
            chat_a = Chat(pages[-1], kind).open(door_a.url)
            chat_a.conversation(FIRST).click()
            expect(chat_a.answers().first).to_contain_text("setosa")
            chat_a.expect_first_answer_thumbs_down()
            chat_a.send(SECOND, "virginica")  # continues it
            chat_a.shot(f"history-{kind}")
            pages.pop().close()  # with its front door: a page left on a closed port keeps reconnecting
        turns = _messages_once_saved(store, alice.email, conv.id, count=4)
        assert [(m.role, m.status) for m in turns] == [("user", "ok"), ("assistant", "ok")] * 2

        assert [turns[0].content, turns[2].content] == [FIRST, SECOND]
        assert "setosa" in turns[1].content and "virginica" in turns[3].content
        assert (turns[1].thumbs_up, turns[3].thumbs_up) == (False, None)
        assert [c.title for c in store.conversations(alice.email).items] == [FIRST]
        assert [c.title for c in store.conversations(bob.email).items] == [HOSTILE_TITLE]

        # A page closed while its answer streams (the tab shut): the turn is kept, once. It was lost in
        # both: Gradio closes the abandoned answer's generator (GeneratorExit, which the page did not
        # catch); Streamlit stops the session's script (StopException, raised again by every st.*
        # call after it, so the page could not even read its session state to save the turn).
        with FrontDoor(server.url, alice) as door_a:
            pages.append(open_page(context))
            chat_a = Chat(pages[-1], kind).open(door_a.url)
            chat_a.conversation(FIRST).click()
            expect(chat_a.answers()).to_have_count(2)
            chat_a.idle()
            chat_a.start(f"/pace 400 {THIRD}")
            expect(chat_a.answers()).to_have_count(3)
            expect(chat_a.answers().last).to_contain_text("The iris model says", timeout=TIMEOUT)
            pages.pop().close()
        closed = _messages_once_saved(store, alice.email, conv.id, count=6)
        assert [(m.role, m.content) for m in closed[:5]] == [(m.role, m.content) for m in turns] + [
            ("user", f"/pace 400 {THIRD}")]
        assert len(closed) == 6 and closed[5].role == "assistant" and "The iris model says" in closed[5].content
        # Stopped with what had arrived, or (the app finished the answer first) kept whole.
        assert (closed[5].status == "stopped" and closed[5].content.endswith(STOPPED)) or (
            closed[5].status == "ok" and closed[5].content.endswith("versicolor.")), closed[5]
    except Exception:
        for i, p in enumerate(pages):
            with contextlib.suppress(Exception):
                p.screenshot(path=str(ARTIFACTS / f"history-{kind}-failure-{i}.png"), full_page=True)
        print(server.output())
        raise
    finally:
        for p in pages:
            p.close()
        for proc in (first, restarted):
            if proc.proc.poll() is None:
                proc.stop()
        store.close()
