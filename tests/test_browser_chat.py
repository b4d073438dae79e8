"""The chat pages in a real browser: both apps, endpoint mode (MLflow's agent server) and direct mode.

The demo agent is told to pace its chunks (``/pace N``), so the test can see part of the answer
on the page before the model has produced its last chunk; the final text must equal the
non-streamed answer. Also: a second browser session has its own conversation, "new conversation"
clears it, and Stop ends an answer midway.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, launch_app, wait_ready

from client import Predictor

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AGENT = "models:/main.default.assistant@champion"
QUESTION = "Which iris is 6.7 3.0 5.2 2.3?"
FIRST_WORDS = "The iris model says"
LAST_WORD = "virginica."
TIMEOUT = 60_000
APPS = ["streamlit-endpoint", "streamlit-direct", "gradio-endpoint", "gradio-direct"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def chat_apps(agent_registry: str, agent_server: str, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("chat_apps")
    servers: dict[str, Any] = {}
    try:
        for name in APPS:
            kind, mode = name.split("-")
            env = {"PREDICTOR_MODEL_URI": AGENT, "PREDICTOR_REGISTRY_URI": agent_registry,
                   "MLFLOW_TRACKING_URI": agent_registry, "MLFLOW_REGISTRY_URI": agent_registry}
            if mode == "endpoint":
                env["PREDICTOR_ENDPOINT_URL"] = f"{agent_server}/serving-endpoints/assistant/invocations"
            servers[name] = launch_app(kind, env, logs / f"{name}.log")
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def expected_answer(agent_registry: str) -> str:
    return Predictor.from_model(AGENT).chat(QUESTION).text


class ChatDriver:
    """What a user does on either chat page, by placeholder, role and visible text."""

    def __init__(self, page: Any, kind: str) -> None:
        self.page, self.kind = page, kind

    def open(self, url: str) -> ChatDriver:
        self.page.goto(url, timeout=TIMEOUT)
        self.page.get_by_placeholder("Ask the model").wait_for(timeout=120_000)
        return self

    def send(self, text: str) -> None:
        # Gradio blanks the placeholder while it answers: find its box by test id.
        box = self.page.get_by_placeholder("Ask the model") if self.kind == "streamlit" else \
            self.page.get_by_test_id("textbox")
        box.fill(text, timeout=TIMEOUT)
        box.press("Enter")

    def answers(self) -> list[str]:
        """The assistant bubbles' text, in order."""
        if self.kind == "streamlit":
            bubbles = self.page.locator('[data-testid="stChatMessage"]').filter(
                has=self.page.locator('[data-testid="stChatMessageAvatarAssistant"]'))
            return [b.locator('[data-testid="stMarkdownContainer"]').first.inner_text().strip()
                    for b in bubbles.all()]
        return [b.inner_text().strip() for b in self.page.locator('[data-testid="bot"]').all()]

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


@pytest.mark.parametrize("name", APPS)
def test_answers_stream_into_the_page_and_end_as_the_whole_answer(
    name: str, chat_apps: dict[str, Any], browser: Any, expected_answer: str
) -> None:
    kind = name.split("-")[0]
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        chat = ChatDriver(page, kind).open(chat_apps[name].url)
        chat.send(f"/pace 300 {QUESTION}")
        # Part of the answer is on the page while the model still has ~5 s of chunks to produce.
        partial = chat.wait_for_answer(lambda t: FIRST_WORDS in t)
        assert LAST_WORD not in partial, partial
        final = chat.wait_for_answer(lambda t: LAST_WORD in t)
        chat.shot(f"chat-{name}")
        assert final == expected_answer

        other = ChatDriver(browser.new_page(), kind).open(chat_apps[name].url)  # another session: its own chat
        assert other.answers() == []
        other.page.close()

        chat.new_conversation()
        page.wait_for_function("() => !document.body.innerText.includes('virginica.')", timeout=TIMEOUT)

        chat.send("/pace 400 hello")
        chat.wait_for_answer(lambda t: t.startswith("I answer"))
        chat.stop()
        time.sleep(3)  # ~30 chunks were still to come, 0.4 s apart
        stopped = chat.last_answer()
        assert stopped.startswith("I answer") and "which iris it is." not in stopped
        if kind == "streamlit":
            assert re.search(r"\(stopped\)", stopped)
    finally:
        page.close()
