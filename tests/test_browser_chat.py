"""The chat pages in a real browser: both apps, endpoint mode (MLflow's agent server) and direct mode.

The demo agent is told to pace its chunks (``/pace N``), so the test can see part of the answer
on the page before the model has produced its last chunk; the final text must equal the
non-streamed answer. Also: a second browser session has its own conversation, "new conversation"
clears it, and Stop ends an answer midway.

The pages run on the demo agent as a ``ResponsesAgent``. They do not see the wire format: the SDK
turns MLflow's legacy ``ChatAgent`` and ``ChatModel`` answers into the same ``ChatDelta`` objects,
proven chunk for chunk per format and mode in test_chat_e2e.py
(``test_endpoint_and_direct_mode_agree_chunk_for_chunk``), so the browser does not repeat it per
format (it did, with one more app per format and one more agent server: ~70 s of the suite).

Feedback on an answer: a user signed in through the front door (``tests/front_door.py``) gives
thumbs down with a comment, then thumbs up; the store holds one ``user_feedback`` assessment by
that user on the answer's trace, changed by the second click. That trace is where the model
side wrote it: the agent server's experiment in endpoint mode, the app's own in direct mode.

The apps keep their conversations on the other database from tests/test_history_browser.py's:
Streamlit's on SQLite, Gradio's on the session's PostgreSQL cluster (an ordinary role, password
over TCP). After a streamed answer the store holds the turn under the signed-in user, and after
Stop the stopped answer once, with its stopped state; after the votes, the vote with the turn.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, launch_app, open_page, streamlit_idle, wait_ready
from conftest import AGENT_TRACES, ChatServers
from front_door import FrontDoor, User

from client import Predictor
from client.feedback import FEEDBACK_NAME
from frontends.core.feedback import default_experiment_name, trace_experiment_ids
from frontends.core.history import HistoryStore, StoredMessage

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AGENT = "models:/main.default.assistant@champion"
QUESTION = "Which iris is 6.7 3.0 5.2 2.3?"
FIRST_WORDS = "The iris model says"
LAST_WORD = "virginica."
TIMEOUT = 60_000
APPS = ["streamlit-endpoint", "streamlit-direct", "gradio-endpoint", "gradio-direct"]


class ChatApps:
    """The chat apps the selected tests use (a run with ``-k`` starts only those), shared by the
    module's tests. Asking for one also launches the next one the tests will ask for, so that each
    start-up overlaps the test before it. One ahead, not all: with every app booting at once, the
    first test bore all their start-ups on 2 loaded cores and outlasted pytest's 300 s timeout."""

    AHEAD = 1

    def __init__(self, registry: str, chat_servers: ChatServers, logs: Path, wanted: list[str],
                 history: dict[str, str]) -> None:
        """``history``: each kind's history database (``PREDICTOR_HISTORY``)."""
        self.registry, self.chat_servers, self.logs, self.history = registry, chat_servers, logs, history
        self.wanted = list(dict.fromkeys(wanted))  # in the order the tests ask
        self.servers: dict[str, Any] = {}
        self.ready: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        if name not in self.servers:
            self.servers[name] = self._launch(name)
        later = self.wanted[self.wanted.index(name) + 1:] if name in self.wanted else []
        for n in later[:self.AHEAD]:
            if n not in self.servers:
                self.servers[n] = self._launch(n)
        if name not in self.ready:
            wait_ready(self.servers[name])
            self.ready.add(name)
        return self.servers[name]

    def _launch(self, name: str) -> Any:
        kind, mode = name.split("-")
        # alice, who checks the Feedback tab's counts, is a reviewer (only reviewers see them)
        env = {"PREDICTOR_MODEL_URI": AGENT, "PREDICTOR_REGISTRY_URI": self.registry,
               "MLFLOW_TRACKING_URI": self.registry, "MLFLOW_REGISTRY_URI": self.registry,
               "PREDICTOR_REVIEWERS": "alice@example.com", "PREDICTOR_HISTORY": self.history[kind]}
        if mode == "endpoint":
            env["PREDICTOR_ENDPOINT_URL"] = self.chat_servers.invocations("responses")  # the session's agent server
            env["PREDICTOR_TRACE_EXPERIMENT"] = AGENT_TRACES  # where the agent server traces
        return launch_app(kind, env, self.logs / f"{name}.log")


@pytest.fixture(scope="module")
def history_urls(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each app on the database test_history_browser.py does not give it."""
    postgres.sql("CREATE ROLE chat_apps LOGIN PASSWORD 'chat-apps-pw'")
    postgres.sql("CREATE DATABASE chat_apps OWNER chat_apps")
    return {"streamlit": f"sqlite:///{tmp_path_factory.mktemp('chat-history') / 'history.db'}",
            "gradio": postgres.url("chat_apps", "chat_apps", password="chat-apps-pw")}


@pytest.fixture(scope="module")
def stores(history_urls: dict[str, str]) -> Any:
    """What the tests read back: each kind's history store."""
    opened = {kind: HistoryStore.connect(url) for kind, url in history_urls.items()}
    try:
        yield opened
    finally:
        for store in opened.values():
            store.close()


@pytest.fixture(scope="module")
def chat_apps(request: pytest.FixtureRequest, agent_registry: str, chat_servers: ChatServers,
              tmp_path_factory: pytest.TempPathFactory, history_urls: dict[str, str]):
    here = request.node.path
    wanted = [item.callspec.params["name"] for item in request.session.items
              if item.path == here and "name" in getattr(getattr(item, "callspec", None), "params", {})]
    apps = ChatApps(agent_registry, chat_servers, tmp_path_factory.mktemp("chat_apps"), wanted, history_urls)
    try:
        yield apps
    finally:
        for server in apps.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def expected_answer(agent_registry: str) -> str:
    return Predictor.from_model(AGENT).chat(QUESTION).text


#: Every assistant bubble's text, in order, read in the page in one step (``ChatDriver.answers``,
#: and the observer of ``ChatDriver.record``).
ANSWERS_JS = {
    "streamlit": """() => [...document.querySelectorAll('[data-testid="stChatMessage"]')]
        .filter(b => b.querySelector('[data-testid="stChatMessageAvatarAssistant"]'))
        .map(b => {
            const text = b.querySelector('[data-testid="stMarkdownContainer"]');
            return text ? text.innerText.trim() : "";
        })""",
    "gradio": """() => [...document.querySelectorAll('[data-testid="bot"]')].map(b => b.innerText.trim())""",
}


class ChatDriver:
    """What a user does on either chat page, by placeholder, role and visible text."""

    def __init__(self, page: Any, kind: str) -> None:
        self.page, self.kind = page, kind

    def open(self, url: str) -> ChatDriver:
        self.page.goto(url, timeout=TIMEOUT)
        self.page.get_by_placeholder("Ask the model").wait_for(timeout=120_000)
        return self

    def send(self, text: str) -> None:
        # Gradio blanks the placeholder while it answers: find its box by test id (the first one:
        # the feedback comment box below the chat is a textbox too).
        box = self.page.get_by_placeholder("Ask the model") if self.kind == "streamlit" else \
            self.page.get_by_test_id("textbox").first
        box.fill(text, timeout=TIMEOUT)
        box.press("Enter")

    def record(self) -> None:
        """From now on the page itself notes each text its last answer shows (:meth:`recorded`).
        Why in the page: a test polling from outside can be starved on a loaded machine for the
        few seconds an answer streams, and read only its end (seen once under `make test`)."""
        self.page.evaluate("""() => {
            const answers = """ + ANSWERS_JS[self.kind] + """;
            window.__answerTexts = [];
            new MutationObserver(() => {
                const all = answers(), text = all.length ? all[all.length - 1] : "", seen = window.__answerTexts;
                if (text && seen[seen.length - 1] !== text) seen.push(text);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")

    def recorded(self) -> list[str]:
        return list(self.page.evaluate("() => window.__answerTexts"))

    def answers(self) -> list[str]:
        """The assistant bubbles' text, in order, read in one step in the page.

        Not ``locator.all()`` and then each bubble's ``inner_text()``: between the two the page
        can redraw (a rerun replaces the bubbles), and ``inner_text()`` on ``nth(i)`` of a list that
        no longer has it waits Playwright's default 30 s, outside ``wait_for_answer``'s own
        deadline: "the second assistant message did not appear within 30 s"."""
        return list(self.page.evaluate(ANSWERS_JS[self.kind]))

    def last_answer(self) -> str:
        answers = self.answers()
        return answers[-1] if answers else ""

    def wait_for_answer(self, predicate: Any, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.last_answer()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"no such answer on the page; last: {self.last_answer()!r}")

    def new_conversation(self) -> None:
        if self.kind == "streamlit":
            self.page.get_by_role("button", name="New conversation").click()
        else:
            self.page.get_by_role("button", name="Clear").click()

    def stop(self) -> None:
        if self.kind == "streamlit":  # the answer's Stop, not the toolbar's (which halts without a rerun)
            self.page.locator('[data-testid="stChatMessage"]').get_by_role("button", name="Stop").click()
        else:  # Gradio's stop button is an unlabeled icon
            self.page.get_by_test_id("stop-button").click()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _kept(store: HistoryStore, user: str, done: Any, timeout: float = TIMEOUT / 1000) -> list[StoredMessage]:
    """The user's kept messages, all conversations, oldest first, once ``done(messages)``. A turn
    is kept when its answer ends, a moment after the page has drawn it."""
    deadline = time.monotonic() + timeout
    while True:
        kept = [m for c in reversed(store.conversations(user, 0, 100).items) for m in store.messages(user, c.id)]
        if done(kept) or time.monotonic() > deadline:
            return kept
        time.sleep(0.2)


def _answers_kept(kept: list[StoredMessage]) -> list[tuple[str, str]]:
    return [(m.status, m.content) for m in kept if m.role == "assistant"]


@pytest.mark.parametrize("name", APPS)
def test_answers_stream_into_the_page_and_end_as_the_whole_answer(
    name: str, chat_apps: dict[str, Any], context: Any, expected_answer: str, stores: dict[str, HistoryStore]
) -> None:
    kind = name.split("-")[0]
    user = User.named(f"stream-{name}", token=None)  # one user per app: the apps of a kind share a store
    page = open_page(context, 1200, 900)
    door = FrontDoor(chat_apps[name].url, user).start()
    try:
        chat = ChatDriver(page, kind).open(door.url)
        chat.record()
        chat.send(f"/pace 400 {QUESTION}")
        final = chat.wait_for_answer(lambda t: LAST_WORD in t)
        # Part of the answer was on the page while the model still had chunks to produce: 22 chunks,
        # FIRST_WORDS at 1.2 s, LAST_WORD at 8.4 s. A browser starved for that 7.2 s window would
        # merge the updates (at /pace 200: 3.6 s, and a CI rerun once took >5 s).
        shown = chat.recorded()
        assert any(FIRST_WORDS in t and LAST_WORD not in t for t in shown), shown
        chat.shot(f"chat-{name}")
        assert final == expected_answer
        kept = _kept(stores[kind], user.email, lambda k: len(k) >= 2)
        assert [(m.role, m.status, m.content) for m in kept] == [
            ("user", "ok", f"/pace 400 {QUESTION}"), ("assistant", "ok", expected_answer)]

        other = ChatDriver(open_page(context), kind).open(chat_apps[name].url)  # another session: its own chat
        assert other.answers() == []
        other.page.close()

        chat.new_conversation()
        page.wait_for_function("() => !document.body.innerText.includes('virginica.')", timeout=TIMEOUT)

        chat.send("/pace 400 hello")
        chat.wait_for_answer(lambda t: t.startswith("I answer"))
        chat.stop()
        # Stop is done when the page says so: Streamlit's rerun draws the "(stopped)" note (a rerun
        # took >5 s on a loaded CI), Gradio hides its stop button once the handler is cancelled.
        if kind == "streamlit":
            stopped = chat.wait_for_answer(lambda t: re.search(r"\(stopped\)", t) is not None)
        else:
            page.get_by_test_id("stop-button").wait_for(state="hidden", timeout=TIMEOUT)
            stopped = chat.last_answer()
        assert stopped.startswith("I answer") and "which iris it is." not in stopped
        time.sleep(2)  # ~30 chunks were still to come, 0.4 s apart: 5 would have shown
        assert chat.last_answer() == stopped  # nothing after Stop
        # the stopped answer is kept once, as stopped, with what had arrived; the first turn as it was
        kept = _kept(stores[kind], user.email, lambda k: len(k) >= 4)
        assert [(m.role, m.content) for m in kept if m.role == "user"] == [
            ("user", f"/pace 400 {QUESTION}"), ("user", "/pace 400 hello")], kept
        [first, last] = _answers_kept(kept)
        assert first == ("ok", expected_answer)
        assert last[0] == "stopped" and last[1].startswith("I answer") and "which iris it is." not in last[1], last
    finally:
        page.close()
        door.stop()


def _feedback_on(trace_id: str) -> list[tuple[str, str, Any, str | None]]:
    """(assessment id, user, value, comment) of the valid ``user_feedback`` on the trace."""
    import mlflow

    trace = mlflow.get_trace(trace_id)
    assert trace is not None, f"trace {trace_id} is not in the store"
    return [(a.assessment_id, a.source.source_id, a.value, a.rationale) for a in trace.info.assessments
            if a.name == FEEDBACK_NAME and a.valid is not False]


def _vote(chat: ChatDriver, name: str, comment: str | None = None) -> None:
    from playwright.sync_api import expect

    page = chat.page
    if comment is not None:
        box = page.get_by_label("Comment (optional)", exact=True).last
        box.fill(comment, timeout=TIMEOUT)
        if chat.kind == "streamlit":
            box.press("Enter")  # commit the text (a rerun) before the click
            streamlit_idle(page)
    role = "radio" if chat.kind == "streamlit" else "button"  # st.feedback's thumbs are radios
    page.get_by_role(role, name=name, exact=True).last.click(timeout=TIMEOUT)
    word = name.split()[-1]
    expect(page.get_by_text(re.compile(f"Feedback saved: thumbs {word}"))).to_be_visible(timeout=TIMEOUT)


def _summary_row_once_tagged(trace_id: str, experiments: list[str]) -> Any:
    """The summary row of the answer's version and served entity, once the app has tagged the
    answer's trace (it does so in the background, after the answer)."""
    import mlflow

    from client.feedback import summarize

    deadline = time.monotonic() + 60
    while "predictor.model_name" not in mlflow.get_trace(trace_id).info.tags:
        assert time.monotonic() < deadline, f"trace {trace_id} never got the predictor.* tags"
        time.sleep(0.2)
    tags = mlflow.get_trace(trace_id).info.tags
    rows = summarize("main.default.assistant", experiments)  # direct answers (no served entity) too
    [row] = [r for r in rows if (r.model_version, r.served_model_name) ==
             (tags["predictor.model_version"], tags.get("predictor.served_model_name"))]
    return row


@pytest.mark.parametrize("name", APPS)
def test_thumbs_on_an_answer_are_stored_on_its_trace_for_the_signed_in_user(
    name: str, chat_apps: Any, context: Any, agent_registry: str, stores: dict[str, HistoryStore]
) -> None:
    import mlflow

    kind, mode = name.split("-")
    with FrontDoor(chat_apps[name].url, User.named("alice", token=None)) as door:
        page = open_page(context, 1200, 1100)
        try:
            chat = ChatDriver(page, kind).open(door.url)
            chat.send(QUESTION)
            chat.wait_for_answer(lambda t: LAST_WORD in t)
            page.get_by_text(re.compile(r"trace tr-[0-9a-f]{32}")).last.wait_for(timeout=TIMEOUT)
            [trace_id] = re.findall(r"trace (tr-[0-9a-f]{32})", page.inner_text("body"))

            _vote(chat, "Thumbs down", comment="say which model version")
            chat.shot(f"chat-feedback-{name}")
            [(assessment_id, user, value, comment)] = _feedback_on(trace_id)
            assert (user, value, comment) == ("alice@example.com", False, "say which model version")

            _vote(chat, "Thumbs up")  # the same assessment, changed; the comment kept
            assert _feedback_on(trace_id) == [(assessment_id, "alice@example.com", True, "say which model version")]
            # and the history keeps the turn and the vote, under alice (the apps of a kind share a store)
            voted = _kept(stores[kind], "alice@example.com",
                          lambda k: any(m.trace_id == trace_id and m.thumbs_up for m in k))
            [answer] = [m for m in voted if m.trace_id == trace_id]
            assert (answer.role, answer.status, answer.thumbs_up, answer.comment) == (
                "assistant", "ok", True, "say which model version")
            assert voted[voted.index(answer) - 1].content == QUESTION

            app_experiment = mlflow.get_experiment_by_name(default_experiment_name(kind))
            assert app_experiment is not None
            stored_in = mlflow.get_trace(trace_id).info.experiment_id
            # endpoint mode: the agent server's experiment (predictor serve --experiment), not the app's
            assert (stored_in == app_experiment.experiment_id) == (mode == "direct"), (stored_in, mode)

            # The Feedback tab counts the answer, as summarize() over the app's experiments does.
            row = _summary_row_once_tagged(trace_id, trace_experiment_ids(
                app_experiment.experiment_id, {"PREDICTOR_TRACE_EXPERIMENT": AGENT_TRACES * (mode == "endpoint")}))
            assert row.predictions >= 1 and row.with_feedback >= 1
            page.get_by_role("tab", name="Feedback").click()  # Gradio reads the store when the tab opens
            if kind == "streamlit":  # a Streamlit tab does not rerun the page: Refresh does
                page.get_by_role("button", name="Refresh").click()
            hidden = kind == "streamlit"  # Streamlit draws tables on a canvas, with a hidden ARIA copy
            for cell in (str(row.predictions), f"{row.feedback_share:.0%}", "say which model version"):
                page.get_by_role("gridcell", name=cell, exact=True, include_hidden=hidden).first.wait_for(
                    state="attached", timeout=TIMEOUT)
            chat.shot(f"chat-feedback-tab-{name}")
            assert "Traceback" not in page.content()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"chat-feedback-{name}-failure.png"), full_page=True)
            raise
        finally:
            page.close()


# A model answer that tries to make the browser fetch (issue 21, item 11): a Markdown image, a
# reference image and raw HTML, all pointing at a closed local port, plus Markdown that must stay.
LEAK = "http://127.0.0.1:9/leak"
HOSTILE = (f"Here is **your chart** ![chart]({LEAK}/md.png?q=secret) and ![ref][r].\n\n"
           f"<img src=\"{LEAK}/raw.png\"> <video poster=\"{LEAK}/poster.png\"></video>\n\n"
           f"[r]: {LEAK}/ref.png\n")


@pytest.mark.parametrize("name", ["streamlit-direct", "gradio-direct"])
def test_an_answer_makes_the_browser_fetch_nothing(name: str, chat_apps: Any, context: Any) -> None:
    """Images become links, raw HTML is text, the Markdown around them stays; the page's request
    log shows no request to the answer's URLs (images without the allow-list load nothing)."""
    import base64

    kind = name.split("-")[0]
    page = open_page(context, 1200, 900)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        chat = ChatDriver(page, kind).open(chat_apps[name].url)
        chat.send("/say64 " + base64.urlsafe_b64encode(HOSTILE.encode()).decode())
        chat.wait_for_answer(lambda t: "and ref." in t or "and ref ." in t)
        page.get_by_text(re.compile(r"trace tr-[0-9a-f]{32}")).last.wait_for(timeout=TIMEOUT)  # the whole answer
        bubble = (page.locator('[data-testid="stChatMessage"]') if kind == "streamlit"
                  else page.locator('[data-testid="bot"]')).last
        assert bubble.locator("strong", has_text="your chart").count() == 1  # Markdown kept
        assert bubble.locator(f'a[href="{LEAK}/md.png?q=secret"]').count() == 1  # the image, as a link
        assert bubble.locator(f'a[href="{LEAK}/ref.png"]').count() == 1
        assert page.locator("img[src*='127.0.0.1:9'], video").count() == 0
        assert '<img src="http://127.0.0.1:9/leak/raw.png">' in bubble.inner_text()  # raw HTML shown as text
        chat.shot(f"chat-hostile-{name}")
        assert [u for u in requests if "127.0.0.1:9/" in u] == []
    finally:
        page.close()
