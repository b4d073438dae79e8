"""Feedback as MLflow assessments on prediction traces, and the per-version summary, on a real sqlite store."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from client import PredictionResult
from client._schema.validate import validate
from client._tracing import Tracer
from client.feedback import (
    ANONYMOUS,
    EXPECTED_NAME,
    FEEDBACK_NAME,
    current_vote,
    record_feedback,
    summarize,
    summarize_traces,
    summary_rows,
)
from client.local.cli import main as cli_main
from frontends.core.feedback import feedback_user

ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}


@pytest.fixture
def experiment(registry_uri):
    import mlflow

    mlflow.set_tracking_uri(registry_uri)
    exp = mlflow.set_experiment(f"feedback-{uuid.uuid4().hex[:8]}")
    yield exp
    mlflow.set_experiment(experiment_id="0")


def traced(version: str, served: str | None = None, model: str = "main.default.iris", age_days: float = 0) -> str:
    """A trace as the SDK writes it for one call answered by ``model`` ``version``."""
    result = PredictionResult(predictions=[0], mode="endpoint", model_name=model, model_version=version,
                              served_model_name=served, client_request_id=str(uuid.uuid4()))
    trace_id = Tracer().record(result, validate(None, [ROW], None), time.time_ns() - int(age_days * 86400e9))
    assert trace_id
    return trace_id


def assessments(trace_id: str, name: str = FEEDBACK_NAME) -> list:
    import mlflow

    return [a for a in mlflow.get_trace(trace_id).info.assessments if a.name == name and a.valid is not False]


def test_the_sdks_feedback_module_is_storage_and_summaries_only():
    """No app or UI code in client.feedback: who votes (request headers), the apps' set-up and
    chart rows are the apps' (frontends/core/feedback.py)."""
    import client.feedback as fb

    assert fb.__all__ == sorted(fb.__all__) and all(hasattr(fb, n) for n in fb.__all__)
    assert "Example::" in (fb.__doc__ or "")
    assert not {"feedback_user", "setup_app_tracking", "default_experiment_name", "rate_rows",
                "parse_expected", "trace_experiment_ids"} & set(dir(fb))


def test_the_user_is_the_forwarded_email_else_anonymous():
    assert feedback_user({"x-forwarded-email": "ann@example.com"}) == "ann@example.com"
    assert feedback_user({"X-Forwarded-Email": " "}) == ANONYMOUS
    assert feedback_user(None) == ANONYMOUS


@pytest.mark.slow
def test_a_second_vote_updates_and_two_users_stay_apart(experiment):
    trace_id = traced("1")
    first = record_feedback(trace_id, "ann@example.com", thumbs_up=False, comment=" wrong class ")
    [stored] = assessments(trace_id)
    assert (stored.value, stored.rationale, stored.source.source_type, stored.source.source_id) == (
        False, "wrong class", "HUMAN", "ann@example.com")
    again = record_feedback(trace_id, "ann@example.com", thumbs_up=True, comment="")  # no new comment: kept
    [stored] = assessments(trace_id)
    assert again.assessment_id == first.assessment_id == stored.assessment_id
    assert stored.value is True and stored.rationale == again.comment == "wrong class"
    record_feedback(trace_id, "ann@example.com", thumbs_up=True, comment="fine after all")
    [stored] = assessments(trace_id)
    assert stored.value is True and stored.rationale == "fine after all"
    record_feedback(trace_id, "bob@example.com", thumbs_up=False, comment="no", expected="virginica")
    by_user = {a.source.source_id: a.value for a in assessments(trace_id)}
    assert by_user == {"ann@example.com": True, "bob@example.com": False}
    [expected] = assessments(trace_id, EXPECTED_NAME)
    assert expected.value == "virginica" and expected.source.source_id == "bob@example.com"
    vote = current_vote(trace_id, "bob@example.com")
    assert vote is not None and vote.thumbs_up is False and vote.expected == "virginica"
    assert current_vote(trace_id, "carol@example.com") is None


def _assessment(user: str, value: bool, ms: int, rationale: str | None = None, aid: str = "") -> SimpleNamespace:
    return SimpleNamespace(name=FEEDBACK_NAME, value=value, valid=None, rationale=rationale, create_time_ms=ms,
                           last_update_time_ms=ms, assessment_id=aid or f"a-{user}-{ms}",
                           source=SimpleNamespace(source_id=user))


def test_a_summary_counts_one_vote_per_user_per_trace_the_latest():
    """Duplicates a racing vote left in the store count once, as the user's latest vote (issue 21, item 3)."""
    info = SimpleNamespace(tags={"predictor.model_version": "1"}, assessments=[
        _assessment("ann@example.com", True, 1_000, "first"),
        _assessment("ann@example.com", False, 3_000, "latest"),
        _assessment("ann@example.com", True, 2_000),
        _assessment("bob@example.com", True, 1_500),
    ])
    [s] = summarize_traces([info])
    assert (s.predictions, s.with_feedback, s.thumbs_up, s.thumbs_down) == (1, 1, 1, 1)
    assert [(c.user, c.text, c.thumbs_up) for c in s.comments] == [("ann@example.com", "latest", False)]


@pytest.mark.slow
def test_concurrent_votes_by_one_user_on_one_trace_leave_one(experiment):
    """Six simultaneous votes (a double click, two tabs) are one vote: the last one (issue 21, item 3)."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

    trace_id = traced("1")
    mlflow.flush_trace_async_logging()  # stored: the votes race each other, not the exporter
    barrier = threading.Barrier(6)

    def vote(i: int):
        barrier.wait()
        return record_feedback(trace_id, "ann@example.com", thumbs_up=i % 2 == 0, comment=f"vote {i}")

    with ThreadPoolExecutor(6) as pool:
        votes = list(pool.map(vote, range(6)))
    [stored] = assessments(trace_id)
    assert stored.assessment_id in {v.assessment_id for v in votes}
    [s] = summarize("main.default.iris", [experiment.experiment_id])
    assert (s.with_feedback, s.thumbs_up + s.thumbs_down) == (1, 1)


@pytest.mark.slow
def test_a_duplicate_vote_written_by_another_process_is_removed_on_write(experiment):
    """Another process (another app replica) racing the same user's vote left a second assessment:
    the next vote keeps one, the latest (issue 21, item 3)."""
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType

    trace_id = traced("1")
    mlflow.flush_trace_async_logging()
    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id="ann@example.com")
    for value in (True, False):
        mlflow.log_feedback(trace_id=trace_id, name=FEEDBACK_NAME, value=value, source=source)
    assert len(assessments(trace_id)) == 2
    vote = record_feedback(trace_id, "ann@example.com", thumbs_up=True, comment="once")
    [stored] = assessments(trace_id)
    assert (stored.assessment_id, stored.value, stored.rationale) == (vote.assessment_id, True, "once")


@pytest.mark.slow
def test_feedback_on_a_just_written_sdk_trace(experiment, registry_uri):
    from client import Predictor

    result = Predictor.from_model("models:/main.default.iris@champion", tracing=True).predict([ROW])
    # No flush here: record_feedback flushes MLflow's async exporter itself.
    vote = record_feedback(result.trace_id or "", ANONYMOUS, thumbs_up=False, comment="hm")
    assert [a.assessment_id for a in assessments(vote.trace_id)] == [vote.assessment_id]


@pytest.mark.slow
def test_feedback_needs_a_trace_in_the_store(experiment):
    with pytest.raises(ValueError, match="no trace"):
        record_feedback("", ANONYMOUS, thumbs_up=True)
    with pytest.raises(Exception, match="tr-00000000000000000000000000000000"):
        record_feedback("tr-00000000000000000000000000000000", ANONYMOUS, thumbs_up=True, wait_s=0.5)


@pytest.mark.slow
def test_summary_per_version_and_served_entity_within_the_window(experiment, capsys):
    import mlflow

    # Distinct start times (a minute ago, then seconds ago), so that "the latest N" is well defined.
    v1 = [traced("1", "champion", age_days=(60 - i) / 86400) for i in range(4)]
    v2 = [traced("2", "challenger", age_days=(2 - i) / 86400) for i in range(2)]
    traced("2", "challenger", age_days=40)  # outside the 30-day window
    traced("7", model="main.default.other")  # another model
    mlflow.flush_trace_async_logging()  # all stored before counting: export is asynchronous
    record_feedback(v1[0], "ann@example.com", thumbs_up=True)
    record_feedback(v1[1], "ann@example.com", thumbs_up=False, comment="setosa, surely")
    record_feedback(v1[1], "bob@example.com", thumbs_up=True)
    record_feedback(v2[0], "ann@example.com", thumbs_up=False, comment="meh")
    summary = summarize("main.default.iris", [experiment.experiment_id])
    assert [(s.model_version, s.served_model_name, s.predictions, s.with_feedback, s.thumbs_up, s.thumbs_down)
            for s in summary] == [("2", "challenger", 2, 1, 0, 1), ("1", "champion", 4, 2, 2, 1)]
    assert summary[1].thumbs_up_rate == pytest.approx(2 / 3) and summary[1].feedback_share == 0.5
    assert [c.text for c in summary[1].comments] == ["setosa, surely"]
    assert summary_rows(summary)[1]["thumbs-up rate"] == "67%"
    assert [s.predictions for s in summarize("main.default.iris", [experiment.experiment_id], max_traces=3)] == [2, 1]

    assert cli_main(["feedback", "summary", "--model", "models:/main.default.iris@champion",
                     "--experiment", experiment.name]) == 0
    out = capsys.readouterr().out
    assert "challenger" in out and "67%" in out and "setosa, surely" in out and "main.default.other" not in out


def test_each_app_gets_an_experiment_it_can_edit_and_reads_it_from_the_resource():
    import yaml
    from conftest import ROOT

    app = yaml.safe_load((ROOT / "app.yaml").read_text())
    assert {"name": "PREDICTOR_EXPERIMENT", "valueFrom": "experiment"} in app["env"]
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    for key, spec in bundle["resources"]["apps"].items():
        assert {"name": "PREDICTOR_EXPERIMENT", "value_from": "experiment"} in spec["config"]["env"], key
        [resource] = [r for r in spec["resources"] if r["name"] == "experiment"]
        assert resource["experiment"]["permission"] == "CAN_EDIT"
        ref = resource["experiment"]["experiment_id"]
        name = ref.removeprefix("${resources.experiments.").removesuffix(".id}")
        assert name in bundle["resources"]["experiments"], ref


def test_the_apps_trace_unless_told_not_to():
    from frontends.core.session import AppConfig, build_predictor

    assert AppConfig.from_env({}).tracing is True
    assert AppConfig.from_env({"PREDICTOR_TRACING": "0"}).tracing is False
    off = build_predictor(AppConfig(endpoint_url="http://127.0.0.1:9/invocations", tracing=False))
    on = build_predictor(AppConfig(endpoint_url="http://127.0.0.1:9/invocations"))
    assert off._tracer is None and on._tracer is not None


@pytest.mark.slow
def test_the_cli_summary_reads_the_trace_experiment_as_the_apps_do(experiment, monkeypatch, capsys):
    """``PREDICTOR_TRACE_EXPERIMENT`` (where the agent server traces chat answers) is searched by
    ``predictor feedback summary`` besides the app's experiment, as the Feedback page does."""
    import mlflow

    traced("1", "champion")
    elsewhere = f"agent-traces-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(elsewhere)
    traced("5", "agent-served")
    mlflow.flush_trace_async_logging()
    args = ["feedback", "summary", "--model", "models:/main.default.iris@champion", "--experiment", experiment.name]
    assert cli_main(args) == 0
    assert "agent-served" not in capsys.readouterr().out
    monkeypatch.setenv("PREDICTOR_TRACE_EXPERIMENT", elsewhere)
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "agent-served" in out and "champion" in out and elsewhere in out
