"""A slow prediction for one user never blocks another user's page, in both apps (real browser).

Endpoint mode on the demo model, through a loopback proxy in front of the real scoring server
that holds every request carrying the marker input (sepal length 9.99) until the test releases
it. Alice asks for the held prediction; while it is held, Bob opens the page (a new session),
predicts and sees his answer; only then is Alice's request released and her answer shown.
No sleeps: the hold is an event, so the test takes as long as the apps need and no longer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from _browser import ARTIFACTS, start_app

from frontends.core.session import format_prediction

pytestmark = [pytest.mark.slow, pytest.mark.browser]

IRIS = "models:/main.default.iris@champion"
SLOW = 9.99  # the sepal length the proxy holds
TIMEOUT = 45_000  # ms; generous for a loaded 2-core machine, far below the hold's own cap
HOLD_CAP = 120.0  # s; a held request is let go after this even if the test never released it


class HoldingProxy:
    """Forwards to ``upstream``/invocations; a request whose body contains ``marker`` waits for
    :meth:`release`. ``held`` is set once such a request has arrived."""

    def __init__(self, upstream: str, marker: str) -> None:
        self.upstream, self.marker = upstream, marker
        self.held, self._released = threading.Event(), threading.Event()
        self.calls: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                slow = proxy.marker in body.decode()
                proxy.calls.append("slow" if slow else "fast")
                if slow:
                    proxy.held.set()
                    proxy._released.wait(HOLD_CAP)
                r = httpx.post(proxy.upstream + "/invocations", content=body, timeout=30,
                               headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(params=["streamlit", "gradio"])
def app(request, registry_uri, scoring_server, tmp_path) -> Iterator[tuple[Any, HoldingProxy]]:
    proxy = HoldingProxy(scoring_server, marker=str(SLOW))
    env = {"PREDICTOR_MODEL_URI": IRIS, "PREDICTOR_REGISTRY_URI": registry_uri,
           "MLFLOW_TRACKING_URI": registry_uri, "MLFLOW_REGISTRY_URI": registry_uri,
           "PREDICTOR_ENDPOINT_URL": f"{proxy.url}/invocations"}
    server = start_app(request.param, env, tmp_path / f"{request.param}.log")
    try:
        yield server, proxy
    finally:
        proxy.release()
        server.stop()
        proxy.stop()


def _expected(scoring_server: str, row: dict[str, float]) -> str:
    r = httpx.post(f"{scoring_server}/invocations", json={"dataframe_records": [row]}, timeout=30)
    r.raise_for_status()
    return format_prediction(r.json()["predictions"])


def _prediction(page, kind: str):
    if kind == "streamlit":
        return page.get_by_test_id("stMetricValue")
    return page.get_by_label("Prediction", exact=True)


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, timeout=60_000)
    page.get_by_label("sepal length (cm)", exact=True).wait_for(timeout=120_000)
    return page


def _ask(page, sepal_length: float) -> None:
    page.get_by_label("sepal length (cm)", exact=True).fill(str(sepal_length))
    page.get_by_role("button", name="Predict").click()


def _expect_shown(page, kind: str, text: str) -> None:
    from playwright.sync_api import expect

    shown = _prediction(page, kind)
    if kind == "streamlit":
        expect(shown).to_have_text(text, timeout=TIMEOUT)
    else:
        expect(shown).to_have_value(text, timeout=TIMEOUT)


def test_a_slow_prediction_does_not_block_another_users_page(app, browser, scoring_server):
    server, proxy = app
    kind = server.kind
    alice = _open(browser, server.url)
    defaults = {name: float(alice.get_by_label(name, exact=True).input_value())
                for name in ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")}
    alice_row = {**defaults, "sepal length (cm)": SLOW}
    bob_row = {**defaults, "sepal length (cm)": 5.55}
    pages = [alice]
    try:
        _ask(alice, SLOW)
        assert proxy.held.wait(60), f"alice's request never reached the endpoint: {proxy.calls}"

        bob = _open(browser, server.url)  # a new session while alice's call is in flight
        pages.append(bob)
        _ask(bob, bob_row["sepal length (cm)"])
        _expect_shown(bob, kind, _expected(scoring_server, bob_row))
        # alice is still waiting: her request is held, nothing shown for her yet
        assert proxy.calls == ["slow", "fast"], proxy.calls
        if kind == "streamlit":
            assert _prediction(alice, kind).count() == 0
        else:
            assert _prediction(alice, kind).input_value() == ""

        proxy.release()
        _expect_shown(alice, kind, _expected(scoring_server, alice_row))
        assert json.dumps(proxy.calls) == json.dumps(["slow", "fast"])  # one call each, nothing resent
    except Exception:
        for i, page in enumerate(pages):
            page.screenshot(path=str(ARTIFACTS / f"{kind}-concurrency-failure-{i}.png"), full_page=True)
        raise
    finally:
        for page in pages:
            page.close()
