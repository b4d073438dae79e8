"""What both apps' feedback controls and Feedback pages share, framework-neutral: who votes, the
app's experiment, what a vote and the summary look like on a page.

Storage and summaries are the SDK's (``client.feedback``); here is only what is about the apps:
the user from the front door's headers, ``PREDICTOR_EXPERIMENT`` (else one experiment per app),
``PREDICTOR_TRACE_EXPERIMENT``, and the page texts and chart rows.

Example::

    experiment_id = set_up_tracking("gradio", config.tracing, config.registry_uri)
    status = save_vote(trace_id, feedback_user(headers), thumbs_up=True, comment="", expected="setosa")
    tables = summary_tables("main.default.iris", experiment_id)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.feedback import (
    ANONYMOUS,
    EXPERIMENT_ENV,
    TRACE_EXPERIMENT_ENV,
    VersionSummary,
    comment_rows,
    defer_trace_export,
    experiment_ids,
    record_feedback,
    setup_tracking,
    summarize,
    summary_rows,
    trace_export_failures,
    warm_up_tracing,
)

__all__ = [
    "ASK",
    "OWN_ONLY",
    "REVIEWERS_ENV",
    "USER_ID_HEADER",
    "FeedbackAccess",
    "NOTHING_YET",
    "NOT_SAVED",
    "NOT_TRACED",
    "NO_EXPERIMENT",
    "PREDICT_FIRST",
    "SummaryTables",
    "TRACE_EXPERIMENT_ENV",
    "UNREADABLE",
    "USER_HEADER",
    "WHAT_IS_SHOWN",
    "app_experiment",
    "default_experiment_name",
    "feedback_access",
    "feedback_user",
    "lost_traces_note",
    "parse_expected",
    "rate_rows",
    "save_vote",
    "set_up_tracking",
    "summary_tables",
    "trace_experiment_ids",
    "version_label",
    "visible_tables",
    "vote_status",
]

log = logging.getLogger(__name__)

#: The front door's header naming the signed-in user.
USER_HEADER = "X-Forwarded-Email"
#: The front door's header with the signed-in user's id (used when there is no e-mail).
USER_ID_HEADER = "X-Forwarded-User"
#: Who may read everyone's feedback: comma-separated e-mails or user ids (see :func:`feedback_access`).
REVIEWERS_ENV = "PREDICTOR_REVIEWERS"

ASK = "Was this right?"
PREDICT_FIRST = "Predict first: feedback goes with a traced prediction."
NOT_TRACED = "Feedback is unavailable: this prediction was not traced."
#: Seconds after the last click that the apps write its trace (``PREDICTOR_TRACE_EXPORT_DELAY`` overrides):
#: writing one into a local store is tens of ms of CPU that would otherwise race the page's answer.
APP_TRACE_EXPORT_DELAY = 1.0
TRACE_EXPORT_DELAY_ENV = "PREDICTOR_TRACE_EXPORT_DELAY"


def lost_traces_note() -> str | None:
    """The line an app shows when traces could not be written (``None`` while every one was)."""
    lost = trace_export_failures()
    return f"{lost} trace(s) could not be written to the tracking store; see the app's log." if lost else None
NOT_SAVED = "Feedback could not be saved (the tracking store is unavailable)."
NO_EXPERIMENT = "No MLflow experiment is available: predictions are not traced, so there is no feedback."
UNREADABLE = "The feedback summary could not be read from the tracking store."
NOTHING_YET = "No traced predictions yet (last 30 days)."
OWN_ONLY = ("Your own feedback (with a comment) of the last 30 days. The team's feedback is shown only to "
            "the model's reviewers.")
WHAT_IS_SHOWN = "Latest 10,000 traced predictions of the last 30 days, per model version and served entity."


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower() and str(value).strip():
            return str(value).strip()
    return ""


def feedback_user(headers: Mapping[str, str] | None) -> str:
    """Who gives feedback: the front door's ``X-Forwarded-Email``, else its ``X-Forwarded-User``,
    else ``"anonymous"``."""
    return _header(headers, USER_HEADER) or _header(headers, USER_ID_HEADER) or ANONYMOUS


@dataclass(frozen=True)
class FeedbackAccess:
    """What one visitor may see on the Feedback page: everything (a reviewer), or only the
    votes stored under ``user`` (their own)."""

    reviewer: bool
    user: str


def feedback_access(headers: Mapping[str, str] | None, env: Mapping[str, str] | None = None) -> FeedbackAccess:
    """Who may see what (pure). Behind the Apps front door (an ``X-Forwarded-Email`` or
    ``X-Forwarded-User`` header), a visitor is a reviewer only if ``PREDICTOR_REVIEWERS`` names
    their e-mail or user id (case-insensitive); with no reviewers named, nobody sees others'
    feedback. Without those headers (the app run on a laptop) the single local user is the reviewer.

    Example::

        >>> feedback_access({"X-Forwarded-Email": "ann@example.com"}, {"PREDICTOR_REVIEWERS": "ann@example.com"})
        FeedbackAccess(reviewer=True, user='ann@example.com')
        >>> feedback_access({"X-Forwarded-Email": "bob@example.com"}, {"PREDICTOR_REVIEWERS": "ann@example.com"})
        FeedbackAccess(reviewer=False, user='bob@example.com')
    """
    env = os.environ if env is None else env
    signed_in = {i.lower() for i in (_header(headers, USER_HEADER), _header(headers, USER_ID_HEADER)) if i}
    if not signed_in:  # no front door: the one local user owns the app
        return FeedbackAccess(reviewer=True, user=ANONYMOUS)
    reviewers = {r.strip().lower() for r in (env.get(REVIEWERS_ENV) or "").split(",") if r.strip()}
    return FeedbackAccess(reviewer=bool(signed_in & reviewers), user=feedback_user(headers))


def default_experiment_name(app: str) -> str:
    """The app's own experiment when ``PREDICTOR_EXPERIMENT`` is not set (one of the SDK's
    ``APP_EXPERIMENTS``, which ``predictor feedback summary`` reads by default)."""
    return f"/predictor-{app}"


def app_experiment(app: str, env: Mapping[str, str] | None = None) -> str:
    """The experiment ``app`` traces into: ``PREDICTOR_EXPERIMENT`` (a name or an id), else its own."""
    env = os.environ if env is None else env
    return (env.get(EXPERIMENT_ENV) or "").strip() or default_experiment_name(app)


def set_up_tracking(app: str, tracing: bool, registry_uri: str | None = None) -> str | None:
    """The app's experiment id once MLflow points at it, with MLflow's tracing warmed up (its
    import and tracer, seconds of CPU, paid here rather than by the first prediction); ``None``
    when ``tracing`` is off or the store cannot be reached. Call it after the app's model is
    loaded (registering the demo switches experiments). Never raises: tracing is a bonus."""
    if not tracing:
        return None
    if not os.environ.get(TRACE_EXPORT_DELAY_ENV):
        defer_trace_export(APP_TRACE_EXPORT_DELAY)  # the answer on screen first, its trace written after
    experiment_id = setup_tracking(app_experiment(app), registry_uri)  # a warning and None when unreachable
    try:
        warm_up_tracing()
    except Exception as err:  # MLflow would not import: each first traced call warns instead
        log.warning("tracing set-up failed (%s: %s); predictions are unaffected", type(err).__name__, err)
    return experiment_id


def trace_experiment_ids(app_experiment_id: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The experiments the Feedback page searches: the app's, plus ``PREDICTOR_TRACE_EXPERIMENT``
    (a name or an id) when set. One that does not exist (yet) costs a warning, not the page."""
    env = os.environ if env is None else env
    ids = [app_experiment_id]
    wanted = (env.get(TRACE_EXPERIMENT_ENV) or "").strip()
    if wanted:
        try:
            found = experiment_ids([wanted])
            if not found:
                log.warning("%s=%r: no such experiment (yet); not searched", TRACE_EXPERIMENT_ENV, wanted)
            elif found[0] not in ids:
                ids.append(found[0])
        except Exception as err:
            log.warning("%s=%r unavailable (%s: %s)", TRACE_EXPERIMENT_ENV, wanted, type(err).__name__, err)
    return ids


def parse_expected(text: str | None) -> Any:
    """What the user typed as the right value: a JSON number/bool/list if it is one, else the text."""
    import json

    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def vote_status(thumbs_up: bool, comment: str | None) -> str:
    """The line under the thumbs once a vote is stored."""
    return f"Feedback saved: thumbs {'up' if thumbs_up else 'down'}" + (f', "{comment}"' if comment else "") + "."


def save_vote(trace_id: str | None, user: str, *, thumbs_up: bool, comment: str | None = None,
              expected: str | None = None) -> str:
    """Store one vote (blocking: MLflow); the status line to show. Never raises: a store that is
    down is a warning in the log and a line on the page."""
    if not trace_id:
        return PREDICT_FIRST
    try:
        saved = record_feedback(trace_id, user, thumbs_up=thumbs_up, comment=comment,
                                expected=parse_expected(expected))
    except Exception as err:
        log.warning("feedback not saved: %s: %s", type(err).__name__, err)
        return NOT_SAVED
    return vote_status(saved.thumbs_up, saved.comment)


def version_label(s: VersionSummary) -> str:
    """``v2 challenger``: a version and the served entity that answered as it."""
    return f"v{s.model_version or '?'}" + (f" {s.served_model_name}" if s.served_model_name else "")


def rate_rows(summary: Sequence[VersionSummary]) -> list[dict[str, Any]]:
    """Thumbs-up rate per version and served entity, for a chart (groups without votes left out)."""
    return [{"version": version_label(s), "thumbs-up rate": rate}
            for s in summary if (rate := s.thumbs_up_rate) is not None]


@dataclass(frozen=True)
class SummaryTables:
    """What a Feedback page shows: a note, and (when there is something) the tables' rows."""

    note: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    #: The note says something went wrong (the page shows it as an error, not a caption).
    failed: bool = False


def summary_tables(model_name: str | None, experiment_id: str | None) -> SummaryTables:
    """The Feedback page's content (blocking: MLflow). Never raises."""
    if experiment_id is None:
        return SummaryTables(NO_EXPERIMENT)
    try:
        summary = summarize(model_name, trace_experiment_ids(experiment_id))
    except Exception as err:
        log.warning("feedback summary unavailable: %s: %s", type(err).__name__, err)
        return SummaryTables(UNREADABLE, failed=True)
    if not summary:
        return SummaryTables(NOTHING_YET)
    return SummaryTables(WHAT_IS_SHOWN, summary_rows(summary), rate_rows(summary), comment_rows(summary))


def visible_tables(tables: SummaryTables, access: FeedbackAccess) -> SummaryTables:
    """What ``access`` may see of ``tables`` (pure): all of it for a reviewer; for anyone else
    only their own comments (no counts, no rates, nobody else's name or words)."""
    if access.reviewer or tables.failed or not tables.rows:  # an error, or nothing yet: nobody's data
        return tables
    own = [{k: v for k, v in row.items() if k != "user"} for row in tables.comments if row.get("user") == access.user]
    return SummaryTables(OWN_ONLY, comments=own)
