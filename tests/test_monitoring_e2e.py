"""Monitoring on real traffic: ``predictor serve`` (the session's scoring server, version 1) gets rows
drawn from the training set, version 2 (in-process, the same artifact) gets rows with one feature
shifted and another 20 % null. The report, from the traces, against each version's training data
logged by the demo (no configuration), flags exactly those two features, for version 2 only; and
``predictor monitor`` exits 3 on it, 1 with one line on bad input."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from _monitoring_traffic import NULLED, SHIFTED, iris_rows, send

from client import Predictor
from client.local.cli import main
from client.monitoring import monitor

pytestmark = pytest.mark.slow
MODEL = "main.default.iris_monitored"


@pytest.fixture(scope="module")
def traffic(registry_uri, scoring_server):
    """Two versions of a copy of the demo model, traced into an experiment of their own."""
    import mlflow

    from client.feedback import setup_tracking

    client = mlflow.MlflowClient()
    demo = client.get_model_version_by_alias("main.default.iris", "champion")
    if not client.search_model_versions(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
        for _ in range(2):
            client.create_model_version(MODEL, demo.source, run_id=demo.run_id)
    experiment = f"/monitoring-e2e-{uuid.uuid4().hex[:6]}"
    setup_tracking(experiment, registry_uri)
    served = Predictor.from_endpoint(url=f"{scoring_server}/serving-endpoints/iris/invocations",
                                     model_uri=f"models:/{MODEL}/1", registry_uri=registry_uri, tracing=True)
    # validate=False: the SDK refuses nulls in a required column before sending (and tracing) them
    challenger = Predictor.from_model(f"models:/{MODEL}/2", registry_uri=registry_uri, tracing=True, validate=False)
    challenger.get_signature()  # without validation nothing else loads it: the traces would not name the version
    started = time.perf_counter()
    try:
        send(served, iris_rows(seed=1))
        send(challenger, iris_rows(seed=2, drifted=True))
    finally:
        served.close()
        challenger.close()
    mlflow.flush_trace_async_logging()
    print(f"monitoring traffic: {time.perf_counter() - started:.1f} s")
    return experiment


def test_the_report_flags_the_shifted_and_the_null_feature_of_the_right_version(traffic, registry_uri):
    report = monitor(MODEL, experiments=[traffic], registry_uri=registry_uri)
    assert report.drift_type == "BASELINE" and "training data" in (report.baseline_source or "")
    meta = report.meta
    assert (meta.traces, meta.predictions, meta.dropped_traces, meta.unreadable_traces) == (40, 160, 0, 0)
    groups = {g.group: g for g in report.groups}
    assert sorted(groups) == ["1", "2"]
    assert groups["1"].served_entity == "iris-1" and groups["1"].requests == 20

    def flagged(group):
        return {b.column for b in group.broken if b.kind in ("drift", "data_quality")}

    assert flagged(groups["1"]) == set()
    assert flagged(groups["2"]) == {SHIFTED, NULLED}
    drifted = {d.column_name for d in groups["2"].drift if d.drifted}
    assert drifted == {SHIFTED}  # the null feature's values are the baseline's: a data-quality problem only
    nulls = {q.column_name: q.null_share for q in groups["2"].data_quality}
    assert nulls[NULLED] == pytest.approx(0.2) and nulls[SHIFTED] == 0.0
    assert groups["1"].error_rate == 0.0 and groups["1"].latency_p95_ms > 0


def test_the_cli_exits_3_on_a_broken_rule_and_1_on_bad_input(traffic, registry_uri, capsys, tmp_path):
    common = ["monitor", "--model", f"models:/{MODEL}/2", "--experiment", traffic, "--registry-uri", registry_uri]
    assert main([*common, "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    [group] = out["groups"]
    assert group["model_version"] == "2"
    assert {b["column"] for b in group["broken"] if b["kind"] in ("drift", "data_quality")} == {SHIFTED, NULLED}

    assert main(common) == 3
    text = capsys.readouterr().out
    assert "DRIFTED" in text and "based on 80 predictions in 20 traces" in text

    bad = tmp_path / "baseline.csv"
    bad.write_text("a,b\n1,2\n")
    assert main([*common, "--baseline", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BaselineError" in err and "'sepal length (cm)'" in err

    assert main(["monitor", "--model", "models:/main.default.mixed/1", "--experiment", traffic,
                 "--registry-uri", registry_uri]) == 1
    assert "NoTracesError" in capsys.readouterr().err


def test_input_the_sdk_refuses_is_traced_and_monitored(registry_uri, traffic):
    """A null in a required column never leaves the caller (SchemaValidationError), but its trace
    does: status 400 and the row as given, so the report's data quality sees what callers send."""
    from client import SchemaValidationError
    from client.feedback import setup_tracking
    from client.monitoring import records_from_traces

    experiment = f"/monitoring-refused-{uuid.uuid4().hex[:6]}"
    setup_tracking(experiment, registry_uri)
    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", model_uri=f"models:/{MODEL}/1",
                                registry_uri=registry_uri, tracing=True, max_retries=0)
    row = {**iris_rows(1)[0], NULLED: None}
    try:
        with pytest.raises(SchemaValidationError):
            p.predict([row])
    finally:
        p.close()
    import mlflow

    mlflow.flush_trace_async_logging()
    frame, meta = records_from_traces(MODEL, experiments=[experiment], registry_uri=registry_uri)
    assert meta.traces == 1 and frame["status_code"].tolist() == [400]
    assert frame["error"].tolist() == ["SchemaValidationError"] and frame["model_version"].tolist() == ["1"]
    assert frame[NULLED].isna().all() and frame[SHIFTED].tolist() == [row[SHIFTED]]


def test_a_report_in_the_process_that_traced_sees_its_deferred_traces(registry_uri, traffic, monkeypatch):
    """The apps defer trace export (written once calls pause): their own Monitoring tab, reading right
    after a call, still counts it. (In `make test`, an app module that ran earlier in the same worker
    had turned deferral on, and the report found no traces.)"""
    from client import SchemaValidationError, _tracing
    from client.feedback import defer_trace_export, setup_tracking
    from client.monitoring import records_from_traces

    monkeypatch.setattr(_tracing, "_delay_override", _tracing._delay_override)  # restored after the test
    defer_trace_export(60.0)
    experiment = f"/monitoring-deferred-{uuid.uuid4().hex[:6]}"
    setup_tracking(experiment, registry_uri)
    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", model_uri=f"models:/{MODEL}/1",
                                registry_uri=registry_uri, tracing=True, max_retries=0)
    try:
        with pytest.raises(SchemaValidationError):
            p.predict([{**iris_rows(1)[0], NULLED: None}])
    finally:
        p.close()
    frame, meta = records_from_traces(MODEL, experiments=[experiment], registry_uri=registry_uri)
    assert meta.traces == 1 and frame["status_code"].tolist() == [400]
