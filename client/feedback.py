"""User feedback on predictions, kept as MLflow assessments on their traces, and summaries by version.

Every traced prediction (``Predictor(..., tracing=True)``) is an MLflow trace; a thumbs up/down
with an optional comment becomes a ``user_feedback`` assessment on that trace (value
``True``/``False``, rationale = the comment, source HUMAN with the user's id), and the value a
user believes is right an ``expected_prediction`` expectation. A second vote by the same user on
the same trace updates their assessment instead of adding one. Nothing here uses the deprecated
Model Serving feedback endpoint.

Where: MLflow's tracking store (``MLFLOW_TRACKING_URI``, else the local demo store) and the
experiment :func:`setup_tracking` made active. The apps trace into ``PREDICTOR_EXPERIMENT``, by
default one experiment per app (:data:`APP_EXPERIMENTS`); ``predictor feedback summary`` reads
those unless told otherwise.

Example::

    experiment_id = setup_tracking("/my-app")        # where traces (and so feedback) go
    trace_id = result.trace_id                       # a PredictionResult of a traced Predictor
    record_feedback(trace_id, "ann@example.com", thumbs_up=False, comment="should be virginica")
    for row in summarize("main.default.iris", experiment_ids=[experiment_id]):
        print(row.model_version, row.predictions, row.thumbs_up_rate)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._tracing import TAG_MODEL_NAME, TAG_MODEL_VERSION, TAG_SERVED_MODEL, result_tags
from ._tracing import defer_export as defer_trace_export
from ._tracing import export_failures as trace_export_failures
from ._tracing import flush as flush_traces
from ._tracing import warm_up as warm_up_tracing

__all__ = [
    "ANONYMOUS",
    "APP_EXPERIMENTS",
    "Comment",
    "EXPECTED_NAME",
    "EXPERIMENT_ENV",
    "FEEDBACK_NAME",
    "TRACE_EXPERIMENT_ENV",
    "VersionSummary",
    "Vote",
    "comment_rows",
    "current_vote",
    "defer_trace_export",
    "experiment_ids",
    "flush_traces",
    "format_summary",
    "record_feedback",
    "setup_tracking",
    "summarize",
    "summarize_traces",
    "summary_rows",
    "summary_text",
    "tag_answer_trace",
    "tag_answer_trace_later",
    "trace_export_failures",
    "warm_up_tracing",
]

log = logging.getLogger(__name__)

FEEDBACK_NAME = "user_feedback"
EXPECTED_NAME = "expected_prediction"
#: The user of a vote whose source names nobody.
ANONYMOUS = "anonymous"
#: The experiment the apps trace into (a name, or an id as a Databricks App's experiment resource gives it).
EXPERIMENT_ENV = "PREDICTOR_EXPERIMENT"
#: Where chat answers' traces live when another process writes them (``predictor serve
#: --experiment``, Model Serving): searched by the apps' Feedback page and by ``predictor feedback
#: summary`` besides the apps' experiment (a name or an id).
TRACE_EXPERIMENT_ENV = "PREDICTOR_TRACE_EXPERIMENT"
#: The apps' own experiments when ``PREDICTOR_EXPERIMENT`` is not set (Streamlit's, Gradio's):
#: what ``predictor feedback summary`` reads when no experiment is named.
APP_EXPERIMENTS = ("/predictor-streamlit", "/predictor-gradio")
#: At most this many of the latest traces are summarized (and none older than the window).
DEFAULT_MAX_TRACES = 10_000
DEFAULT_WINDOW_DAYS = 30
LATEST_COMMENTS = 10
#: How long a vote waits for a trace another process is still writing: the agent server (and
#: Model Serving) send an answer's trace id before they export its trace.
TRACE_WAIT_S = 10.0


def setup_tracking(experiment: str, registry_uri: str | None = None) -> str | None:
    """Make ``experiment`` (a name, created if missing, or an id) MLflow's active experiment in
    the tracking store (``MLFLOW_TRACKING_URI``, else ``registry_uri``'s store); its id.

    A tracking store that cannot be reached costs a warning and ``None``: the caller predicts on,
    untraced experiment-wise (traces then go to MLflow's default experiment, or nowhere).

    Example::

        setup_tracking("/predictor-streamlit")   # "1"
    """
    try:
        from ._mlflow import tracking_session, use_experiment

        with tracking_session(registry_uri):
            return use_experiment(experiment)
    except Exception as err:
        log.warning("MLflow experiment %r unavailable (%s: %s); predictions are not traced there",
                    experiment, type(err).__name__, err)
        return None


# -- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    """One user's current feedback on one trace."""

    trace_id: str
    user: str
    thumbs_up: bool
    comment: str | None
    assessment_id: str
    expected: Any = None


def _user_of(a: Any) -> str:
    return (a.source.source_id if a.source is not None else None) or ANONYMOUS


def _newest_first(assessments: Iterable[Any]) -> list[Any]:
    """Latest update first; ties (same millisecond) broken by id, so every reader picks the same one."""
    return sorted(assessments, key=lambda a: (int(a.last_update_time_ms or a.create_time_ms or 0),
                                              str(a.assessment_id or "")), reverse=True)


def _all_mine(assessments: Iterable[Any], name: str, user: str) -> list[Any]:
    """``user``'s valid ``name`` assessments, the one that counts (the latest) first."""
    return _newest_first(a for a in assessments
                         if a.name == name and a.source is not None and a.source.source_id == user
                         and a.valid is not False)


def _mine(assessments: Iterable[Any], name: str, user: str) -> Any | None:
    mine = _all_mine(assessments, name, user)
    return mine[0] if mine else None


# One vote per user per trace: votes by one user on one trace are serialized in the process (a
# double click, two tabs), and duplicates another process wrote meanwhile are removed after each
# write (reconcile on write) and never counted twice by a summary (reconcile on read).
_VOTE_LOCKS: dict[tuple[str, str], tuple[threading.Lock, int]] = {}  # lock, callers holding or waiting
_VOTE_LOCKS_GUARD = threading.Lock()


@contextmanager
def _vote_lock(trace_id: str, user: str) -> Iterator[None]:
    key = (trace_id, user)
    with _VOTE_LOCKS_GUARD:
        lock, users = _VOTE_LOCKS.get(key) or (threading.Lock(), 0)
        _VOTE_LOCKS[key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _VOTE_LOCKS_GUARD:  # the last one out forgets the lock: the table holds only votes in flight
            lock, users = _VOTE_LOCKS[key]
            if users == 1:
                del _VOTE_LOCKS[key]
            else:
                _VOTE_LOCKS[key] = (lock, users - 1)


def _drop_duplicates(trace_id: str, user: str) -> None:
    """Delete all but the latest of ``user``'s assessments of each kind on the trace (written by
    a concurrent vote in another process); every process keeps the same one (:func:`_newest_first`)."""
    import mlflow

    trace = mlflow.get_trace(trace_id, silent=True)
    if trace is None:
        return
    for name in (FEEDBACK_NAME, EXPECTED_NAME):
        for extra in _all_mine(trace.info.assessments, name, user)[1:]:
            try:
                mlflow.delete_assessment(trace_id=trace_id, assessment_id=extra.assessment_id)
            except Exception as err:  # deleted by the other writer meanwhile: the summary still counts one
                log.debug("duplicate vote %s not deleted: %s", extra.assessment_id, err)


def current_vote(trace_id: str, user: str) -> Vote | None:
    """``user``'s feedback on ``trace_id`` as it is in the store, if any."""
    import mlflow

    trace = mlflow.get_trace(trace_id)
    if trace is None:
        return None
    fb = _mine(trace.info.assessments, FEEDBACK_NAME, user)
    if fb is None:
        return None
    exp = _mine(trace.info.assessments, EXPECTED_NAME, user)
    return Vote(trace_id, user, bool(fb.value), fb.rationale, fb.assessment_id,
                None if exp is None else exp.value)


def _stored_trace(trace_id: str, wait_s: float) -> Any | None:
    """The trace as stored, waiting up to ``wait_s`` for one that is still being written."""
    import mlflow
    from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

    trace = mlflow.get_trace(trace_id, silent=True)
    if trace is None:  # just written here: still waiting for export. Flush only then: a flush
        # costs up to a second and makes concurrent predictions export synchronously meanwhile.
        flush_traces()
        trace = mlflow.get_trace(trace_id, silent=True)
    if trace is None and wait_s > 0:  # written by the agent server / Model Serving, after its answer
        fetch = Retrying(retry=retry_if_result(lambda t: t is None), stop=stop_after_delay(wait_s),
                         wait=wait_fixed(0.25), retry_error_callback=lambda _state: None)
        trace = fetch(mlflow.get_trace, trace_id, silent=True)
    return trace


def record_feedback(trace_id: str, user: str, *, thumbs_up: bool, comment: str | None = None,
                    expected: Any = None, wait_s: float = TRACE_WAIT_S) -> Vote:
    """Store ``user``'s thumbs (and comment, and the value they believe right) on the trace.

    The trace may be in any experiment of the tracking store: the app's own (its predictions,
    direct-mode chat answers) or the one the agent server or Model Serving wrote a chat answer's
    trace to; a trace that is not there yet is waited for up to ``wait_s`` seconds. The user's
    earlier feedback on the same trace is updated, never duplicated (an empty comment keeps the
    earlier one). Raises ``ValueError`` for a trace id that is not in the store (MLflow's error
    otherwise). Votes by one user on one trace are serialized in this process, and duplicates a
    concurrent vote in another process wrote are deleted (all but the latest).
    """
    if not trace_id:
        raise ValueError("this prediction has no trace: tracing was off or the store unreachable")
    with _vote_lock(trace_id, user):
        vote = _write_vote(trace_id, user, thumbs_up=thumbs_up, comment=comment, expected=expected, wait_s=wait_s)
        _drop_duplicates(trace_id, user)
    return vote


def _write_vote(trace_id: str, user: str, *, thumbs_up: bool, comment: str | None, expected: Any,
                wait_s: float) -> Vote:
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Expectation, Feedback

    trace = _stored_trace(trace_id, wait_s)
    if trace is None:
        raise ValueError(f"trace {trace_id} is not in the tracking store")
    comment = (comment or "").strip() or None
    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=user)
    old = _mine(trace.info.assessments, FEEDBACK_NAME, user)
    if old is None:
        saved = mlflow.log_feedback(trace_id=trace_id, name=FEEDBACK_NAME, value=bool(thumbs_up),
                                    rationale=comment, source=source)
    else:
        saved = mlflow.update_assessment(trace_id=trace_id, assessment_id=old.assessment_id,
                                         assessment=Feedback(name=FEEDBACK_NAME, value=bool(thumbs_up),
                                                             rationale=comment, source=source))
    if expected is not None and expected != "":
        old_exp = _mine(trace.info.assessments, EXPECTED_NAME, user)
        if old_exp is None:
            mlflow.log_expectation(trace_id=trace_id, name=EXPECTED_NAME, value=expected, source=source)
        else:
            mlflow.update_assessment(trace_id=trace_id, assessment_id=old_exp.assessment_id,
                                     assessment=Expectation(name=EXPECTED_NAME, value=expected, source=source))
    return Vote(trace_id, user, bool(thumbs_up), saved.rationale, str(saved.assessment_id), expected)


def tag_answer_trace(result: Any, wait_s: float = TRACE_WAIT_S) -> bool:
    """Give a chat answer's trace the ``predictor.*`` tags a tabular prediction's trace carries
    (model name, version, served entity, mode...), so :func:`summarize` counts it. The trace may
    still be being written by the agent server: waited for up to ``wait_s``. Never raises: a
    trace that cannot be tagged costs a warning (``False``), never the chat."""
    trace_id = getattr(result, "trace_id", None)
    tags = result_tags(result)
    if not trace_id or not tags:
        return False
    try:
        import mlflow

        if _stored_trace(trace_id, wait_s) is None:
            raise ValueError(f"trace {trace_id} is not in the tracking store")
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_trace_tag(trace_id, key, value)
        return True
    except Exception as err:
        log.warning("chat answer's trace not tagged (%s: %s); it is left out of the feedback summary",
                    type(err).__name__, err)
        return False


def tag_answer_trace_later(result: Any) -> None:
    """:func:`tag_answer_trace` in a daemon thread: the page does not wait for the agent server."""
    import threading

    threading.Thread(target=tag_answer_trace, args=(result,), name="tag-answer-trace", daemon=True).start()


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment:
    time_ms: int
    user: str
    thumbs_up: bool
    text: str
    model_version: str | None
    served_model_name: str | None


@dataclass
class VersionSummary:
    """Feedback on one model version as one served entity answered it."""

    model_version: str | None
    served_model_name: str | None
    predictions: int = 0
    with_feedback: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    comments: list[Comment] = field(default_factory=list)

    @property
    def feedback_share(self) -> float:
        return self.with_feedback / self.predictions if self.predictions else 0.0

    @property
    def thumbs_up_rate(self) -> float | None:
        votes = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / votes if votes else None


def _version_key(v: VersionSummary) -> tuple[int, str, str]:
    version = v.model_version or ""
    return (-int(version) if version.isdigit() else 0, version, v.served_model_name or "")


def summarize_traces(traces: Iterable[Any]) -> list[VersionSummary]:
    """Group traces (``mlflow.entities.Trace`` or their infos) by version and served entity (pure)."""
    groups: dict[tuple[str | None, str | None], VersionSummary] = {}
    for trace in traces:
        info = getattr(trace, "info", trace)
        tags = info.tags or {}
        key = (tags.get(TAG_MODEL_VERSION), tags.get(TAG_SERVED_MODEL))
        group = groups.get(key) or groups.setdefault(key, VersionSummary(*key))
        group.predictions += 1
        votes: dict[str, Any] = {}  # one per user, the latest: duplicates of a racing vote count once
        for a in _newest_first(a for a in (info.assessments or [])
                               if a.name == FEEDBACK_NAME and a.valid is not False and isinstance(a.value, bool)):
            votes.setdefault(_user_of(a), a)
        if not votes:
            continue
        group.with_feedback += 1
        for user, a in votes.items():
            group.thumbs_up += a.value is True
            group.thumbs_down += a.value is False
            if a.rationale:
                group.comments.append(Comment(
                    int(a.last_update_time_ms or a.create_time_ms or 0), user, bool(a.value), a.rationale, *key))
    out = sorted(groups.values(), key=_version_key)
    for g in out:
        g.comments.sort(key=lambda c: c.time_ms, reverse=True)
        del g.comments[LATEST_COMMENTS:]
    return out


def summarize(model_name: str | None, experiment_ids: Sequence[str], *, max_traces: int = DEFAULT_MAX_TRACES,
              window_days: float | None = DEFAULT_WINDOW_DAYS) -> list[VersionSummary]:
    """Per version and served entity of ``model_name``: predictions, feedback, thumbs-up rate and
    the latest comments, from the latest ``max_traces`` traces of the last ``window_days`` days."""
    from ._mlflow import bulk_read, search_trace_infos

    filters = []
    if model_name:
        filters.append(f"tags.`{TAG_MODEL_NAME}` = '{model_name.replace(chr(39), '')}'")
    if window_days is not None:
        since = int((time.time() - window_days * 86400) * 1000)
        filters.append(f"trace.timestamp_ms > {since}")
    # MlflowClient's search, not mlflow.search_traces (pages of 100): one request from a database,
    # pages of 500 (the most a tracking server allows) from a server.
    with bulk_read():
        traces, _truncated = search_trace_infos(list(experiment_ids), " AND ".join(filters) or None, max_traces)
        return summarize_traces(traces)


def summary_rows(summary: Sequence[VersionSummary]) -> list[dict[str, Any]]:
    """The summary as table rows (the Feedback page and the CLI show the same columns)."""
    rows = []
    for s in summary:
        rate = s.thumbs_up_rate
        rows.append({
            "version": s.model_version or "?",
            "served entity": s.served_model_name or "-",
            "predictions": s.predictions,
            "with feedback": f"{s.feedback_share:.0%}",
            "thumbs up": s.thumbs_up,
            "thumbs down": s.thumbs_down,
            "thumbs-up rate": "-" if rate is None else f"{rate:.0%}",
        })
    return rows


def comment_rows(summary: Sequence[VersionSummary], limit: int = LATEST_COMMENTS) -> list[dict[str, Any]]:
    """The latest comments over all versions, newest first."""
    comments = sorted((c for s in summary for c in s.comments), key=lambda c: c.time_ms, reverse=True)[:limit]
    return [{"when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.time_ms / 1000)), "version": c.model_version or "?",
             "served entity": c.served_model_name or "-", "user": c.user, "thumbs": "up" if c.thumbs_up else "down",
             "comment": c.text} for c in comments]


def format_summary(summary: Sequence[VersionSummary]) -> str:
    """A plain-text table (and the latest comments) for the terminal."""
    rows = summary_rows(summary)
    if not rows:
        return "No traced predictions for this model in the window."
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    comments = comment_rows(summary)
    if comments:
        lines += ["", "Latest comments:"]
        lines += [f"  {c['when']}  v{c['version']} {c['served entity']}  {c['user']} ({c['thumbs']}): {c['comment']}"
                  for c in comments]
    return "\n".join(line.rstrip() for line in lines)


def experiment_ids(names: Sequence[str]) -> list[str]:
    """Ids of the experiments named (names, or ids as they are) in the tracking store; names of
    experiments that do not exist are skipped.

    Example::

        experiment_ids(["/predictor-streamlit", "42"])   # ["1", "42"]
    """
    import mlflow

    ids = []
    for name in names:
        if name.isdigit():
            ids.append(name)
        elif (exp := mlflow.get_experiment_by_name(name)) is not None:
            ids.append(str(exp.experiment_id))
    return ids


def summary_text(model_uri: str, experiment: str | None = None, *, registry_uri: str | None = None,
                 max_traces: int = DEFAULT_MAX_TRACES, window_days: float | None = DEFAULT_WINDOW_DAYS) -> str:
    """``predictor feedback summary``: the table for ``model_uri``'s model, from ``experiment`` (else
    ``PREDICTOR_EXPERIMENT``, else both apps' default experiments, :data:`APP_EXPERIMENTS`), plus
    ``PREDICTOR_TRACE_EXPERIMENT`` when set, as the apps' Feedback page reads them."""
    from ._mlflow import tracking_session
    from ._schema.signatures import parse_model_uri

    name = parse_model_uri(model_uri)[0]
    wanted = (experiment or os.environ.get(EXPERIMENT_ENV) or "").strip()
    names = [wanted] if wanted else list(APP_EXPERIMENTS)
    traces_elsewhere = (os.environ.get(TRACE_EXPERIMENT_ENV) or "").strip()
    if traces_elsewhere and traces_elsewhere not in names:
        names.append(traces_elsewhere)
    with tracking_session(registry_uri):
        ids = list(dict.fromkeys(experiment_ids(names)))
        if not ids:
            return f"No experiment {' or '.join(names)} in the tracking store: nothing traced yet."
        summary = summarize(name, ids, max_traces=max_traces, window_days=window_days)
    return f"{name} (experiments {', '.join(names)})\n" + format_summary(summary)
