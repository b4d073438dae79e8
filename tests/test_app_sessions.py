"""Per-user calls in both apps, against the real scoring server behind a token-recording proxy.

On behalf of users, every prediction carries the caller's forwarded token; the prediction cache
is keyed by caller identity + model version + input, so one user never gets another's cached
result; a user token refused with 401 asks the user to reload. Streamlit through ``AppTest``
(``st.context.headers`` patched: AppTest cannot send headers), Gradio through its handlers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from _browser import Recorder
from _models import MIXED_MODEL_URI, mixed_expected

from client import Predictor
from frontends.core.session import SESSION_EXPIRED, SIGN_IN_REQUIRED, AppConfig, format_prediction, load_predictor

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ROW = {"x": 0.5, "f": 1.25, "n": 11, "s": "sessions", "b": False, "t": "2024-03-09T08:00:00"}
EXPECTED = format_prediction([mixed_expected(ROW)])
HEADER = "X-Forwarded-Access-Token"


@pytest.fixture(scope="module")
def recorder(mixed_server):
    r = Recorder(mixed_server).start()
    yield r
    r.stop()


@pytest.fixture
def env(monkeypatch, registry_uri, recorder):
    for var in ("PREDICTOR_ENDPOINT", "PREDICTOR_FIELD_CHOICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREDICTOR_REGISTRY_URI", registry_uri)
    monkeypatch.setenv("PREDICTOR_MODEL_URI", MIXED_MODEL_URI)
    monkeypatch.setenv("PREDICTOR_ENDPOINT_URL", f"{recorder.url}/invocations")
    monkeypatch.setenv("PREDICTOR_ON_BEHALF_OF_USER", "1")
    return monkeypatch


# -- Streamlit -------------------------------------------------------------------------------


@pytest.fixture
def streamlit_session(env):
    """``session(token)``: a fresh AppTest session whose ``st.context.headers`` carry ``token``."""
    import streamlit as st
    from streamlit.runtime.context import ContextProxy
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    st.cache_data.clear()
    current: dict[str, str] = {}
    env.setattr(ContextProxy, "headers", property(lambda self: dict(current)))

    def session(token: str | None):
        current.clear()
        if token:
            current[HEADER] = token
        at = AppTest.from_file(str(ROOT / "frontends" / "streamlit_ui" / "app.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        at.number_input(key="field:x").set_value(ROW["x"])
        at.number_input(key="field:f").set_value(ROW["f"])
        at.number_input(key="field:n").set_value(ROW["n"])
        at.text_input(key="field:s").input(ROW["s"])
        at.datetime_input(key="field:t").set_value(datetime.fromisoformat(ROW["t"]))
        at.button[0].click().run()
        assert not at.exception, at.exception
        return at

    yield session
    st.cache_resource.clear()
    st.cache_data.clear()


def test_streamlit_cache_is_per_user_and_model_version(streamlit_session, recorder, monkeypatch):
    before = recorder.tokens.copy()
    alice = streamlit_session("alice")
    assert alice.metric[0].value == EXPECTED
    bob = streamlit_session("bob")  # same input, another user: not served from alice's cache
    assert bob.metric[0].value == EXPECTED
    assert recorder.tokens - before == Counter({"alice": 1, "bob": 1})
    again = streamlit_session("alice")  # alice in a new session: her own cached result
    assert again.metric[0].value == EXPECTED
    assert recorder.tokens - before == Counter({"alice": 1, "bob": 1})
    assert [e.label for e in again.expander] == ["History (1)"]  # history is per session, not cached

    monkeypatch.setattr(Predictor, "model_version", property(lambda self: "999"))
    streamlit_session("alice")  # a new model version: not served from the old version's cache
    assert recorder.tokens - before == Counter({"alice": 2, "bob": 1})


def test_streamlit_expired_user_token_asks_to_reload(streamlit_session, recorder):
    before = recorder.tokens.copy()
    at = streamlit_session("expired-dave")
    assert not at.metric
    assert [e.value for e in at.error] == [SESSION_EXPIRED]
    assert "expired-dave" not in str([e.value for e in at.error])
    assert (recorder.tokens - before) == Counter({"expired-dave": 1})


def test_streamlit_without_a_forwarded_token_refuses_to_act_as_the_app(env, recorder):
    """On behalf of users, a session without a user token gets the sign-in message, no form and no
    prediction: it is not served with the app's own identity (it was, before: fail open)."""
    import streamlit as st
    from streamlit.runtime.context import ContextProxy
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    env.setattr(ContextProxy, "headers", property(lambda self: {"X-Forwarded-Email": "nobody@example.com"}))
    before = recorder.tokens.copy()
    at = AppTest.from_file(str(ROOT / "frontends" / "streamlit_ui" / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [SIGN_IN_REQUIRED]
    assert not at.button and not at.number_input and not at.metric
    assert recorder.tokens - before == Counter()


def test_streamlit_missing_scope_names_the_user_api_scopes_to_add(streamlit_session, recorder):
    before = recorder.tokens.copy()
    at = streamlit_session("noscope-gus")  # the upstream answers Databricks' missing-scope 403
    assert not at.metric
    assert len(at.error) == 1 and "user_api_scopes: [serving.serving-endpoints]" in at.error[0].value
    assert "noscope-gus" not in at.error[0].value
    assert recorder.tokens - before == Counter({"noscope-gus": 1})


# -- Gradio ----------------------------------------------------------------------------------


def test_gradio_calls_are_per_user_cached_per_user_and_expiry_asks_to_reload(env, recorder, monkeypatch):
    from frontends.gradio_ui.app import Runtime, predict_values

    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))
    before = recorder.tokens.copy()

    async def run():  # one event loop, as under Gradio
        out = {}
        for who in ("alice", "bob", "alice", "expired-erin"):
            out.setdefault(who, []).append(await predict_values(runtime, dict(ROW), {HEADER: who}, []))
        monkeypatch.setattr(Predictor, "model_version", property(lambda self: "999"))
        out["alice"].append(await predict_values(runtime, dict(ROW), {HEADER: "alice"}, []))
        return out

    out = asyncio.run(run())
    assert [o[0] for o in out["alice"] + out["bob"]] == [EXPECTED] * 4
    assert recorder.tokens - before == Counter({"alice": 2, "bob": 1, "expired-erin": 1})
    text, status, history, _ = out["expired-erin"][0]
    assert (text, status, history) == ("", SESSION_EXPIRED, [])


def test_gradio_refuses_a_call_without_a_user_token_and_names_missing_scopes(env, recorder):
    from frontends.gradio_ui.app import Runtime, predict_values

    config = AppConfig.from_env()
    runtime = Runtime(config, *load_predictor(config))
    before = recorder.tokens.copy()

    async def run():
        return (await predict_values(runtime, dict(ROW), {"X-Forwarded-Email": "nobody@example.com"}, []),
                await predict_values(runtime, dict(ROW), {HEADER: "noscope-hal"}, []))

    (text, status, history, _), (text2, status2, _, _) = asyncio.run(run())
    assert (text, status, history) == ("", SIGN_IN_REQUIRED, [])
    assert text2 == "" and "user_api_scopes: [serving.serving-endpoints]" in status2
    assert recorder.tokens - before == Counter({"noscope-hal": 1})  # nothing sent without a user token


def test_prediction_cache_keys_by_caller_version_and_input_and_drops_the_least_recent():
    from frontends.core.session import PredictionCache

    cache = PredictionCache(max_entries=2)
    a, b, c = ({"x": 1.0}, {"x": 2.0}, {"x": 3.0})
    cache.put(cache.key("alice", "1", [a]), {"predictions": [1]})
    assert cache.get(cache.key("bob", "1", [a])) is None  # another caller: never served alice's answer
    assert cache.get(cache.key("alice", "2", [a])) is None  # another model version
    assert cache.get(cache.key("alice", "1", [{"x": 1.0}])) == {"predictions": [1]}  # same input, new dict
    cache.put(cache.key("alice", "1", [b]), {"predictions": [2]})
    cache.get(cache.key("alice", "1", [a]))  # a is now the most recent
    cache.put(cache.key("alice", "1", [c]), {"predictions": [3]})
    assert len(cache) == 2
    assert cache.get(cache.key("alice", "1", [b])) is None  # the least recently used went
    assert cache.get(cache.key("alice", "1", [a])) == {"predictions": [1]}
