"""On the executors: one Predictor per job and Python worker, and each Arrow batch's rows scored."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import types as T

from .._exceptions import APIResponseValidationError, PredictorError, SchemaValidationError
from .._http.batching import halves, should_isolate, split_and_resend

if TYPE_CHECKING:
    import pandas as pd

    from .._predictor import Predictor
    from ._job import Job

_worker_predictors: dict[str, Predictor] = {}
_worker_lock = threading.Lock()
#: Jobs whose Predictor a worker keeps (a reused worker serves one job after another).
_WORKER_KEEPS = 4


def _worker_predictor(job: Job) -> Predictor:
    """One Predictor per job and Python worker, reused by every task the worker runs."""
    from .._predictor import restore

    with _worker_lock:
        p = _worker_predictors.get(job.key)
        if p is None:
            p = _worker_predictors[job.key] = restore(job.settings)
            for old in list(_worker_predictors)[:-_WORKER_KEEPS]:  # oldest first: drop finished jobs' models
                del _worker_predictors[old]
        return p


def score_partition(job: Job, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    import pandas as pd

    from .._http import sync as _sync

    predictor = _worker_predictor(job)
    for frame in batches:
        if frame.empty:
            yield frame.assign(**{job.prediction_col: pd.Series([], dtype=object), job.error_col: []})
            continue
        outcomes = _sync.run(_score_frame(predictor, frame[list(job.columns)], job))
        predictions: list[Any] = []
        errors: list[str | None] = []
        for outcome in outcomes:
            if isinstance(outcome, PredictorError):
                if job.fail_on_error:
                    raise outcome
                predictions.append(None)
                errors.append(_describe(outcome))
                continue
            try:
                predictions.append(_to_spark(outcome, job.out_type))
                errors.append(None)
            except (TypeError, ValueError) as err:
                bad = APIResponseValidationError(f"prediction does not match the output schema: {err}")
                if job.fail_on_error:
                    raise bad from err
                predictions.append(None)
                errors.append(_describe(bad))
        yield frame.assign(**{
            job.prediction_col: pd.Series(predictions, index=frame.index, dtype=object),
            job.error_col: pd.Series(errors, index=frame.index, dtype=object),
        })


async def _score_frame(predictor: Predictor, frame: pd.DataFrame, job: Job) -> list[Any]:
    """One outcome per row of ``frame``, in order: its prediction, or the ``PredictorError`` it met."""
    from .._schema.validate import validate

    n = len(frame)
    outcomes: list[Any] = [None] * n
    good = list(range(n))
    if predictor.validate:
        signature = await predictor.aget_signature()
        try:
            validate(signature, frame, job.params)
        except SchemaValidationError as err:
            by_row: dict[int, list[Any]] = {}
            for problem in err.problems:
                if problem.row is None:  # not one row's fault (a param, the whole frame): every row's
                    by_row = {i: [problem] for i in range(n)}
                    break
                by_row.setdefault(problem.row, []).append(problem)
            for i, problems in by_row.items():
                outcomes[i] = SchemaValidationError(problems)
            good = [i for i in range(n) if i not in by_row]
    if not good:
        return outcomes
    slots = asyncio.Semaphore(job.concurrency)
    size = job.batch_rows or len(good)
    parts: list[Sequence[int]] = [good[a : a + size] for a in range(0, len(good), size)]

    async def send(rows: Sequence[int]) -> list[Any]:
        async with slots:
            result = await predictor.apredict(frame.iloc[list(rows)], params=job.params)
        predictions = result.predictions
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            got = f"{len(predictions)} predictions" if isinstance(predictions, list) else type(predictions).__name__
            raise APIResponseValidationError(f"{len(rows)} rows were answered with {got}")
        return predictions

    def one_row_could_have(rows: Sequence[int], err: Exception) -> list[Sequence[int]]:
        return halves(rows) if should_isolate(err) else []  # halve until the bad row is found

    answered = await asyncio.gather(*(split_and_resend(rows, send, one_row_could_have, keep=PredictorError)
                                      for rows in parts))
    for rows, answer in (pair for part in answered for pair in part):
        row_outcomes = [answer] * len(rows) if isinstance(answer, Exception) else answer
        for i, outcome in zip(rows, row_outcomes, strict=True):
            outcomes[i] = outcome
    return outcomes


def _describe(err: PredictorError) -> str:
    """``prediction_error``'s text: the error's type and what went wrong, for this row only."""
    if isinstance(err, SchemaValidationError):
        text = "; ".join(f"column {p.column!r}: {p.message}" if p.column else p.message for p in err.problems)
    else:
        text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"


def _to_spark(value: Any, t: T.DataType) -> Any:
    """One prediction as a value of Spark type ``t``; ``ValueError``/``TypeError`` if it is not one."""
    if value is None:
        return None
    if isinstance(t, T.StringType):
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(t, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ValueError(f"expected an integer, got {value!r:.50}")
        return int(value)
    if isinstance(t, (T.FloatType, T.DoubleType)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r:.50}")
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(t, T.BooleanType):
        if not isinstance(value, bool):
            raise ValueError(f"expected a boolean, got {value!r:.50}")
        return value
    if isinstance(t, T.ArrayType):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r:.50}")
        return [_to_spark(v, t.elementType) for v in value]
    if isinstance(t, T.StructType):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {value!r:.50}")
        return {f.name: _to_spark(value.get(f.name), f.dataType) for f in t.fields}
    return value  # binary, timestamp: as the model answered

