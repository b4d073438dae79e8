"""Cold start: what the apps import before their form is usable, and the tracking set-up after it.

By name on a (stand-in) workspace, the mode a Databricks App runs in, the form needs only
databricks-sdk and the endpoint's ``/openapi``: MLflow (seconds of CPU) and pandas come after the
form, and the first prediction still lands its trace in the app's own experiment. Each check
runs in a fresh process (what is in ``sys.modules`` is the point).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_frontends import FAKE_SIG, IRIS_ROW, FakePredictor
from workspace_standin import Endpoint, workspace  # noqa: F401  (fixture)

from frontends.core.session import AppConfig

ROOT = Path(__file__).resolve().parent.parent
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
PAT = "dapi-cold-start"


def iris_openapi() -> dict:
    """The iris endpoint's ``/openapi`` (records form), as a workspace documents it."""
    record = {"type": "object", "required": list(ROW),
              "properties": {name: {"type": "number", "format": "double"} for name in ROW}}
    body = {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": record}}}
    return {"openapi": "3.1.0", "info": {"title": "iris", "version": "1"},
            "paths": {"/serving-endpoints/iris/invocations": {"post": {"requestBody": {
                "content": {"application/json": {"schema": body}}}}}}}


@pytest.fixture
def by_name_env(workspace, scoring_server, registry_uri) -> dict[str, str]:  # noqa: F811
    """A fresh process's environment for an app on endpoint ``iris`` by name, tracing on (the default)."""
    ws = workspace()
    ws.add_pat(PAT)
    ws.add_endpoint(Endpoint("iris", entity_name="main.default.iris", entity_version="1", openapi=iris_openapi(),
                             upstream=scoring_server))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTOR_", "DATABRICKS_", "MLFLOW_"))}
    env.update({"PYTHONPATH": str(ROOT), "PREDICTOR_ENDPOINT": "iris", "DATABRICKS_HOST": ws.url,
                "DATABRICKS_TOKEN": PAT, "MLFLOW_TRACKING_URI": registry_uri,
                "PREDICTOR_HOME": os.environ["PREDICTOR_HOME"], "GRADIO_ANALYTICS_ENABLED": "False"})
    return env


def run_json(code: str, env: dict[str, str]) -> dict:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def stored_in(trace_id: str, tracking_uri: str) -> str:
    """The name of the experiment a trace was stored in, read from the app process's store (not
    this process's current MLflow URI, which earlier tests may have moved)."""
    import mlflow

    store = mlflow.MlflowClient(tracking_uri=tracking_uri)
    trace = store.get_trace(trace_id)
    experiment = store.get_experiment(trace.info.experiment_id)
    return str(experiment.name)


def test_a_tabular_endpoint_by_name_is_known_as_such_without_the_registry(workspace, monkeypatch):  # noqa: F811
    """The endpoint has no ``task`` and its ``/openapi`` is a column signature: its kind is decided
    without MLflow's registry (the MLmodel's ``metadata.task`` could only pick a chat format)."""
    from client import Predictor
    from client._chat import _api

    ws = workspace()
    ws.add_pat(PAT)
    ws.add_endpoint(Endpoint("iris", entity_name="main.default.iris", entity_version="1", openapi=iris_openapi()))
    ws.add_endpoint(Endpoint("bare", entity_name="main.default.bare", entity_version="3", openapi=None))
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    asked: list[tuple[str, str]] = []

    async def registry_task(registry_uri, name, version, endpoint):
        asked.append((name, version))
        return None

    monkeypatch.setattr(_api, "_registry_task", registry_task)
    with Predictor.from_endpoint("iris") as p:
        assert p.kind == "tabular" and p.model_name == "main.default.iris"
    assert asked == []
    with Predictor.from_endpoint("bare", validate=False) as p:  # no signature: the registry may tell
        assert p.kind == "tabular"
    assert asked == [("main.default.bare", "3")]


_GRADIO = """
import asyncio, json, sys
from frontends.core import session as _session

ROW = %r
heavy = lambda: sorted(m for m in ("mlflow", "pandas") if m in sys.modules)
config = _session.AppConfig.from_env()
predictor, signature = _session.load_predictor(config)  # what both apps do first, tracing on
after_load = heavy()
from frontends.gradio_ui.app import create_app, predict_form

demo, runtime = create_app(config)
after_build = heavy()  # gradio imports pandas itself; MLflow is ours to keep out
runtime.start_tracking_setup()  # what main() does once the server is up
out = asyncio.run(predict_form(runtime, dict(ROW), {}, []))  # clicked while the set-up runs: it waits
from client.feedback import flush_traces
flush_traces()  # written before this process says it is done
print(json.dumps({"after_load": after_load, "after_build": after_build, "tracing": config.tracing,
                  "text": out[0], "status": out[1], "trace_id": out[4], "experiment_id": runtime.experiment_id}))
"""


@pytest.mark.slow
def test_gradio_by_name_builds_its_form_without_mlflow_and_traces_into_its_experiment(by_name_env):
    out = run_json(_GRADIO % (ROW,), by_name_env)
    assert out["tracing"] is True
    assert out["after_load"] == []  # the Predictor, its auth and signature: no MLflow, no pandas
    assert "mlflow" not in out["after_build"]
    assert out["text"] == "setosa" and "endpoint" in out["status"], out
    assert out["trace_id"] and out["experiment_id"]
    # the app's experiment, never MLflow's Default
    assert stored_in(out["trace_id"], by_name_env["MLFLOW_TRACKING_URI"]) == "/predictor-gradio"


_STREAMLIT = """
import json, sys
from importlib.abc import MetaPathFinder

ROW = %r
first_import = {}


class WhenImported(MetaPathFinder):
    \"\"\"At the page's first import of pandas and of MLflow: which form fields were on the page.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name in ("pandas", "mlflow") and name not in first_import:
            from streamlit.runtime.scriptrunner import get_script_run_ctx

            if get_script_run_ctx(suppress_warning=True) is not None:  # imported by the page's script
                import streamlit as st

                first_import[name] = [k for k in ROW if "field:" + k in st.session_state]
        return None


sys.meta_path.insert(0, WhenImported())
from streamlit.testing.v1 import AppTest

at = AppTest.from_file("frontends/streamlit_ui/app.py", default_timeout=300).run()
assert not at.exception, at.exception
for name, value in ROW.items():
    at.number_input(key="field:" + name).set_value(value)
at.button[0].click().run()
assert not at.exception, at.exception
from client.feedback import flush_traces
flush_traces()  # written before this process says it is done
print(json.dumps({"first_import": first_import, "fields": [n.label for n in at.number_input],
                  "prediction": at.metric[0].value, "trace_id": at.session_state["last"]["trace_id"],
                  "tabs": [t.label for t in at.tabs], "sidebar": [h.value for h in at.sidebar.header]}))
"""


@pytest.mark.slow
def test_streamlit_by_name_draws_its_form_before_importing_pandas_or_mlflow(by_name_env):
    out = run_json(_STREAMLIT % (ROW,), by_name_env)
    assert out["fields"] == list(ROW)
    # Both are imported by the page (the signature table, the Feedback tab), but only once every
    # field of the form has been drawn.
    assert out["first_import"] == {"pandas": list(ROW), "mlflow": list(ROW)}
    assert out["tabs"] == ["Single prediction", "Batch (CSV)", "Feedback", "Monitoring"]
    assert out["sidebar"] == ["Model"]
    assert out["prediction"] == "setosa"
    assert stored_in(out["trace_id"], by_name_env["MLFLOW_TRACKING_URI"]) == "/predictor-streamlit"


# -- Gradio's Runtime: predictions wait for the tracking set-up (in process, a fake Predictor) -----


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the set-up froze the test process's objects: give them back to the collector


def test_a_prediction_waits_for_the_tracking_setup_and_survives_a_cancelled_wait(monkeypatch, unfrozen):
    import frontends.core.feedback as feedback
    import frontends.gradio_ui.runtime as rt

    release, warmed, asked = threading.Event(), [], []

    def slow_setup(experiment: str, registry_uri: str | None = None) -> str:
        asked.append(experiment)
        assert release.wait(60), "never released"
        return "42"

    monkeypatch.setattr(feedback, "setup_tracking", slow_setup)
    monkeypatch.setattr(feedback, "warm_up_tracing", lambda: warmed.append(True))
    monkeypatch.delenv("PREDICTOR_EXPERIMENT", raising=False)
    fake = FakePredictor()
    runtime = rt.Runtime(AppConfig(), fake, FAKE_SIG)
    runtime.start_tracking_setup()
    runtime.start_tracking_setup()  # once

    async def session() -> tuple:
        waiting = asyncio.create_task(runtime.predict([IRIS_ROW], {}))
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        blocked = not done and fake.calls == 0  # the set-up has not finished: nothing sent yet
        waiting.cancel()  # the user left: its cancellation must not cancel the set-up for everyone
        await asyncio.gather(waiting, return_exceptions=True)
        release.set()
        result = await asyncio.wait_for(runtime.predict([IRIS_ROW], {}), 60)
        return blocked, result, await runtime.tracking_ready()

    blocked, result, experiment = asyncio.run(session())
    assert blocked
    assert result["predictions"] == [0] and fake.calls == 1
    assert experiment == "42" == runtime.experiment_id and warmed == [True]
    assert asked == ["/predictor-gradio"]  # the app's own experiment, PREDICTOR_EXPERIMENT unset


def test_a_failed_tracking_setup_leaves_predictions_working(monkeypatch, unfrozen, caplog):
    import frontends.core.feedback as feedback
    import frontends.gradio_ui.runtime as rt

    def broken() -> None:
        raise ImportError("no mlflow here")

    monkeypatch.setattr(feedback, "setup_tracking", lambda experiment, registry_uri=None: None)  # the store is down
    monkeypatch.setattr(feedback, "warm_up_tracing", broken)
    runtime = rt.Runtime(AppConfig(), FakePredictor(), FAKE_SIG)
    runtime.start_tracking_setup()
    result = asyncio.run(asyncio.wait_for(runtime.predict([IRIS_ROW], {}), 60))
    assert result["predictions"] == [0] and runtime.experiment_id is None
    assert "tracing set-up failed (ImportError: no mlflow here)" in caplog.text


def test_the_tracking_setup_waits_for_the_first_page_or_the_grace_period(monkeypatch, unfrozen):
    """MLflow's import waits until a page has loaded (Gradio's load event) so it does not compete
    with drawing the first form; with no visitor it starts after FIRST_PAGE_GRACE_S anyway."""
    import frontends.gradio_ui.runtime as rt

    started: list[float] = []
    monkeypatch.setattr(rt, "set_up_tracking",
                        lambda app, tracing, registry_uri=None: started.append(time.monotonic()) or "7")

    runtime = rt.Runtime(AppConfig(), FakePredictor(), FAKE_SIG)
    runtime.start_tracking_setup()
    time.sleep(0.5)
    assert started == []  # no page yet: nothing imported
    asyncio.run(runtime.model_card())  # a page loads
    assert asyncio.run(asyncio.wait_for(runtime.tracking_ready(), 60)) == "7" and len(started) == 1

    monkeypatch.setattr(rt, "FIRST_PAGE_GRACE_S", 0.3)
    lonely = rt.Runtime(AppConfig(), FakePredictor(), FAKE_SIG)
    began = time.monotonic()
    lonely.start_tracking_setup()  # nobody ever visits
    assert lonely._tracking is not None and lonely._tracking.result(timeout=60) == "7"
    assert started[-1] - began >= 0.3
