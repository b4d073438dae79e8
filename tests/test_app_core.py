"""The apps' shared core (frontends/core/predictions.py, frontends/core/feedback.py): one cached
predict, one history row, one way to score a CSV (the SDK splits it and reports progress), one
set of feedback texts; fast, with a fake Predictor."""

from __future__ import annotations

import asyncio
import threading

import pytest
from test_frontends import FAKE_SIG, IRIS_ROW, FakePredictor

from client import PredictorError
from frontends.core.feedback import (
    NOT_SAVED,
    NOTHING_YET,
    OWN_ONLY,
    PREDICT_FIRST,
    UNREADABLE,
    FeedbackAccess,
    SummaryTables,
    app_experiment,
    default_experiment_name,
    feedback_access,
    feedback_user,
    parse_expected,
    save_vote,
    visible_tables,
    vote_status,
)
from frontends.core.form import build_fields
from frontends.core.predictions import (
    HISTORY_LIMIT,
    NOT_UTF8,
    AppPredictor,
    error_text,
    form_records,
    history_row,
    push_history,
    with_progress,
)
from frontends.core.session import AppConfig, SignInRequired

CSV = ",".join(IRIS_ROW) + "\n" + "\n".join(",".join(str(v + i) for v in IRIS_ROW.values()) for i in range(7)) + "\n"


def test_one_answer_per_caller_version_and_input():
    fake = FakePredictor()
    app = AppPredictor(AppConfig(on_behalf_of_user=True), fake)
    alice, bob = {"X-Forwarded-Access-Token": "alice"}, {"X-Forwarded-Access-Token": "bob"}
    first = app.predict([IRIS_ROW], alice)
    assert app.predict([IRIS_ROW], alice) is first and fake.calls == 1  # cached for alice
    asyncio.run(app.apredict([IRIS_ROW], bob))  # not for bob: his own call, with his token
    assert fake.calls == 2 and fake.tokens == ["alice", "alice", "bob"]
    with pytest.raises(SignInRequired):  # acting as users, and no user: nothing sent, nothing cached
        app.predict([IRIS_ROW], {})
    assert fake.calls == 2


def test_a_csv_is_scored_in_one_call_with_the_sdks_progress():
    """Both apps: one ``predict`` for the whole file (the SDK splits a large one), not the
    Streamlit page's own 500-row calls."""
    fake = FakePredictor()
    app = AppPredictor(AppConfig(), fake)
    seen: list[tuple[int, int]] = []
    batch = app.score_csv(("\ufeff" + CSV).encode(), FAKE_SIG, {}, on_progress=lambda d, t: seen.append((d, t)))
    assert fake.calls == 1 and seen == [(7, 7)]
    assert len(batch.rows) == 7 and batch.rows[0]["prediction"] == 0 and batch.rows[6]["prediction"] == 1
    assert batch.status == "Scored 7 rows with version 1."
    again = asyncio.run(app.ascore_csv(CSV, FAKE_SIG, {}))
    assert again.answer is batch.answer and fake.calls == 1  # the same file: the cached answer
    with pytest.raises(UnicodeDecodeError):
        app.score_csv(b"\xff\xfe\x00bad", FAKE_SIG, {})


def test_progress_is_shown_from_the_calling_thread():
    caller, shown, threads = threading.get_ident(), [], set()

    def work(on_progress):
        threads.add(threading.get_ident())
        for done in (3, 6, 9):
            on_progress(done, 9)
        return "done"

    assert with_progress(work, lambda d, t: shown.append((d, t, threading.get_ident()))) == "done"
    assert threads and caller not in threads  # the work ran elsewhere
    assert shown and shown[-1] == (9, 9, caller) and {s[2] for s in shown} == {caller}
    with pytest.raises(ValueError, match="boom"):
        with_progress(lambda _p: (_ for _ in ()).throw(ValueError("boom")), lambda d, t: None)


def test_form_records_history_and_error_texts():
    fields = build_fields(FAKE_SIG)
    assert form_records(fields, IRIS_ROW) == [IRIS_ROW]
    assert form_records([], {"__json__": '[{"x": 1}]'}) == [{"x": 1}]
    with pytest.raises(PredictorError, match="The JSON input is not valid JSON: Expecting value"):
        form_records([], {"__json__": "[nope"})
    answer = {"predictions": [{"prediction": "setosa", "probability_setosa": 0.9, "probability_virginica": 0.1}],
              "model_version": "3"}
    row = history_row([IRIS_ROW], answer, tabular=True)
    assert list(row) == ["time", "input", "prediction", "version"]
    assert (row["prediction"], row["version"]) == ("setosa", "3") and '"petal width (cm)": 0.2' in row["input"]
    history: list = []
    for i in range(HISTORY_LIMIT + 5):
        history = push_history(history, i)
    assert len(history) == HISTORY_LIMIT and history[0] == HISTORY_LIMIT + 4  # newest first, capped
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as err:
        assert error_text(err) == NOT_UTF8
    assert error_text(PredictorError("gone")) == "**Prediction failed:** gone"


def test_feedback_texts_and_app_experiments(monkeypatch):
    from client.feedback import APP_EXPERIMENTS

    assert feedback_user({"x-forwarded-email": "ann@example.com"}) == "ann@example.com"
    assert feedback_user({"X-Forwarded-Email": " "}) == feedback_user(None) == "anonymous"
    # what `predictor feedback summary` reads by default is where the apps trace by default
    assert {default_experiment_name(a) for a in ("streamlit", "gradio")} == set(APP_EXPERIMENTS)
    assert app_experiment("gradio", {}) == "/predictor-gradio"
    assert app_experiment("gradio", {"PREDICTOR_EXPERIMENT": " 42 "}) == "42"
    assert parse_expected(" 2.5 ") == 2.5 and parse_expected("setosa") == "setosa" and parse_expected("") is None
    assert vote_status(False, "meh") == 'Feedback saved: thumbs down, "meh".'
    assert save_vote(None, "ann", thumbs_up=True) == PREDICT_FIRST

    import frontends.core.feedback as feedback

    def down(*_a, **_k):
        raise OSError("store down")

    monkeypatch.setattr(feedback, "record_feedback", down)
    assert save_vote("tr-1", "ann", thumbs_up=True) == NOT_SAVED


ANN = {"X-Forwarded-Email": "Ann@Example.com", "X-Forwarded-User": "111@4242"}
BOB = {"x-forwarded-email": "bob@example.com", "x-forwarded-user": "222@4242"}


def test_only_named_reviewers_see_others_feedback():
    """Issue 21, item 15: who may read everyone's feedback, from the front door's headers."""
    reviewers = {"PREDICTOR_REVIEWERS": " ann@example.com , 333@4242"}
    assert feedback_access(ANN, reviewers) == FeedbackAccess(reviewer=True, user="Ann@Example.com")
    assert feedback_access(BOB, reviewers) == FeedbackAccess(reviewer=False, user="bob@example.com")
    # by user id, when the deployment names ids; a user without an e-mail votes under their id
    carol = {"X-Forwarded-User": "333@4242"}
    assert feedback_access(carol, reviewers) == FeedbackAccess(reviewer=True, user="333@4242")
    assert feedback_user(carol) == "333@4242"
    # behind the front door with nobody named: nobody sees others' feedback
    assert not feedback_access(ANN, {}).reviewer and not feedback_access(ANN, {"PREDICTOR_REVIEWERS": " , "}).reviewer
    # no front door (a laptop): the one local user is the reviewer
    local = FeedbackAccess(reviewer=True, user="anonymous")
    assert feedback_access({}, {}) == feedback_access(None, reviewers) == local
    # a header with no value is no identity, and a name is not a prefix match
    assert feedback_access({"X-Forwarded-Email": " "}, {}).reviewer
    assert not feedback_access({"X-Forwarded-Email": "ann@example.co"}, reviewers).reviewer


def test_a_non_reviewer_sees_only_their_own_comments():
    def comment(user: str, text: str) -> dict:
        return {"when": "2026-01-01 10:00", "version": "1", "served entity": "-", "user": user, "thumbs": "up",
                "comment": text}

    tables = SummaryTables("all", rows=[{"version": "1", "predictions": 3}], rates=[{"version": "v1"}],
                           comments=[comment("ann@example.com", "ann says"), comment("bob@example.com", "bob says")])
    assert visible_tables(tables, FeedbackAccess(reviewer=True, user="ann@example.com")) is tables
    bob = visible_tables(tables, FeedbackAccess(reviewer=False, user="bob@example.com"))
    assert (bob.note, bob.rows, bob.rates) == (OWN_ONLY, [], [])
    assert bob.comments == [{k: v for k, v in comment("", "bob says").items() if k != "user"}]
    assert "ann" not in repr(bob)
    assert visible_tables(tables, FeedbackAccess(reviewer=False, user="carol@example.com")).comments == []
    # an error or an empty store reads the same for everyone
    for other in (SummaryTables(UNREADABLE, failed=True), SummaryTables(NOTHING_YET)):
        assert visible_tables(other, FeedbackAccess(reviewer=False, user="bob@example.com")) is other
