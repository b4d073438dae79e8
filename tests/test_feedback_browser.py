"""Feedback in a real browser, both apps: predict, thumbs down with a comment, change it, see it counted.

Each app runs as a real server (direct mode on the demo iris model) tracing into the session's
sqlite tracking store, in an experiment of its own; users reach it through the front door
(``tests/front_door.py``), which adds ``X-Forwarded-Email`` to every request, WebSocket included.
The assertions read the store: the assessment is there with the user, a second click changes it,
and two users' votes stay apart; then the Feedback page counts them for alice, a reviewer
(``PREDICTOR_REVIEWERS``), while bob, who is not, sees only his own comments (issue 21, item 15).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from _browser import ARTIFACTS, launch_app, open_page, streamlit_idle, wait_ready
from front_door import FrontDoor, User

from client.feedback import FEEDBACK_NAME
from frontends.core.feedback import OWN_ONLY, WHAT_IS_SHOWN, vote_status

pytestmark = [pytest.mark.slow, pytest.mark.browser]
TIMEOUT = 60_000
IRIS = "models:/main.default.iris@champion"
KINDS = ["streamlit", "gradio"]
HOSTILE_COMMENT = '<img src="http://127.0.0.1:9/comment.png"> **bold** [x](y)'


@pytest.fixture(scope="module")
def apps(registry_uri, tmp_path_factory):
    """Both apps, started together, each tracing into an experiment of its own."""
    home = tmp_path_factory.mktemp("feedback-apps")
    servers: dict[str, Any] = {}
    try:
        for kind in KINDS:
            experiment = f"/browser-feedback-{kind}-{uuid.uuid4().hex[:6]}"
            env = {"PREDICTOR_MODEL_URI": IRIS, "PREDICTOR_REGISTRY_URI": registry_uri, "PREDICTOR_HOME": str(home),
                   "MLFLOW_TRACKING_URI": registry_uri, "MLFLOW_REGISTRY_URI": registry_uri,
                   "PREDICTOR_EXPERIMENT": experiment, "PREDICTOR_REVIEWERS": "alice@example.com"}
            servers[kind] = launch_app(kind, env, home / f"{kind}.log")
            servers[kind].experiment = experiment
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def votes(experiment: str) -> list[tuple[str, str, Any, str | None]]:
    """(trace id, user, value, comment) of every valid ``user_feedback`` in the experiment."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    assert exp is not None, f"the app did not create {experiment}"
    out = []
    for trace in mlflow.search_traces(locations=[exp.experiment_id], return_type="list", include_spans=False):
        for a in trace.info.assessments:
            if a.name == FEEDBACK_NAME and a.valid is not False:
                out.append((trace.info.trace_id, a.source.source_id, a.value, a.rationale))
    return sorted(out, key=lambda v: v[1])


class Ui:
    def __init__(self, page, kind: str) -> None:
        self.page, self.kind = page, kind

    def thumbs(self, name: str):
        role = "radio" if self.kind == "streamlit" else "button"  # st.feedback's buttons are radios
        return self.page.get_by_role(role, name=name, exact=True)

    def open(self, url: str) -> Ui:
        self.page.set_default_timeout(TIMEOUT)
        self.page.goto(url, timeout=TIMEOUT)
        # the first session loads the model: wait for the form itself
        self.page.get_by_label("sepal length (cm)", exact=True).wait_for(timeout=120_000)
        self.idle()
        return self

    def predict(self) -> None:
        from playwright.sync_api import expect

        self.page.get_by_role("button", name="Predict").click()
        # the demo's input example (the form's defaults) is a setosa; its class probabilities are drawn
        if self.kind == "streamlit":
            expect(self.page.get_by_test_id("stMetricLabel")).to_have_text("Prediction", timeout=TIMEOUT)
            expect(self.page.get_by_test_id("stMetricValue")).to_have_text("setosa", timeout=TIMEOUT)
        else:
            expect(self.page.get_by_label("Prediction", exact=True)).to_have_value("setosa", timeout=TIMEOUT)
        expect(self.page.get_by_text("Class probabilities", exact=True).first).to_be_visible(timeout=TIMEOUT)
        self.thumbs("Thumbs down").wait_for(timeout=TIMEOUT)

    def vote(self, name: str, comment: str | None = None) -> None:
        from playwright.sync_api import expect

        if comment is not None:
            box = self.page.get_by_label("Comment (optional)", exact=True)
            box.fill(comment)
            if self.kind == "streamlit":
                box.press("Enter")  # commit the text (a rerun) before the click
                self.idle()
        self.thumbs(name).click()
        word = name.split()[-1]
        expect(self.page.get_by_text(re.compile(f"Feedback saved: thumbs {word}"))).to_be_visible(timeout=TIMEOUT)

    def idle(self) -> None:
        if self.kind == "streamlit":
            streamlit_idle(self.page)

    def feedback_page(self, note: str = WHAT_IS_SHOWN) -> None:
        self.page.get_by_role("tab", name="Feedback").click()  # Gradio reads the store when the tab opens
        if self.kind == "streamlit":  # the summary is cached for 30 s; others voted since it was read
            self.page.get_by_role("button", name="Refresh").click()
        self.page.get_by_text(note).first.wait_for(timeout=TIMEOUT)

    def expect_cell(self, text: str) -> None:
        """A table cell with ``text`` (Streamlit draws tables on a canvas, with a hidden ARIA copy)."""
        hidden = self.kind == "streamlit"
        self.page.get_by_role("gridcell", name=text, include_hidden=hidden).first.wait_for(
            state="attached", timeout=TIMEOUT)

    def shot(self, name: str) -> None:
        self.idle()
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("kind", KINDS)
def test_thumbs_down_with_a_comment_then_changed_and_counted(kind, apps, context):
    from playwright.sync_api import expect

    server = apps[kind]
    alice, bob = User.named("alice", token=None), User.named("bob", token=None)
    pages = []
    with FrontDoor(server.url, alice) as door_a, FrontDoor(server.url, bob) as door_b:
        try:
            page = open_page(context, 1400, 1100)
            pages.append(page)
            ui = Ui(page, kind).open(door_a.url)
            ui.predict()
            ui.vote("Thumbs down", comment="should be virginica")
            ui.shot(f"feedback-{kind}-down")
            [(trace_id, user, value, comment)] = votes(server.experiment)
            assert (user, value, comment) == ("alice@example.com", False, "should be virginica")

            ui.vote("Thumbs up")  # a second click changes alice's assessment, it does not add one
            assert votes(server.experiment) == [(trace_id, "alice@example.com", True, "should be virginica")]

            other = open_page(context, 1400, 1100)
            pages.append(other)
            ui_b = Ui(other, kind).open(door_b.url)
            ui_b.predict()
            ui_b.vote("Thumbs down")
            got = votes(server.experiment)
            assert [(u, v) for _, u, v, _ in got] == [("alice@example.com", True), ("bob@example.com", False)]
            assert got[0][3] == "should be virginica" and got[1][3] is None  # bob's vote did not touch alice's

            # A comment is text: the status line quoting it renders neither Markdown nor HTML (issue 21, item 12)
            requests: list[str] = []
            other.on("request", lambda request: requests.append(request.url))
            ui_b.vote("Thumbs up", comment=HOSTILE_COMMENT)
            expect(other.get_by_text(vote_status(True, HOSTILE_COMMENT), exact=True)).to_be_visible(timeout=TIMEOUT)
            assert other.locator("img[src*='127.0.0.1:9'], strong:has-text('bold')").count() == 0
            assert [u for u in requests if "127.0.0.1:9/" in u] == []

            # Only a reviewer sees others' feedback: bob (not one) sees his own comment and nothing of alice's
            ui_b.vote("Thumbs down", comment="bob's own words")
            ui_b.feedback_page(OWN_ONLY)
            ui_b.expect_cell("bob's own words")
            ui_b.shot(f"feedback-{kind}-page-bob")
            assert "should be virginica" not in other.content() and "alice@example.com" not in other.content()

            # alice, a reviewer, sees everyone's: the counts and bob's comment with his name
            ui.feedback_page()
            ui.expect_cell("50%")  # one thumbs up, one down: a 50% thumbs-up rate
            ui.expect_cell("should be virginica")
            ui.expect_cell("alice@example.com")
            ui.expect_cell("bob's own words")
            ui.expect_cell("bob@example.com")
            ui.shot(f"feedback-{kind}-page")
            assert "Traceback" not in page.content()
        except Exception:
            for i, p in enumerate(pages):
                p.screenshot(path=str(ARTIFACTS / f"feedback-{kind}-failure-{i}.png"), full_page=True)
            raise
        finally:
            for p in pages:
                p.close()


@pytest.mark.parametrize("kind", KINDS)
def test_the_monitoring_tab_shows_the_drifted_feature(kind, apps, context, registry_uri):
    """Drifted traffic traced into the app's experiment: its Monitoring tab (alice, a reviewer)
    shows ``sepal width (cm)`` drifted against the demo's training data, and its distributions."""
    import mlflow
    from _monitoring_traffic import SHIFTED, iris_rows, send

    from client import Predictor
    from client.feedback import setup_tracking

    server = apps[kind]
    setup_tracking(server.experiment, registry_uri)
    p = Predictor.from_model(IRIS, registry_uri=registry_uri, tracing=True, validate=False)
    p.get_signature()
    try:
        send(p, iris_rows(seed=3, drifted=True))
    finally:
        p.close()
    mlflow.flush_trace_async_logging()
    with FrontDoor(server.url, User.named("alice", token=None)) as door:
        page = open_page(context, 1400, 2300)  # Streamlit scrolls inside the page
        try:
            ui = Ui(page, kind).open(door.url)
            page.get_by_role("tab", name="Monitoring").click()
            if kind == "streamlit":  # cached for 30 s: read the store now
                page.get_by_role("button", name="Refresh").last.click()
            page.get_by_text("drift BASELINE against training data").first.wait_for(timeout=TIMEOUT)
            ui.expect_cell("DRIFTED")
            ui.expect_cell(SHIFTED)
            ui.shot(f"monitoring-{kind}")
            assert "Traceback" not in page.content()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"monitoring-{kind}-failure.png"), full_page=True)
            raise
        finally:
            page.close()
