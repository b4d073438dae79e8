"""Tracing: one MLflow trace per call in a real sqlite tracking store; client_request_id on the wire.

The Predictor runs against MLflow's real scoring server (``scoring_server``) and in direct mode;
traces land in the session's sqlite tracking store, each test in an experiment of its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from _iris import iris_labels
from conftest import ROOT, free_port

from client import BadRequestError, Predictor
from client._tracing import (
    MAX_TRACED_ROWS,
    TAG_CLIENT_REQUEST_ID,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    Tracer,
    trace_inputs,
    trace_outputs,
    tracing_enabled,
)

IRIS = "models:/main.default.iris@champion"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
ROW2 = {**ROW, "petal length (cm)": 5.5, "petal width (cm)": 2.1}


# -- pure parts ------------------------------------------------------------------------------


def test_tracing_is_off_unless_asked_for():
    assert tracing_enabled(None, {}) is False
    assert tracing_enabled(None, {"PREDICTOR_TRACING": "0"}) is False
    assert tracing_enabled(None, {"PREDICTOR_TRACING": " TRUE "}) is True
    assert tracing_enabled(False, {"PREDICTOR_TRACING": "1"}) is False  # the argument wins
    assert tracing_enabled(True, {}) is True


def test_trace_inputs_and_outputs_keep_the_first_rows_and_the_count():
    from client._schema.validate import validate

    rows = [{**ROW, "sepal length (cm)": float(i)} for i in range(MAX_TRACED_ROWS + 5)]
    shown = trace_inputs(validate(None, rows, {"k": 1}))
    assert shown["n_rows"] == MAX_TRACED_ROWS + 5 and len(shown["records"]) == MAX_TRACED_ROWS
    assert shown["records"][3]["sepal length (cm)"] == 3.0 and shown["params"] == {"k": 1}
    out = trace_outputs(list(range(MAX_TRACED_ROWS + 5)))
    assert out["n_predictions"] == MAX_TRACED_ROWS + 5 and out["predictions"] == list(range(MAX_TRACED_ROWS))


# -- against a real tracking store -----------------------------------------------------------


@pytest.fixture
def experiment(registry_uri):
    """A fresh experiment in the session's sqlite tracking store, active for the test."""
    import mlflow

    mlflow.set_tracking_uri(registry_uri)
    exp = mlflow.set_experiment(f"tracing-{uuid.uuid4().hex[:8]}")
    yield exp.experiment_id
    mlflow.set_experiment(experiment_id="0")


def traces(experiment_id: str) -> list:
    import mlflow

    from client.feedback import flush_traces

    flush_traces()
    return mlflow.search_traces(locations=[experiment_id], return_type="list")


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, keeping each request body it sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[dict] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(await request.aread()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.slow
def test_endpoint_calls_each_get_one_trace_and_a_client_request_id(experiment, scoring_server):
    wire = RecordingTransport()
    with Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS, tracing=True,
                                 http_transport=wire) as p:
        first, second = p.predict([ROW]), p.predict([ROW, ROW2], client_request_id="mine-42")
    # MLflow's scoring server ignores the extra top-level key and answers as usual.
    assert iris_labels(first.predictions) == ["setosa"] and iris_labels(second.predictions)[0] == "setosa"
    assert len(second.predictions) == 2
    assert [b["client_request_id"] for b in wire.bodies] == [first.client_request_id, "mine-42"]
    assert str(uuid.UUID(first.client_request_id or "")) == first.client_request_id
    stored = {t.info.trace_id: t for t in traces(experiment)}
    assert set(stored) == {first.trace_id, second.trace_id}
    trace = stored[second.trace_id]
    assert trace.info.tags[TAG_MODEL_NAME] == "main.default.iris" and trace.info.tags[TAG_MODEL_VERSION] == "1"
    assert trace.info.tags[TAG_CLIENT_REQUEST_ID] == "mine-42"
    root = trace.data.spans[0]
    assert root.inputs["records"] == [ROW, ROW2] and root.inputs["n_rows"] == 2
    assert root.outputs["predictions"] == second.predictions
    assert root.attributes["predictor.client_request_id"] == "mine-42"
    assert root.attributes["predictor.retries"] == 0 and root.attributes["predictor.batch_size"] == 1
    assert root.attributes["predictor.elapsed_ms"] > 0


@pytest.mark.slow
def test_batched_calls_give_one_trace_per_caller_with_the_batch_size(experiment, scoring_server):
    wire = RecordingTransport()
    p = Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS, tracing=True,
                                http_transport=wire)

    async def many() -> list:
        await p.aget_signature()
        out = await asyncio.gather(*(p.apredict([ROW if i % 2 else ROW2]) for i in range(8)))
        await p.aclose()
        return out

    results = asyncio.run(many())
    labels = [iris_labels(r.predictions)[0] for r in results]
    assert labels == ["virginica" if i % 2 == 0 else "setosa" for i in range(8)]
    assert len(wire.bodies) < 8, "the calls were not coalesced"
    assert max(r.batch_size for r in results) > 1
    sent_ids = {b["client_request_id"] for b in wire.bodies}
    assert {r.client_request_id for r in results} == sent_ids  # every caller knows the request that answered
    stored = {t.info.trace_id: t for t in traces(experiment)}
    assert set(stored) == {r.trace_id for r in results} and len(stored) == 8
    for r in results:
        span = stored[r.trace_id].data.spans[0]
        assert span.attributes["predictor.batch_size"] == r.batch_size
        assert span.outputs["predictions"] == r.predictions  # each caller's own rows, not the batch's


@pytest.mark.slow
def test_direct_mode_traces_too_and_errors_are_traced_as_errors(experiment, scoring_server):
    direct = Predictor.from_model(IRIS, tracing=True)
    result = direct.predict([ROW])
    assert result.trace_id and result.client_request_id
    # No signature: the scoring server refuses the bad input, and the trace records the failure.
    p = Predictor.from_endpoint(url=f"{scoring_server}/invocations", tracing=True, max_retries=0)
    with pytest.raises(BadRequestError):
        p.predict([{"nope": "x"}])
    stored = traces(experiment)
    assert len(stored) == 2
    failed = next(t for t in stored if t.info.trace_id != result.trace_id)
    assert failed.info.state.value == "ERROR"
    assert failed.data.spans[0].events[0].name == "exception"
    ok = next(t for t in stored if t.info.trace_id == result.trace_id)
    assert ok.info.tags["predictor.mode"] == "direct" and ok.info.state.value == "OK"


def test_tracing_off_gives_no_trace_id_and_no_tracer():
    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", validate=False,
                                http_transport=httpx.MockTransport(lambda r: httpx.Response(200, json={
                                    "predictions": [json.loads(r.content)["client_request_id"]]})))
    result = p.predict([{"x": 1}])
    assert p._tracer is None and result.trace_id is None
    assert result.predictions == [result.client_request_id]  # the id went out in the body


def test_a_result_that_already_has_a_trace_is_not_traced_again(experiment):
    from client import PredictionResult
    from client._schema.validate import validate

    already = PredictionResult(predictions=[1], mode="endpoint", trace_id="tr-from-the-server")
    assert Tracer().record(already, validate(None, [{"x": 1}], None), 0) is None
    assert traces(experiment) == []


def test_a_bad_client_request_id_is_refused_before_sending():
    from client import ConfigurationError

    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", validate=False,
                                http_transport=httpx.MockTransport(lambda r: pytest.fail("sent")))
    with pytest.raises(ConfigurationError, match="client_request_id"):
        p.predict([{"x": 1}], client_request_id="  ")


_DEAD_STORE_SCRIPT = """
import json, sys
from client import BadRequestError, Predictor
# No registry lookups (they point MLflow at the registry's own store): traces go to the dead one.
p = Predictor.from_endpoint(url=sys.argv[1], validate=False)
out = [p.predict([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
                   "petal width (cm)": 0.2}]) for _ in range(3)]
from client.feedback import flush_traces, trace_export_failures
from frontends.core.feedback import lost_traces_note
flush_traces()
print(json.dumps({"answers": [[r.predictions, r.trace_id] for r in out], "lost": trace_export_failures(),
                  "note": lost_traces_note()}))
"""


@pytest.mark.slow
def test_a_dead_tracking_store_does_not_fail_predictions(scoring_server, tmp_path):
    # A tracking server that is down: an http:// URI on a port nothing listens on. Tracing comes
    # from the environment (PREDICTOR_TRACING=1), as in the apps.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "PREDICTOR_TRACING": "1",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
           "PREDICTOR_TRACE_EXPORT_DELAY": "1"}  # exported off the calls' path, as the apps do
    run = subprocess.run([sys.executable, "-c", _DEAD_STORE_SCRIPT, f"{scoring_server}/invocations"], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    answers = out["answers"]
    assert [iris_labels(a[0]) for a in answers] == [["setosa"]] * 3
    assert all(a[1] for a in answers)  # the trace ids are made locally; exporting them is what failed
    assert "Failed to send trace" in run.stderr, run.stderr[-2000:]  # MLflow's exporter warned, in the background
    # ...and each trace it could not write is counted, for the apps to show: none dropped in silence.
    assert out["lost"] == 3 and out["note"].startswith("3 trace(s) could not be written"), out


@pytest.mark.slow
def test_a_deferred_export_writes_nothing_while_calls_come_and_everything_after(experiment, scoring_server,
                                                                               monkeypatch):
    """The apps' setting: a trace is written once calls have paused, never between a call and its
    answer. A tracking store that blocks each write (0.3 s) does not delay the answers; the traces
    are all written afterwards, each after the last answer."""
    import mlflow
    from mlflow.tracing.client import TracingClient

    from client import _tracing
    from client.feedback import defer_trace_export, flush_traces

    writes: list[float] = []
    real_start_trace = TracingClient.start_trace

    def blocking_store(self, *args, **kwargs):
        writes.append(time.monotonic())
        time.sleep(0.1)
        return real_start_trace(self, *args, **kwargs)

    monkeypatch.setattr(_tracing, "_delay_override", _tracing._delay_override)  # restored after the test
    p = Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS, tracing=True)
    p.predict([ROW])  # the signature is loaded, MLflow warm
    flush_traces()
    monkeypatch.setattr(TracingClient, "start_trace", blocking_store)
    # Far longer than four calls take even on a loaded machine (3 s was 3 s of a pause between two);
    # the flush below writes them at once.
    monkeypatch.setattr(_tracing, "MAX_EXPORT_DELAY", 60.0)
    defer_trace_export(30.0)
    answered, ids = [], []
    for _ in range(4):
        ids.append(p.predict([ROW]).trace_id)
        answered.append(time.monotonic())
    assert writes == [], "a trace was written while calls were coming"
    flush_traces()
    assert len(writes) == 4 and min(writes) >= answered[-1]
    stored = mlflow.search_traces(locations=[experiment], return_type="list")
    assert set(ids) <= {t.info.trace_id for t in stored}
    p.close()


_LAZY_SCRIPT = """
import json, sys
from client import Predictor
p = Predictor.from_endpoint(url=sys.argv[1], validate=False, tracing=True)
built = "mlflow" in sys.modules
result = p.predict([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
                     "petal width (cm)": 0.2}])
import mlflow
mlflow.flush_trace_async_logging()
print(json.dumps({"mlflow_when_built": built, "trace_id": result.trace_id, "predictions": result.predictions}))
"""


@pytest.mark.slow
def test_a_tracing_predictor_imports_mlflow_at_its_first_call_not_when_built(experiment, registry_uri,
                                                                            scoring_server, tmp_path):
    """Building it costs nothing (an app builds it before its form); the first call, never warmed
    up, imports MLflow and still writes its trace."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": registry_uri, "MLFLOW_EXPERIMENT_ID": experiment}
    run = subprocess.run([sys.executable, "-c", _LAZY_SCRIPT, f"{scoring_server}/invocations"], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["mlflow_when_built"] is False
    assert iris_labels(out["predictions"]) == ["setosa"]
    assert [t.info.trace_id for t in traces(experiment)] == [out["trace_id"]]


def test_warm_up_builds_the_tracer_provider_once_for_concurrent_callers(monkeypatch):
    import mlflow.tracing.provider as provider

    from client import _tracing

    builds: list[str] = []
    gate = threading.Event()

    def slow_get_tracer(name: str) -> None:
        assert gate.wait(30)
        builds.append(name)

    monkeypatch.setattr(provider, "_get_tracer", slow_get_tracer)
    monkeypatch.setattr(_tracing, "_warm", False)
    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(_tracing.warm_up) for _ in range(4)]
        gate.set()
        for call in calls:
            call.result(timeout=30)
    _tracing.warm_up()
    assert builds == ["client._tracing"]


_EXIT_SCRIPT = """
import sys, time, httpx
from client import Predictor
answer = httpx.MockTransport(lambda r: httpx.Response(200, json={"predictions": [0]}))
p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", validate=False, tracing=True, http_transport=answer)
for _ in range(int(sys.argv[1])):
    p.predict([{"x": 1.0}])
print(time.time(), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("calls", [1, 20])
def test_a_process_that_traced_exits_within_seconds_with_the_tracking_store_down(calls, tmp_path):
    """MLflow's exit flush retried every trace for minutes (249 s for one); now the wait is bounded
    (PREDICTOR_TRACE_EXIT_TIMEOUT) and the traces left behind are counted in a warning."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "PREDICTOR_TRACE_EXIT_TIMEOUT": "2"}
    run = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, str(calls)], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    exited = time.time()
    assert run.returncode == 0, run.stderr[-3000:]
    work_done = float(run.stdout.strip().splitlines()[-1])
    assert exited - work_done < 60, run.stderr[-2000:]  # the 2 s bound and a loaded machine's exit, not 249 s
    assert "not written to the tracking store within 2 s of exit" in run.stderr, run.stderr[-2000:]


@pytest.mark.slow
def test_a_process_that_traced_writes_every_trace_before_it_exits(experiment, registry_uri, tmp_path):
    """The bounded exit flush still waits for a store that answers: no trace is dropped."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": registry_uri, "MLFLOW_EXPERIMENT_ID": experiment}
    run = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, "20"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(traces(experiment)) == 20
    assert "not written" not in run.stderr


@pytest.mark.slow
def test_a_pickled_predictor_keeps_tracing_on(experiment, scoring_server):
    """The pickled settings had no ``tracing``: a ``Predictor(tracing=True)`` came back untraced."""
    import pickle

    for p in (Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS, tracing=True),
              Predictor.from_model(IRIS, tracing=True)):
        clone = pickle.loads(pickle.dumps(p))
        result = clone.predict([ROW])
        assert result.trace_id, f"{clone!r} lost tracing in the pickle"
        assert result.trace_id in {t.info.trace_id for t in traces(experiment)}
        clone.close()
        p.close()
