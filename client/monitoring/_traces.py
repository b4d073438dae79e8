"""Records frames from the MLflow traces the SDK (``tracing=True``) and the apps write.

One trace is one prediction call; its root span's inputs hold the call's first rows as records
and its outputs the predictions (``client._tracing``). The search reads trace infos only (no
spans), in one request from a database-backed store and in pages of 500 from a tracking server
(``client._mlflow.search_trace_infos``), with the garbage collector paused (``bulk_read``): their
request/response previews hold a small call whole. A call too large for the preview is read span
by span (counted in the log); rows beyond what a trace keeps are counted in
``RecordsMeta.untraced_rows``, traces that never reached the store in ``dropped_traces``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._tracing import (
    TAG_CLIENT_REQUEST_ID,
    TAG_ENDPOINT,
    TAG_ERROR,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_REQUEST_ID,
    TAG_SERVED_MODEL,
    TAG_STATUS_CODE,
    TAG_TRACE_SEQ,
    TAG_TRACER,
)
from ._errors import NoTracesError
from ._models import RecordsMeta

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BASE_COLUMNS", "DEFAULT_DAYS", "DEFAULT_MAX_TRACES", "records_from_trace_infos", "records_from_traces"]

log = logging.getLogger(__name__)

#: The records frame's first columns (then one per feature, ``prediction``, ``label``, ``thumbs_up``).
BASE_COLUMNS = ("request_time", "databricks_request_id", "served_entity", "model_version", "status_code",
                "error", "execution_duration_ms")
FEEDBACK_NAME = "user_feedback"  # the assessments client.feedback writes
EXPECTED_NAME = "expected_prediction"
DEFAULT_DAYS = 7
DEFAULT_MAX_TRACES = 10_000


def _latest(assessments: Iterable[Any], name: str) -> Any | None:
    found = [a for a in assessments if a.name == name and a.valid is not False]
    if not found:
        return None
    return max(found, key=lambda a: (int(a.last_update_time_ms or a.create_time_ms or 0), str(a.assessment_id or "")))


def _prediction(value: Any) -> Any:
    """A row's prediction: the ``prediction`` field of a row dict (the iris demo's shape), the only
    field of a one-field dict, else the value itself."""
    if isinstance(value, dict):
        if "prediction" in value:
            return value["prediction"]
        if len(value) == 1:
            return next(iter(value.values()))
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return json.dumps(value)
    return value


def _payload(preview: str | None) -> dict[str, Any] | None:
    if not preview:
        return None
    try:
        value = json.loads(preview)
    except ValueError:  # cut at the preview's length: the caller reads the span instead
        return None
    return value if isinstance(value, dict) else None


def _labels(expected: Any, n: int) -> list[Any]:
    if isinstance(expected, list) and len(expected) == n:
        return [_prediction(e) for e in expected]
    if n == 1 and not isinstance(expected, list):
        return [_prediction(expected)]
    return [None] * n


def _dropped(seqs: dict[str, list[int]]) -> int:
    """Gaps inside each tracer's run of sequence numbers (before the first seen or after the last
    one nothing can be told)."""
    return sum(max(s) - min(s) + 1 - len(set(s)) for s in seqs.values() if s)


def records_from_trace_infos(
    infos: Iterable[Any], *, read_spans: Callable[[str], tuple[Any, Any]] | None = None,
    experiments: Sequence[str] = (), truncated: bool = False,
) -> tuple[pd.DataFrame, RecordsMeta]:
    """A records frame from trace infos (``mlflow.entities.TraceInfo`` or traces), pure but for
    ``read_spans(trace_id) -> (inputs, outputs)``, called for a trace whose preview was cut.

    Example::

        frame, meta = records_from_trace_infos(client.search_traces(..., include_spans=False))
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    traces = untraced = unreadable = 0
    seqs: dict[str, list[int]] = {}
    for item in infos:
        info = getattr(item, "info", item)
        tags = info.tags or {}
        traces += 1
        if (tracer := tags.get(TAG_TRACER)) and (seq := tags.get(TAG_TRACE_SEQ, "")).isdigit():
            seqs.setdefault(tracer, []).append(int(seq))
        inputs, outputs = _payload(info.request_preview), _payload(info.response_preview)
        failed = str(getattr(info.state, "value", info.state)) == "ERROR"
        if (inputs is None or (outputs is None and not failed)) and read_spans is not None:
            try:
                inputs, outputs = read_spans(info.trace_id)
            except Exception as err:
                log.debug("trace %s unreadable: %s", info.trace_id, err)
        records = inputs.get("records") if isinstance(inputs, dict) else None
        if not (isinstance(inputs, dict) and isinstance(records, list) and all(isinstance(r, dict) for r in records)):
            unreadable += 1
            continue
        predictions = outputs.get("predictions") if isinstance(outputs, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(records):
            predictions = [None] * len(records)
        untraced += max(int(inputs.get("n_rows", len(records)) or 0) - len(records), 0)
        status = int(tags.get(TAG_STATUS_CODE) or (500 if failed else 200))
        base = {
            "request_time": int(info.request_time),
            "databricks_request_id": tags.get(TAG_REQUEST_ID) or tags.get(TAG_CLIENT_REQUEST_ID) or info.trace_id,
            "served_entity": tags.get(TAG_SERVED_MODEL), "model_version": tags.get(TAG_MODEL_VERSION),
            "status_code": status, "error": tags.get(TAG_ERROR) or ("error" if status != 200 else None),
            "execution_duration_ms": float(info.execution_duration) if info.execution_duration is not None else None,
            "trace_id": info.trace_id,
        }
        assessments = info.assessments or []
        vote = _latest((a for a in assessments if isinstance(getattr(a, "value", None), bool)), FEEDBACK_NAME)
        expected = _latest(assessments, EXPECTED_NAME)
        labels = _labels(expected.value, len(records)) if expected is not None else [None] * len(records)
        for record, prediction, label in zip(records, predictions, labels, strict=True):
            rows.append({**base, **record, "prediction": _prediction(prediction), "label": label,
                         "thumbs_up": None if vote is None else bool(vote.value)})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["request_time"] = pd.to_datetime(frame["request_time"], unit="ms", utc=True)
    else:
        frame = pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "request_time" else object)
                              for c in (*BASE_COLUMNS, "prediction")})
    meta = RecordsMeta(traces=traces, predictions=len(frame), untraced_rows=untraced, dropped_traces=_dropped(seqs),
                       unreadable_traces=unreadable, truncated=truncated, experiments=list(experiments))
    return frame, meta


def default_experiments() -> list[str]:
    """What the apps trace into, as ``predictor feedback summary`` reads it: ``PREDICTOR_EXPERIMENT``,
    else both apps' experiments; plus ``PREDICTOR_TRACE_EXPERIMENT``."""
    from ..feedback import APP_EXPERIMENTS, EXPERIMENT_ENV, TRACE_EXPERIMENT_ENV

    wanted = (os.environ.get(EXPERIMENT_ENV) or "").strip()
    names = [wanted] if wanted else list(APP_EXPERIMENTS)
    if (other := (os.environ.get(TRACE_EXPERIMENT_ENV) or "").strip()) and other not in names:
        names.append(other)
    return names


def _utc(value: datetime | None, default: datetime) -> datetime:
    value = value or default
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def time_range(since: datetime | None, until: datetime | None,
               now: datetime | None = None) -> tuple[datetime, datetime]:
    """``since``/``until`` in UTC, by default the last :data:`DEFAULT_DAYS` days up to ``now``."""
    now = now or datetime.now(UTC)
    end = _utc(until, now)
    return _utc(since, end - timedelta(days=DEFAULT_DAYS)), end


def _quote(text: str) -> str:
    return text.replace("'", "")


def records_from_traces(
    model: str | None = None, *, endpoint: str | None = None, experiments: Sequence[str] | None = None,
    since: datetime | None = None, until: datetime | None = None, max_traces: int = DEFAULT_MAX_TRACES,
    registry_uri: str | None = None, version: str | None = None,
) -> tuple[pd.DataFrame, RecordsMeta]:
    """The records frame of a model's (all its versions, or ``version``; a ``models:/name/2`` URI
    names one) or an endpoint's traced predictions in
    ``experiments`` (names or ids; default :func:`default_experiments`) from ``since`` to ``until``
    (default: the last 7 days), the latest ``max_traces`` traces at most, and what it is based on.

    Raises ``NoTracesError`` when nothing was traced there (a gap is not a healthy model).

    Example::

        frame, meta = records_from_traces("models:/main.default.iris@champion")
        meta.predictions, meta.dropped_traces
    """
    from .._mlflow import bulk_read, search_trace_infos, tracking_session
    from .._tracing import flush
    from ..feedback import experiment_ids

    flush()  # this process's traces still waiting for export (the apps defer it) count too
    if model and model.startswith("models:"):
        from .._schema.signatures import parse_model_uri

        model, uri_version, _alias = parse_model_uri(model)
        version = version or uri_version
    start, end = time_range(since, until)
    filters = [f"trace.timestamp_ms >= {int(start.timestamp() * 1000)}",
               f"trace.timestamp_ms < {int(end.timestamp() * 1000)}"]
    if model:
        filters.append(f"tags.`{TAG_MODEL_NAME}` = '{_quote(model)}'")
    if endpoint:
        filters.append(f"tags.`{TAG_ENDPOINT}` = '{_quote(endpoint)}'")
    if version:
        filters.append(f"tags.`{TAG_MODEL_VERSION}` = '{_quote(str(version))}'")
    names = list(experiments) if experiments else default_experiments()
    with tracking_session(registry_uri):
        import mlflow

        ids = list(dict.fromkeys(experiment_ids(names)))
        what = (model or endpoint or "any model") + (f" version {version}" if version else "")
        if not ids:
            raise NoTracesError(f"no experiment {' or '.join(names)} in the tracking store: {what} was never traced")
        client = mlflow.MlflowClient()

        def read_spans(trace_id: str) -> tuple[Any, Any]:
            trace = client.get_trace(trace_id)
            root = next(s for s in trace.data.spans if s.parent_id is None)
            return root.inputs, root.outputs

        with bulk_read():
            infos, truncated = search_trace_infos(ids, " AND ".join(filters), max_traces)
            frame, meta = records_from_trace_infos(infos, read_spans=read_spans, experiments=names,
                                                   truncated=truncated)
    if not meta.traces:
        raise NoTracesError(f"no traced prediction of {what} in {', '.join(names)} "
                            f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    return frame, meta
