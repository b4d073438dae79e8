"""Both frontends on the demo model: Streamlit through AppTest, Gradio's handlers, and a real browser."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from client import PredictionResult, Predictor, Signature
from client._types import ColumnSpec
from frontends._form import build_fields
from frontends._session import AppConfig, format_prediction, load_predictor

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
IRIS = "models:/main.default.iris@champion"
MIXED = "models:/main.default.mixed@champion"
IRIS_ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class FakePredictor:
    """Stands in for a Predictor in the fast tests: answers 1 when petal length > 2, else 0."""

    mode = "direct"
    model_name = "main.default.iris"
    model_version = "1"

    def __init__(self) -> None:
        self.calls = 0
        self.tokens: list[str] = []

    def get_signature(self):
        return FAKE_SIG

    async def aget_signature(self):
        return FAKE_SIG

    def with_user_token(self, token):
        self.tokens.append(token)
        return self

    def predict(self, inputs, params=None):
        self.calls += 1
        return PredictionResult(predictions=[int(r["petal length (cm)"] > 2) for r in inputs], mode="direct",
                                model_name="main.default.iris", model_version="1")

    async def apredict(self, inputs, params=None):
        return self.predict(inputs, params)


FAKE_SIG = Signature(columns=tuple(ColumnSpec(name=n, type="double") for n in IRIS_ROW))


@pytest.fixture
def fake(monkeypatch):
    import frontends._session as session

    predictor = FakePredictor()
    monkeypatch.setattr(session, "load_predictor", lambda config=None: (predictor, FAKE_SIG))
    return predictor


def test_streamlit_with_a_fake_predictor(fake):
    at = _apptest()
    at.run()
    assert not at.exception, at.exception
    assert [n.label for n in at.number_input] == list(IRIS_ROW)
    for name, value in {**IRIS_ROW, "petal length (cm)": 4.4}.items():
        at.number_input(key=f"field:{name}").set_value(value)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert (at.metric[0].label, at.metric[0].value) == ("Prediction", "1")
    at.number_input(key="field:sepal width (cm)").set_value(None)
    at.button[0].click().run()
    assert not at.exception
    assert "sepal width (cm)" in at.error[0].value and not at.metric


def test_gradio_handler_with_a_fake_predictor(fake, monkeypatch):
    from frontends.gradio_app import Runtime, build_app, predict_values

    monkeypatch.setenv("PREDICTOR_ON_BEHALF_OF_USER", "1")
    runtime = Runtime(AppConfig.from_env(), fake, FAKE_SIG)
    build_app(runtime)
    headers = {"X-Forwarded-Access-Token": "user-token"}
    text, status, history = asyncio.run(predict_values(runtime, dict(IRIS_ROW), headers, []))
    assert (text, len(history)) == ("0", 1) and "version 1" in status
    assert fake.tokens == ["user-token"]
    asyncio.run(predict_values(runtime, dict(IRIS_ROW), headers, history))
    assert fake.calls == 1  # the second, identical call came from the cache
    text, status, _ = asyncio.run(predict_values(runtime, {**IRIS_ROW, "sepal width (cm)": "abc"}, headers, []))
    assert text == "" and "sepal width (cm)" in status


@pytest.fixture(scope="module")
def expected(registry_uri) -> str:
    """The demo model's answer for IRIS_ROW, straight from the client."""
    with Predictor.from_model(IRIS, registry_uri=registry_uri) as p:
        return format_prediction(p.predict([IRIS_ROW]).predictions)


@pytest.fixture
def app_env(registry_uri, monkeypatch):
    for var in ("PREDICTOR_ENDPOINT", "PREDICTOR_ENDPOINT_URL", "PREDICTOR_ON_BEHALF_OF_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREDICTOR_REGISTRY_URI", registry_uri)
    monkeypatch.setenv("PREDICTOR_MODEL_URI", IRIS)
    return monkeypatch


# -- Streamlit (AppTest, in process) ---------------------------------------------------------


def _apptest():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # the Predictor and predictions are cached process-wide
    st.cache_data.clear()

    return AppTest.from_file(str(ROOT / "frontends" / "streamlit_app.py"), default_timeout=180)


@pytest.mark.slow
def test_streamlit_predicts_the_demo_model_in_direct_mode(app_env, expected):
    at = _apptest().run()
    assert not at.exception, at.exception
    for name, value in IRIS_ROW.items():
        at.number_input(key=f"field:{name}").set_value(value)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Prediction"
    assert at.metric[0].value == expected
    assert any("direct" in c.value for c in at.caption)


@pytest.mark.slow
def test_streamlit_shows_a_missing_value_as_an_error_not_a_traceback(app_env):
    at = _apptest().run()
    at.number_input(key="field:sepal length (cm)").set_value(5.0)  # the other three stay blank
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.error and "sepal width (cm)" in at.error[0].value
    assert not at.metric


@pytest.mark.slow
def test_streamlit_endpoint_mode_on_mixed_types(app_env, mixed_server):
    app_env.setenv("PREDICTOR_ENDPOINT_URL", f"{mixed_server}/invocations")
    app_env.setenv("PREDICTOR_MODEL_URI", MIXED)
    at = _apptest()
    at.run()
    assert not at.exception, at.exception
    at.number_input(key="field:x").set_value(1.5)
    at.number_input(key="field:f").set_value(2.25)
    at.number_input(key="field:n").set_value(3)
    at.text_input(key="field:s").input("abc")
    at.checkbox(key="field:b").check()
    at.text_input(key="field:t").input("yesterday")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.error and "'t'" in at.error[0].value  # the bad datetime, caught before sending
    at.text_input(key="field:t").input("2024-05-17T10:00:00")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].value != ""
    assert any("endpoint" in c.value for c in at.caption)


# -- Gradio (handlers called directly) -------------------------------------------------------


@pytest.mark.slow
def test_gradio_handlers(app_env, expected, tmp_path):
    from frontends.gradio_app import Runtime, build_app, predict_values, score_csv

    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))
    assert build_app(runtime) is not None
    text, status, history = asyncio.run(predict_values(runtime, dict(IRIS_ROW), {}, []))
    assert text == expected, status
    assert "direct" in status and len(history) == 1 and history[0][2] == expected

    text, status, history = asyncio.run(predict_values(runtime, {**IRIS_ROW, "petal width (cm)": None}, {}, history))
    assert text == "" and "petal width (cm)" in status and "Traceback" not in status
    assert len(history) == 1

    csv_path = tmp_path / "in.csv"
    csv_path.write_text(",".join(IRIS_ROW) + "\n" + ",".join(map(str, IRIS_ROW.values())) + "\n"
                        + "6.7,3.0,5.2,2.3\n")
    table, out, status = asyncio.run(score_csv(runtime, str(csv_path), {}))
    assert len(table) == 2 and "prediction" in table.columns, status
    assert str(table["prediction"].iloc[0]) == expected
    assert out and Path(out).read_text().startswith(",".join(IRIS_ROW))


# -- Real browser ----------------------------------------------------------------------------


def _batch_csv(tmp_path: Path) -> str:
    path = tmp_path / "batch.csv"
    path.write_text(",".join(IRIS_ROW) + "\n" + ",".join(map(str, IRIS_ROW.values())) + "\n6.7,3.0,5.2,2.3\n")
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _subprocess_env(registry_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTOR_")}
    home = registry_uri.removeprefix("sqlite:///")
    env.update({
        "PREDICTOR_HOME": str(Path(home).parent) if registry_uri.startswith("sqlite:///") else env.get("HOME", "."),
        "PREDICTOR_REGISTRY_URI": registry_uri,
        "PREDICTOR_MODEL_URI": IRIS,
        "MLFLOW_TRACKING_URI": registry_uri,
        "MLFLOW_REGISTRY_URI": registry_uri,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": str(ROOT),
    })
    return env


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture
def server(registry_uri, tmp_path):
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], port: int, ready_path: str, extra: dict[str, str] | None = None) -> str:
        env = _subprocess_env(registry_uri) | (extra or {})
        log = open(tmp_path / f"server-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_http(base + ready_path, proc)
        except Exception:
            proc.kill()
            raise RuntimeError((tmp_path / f"server-{port}.log").read_text()[-3000:]) from None
        return base

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_browser_streamlit(server, page, expected, tmp_path):
    from playwright.sync_api import expect

    port = _free_port()
    base = server([sys.executable, "-m", "streamlit", "run", "frontends/streamlit_app.py",
                   "--server.port", str(port), "--server.headless", "true",
                   "--server.address", "127.0.0.1"], port, "/_stcore/health")
    page.goto(base, timeout=60_000)
    try:
        for name, value in IRIS_ROW.items():
            field = page.get_by_label(name, exact=True)
            field.wait_for(timeout=120_000)
            field.fill(str(value))
        page.get_by_role("button", name="Predict").click()
        metric = page.get_by_test_id("stMetricValue")
        expect(metric).to_have_text(expected, timeout=60_000)
        page.get_by_role("tab", name="Batch (CSV)").click()
        page.locator("input[type=file]").set_input_files(_batch_csv(tmp_path))
        expect(page.get_by_text("Scored 2 rows")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Download results")).to_be_visible()
    finally:
        page.screenshot(path=str(ARTIFACTS / "streamlit.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.browser
def test_browser_gradio(server, page, expected):
    from playwright.sync_api import expect

    port = _free_port()
    base = server([sys.executable, "-m", "frontends.gradio_app"], port, "/",
                  {"DATABRICKS_APP_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"})
    page.goto(base, timeout=60_000)
    try:
        for name, value in IRIS_ROW.items():
            field = page.get_by_label(name, exact=True)
            field.wait_for(timeout=60_000)
            field.fill(str(value))
        page.get_by_role("button", name="Predict").click()
        expect(page.get_by_label("Prediction", exact=True)).to_have_value(expected, timeout=60_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "gradio.png"), full_page=True)


@pytest.mark.slow
def test_fields_match_the_demo_signature(registry_uri):
    config = AppConfig(model_uri=IRIS, registry_uri=registry_uri)
    _, signature = load_predictor(config)
    assert [f.name for f in build_fields(signature)] == list(IRIS_ROW)


@pytest.mark.slow
def test_gradio_endpoint_mode_as_the_signed_in_user(app_env, scoring_server, expected):
    from frontends.gradio_app import Runtime, predict_values

    app_env.setenv("PREDICTOR_ENDPOINT_URL", f"{scoring_server}/serving-endpoints/iris/invocations")
    app_env.setenv("PREDICTOR_ON_BEHALF_OF_USER", "1")
    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))

    async def session():  # one event loop, as under Gradio: the HTTP pool lives in it
        first = await predict_values(runtime, dict(IRIS_ROW), {"X-Forwarded-Access-Token": "alice"}, [])
        second = await predict_values(runtime, dict(IRIS_ROW), {"X-Forwarded-Access-Token": "bob"}, first[2])
        return first, second

    (text, status, _), (text2, _, history) = asyncio.run(session())
    assert text == expected and "endpoint" in status, status
    assert text2 == expected and len(history) == 2
