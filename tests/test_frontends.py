"""Both frontends on the demo model: Streamlit through AppTest, Gradio's handlers, and a real browser."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from client import PredictionResult, Predictor, Signature
from client._types import ColumnSpec
from frontends.core.form import build_fields
from frontends.core.session import AppConfig, format_prediction, load_predictor

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
    kind = "tabular"  # a chat model would get the chat page
    model_name = "main.default.iris"
    model_version = "1"
    model_run_id = None
    endpoint = None

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

    def predict(self, inputs, params=None, *, on_progress=None):
        self.calls += 1
        if on_progress is not None:  # as the SDK reports a call it did not split
            on_progress(len(inputs), len(inputs))
        return PredictionResult(predictions=[int(r["petal length (cm)"] > 2) for r in inputs], mode="direct",
                                model_name="main.default.iris", model_version="1")

    async def apredict(self, inputs, params=None, *, on_progress=None):
        return self.predict(inputs, params, on_progress=on_progress)

    def endpoint_state(self):
        return None

    async def aendpoint_state(self):
        return None


FAKE_SIG = Signature(columns=tuple(ColumnSpec(name=n, type="double") for n in IRIS_ROW))


@pytest.fixture
def fake(monkeypatch):
    import frontends.core.example as example
    import frontends.core.session as session

    # Before patching: the app binds load_predictor at import, and a first import under the patch
    # would keep the fake for the whole session. (Not at module level: gradio costs seconds to import,
    # and collection would pay them before the first test.)
    import frontends.gradio_ui.app  # noqa: F401

    predictor = FakePredictor()
    monkeypatch.setattr(session, "load_predictor", lambda config=None: (predictor, FAKE_SIG))
    monkeypatch.setattr(example, "load_example_rows", lambda *a, **k: [])  # no defaults: blank fields
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
    from frontends.gradio_ui.app import Runtime, build_app, predict_values

    monkeypatch.setenv("PREDICTOR_ON_BEHALF_OF_USER", "1")
    runtime = Runtime(AppConfig.from_env(), fake, FAKE_SIG)
    build_app(runtime)
    headers = {"X-Forwarded-Access-Token": "user-token"}
    text, status, history, probs = asyncio.run(predict_values(runtime, dict(IRIS_ROW), headers, []))
    assert (text, len(history), probs) == ("0", 1, None) and "version 1" in status
    assert fake.tokens == ["user-token"]
    asyncio.run(predict_values(runtime, dict(IRIS_ROW), headers, history))
    assert fake.calls == 1  # the second, identical call came from the cache
    text, status, _, _ = asyncio.run(predict_values(runtime, {**IRIS_ROW, "sepal width (cm)": "abc"}, headers, []))
    assert text == "" and "sepal width (cm)" in status


class FakeChat:
    """Stands in for the demo agent in the fast tests: answers "You said: <the question>", word by word."""

    mode = "direct"
    kind = "chat"
    model_name = "main.default.assistant"
    model_version = "1"
    model_run_id = None
    endpoint = None

    def __init__(self) -> None:
        self.asked: list[list[dict]] = []

    def with_user_token(self, token):
        return self

    def stream(self, messages, **_):
        from client import ChatDelta, ChatResult

        self.asked.append(list(messages))
        text = f"You said: {messages[-1]['content']}"

        class Stream:
            def __iter__(self):
                return iter(ChatDelta(type="text", text=piece) for piece in re.findall(r"\S+\s*", text))

            def get_final_result(self):
                return ChatResult(text=text, messages=[], mode="direct", model_name=FakeChat.model_name,
                                  model_version=FakeChat.model_version)

        return Stream()


def _make_demo_app_env() -> dict[str, str]:
    """The variables ``make demo`` starts the Streamlit app with (``make -n``: its commands, printed, not run)."""
    import shlex
    import subprocess

    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "demo"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    [app] = [i for i, line in enumerate(out) if "streamlit run" in line]
    assert out[app - 1].endswith("bin/predictor demo")  # the models registered first
    words = shlex.split(out[app])
    env = dict(w.split("=", 1) for w in words[:words.index(next(w for w in words if "=" not in w))])
    assert words[len(env):][-2:] == ["run", "frontends/streamlit_ui/server.py"]
    return env


def test_make_demo_opens_the_form_and_a_chat_on_the_demo_agent_with_history_in_sqlite(tmp_path, monkeypatch,
                                                                                       capsys):
    """What ``make demo`` runs: ``predictor demo`` registers the iris model and the demo agent; the app
    then gets the iris form (nothing configured: the demo model), the demo agent's Chat tab, and, with
    no history set up, the SQLite store in ``.predictor/`` of the directory it runs in."""
    import client.local.demo as demo
    from client.local.cli import main as predictor
    from frontends.core.history import HISTORY_ENV, store_from_env

    registered: list[str] = []
    monkeypatch.setattr(demo, "register_demo_model", lambda uri=None: registered.append("model") or demo.DEMO_MODEL_URI)
    monkeypatch.setattr(demo, "register_demo_agent", lambda uri=None: registered.append("agent") or demo.DEMO_AGENT_URI)
    assert predictor(["demo"]) == 0
    assert registered == ["model", "agent"]
    assert capsys.readouterr().out.split() == [demo.DEMO_MODEL_URI, demo.DEMO_AGENT_URI]

    env = _make_demo_app_env()
    config = AppConfig.from_env(env)
    assert config.uses_demo and config.registry_model_uri == IRIS
    assert config.chat_model_uri == demo.DEMO_AGENT_URI == "models:/main.default.assistant@champion"
    assert HISTORY_ENV not in env
    monkeypatch.chdir(tmp_path)
    store = store_from_env(env)
    assert store is not None and store.engine.url.get_backend_name() == "sqlite"
    assert store.engine.url.database == str(tmp_path / ".predictor" / "history.db")
    store.close()


def test_streamlit_shows_a_chat_tab_beside_the_form_and_keeps_its_conversations(fake, monkeypatch, tmp_path):
    """``PREDICTOR_CHAT_MODEL_URI``: a Chat tab beside the form (its model loaded when first opened),
    its answers kept in the history store; the form and its model card unchanged."""
    import frontends.core.session as session
    from frontends.core.feedback import feedback_user
    from frontends.core.history import HistoryStore

    history = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("PREDICTOR_CHAT_MODEL_URI", "models:/main.default.assistant@champion")
    monkeypatch.setenv("PREDICTOR_HISTORY", history)
    monkeypatch.setenv("PREDICTOR_TRACING", "0")
    chat, loads = FakeChat(), []
    monkeypatch.setattr(session, "load_chat_predictor", lambda config: loads.append(config.chat_model_uri) or chat)
    at = _apptest().run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Single prediction", "Batch (CSV)", "Chat", "Feedback", "Monitoring"]
    assert [n.label for n in at.number_input] == list(IRIS_ROW) and not at.chat_input
    assert loads == []  # a first page loads no chat model
    at.session_state["page-tab"] = "Chat"
    at.run()
    assert not at.exception, at.exception
    assert loads == ["models:/main.default.assistant@champion"]
    assert "Conversations" in [h.value for h in at.sidebar.header]
    at.chat_input[0].set_value("which iris?").run()
    assert not at.exception, at.exception
    assert chat.asked == [[{"role": "user", "content": "which iris?"}]]
    assert "You said: which iris?" in [m.value for m in at.markdown]
    assert [n.label for n in at.number_input] == list(IRIS_ROW)  # the form's tab still drawn
    store = HistoryStore.connect(history)
    [conv] = store.conversations(feedback_user(None)).items
    assert [m.content for m in store.messages(feedback_user(None), conv.id)] == ["which iris?",
                                                                                "You said: which iris?"]
    store.close()


def test_a_conversation_left_while_its_answer_streams_keeps_the_interrupted_turn(fake, monkeypatch, tmp_path):
    """A click on "New conversation" (or on another conversation) while an answer streams reruns
    the page into that button's callback: the interrupted turn is kept, stopped, with what had
    arrived, in the conversation it belonged to (it was dropped: the callback discarded it)."""
    import frontends.core.session as session
    from frontends.core.chat import STOPPED
    from frontends.core.feedback import feedback_user
    from frontends.core.history import HistoryStore

    history, user = f"sqlite:///{tmp_path / 'history.db'}", feedback_user(None)
    monkeypatch.setenv("PREDICTOR_CHAT_MODEL_URI", "models:/main.default.assistant@champion")
    monkeypatch.setenv("PREDICTOR_HISTORY", history)
    monkeypatch.setenv("PREDICTOR_TRACING", "0")
    monkeypatch.setattr(session, "load_chat_predictor", lambda config: FakeChat())
    at = _apptest().run()
    at.session_state["page-tab"] = "Chat"
    at.run()
    at.chat_input[0].set_value("which iris?").run()
    assert not at.exception, at.exception
    store = HistoryStore.connect(history)
    [conv] = store.conversations(user).items
    # the state a run leaves when the click interrupts it mid-answer (what the page records as it streams)
    at.session_state["chat_pending"] = {"text": "Half an ans", "prompt": "cut short?", "conversation": conv.id}
    at.button(key="chat-new").click().run()
    assert not at.exception, at.exception
    kept = store.messages(user, conv.id)
    assert [(m.role, m.status, m.content) for m in kept[2:]] == [
        ("user", "ok", "cut short?"), ("assistant", "stopped", f"Half an ans\n\n{STOPPED}")]
    assert len(at.chat_message) == 0  # the new conversation, empty
    store.close()


def test_an_interrupted_turn_is_kept_once_when_both_runs_keep_it_at_the_same_time():
    """Streamlit's fast reruns: after Stop the next run keeps the turn from ``chat_pending`` while
    the interrupted run, still streaming, meets ``StopException`` and keeps it too. Both at once
    kept it twice (two conversations, 10 ms apart, under `make test`'s load); now the second waits
    for the first and gets its conversation and text."""
    import threading

    from frontends.core.chat import STOPPED
    from frontends.streamlit_ui.chat_page import _keep_stopped

    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()
    saved: list[tuple[str | None, str, str, str]] = []

    class SlowHistory:  # a database write that takes a while (the first one waits for the test)
        def save(self, conversation_id: str | None, prompt: str, text: str, *, status: str) -> str:
            saved.append((conversation_id, prompt, text, status))
            (second_in if first_in.is_set() else first_in).set()
            release.wait(5)
            return f"conv-{len(saved)}"

    pending: dict[str, Any] = {"text": "Half an ans", "prompt": "cut short?", "conversation": None}
    shown: list[str] = []
    runs = [threading.Thread(target=lambda: shown.append(_keep_stopped(SlowHistory(), pending))) for _ in range(2)]
    runs[0].start()
    assert first_in.wait(5)
    pending["text"] += "wer"  # the interrupted run's next chunk arrives meanwhile
    runs[1].start()
    second_in.wait(0.5)  # the old code's second save got here; the new one waits on the turn's lock
    release.set()
    for run in runs:
        run.join(5)
    assert saved == [(None, "cut short?", f"Half an ans\n\n{STOPPED}", "stopped")]
    assert shown == [f"Half an ans\n\n{STOPPED}"] * 2 and pending["conversation"] == "conv-1"


def test_a_long_conversation_opens_on_its_latest_messages_the_earlier_ones_on_request(fake, monkeypatch, tmp_path):
    """A saved conversation of 200 messages opens on its latest ``SHOWN_MESSAGES`` (all of them, with
    each answer's feedback controls, took ~2 s to draw: benchmarks/apps_history.py); "Show earlier
    messages" adds as many again; the model is still sent the whole conversation, the turn kept."""
    import frontends.core.session as session
    from frontends.core.feedback import feedback_user
    from frontends.core.history import Answer, HistoryStore
    from frontends.streamlit_ui.chat_page import SHOWN_MESSAGES

    history, user = f"sqlite:///{tmp_path / 'history.db'}", feedback_user(None)
    store = HistoryStore.connect(history)
    conv = None
    for j in range(100):
        conv, _ = store.add_turn(user, conv, f"question {j}", Answer(f"answer {j}", trace_id=f"tr-{j}"))
    monkeypatch.setenv("PREDICTOR_CHAT_MODEL_URI", "models:/main.default.assistant@champion")
    monkeypatch.setenv("PREDICTOR_HISTORY", history)
    monkeypatch.setenv("PREDICTOR_TRACING", "0")
    chat = FakeChat()
    monkeypatch.setattr(session, "load_chat_predictor", lambda config: chat)
    at = _apptest()
    at.query_params["conversation"] = conv
    at.run()
    at.session_state["page-tab"] = "Chat"
    at.run()
    assert not at.exception, at.exception

    def drawn() -> list[str]:
        return [m.markdown[0].value for m in at.chat_message]

    assert drawn() == [f"{kind} {j}" for j in range(100 - SHOWN_MESSAGES // 2, 100) for kind in ("question", "answer")]
    at.button(key="chat-earlier").click().run()
    assert not at.exception, at.exception
    assert len(drawn()) == 2 * SHOWN_MESSAGES and drawn()[-1] == "answer 99"
    at.chat_input[0].set_value("and now?").run()
    assert not at.exception, at.exception
    assert len(chat.asked[-1]) == 201 and chat.asked[-1][0] == {"role": "user", "content": "question 0"}
    assert [m.content for m in store.messages(user, conv)][-2:] == ["and now?", "You said: and now?"]
    store.close()


def test_a_chat_tab_on_a_model_that_is_no_chat_model_is_a_clear_error(monkeypatch):
    import frontends.core.session as session
    from client import ConfigurationError

    monkeypatch.setattr(session.Predictor, "from_model", classmethod(lambda cls, uri, **_: FakePredictor()))
    assert session.load_chat_predictor(AppConfig()) is None  # none configured: no Chat tab
    with pytest.raises(ConfigurationError, match=r"PREDICTOR_CHAT_MODEL_URI='models:/main.default.iris@champion' "
                                                  r"is not a chat model or agent \(it is tabular\)"):
        session.load_chat_predictor(AppConfig(chat_model_uri=IRIS))


@pytest.fixture(scope="module")
def expected(registry_uri) -> str:
    """The demo model's answer for IRIS_ROW, straight from the client."""
    with Predictor.from_model(IRIS, registry_uri=registry_uri) as p:
        text = format_prediction(p.predict([IRIS_ROW]).predictions)
    assert text == "setosa"  # the class name, not its index
    return text


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

    return AppTest.from_file(str(ROOT / "frontends" / "streamlit_ui" / "app.py"), default_timeout=180)


def probability_charts(at) -> list:
    """The bar charts of class probabilities on the page (the Feedback tab may draw one of its own)."""
    return [c for c in at.get("vega_lite_chart") if '"probability"' in c.proto.spec]


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
def test_streamlit_prefills_the_form_from_the_input_example(app_env, expected):
    at = _apptest().run()
    assert not at.exception, at.exception
    # the demo model's input example: first row is IRIS_ROW; every column required
    assert {n.label: n.value for n in at.number_input} == IRIS_ROW
    assert all(n.help == "double, required" for n in at.number_input)
    assert not probability_charts(at)
    at.button[0].click().run()  # nothing typed: the defaults are a valid record
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.metric[0].value == expected
    assert len(probability_charts(at)) == 1  # the demo's class probabilities, on the first screen


@pytest.mark.slow
def test_streamlit_computes_the_feedback_tab_only_while_it_is_open(app_env, expected):
    feedback_header = "Feedback on main.default.iris"
    at = _apptest().run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Single prediction", "Batch (CSV)", "Feedback", "Monitoring"]
    assert feedback_header not in [h.value for h in at.subheader]  # a first page reads no store
    assert "Monitoring main.default.iris" not in [h.value for h in at.subheader]  # nor computes a report
    at.button[0].click().run()
    assert at.metric[0].value == expected
    at.session_state["page-tab"] = "Feedback"  # what opening the tab does (it reruns the page)
    at.run()
    assert not at.exception, at.exception
    assert feedback_header in [h.value for h in at.subheader]
    assert at.metric[0].value == expected  # the form's tab is still drawn, its answer kept
    at.session_state["page-tab"] = "Monitoring"
    at.run()
    assert not at.exception, at.exception
    assert "Monitoring main.default.iris" in [h.value for h in at.subheader]
    assert feedback_header not in [h.value for h in at.subheader]  # the closed tab is not computed


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
    at.checkbox(key="field:b").check()
    at.datetime_input(key="field:t").set_value(datetime(2024, 5, 17, 10, 0))  # a date/time picker
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.error and "column 's': a value is required" in at.error[0].value  # caught before sending
    at.text_input(key="field:s").input("abc")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].value != ""
    assert any("endpoint" in c.value for c in at.caption)


# -- Gradio (handlers called directly) -------------------------------------------------------


@pytest.mark.slow
def test_gradio_handlers(app_env, expected, tmp_path):
    from frontends.gradio_ui.app import Runtime, build_app, predict_values, score_csv

    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))
    assert build_app(runtime) is not None
    text, status, history, probs = asyncio.run(predict_values(runtime, dict(IRIS_ROW), {}, []))
    assert text == expected, status
    assert "direct" in status and len(history) == 1 and history[0][2] == expected
    assert set(probs) == {"setosa", "versicolor", "virginica"} and max(probs, key=probs.get) == expected
    assert sum(probs.values()) == pytest.approx(1.0)  # drawn as gr.Label's bars

    text, status, history, _ = asyncio.run(
        predict_values(runtime, {**IRIS_ROW, "petal width (cm)": None}, {}, history))
    assert text == "" and "petal width (cm)" in status and "Traceback" not in status
    assert len(history) == 1

    csv_path = tmp_path / "in.csv"
    csv_path.write_text(",".join(IRIS_ROW) + "\n" + ",".join(map(str, IRIS_ROW.values())) + "\n"
                        + "6.7,3.0,5.2,2.3\n")
    table, out, status = asyncio.run(score_csv(runtime, str(csv_path), {}))
    assert len(table) == 2 and "prediction" in table.columns, status
    assert list(table["prediction"]) == [expected, "virginica"]
    assert (table["probability_setosa"] + table["probability_versicolor"] + table["probability_virginica"]).tolist(
    ) == pytest.approx([1.0, 1.0])
    assert out and Path(out).read_text().startswith(",".join(IRIS_ROW))


@pytest.mark.slow
def test_fields_match_the_demo_signature(registry_uri):
    config = AppConfig(model_uri=IRIS, registry_uri=registry_uri)
    _, signature = load_predictor(config)
    assert [f.name for f in build_fields(signature)] == list(IRIS_ROW)


@pytest.mark.slow
def test_gradio_endpoint_mode_as_the_signed_in_user(app_env, scoring_server, expected):
    from frontends.gradio_ui.app import Runtime, predict_values

    app_env.setenv("PREDICTOR_ENDPOINT_URL", f"{scoring_server}/serving-endpoints/iris/invocations")
    app_env.setenv("PREDICTOR_ON_BEHALF_OF_USER", "1")
    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))

    async def session():  # one event loop, as under Gradio: the HTTP pool lives in it
        first = await predict_values(runtime, dict(IRIS_ROW), {"X-Forwarded-Access-Token": "alice"}, [])
        second = await predict_values(runtime, dict(IRIS_ROW), {"X-Forwarded-Access-Token": "bob"}, first[2])
        return first, second

    (text, status, _, _), (text2, _, history, _) = asyncio.run(session())
    assert text == expected and "endpoint" in status, status
    assert text2 == expected and len(history) == 2


def _typed_into_while_hidden(demo: Any) -> list[str]:
    """Labels of the components a user types into that sit in a closed accordion and that an event
    writes to. Gradio 6 holds an update to such a component until the accordion is opened, then
    applies it up to seconds later, over what the user had begun to type (a Rename once reached the
    chat page with an empty title that way)."""
    config = demo.get_config_file()
    components = {c["id"]: c for c in config["components"]}
    written = {i for d in config["dependencies"] for i in d.get("outputs", [])}
    found: list[str] = []

    def walk(node: dict[str, Any], hidden: bool) -> None:
        props = components.get(node["id"], {}).get("props", {})
        kind = components.get(node["id"], {}).get("type")
        if kind in ("textbox", "number", "dropdown", "checkbox", "radio", "slider", "code") \
                and hidden and props.get("interactive") is not False and node["id"] in written:
            found.append(props.get("label") or kind)
        for child in node.get("children", []):
            walk(child, hidden or (kind == "accordion" and props.get("open") is False))

    walk(config["layout"], False)
    return found


def test_no_gradio_page_writes_to_a_box_the_user_types_into_inside_a_closed_accordion(fake, monkeypatch):
    from frontends.gradio_ui.app import Runtime, build_app
    from frontends.gradio_ui.chat_page import build

    monkeypatch.setenv("PREDICTOR_TRACING", "0")
    form = build_app(Runtime(AppConfig.from_env(), fake, FAKE_SIG))
    chat = build(Runtime(AppConfig.from_env(), FakeChat(), None, []), 1)  # type: ignore[arg-type]
    assert _typed_into_while_hidden(form) == []
    assert _typed_into_while_hidden(chat) == []
