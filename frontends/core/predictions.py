"""How both apps predict, framework-neutral: the cached call, the form's records, the history
row, CSV scoring with the SDK's own splitting and progress, and the texts for what went wrong.

A page turns its widgets into values, calls :class:`AppPredictor` and draws what comes back;
everything between is here, once, so the two apps answer alike.

Example::

    app = AppPredictor(config, predictor)
    answer = app.predict(form_records(fields, values), headers)          # a result's model_dump
    history = push_history(history, history_row(records, answer, tabular=True))
    batch = app.score_csv(upload_bytes, signature, headers, on_progress=lambda done, total: ...)
    batch.status                                                          # "Scored 150 rows with version 1."
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from client import Predictor, PredictorError, Signature
from frontends.core.form import Field, form_to_record, parse_csv_rows
from frontends.core.session import (
    AppConfig,
    PredictionCache,
    caller_identity,
    describe_error,
    format_prediction,
    model_info,
    prediction_rows,
    predictor_for,
)

__all__ = [
    "HISTORY_COLUMNS",
    "HISTORY_LIMIT",
    "NOT_UTF8",
    "UPLOAD_HINT",
    "AppPredictor",
    "BatchScore",
    "Progress",
    "error_text",
    "form_records",
    "history_row",
    "push_history",
    "read_csv",
    "with_progress",
]

T = TypeVar("T")
H = TypeVar("H")
#: ``on_progress(rows_done, rows_total)``, as ``Predictor.predict`` calls it.
Progress = Callable[[int, int], None]

HISTORY_COLUMNS = ["time", "input", "prediction", "version"]
#: A session's history keeps this many predictions, newest first.
HISTORY_LIMIT = 50
NOT_UTF8 = "**The file is not UTF-8 text.**"
UPLOAD_HINT = "Upload a CSV file with a header row naming the model's columns."


def error_text(err: BaseException, *, as_user: bool = False) -> str:
    """Markdown for an error on a page (never a traceback): an upload that is not UTF-8 text,
    else :func:`~frontends.core.session.describe_error`."""
    if isinstance(err, UnicodeDecodeError):
        return NOT_UTF8
    return describe_error(err, as_user=as_user)


def form_records(fields: list[Field], values: Mapping[str, Any]) -> Any:
    """What one form submission sends: a record built from the fields, or (a model without a
    column signature) the JSON typed into ``values["__json__"]``."""
    if fields:
        return [form_to_record(fields, dict(values))]
    try:
        return json.loads(values.get("__json__") or "[]")
    except json.JSONDecodeError as e:
        raise PredictorError(f"The JSON input is not valid JSON: {e.msg}") from None


def history_row(records: Any, answer: Mapping[str, Any], *, tabular: bool) -> dict[str, Any]:
    """One history line: when, the input (the record, or the JSON sent), the prediction, the version."""
    return {
        "time": datetime.now(UTC).strftime("%H:%M:%S"),
        "input": json.dumps(records[0] if tabular else records, default=str),
        "prediction": format_prediction(answer["predictions"]),
        "version": answer.get("model_version"),
    }


def push_history(history: list[H], row: H) -> list[H]:
    """``row`` first, then the older lines, at most :data:`HISTORY_LIMIT` (a new list; rows as
    :func:`history_row` gives them, or a table's lists of their values)."""
    return [row, *history][:HISTORY_LIMIT]


def read_csv(data: bytes | str, signature: Signature | None) -> list[dict[str, Any]]:
    """An uploaded CSV's records (a BOM is dropped); ``UnicodeDecodeError`` if it is not UTF-8 text."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    return parse_csv_rows(text, signature)


@dataclass(frozen=True)
class BatchScore:
    """A scored CSV: its records, the answer (``model_dump``) and the rows of the results table."""

    records: list[dict[str, Any]]
    answer: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return f"Scored {len(self.records)} rows with version {self.answer.get('model_version') or '?'}."


class AppPredictor:
    """The app's Predictor behind the per-process answer cache: one answer per (caller, model
    version, input), shared by every session. The caller is the app, or the signed-in user
    when the app acts on their behalf (``SignInRequired`` when it does and none came).

    Large inputs are the SDK's to split: ``Predictor.predict`` sends over 5,000 rows (or 16 MB)
    in chunks and reports each to ``on_progress``.
    """

    def __init__(self, config: AppConfig, predictor: Predictor, cache: PredictionCache | None = None) -> None:
        self.config = config
        self.predictor = predictor
        self.cache = cache if cache is not None else PredictionCache()

    def _caller(self, headers: Mapping[str, str] | None, records: Any
                ) -> tuple[Predictor, tuple[str, str | None, str]]:
        predictor = predictor_for(self.predictor, headers, self.config)  # before the cache: who may call at all
        version = model_info(self.predictor, self.config).version
        return predictor, PredictionCache.key(caller_identity(headers, self.config), version, records)

    async def apredict(self, records: Any, headers: Mapping[str, str] | None = None, *,
                       on_progress: Progress | None = None) -> dict[str, Any]:
        """The answer for ``records`` (a result's ``model_dump(mode="json")``), from the cache or the model."""
        predictor, key = self._caller(headers, records)
        if (answer := self.cache.get(key)) is not None:
            return answer
        # the records as JSON gives them (dates as text), as they were keyed
        result = await predictor.apredict(json.loads(key[2]), on_progress=on_progress)
        return self.cache.put(key, result.model_dump(mode="json"))

    def predict(self, records: Any, headers: Mapping[str, str] | None = None, *,
                on_progress: Progress | None = None) -> dict[str, Any]:
        """Sync :meth:`apredict` (``Predictor.predict``: works inside a running event loop too)."""
        predictor, key = self._caller(headers, records)
        if (answer := self.cache.get(key)) is not None:
            return answer
        result = predictor.predict(json.loads(key[2]), on_progress=on_progress)
        return self.cache.put(key, result.model_dump(mode="json"))

    async def ascore_csv(self, data: bytes | str, signature: Signature | None,
                         headers: Mapping[str, str] | None = None, *,
                         on_progress: Progress | None = None) -> BatchScore:
        """An uploaded CSV scored in one call (split by the SDK when large)."""
        records = read_csv(data, signature)
        answer = await self.apredict(records, headers, on_progress=on_progress)
        return BatchScore(records, answer, prediction_rows(records, answer["predictions"]))

    def score_csv(self, data: bytes | str, signature: Signature | None,
                  headers: Mapping[str, str] | None = None, *, on_progress: Progress | None = None) -> BatchScore:
        """Sync :meth:`ascore_csv`."""
        records = read_csv(data, signature)
        answer = self.predict(records, headers, on_progress=on_progress)
        return BatchScore(records, answer, prediction_rows(records, answer["predictions"]))


def with_progress(work: Callable[[Progress], T], show: Progress, poll_s: float = 0.1) -> T:
    """Run ``work(on_progress)`` in a worker thread and call ``show(done, total)`` from *this*
    thread as progress arrives: ``Predictor.predict`` reports from the SDK's own thread, and a
    page framework draws only from its own (Streamlit's script thread)."""
    latest: list[tuple[int, int]] = []
    lock = threading.Lock()

    def report(done: int, total: int) -> None:
        with lock:
            latest.append((done, total))

    def drain() -> None:
        with lock:
            seen = latest[-1] if latest else None
            latest.clear()
        if seen is not None:
            show(*seen)

    with ThreadPoolExecutor(1, thread_name_prefix="app-scoring") as pool:
        future = pool.submit(work, report)
        while True:
            try:
                result = future.result(timeout=poll_s)
                break
            except TimeoutError:
                drain()
    drain()
    return result
