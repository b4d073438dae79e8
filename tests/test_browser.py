"""One browser test for both apps, in both modes, on the mixed-type model (Playwright + Debian's Chromium).

Each app runs as a real server (Streamlit with ``app.yaml``'s command, Gradio with
``python -m frontends.gradio_ui.app``), started once per (frontend, mode). Endpoint mode calls
the real MLflow scoring server (``mixed_server``) through a loopback ``Recorder`` that notes
each call's bearer token; direct mode loads the model in the app. One Chromium per module.

The apps act on behalf of the signed-in user, as on Databricks Apps: every page is opened
through a ``FrontDoor`` (``tests/front_door.py``), a proxy per user that adds the user's
``X-Forwarded-*`` headers to every request, the WebSocket handshake included. The browser
itself never sends them.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, Recorder, launch_app, open_page, streamlit_idle, wait_ready
from _models import MIXED_MODEL_URI, mixed_expected
from front_door import FrontDoor, User

from frontends.core.session import format_prediction

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROW: dict[str, Any] = {"x": 1.5, "f": 2.25, "n": 3, "s": "abc", "b": True, "t": "2024-05-17T10:00:00", "note": "hi"}
ROW2: dict[str, Any] = {**ROW, "n": 40, "s": "isolation"}
CSV_ROWS: list[dict[str, Any]] = [ROW, {"x": -1.0, "f": 0.5, "n": 7, "s": "z", "b": False,
                                        "t": "2024-02-01T00:00:00", "note": ""}]
TIMEOUT = 45_000  # generous: the CI machine has 2 cores shared with other jobs


def expected(row: dict[str, Any]) -> str:
    return format_prediction([mixed_expected({k: v for k, v in row.items() if v != ""})])


# -- fixtures: one browser, one recorder, one app server per (frontend, mode) ------------------


APPS = ["streamlit-endpoint", "streamlit-direct", "gradio-endpoint", "gradio-direct"]


@pytest.fixture(scope="module")
def apps(request, registry_uri, context, tmp_path_factory):
    """All four app servers, started together (and the scoring server meanwhile), then warmed up
    with one page each, so that their start-up costs overlap instead of adding up (and the
    module's browser context has each app's scripts cached before the first test)."""
    recorder = Recorder(upstream="").start()
    logs = tmp_path_factory.mktemp("apps")
    servers: dict[str, Any] = {}
    try:
        for name in APPS:
            kind, mode = name.split("-")
            env = {"PREDICTOR_MODEL_URI": MIXED_MODEL_URI, "PREDICTOR_REGISTRY_URI": registry_uri,
                   "MLFLOW_TRACKING_URI": registry_uri, "MLFLOW_REGISTRY_URI": registry_uri,
                   "PREDICTOR_ON_BEHALF_OF_USER": "1"}
            if mode == "endpoint":
                env["PREDICTOR_ENDPOINT_URL"] = f"{recorder.url}/invocations"
            servers[name] = launch_app(kind, env, logs / f"{name}.log")
            servers[name].mode, servers[name].name = mode, name
        recorder.upstream = request.getfixturevalue("mixed_server")
        pages = []
        for server in servers.values():
            wait_ready(server)
            door = FrontDoor(server.url, User.named("warm-up", token="warm-up-token")).start()
            page = open_page(context)
            try:
                page.goto(door.url, timeout=60_000)
            except Exception as err:  # which app, and what it logged (the report adds the page's steps)
                pytest.fail(f"warming up {server.name}: {err}\n{server.output()}")
            pages.append((page, door))
        for page, door in pages:  # the first session loads the model (Streamlit) and fetches the signature
            page.get_by_label("x", exact=True).wait_for(timeout=120_000)
            page.close()
            door.stop()
        yield servers, recorder
    finally:
        for server in servers.values():
            server.stop()
        recorder.stop()


@pytest.fixture(scope="module")
def recorder(apps):
    return apps[1]


@pytest.fixture(params=APPS)
def app(request, apps):
    return apps[0][request.param]


@pytest.fixture
def sign_in(app, context):
    """``sign_in(name, token)``: a new page on ``app`` through that user's own front door (a port
    of its own: see conftest's ``context`` fixture)."""
    opened: list[tuple[Any, FrontDoor]] = []

    def open_as(name: str, token: str | None, wait_for_form: bool = True) -> Driver:
        door = FrontDoor(app.url, User.named(name, token)).start()
        page = open_page(context)
        opened.append((page, door))
        ui = Driver(page, app.kind)
        return ui.open(door.url) if wait_for_form else ui.goto(door.url)

    yield open_as
    for page, door in opened:
        page.close()
        door.stop()


# -- the two frontends behind one interface ---------------------------------------------------


class Driver:
    """What a user does on either app, by accessible label and visible text."""

    def __init__(self, page, kind: str) -> None:
        self.page, self.kind = page, kind

    def open(self, url: str) -> Driver:
        self.goto(url)
        self.page.get_by_label("x", exact=True).wait_for(timeout=60_000)
        return self

    def goto(self, url: str) -> Driver:
        self.page.goto(url, timeout=60_000)
        return self

    def fill(self, row: dict[str, Any]) -> None:
        for name, value in row.items():
            field = self.page.get_by_label(name, exact=True)
            if isinstance(value, bool):
                self._set_checked(field, value)
            elif field.get_attribute("role") == "group":  # Streamlit's date/time picker: typed segment by segment
                field.get_by_role("spinbutton").first.click()
                self.page.keyboard.type(datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M"))
                self.page.keyboard.press("Tab")  # leave the picker (Enter would submit the form)
            else:
                field.fill(str(value))

    def _set_checked(self, field, value: bool) -> None:
        """Tick or untick; once more if the page re-rendered under the click (a page still starting up)."""
        from playwright.sync_api import Error

        for attempt in range(3):
            try:  # Streamlit hides the <input> under its own styled box: no visibility check there
                field.set_checked(value, force=self.kind == "streamlit", timeout=10_000)
                return
            except Error:
                if attempt == 2:
                    raise
                self.page.wait_for_timeout(500)

    def predict(self) -> None:
        self.page.get_by_role("button", name="Predict").click()

    def expect_prediction(self, text: str) -> None:
        from playwright.sync_api import expect

        if self.kind == "streamlit":
            expect(self.page.get_by_test_id("stMetricLabel")).to_have_text("Prediction", timeout=TIMEOUT)
            expect(self.page.get_by_test_id("stMetricValue")).to_have_text(text, timeout=TIMEOUT)
        else:
            expect(self.page.get_by_label("Prediction", exact=True)).to_have_value(text, timeout=TIMEOUT)

    def expect_text(self, pattern: str) -> None:
        from playwright.sync_api import expect

        expect(self.page.get_by_text(re.compile(pattern)).first).to_be_visible(timeout=TIMEOUT)

    def score_csv(self, path: Path) -> list[dict[str, str]]:
        """Upload a CSV on the batch tab; the results table's rows as read from the page."""
        from playwright.sync_api import expect

        page = self.page
        page.get_by_role("tab", name="Batch (CSV)").click()
        if self.kind == "gradio":
            page.locator("input[type=file]").first.set_input_files(str(path))
            page.get_by_role("button", name="Score CSV").click()
        else:
            # The tab's click reruns the page (st.tabs on_change="rerun"): choose the file once that rerun
            # is done. Streamlit lists the file once it has taken it; an input replaced by a rerun still
            # drawing the tab drops it (seen under `make test`'s load, twice in a row once): choose again.
            listed = page.get_by_test_id("stFileUploader").get_by_text(path.name)
            for attempt in range(4):
                page.get_by_test_id("stFileUploader").wait_for(timeout=TIMEOUT)
                streamlit_idle(page)
                page.locator("input[type=file]").first.set_input_files(str(path))
                try:
                    expect(listed).to_be_visible(timeout=10_000)
                    break
                except AssertionError:
                    if attempt == 3:
                        raise
        self.expect_text(r"Scored \d+ rows")
        # Both render an ARIA grid (Streamlit's is a hidden accessibility copy of its canvas).
        hidden = self.kind == "streamlit"
        boxes = page.get_by_test_id("stDataFrame") if hidden else page.get_by_label("Results")
        grid = boxes.filter(has=page.get_by_role("columnheader", name="prediction", include_hidden=hidden)).first
        grid.get_by_role("gridcell", include_hidden=hidden).first.wait_for(state="attached", timeout=TIMEOUT)
        return self.read_grid(grid)

    def history_inputs(self, n: int) -> list[dict[str, Any]]:
        """The inputs listed in Streamlit's open history table, once it has ``n`` rows (newest first)."""
        from playwright.sync_api import expect

        page = self.page
        grid = page.get_by_test_id("stDataFrame").filter(
            has=page.get_by_role("columnheader", name="prediction", exact=True, include_hidden=True)).first
        expect(grid.get_by_role("row", include_hidden=True)).to_have_count(n + 1, timeout=TIMEOUT)  # + the header
        return [json.loads(row["input"]) for row in self.read_grid(grid)]

    def read_grid(self, grid) -> list[dict[str, str]]:
        """A table's rows as read from its ARIA grid (Streamlit's is a hidden accessibility copy of
        its canvas), by column header; the header row itself is left out."""
        hidden = self.kind == "streamlit"

        def text(cell) -> str:
            return (cell.text_content() or "").replace("\u22ee", "").strip()  # Gradio's cell-menu button

        header = [text(c) for c in grid.get_by_role("columnheader", include_hidden=hidden).all()]
        rows = [[text(c) for c in r.get_by_role("gridcell", include_hidden=hidden).all()]
                for r in grid.get_by_role("row", include_hidden=hidden).all()]
        return [dict(zip(header, r, strict=False)) for r in rows if any(r)]

    def shot(self, name: str) -> None:
        if self.kind == "streamlit":  # let the rerun finish (charts render last)
            streamlit_idle(self.page)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{k: (str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()} for r in rows])
    return path


# -- the tests ---------------------------------------------------------------------------------


def test_form_batch_and_errors(app, sign_in, tmp_path):
    """Fill every field by its label, predict, see a readable error for a bad value, score a CSV."""
    ui = sign_in("tester", "tester-token")
    page = ui.page
    try:
        ui.fill({**ROW, "s": ""})
        ui.predict()
        ui.expect_text(r"column 's': a value is required")
        ui.shot(f"{app.name}-error")
        assert "Traceback" not in page.content()

        ui.fill({"s": ROW["s"]})
        ui.predict()
        ui.expect_prediction(expected(ROW))
        ui.shot(f"{app.name}-form")
        assert "Traceback" not in page.content()

        rows = ui.score_csv(_write_csv(tmp_path / "batch.csv", CSV_ROWS))
        ui.shot(f"{app.name}-batch")
        assert [r.get("s") for r in rows] == [r["s"] for r in CSV_ROWS]
        got = [float(r["prediction"]) for r in rows]
        assert got == pytest.approx([float(expected(r)) for r in CSV_ROWS])
    except Exception:
        ui.shot(f"{app.name}-failure")
        raise


def test_sessions_keep_their_own_token_cache_and_history(app, sign_in, recorder, context):
    """Two signed-in users (forwarded tokens): each call carries its caller's token, a cached
    prediction is never served to the other user, and each history is its own."""
    before = recorder.tokens.copy()
    drivers: list[Driver] = []

    def session(name: str, token: str) -> Driver:
        drivers.append(sign_in(name, token))
        return drivers[-1]

    try:
        alice, bob = session("alice", "alice-token"), session("bob", "bob-token")
        # the same input three times; alice's second one is cached (her form still holds ROW2)
        for ui, fill in ((alice, True), (bob, True), (alice, False)):
            if fill:
                ui.fill(ROW2)
            ui.predict()
            ui.expect_prediction(expected(ROW2))
        alice.expect_text(r"^History \(2\)$")
        bob.expect_text(r"^History \(1\)$")
        bob.shot(f"{app.name}-second-user")
        for ui in (alice, bob):
            html = ui.page.content()
            assert "alice-token" not in html and "bob-token" not in html
        logged = app.log_path.read_text(errors="replace")
        assert "alice-token" not in logged and "bob-token" not in logged  # nor in the app's logs
        # The users share one browser (conftest's ``context``): no cookie says who either of them is.
        cookies = [f"{c['name']}={c['value']}" for c in context.cookies()]
        assert not [c for c in cookies if re.search("alice|bob|token|example", c)], cookies
        calls = recorder.tokens - before
        if app.mode == "direct":
            assert calls == Counter()  # in process: nothing sent anywhere
            return
        assert calls == Counter({"alice-token": 1, "bob-token": 1})

        carol = session("carol", "expired-carol")  # her token has expired: the upstream answers 401
        carol.fill(ROW2)
        carol.predict()
        carol.expect_text(r"Your sign-in has expired.*Reload the page")
        carol.shot(f"{app.name}-expired-sign-in")
        html = carol.page.content()
        assert "Traceback" not in html and "expired-carol" not in html
        assert (recorder.tokens - before)["expired-carol"] == 1  # a user token is not refreshed or retried

        dana = session("dana", "noscope-dana")  # her token lacks the serving scope: the upstream answers 403
        dana.fill(ROW2)
        dana.predict()
        dana.expect_text(r"user_api_scopes: \[serving\.serving-endpoints\]")
        dana.shot(f"{app.name}-missing-scope")
        assert "noscope-dana" not in dana.page.content()
        assert (recorder.tokens - before)["noscope-dana"] == 1
    except Exception:
        for i, ui in enumerate(drivers):
            ui.shot(f"{app.name}-sessions-failure-{i}")
        raise


def test_a_slow_prediction_does_not_block_another_users_page(app, sign_in, recorder):
    """While alice's prediction is held upstream, bob (a session opened meanwhile) predicts and
    sees his answer; only then is alice's call let go and her answer shown: one call each. The
    hold is an event, so the test takes as long as the apps need and no longer."""
    if app.mode != "endpoint":
        pytest.skip("the hold is upstream: endpoint mode")
    slow, fast = {**ROW, "x": 9.99, "n": 41}, {**ROW, "n": 42}
    before = recorder.tokens.copy()
    drivers: list[Driver] = []
    try:
        drivers.append(sign_in("alice-slow", "alice-slow-token"))
        alice = drivers[-1]
        with recorder.hold("9.99") as held:
            alice.fill(slow)
            alice.predict()
            assert held.wait(60), "alice's request never reached the endpoint"
            drivers.append(sign_in("bob-fast", "bob-fast-token"))  # a new session while alice waits
            bob = drivers[-1]
            bob.fill(fast)
            bob.predict()
            bob.expect_prediction(expected(fast))
            # alice is still waiting: her request is held, nothing shown for her yet
            if app.kind == "streamlit":
                assert alice.page.get_by_test_id("stMetricValue").count() == 0
            else:
                assert alice.page.get_by_label("Prediction", exact=True).input_value() == ""
            assert (recorder.tokens - before) == Counter({"bob-fast-token": 1})
        alice.expect_prediction(expected(slow))
        assert (recorder.tokens - before) == Counter({"alice-slow-token": 1, "bob-fast-token": 1})  # nothing resent
    except Exception:
        for i, ui in enumerate(drivers):
            ui.shot(f"{app.name}-concurrency-failure-{i}")
        raise


def test_the_streamlit_history_lists_the_predictions_and_stays_open(app, sign_in):
    """The history box is drawn closed; opened, it lists the session's predictions, newest first,
    and it stays open, with the new row, across the next prediction (its label changes with the count)."""
    if app.kind != "streamlit" or app.mode != "direct":
        pytest.skip("Streamlit's expander, in one mode (Gradio's accordion is the browser's own)")
    ui = sign_in("erin", "erin-token")
    page, rows_seen = ui.page, []
    try:
        for row in (ROW, ROW2):
            ui.fill(row)
            ui.predict()
            ui.expect_prediction(expected(row))
        ui.expect_text(r"^History \(2\)$")
        history_grids = page.get_by_test_id("stDataFrame").filter(
            has=page.get_by_role("columnheader", name="prediction", exact=True, include_hidden=True))
        assert history_grids.count() == 0  # closed: no table shown
        page.get_by_text("History (2)", exact=True).click()
        rows_seen.append(ui.history_inputs(2))
        ui.fill({**ROW, "n": 77})
        ui.predict()
        ui.expect_text(r"^History \(3\)$")
        rows_seen.append(ui.history_inputs(3))  # still open: the new row is there without a click
        assert [r["n"] for r in rows_seen[0]] == [ROW2["n"], ROW["n"]]
        assert [r["n"] for r in rows_seen[1]] == [77, ROW2["n"], ROW["n"]]
    except Exception:
        ui.shot(f"{app.name}-history-failure")
        raise


def test_a_user_without_a_forwarded_token_is_asked_to_sign_in(app, sign_in, recorder):
    """Acting as the signed-in user, the app refuses a request that carries no user token (the
    front door sends the user's name but no token, as when the app lacks user authorization):
    a sign-in message, no prediction, nothing sent upstream as the app."""
    before = recorder.tokens.copy()
    ui = sign_in("erin", None, wait_for_form=app.kind == "gradio")
    try:
        if app.kind == "gradio":  # the page is the same for everyone; the refusal comes with the click
            ui.fill(ROW2)
            ui.predict()
        ui.expect_text(r"Sign in to use this app")
        ui.shot(f"{app.name}-sign-in-required")
        from playwright.sync_api import expect

        if app.kind == "streamlit":
            expect(ui.page.get_by_role("button", name="Predict")).to_have_count(0)
        else:
            expect(ui.page.get_by_label("Prediction", exact=True)).to_have_value("")
        assert recorder.tokens - before == Counter()
    except Exception:
        ui.shot(f"{app.name}-sign-in-failure")
        raise


def test_streamlit_shows_no_deploy_button_or_usage_statistics(apps, context):
    """``.streamlit/config.toml`` (read from the repo root, as in an App): no toolbar "Deploy"
    button or developer menu, and no usage statistics collected."""
    from playwright.sync_api import expect

    app = apps[0]["streamlit-direct"]
    with FrontDoor(app.url, User.named("frank", "frank-token")) as door:
        page = open_page(context)
        try:
            ui = Driver(page, app.kind).open(door.url)
            expect(ui.page.get_by_test_id("stHeader")).to_be_attached(timeout=TIMEOUT)  # the header is drawn
            ui.shot("streamlit-chrome")
            expect(ui.page.get_by_test_id("stAppDeployButton")).to_have_count(0)
            expect(ui.page.get_by_role("button", name=re.compile("Deploy"))).to_have_count(0)
            expect(ui.page.get_by_test_id("stMainMenu")).to_have_count(0)
        finally:
            page.close()
    assert "usage statistics" not in app.log_path.read_text(errors="replace")
