"""Score a Spark DataFrame with the same Predictor: same rows out, plus a prediction and its error.

Example::

    from client import Predictor
    from client.spark import score

    scored = score(df, Predictor.from_endpoint("iris"))          # each executor sends its rows
    scored = score(df, Predictor.from_model("models:/main.default.iris@champion"))  # model on executors
    scored.select("prediction", "prediction_error")

How: ``mapInPandas`` over the partitions. The Predictor travels to the executors pickled as its
settings (``client._pickling``: no connection, no loaded model; an endpoint's bearer token in
memory only). Each Python worker builds one Predictor from them and keeps it for every task it
runs, so a model is loaded once per worker. Per Arrow batch, a worker validates the rows against
the signature, sends the valid ones in requests of ``batch_rows`` rows, ``concurrency`` at a time,
with the Predictor's usual retries (429s and ``Retry-After`` included), and splits a request that
failed because of one of its rows until the row is found. A row that is invalid, or whose request
still failed, keeps its place with ``prediction`` null and the reason in ``prediction_error``.

This is the one module that imports pyspark (``pip install 'uc-predictor-client[spark]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import pickle
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from ._batching import should_isolate
from ._constants import DEFAULT_SPARK_BATCH_ROWS, DEFAULT_SPARK_CONCURRENCY
from ._exceptions import APIResponseValidationError, ConfigurationError, PredictorError, SchemaValidationError
from ._types import ColumnSpec, Signature, TensorSpec

if TYPE_CHECKING:
    import pandas as pd

    from ._pickling import PredictorSettings
    from ._predictor import Predictor

__all__ = ["ai_query_sql", "endpoint_ai_query_sql", "prediction_type", "run_batch", "score", "spark_session"]

log = logging.getLogger(__name__)

_SCALAR_TYPES: dict[str, T.DataType] = {
    "boolean": T.BooleanType(), "integer": T.IntegerType(), "long": T.LongType(), "float": T.FloatType(),
    "double": T.DoubleType(), "string": T.StringType(), "binary": T.BinaryType(), "datetime": T.TimestampType(),
    "bool": T.BooleanType(), "int8": T.ByteType(), "int16": T.ShortType(), "int32": T.IntegerType(),
    "int64": T.LongType(), "uint8": T.ShortType(), "uint16": T.IntegerType(), "uint32": T.LongType(),
    "float32": T.FloatType(), "float64": T.DoubleType(), "str": T.StringType(), "object": T.StringType(),
}


def prediction_type(signature: Signature | None) -> T.DataType:
    """The Spark type of one row's prediction, from the model's output schema.

    One output column (or a 1-D tensor) gives its scalar type; a 2-D tensor an array; several
    named columns a struct. Without an output schema, or one we cannot map, the prediction is
    its JSON text (``StringType``).

    Example::

        prediction_type(Predictor.from_model(uri).get_signature())   # LongType()
    """
    outputs = signature.outputs if signature is not None else ()
    if len(outputs) == 1:
        out = outputs[0]
        if isinstance(out, TensorSpec):
            elem = _SCALAR_TYPES.get(out.dtype)
            if elem is not None and len(out.shape) == 1:
                return elem
            if elem is not None and len(out.shape) == 2:
                return T.ArrayType(elem)
        elif out.type in _SCALAR_TYPES:
            return _SCALAR_TYPES[out.type]
    elif outputs and all(isinstance(o, ColumnSpec) and o.name and o.type in _SCALAR_TYPES for o in outputs):
        return T.StructType([
            T.StructField(str(o.name), _SCALAR_TYPES[o.type], True) for o in outputs if isinstance(o, ColumnSpec)
        ])
    return T.StringType()


#: Below PySpark's ``spark.broadcast.UDFCompressionThreshold`` (1 MiB), over which a task's Python
#: closure is written to a temporary file to be broadcast.
_MAX_CLOSURE_WITH_TOKEN = 512 * 1024


@dataclass(frozen=True)
class _Job:
    """What every Python worker gets: the Predictor's settings and how to score."""

    key: str
    settings: PredictorSettings
    columns: tuple[str, ...]
    params: dict[str, Any] | None
    batch_rows: int | None  # None: the whole Arrow batch in one call (direct mode)
    concurrency: int
    fail_on_error: bool
    out_type: T.DataType
    prediction_col: str
    error_col: str


def score(
    df: DataFrame,
    predictor: Predictor,
    *,
    params: dict[str, Any] | None = None,
    concurrency: int = DEFAULT_SPARK_CONCURRENCY,
    batch_rows: int | None = None,
    fail_on_error: bool = False,
    prediction_col: str = "prediction",
    error_col: str = "prediction_error",
) -> DataFrame:
    """``df``'s rows, each with ``prediction`` (typed from the output schema) and ``prediction_error``.

    Lazy, like any DataFrame transformation. The signature's input columns are taken from ``df``
    (all of ``df`` if the model has none); a missing required column is a ``ConfigurationError``
    here, before anything runs. A model alias is pinned to one version for the whole job.
    Endpoint mode: each Python worker has at most ``concurrency`` requests of ``batch_rows``
    rows (default 1,000) in flight. Direct mode: each worker loads the model once and predicts an
    Arrow batch at a time (or ``batch_rows``). ``fail_on_error=True`` fails the job at the first
    bad row instead.

    Example::

        scored = score(spark.read.table("main.default.iris_input"), Predictor.from_endpoint("iris"))
        scored.where("prediction_error IS NOT NULL").count()
    """
    if concurrency < 1 or (batch_rows is not None and batch_rows < 1):
        raise ConfigurationError(f"concurrency and batch_rows must be >= 1, got {concurrency} and {batch_rows}")
    clash = [c for c in (prediction_col, error_col) if c in df.columns]
    if clash:
        raise ConfigurationError(f"the DataFrame already has column(s) {clash}; pass other prediction_col/error_col")
    settings, signature = _driver_settings(predictor)
    columns = _input_columns(signature, df.columns)
    if settings.mode == "endpoint" and batch_rows is None:
        batch_rows = DEFAULT_SPARK_BATCH_ROWS
    # The worker's Predictor sends each of our calls as it is: we batch and bound concurrency here.
    job = _Job(
        key=uuid.uuid4().hex, settings=settings.with_batching(None), columns=columns, params=params,
        batch_rows=batch_rows, concurrency=concurrency, fail_on_error=fail_on_error,
        out_type=prediction_type(signature), prediction_col=prediction_col, error_col=error_col,
    )
    if settings.token is not None and len(pickle.dumps(job)) > _MAX_CLOSURE_WITH_TOKEN:
        # PySpark broadcasts a closure over 1 MiB through a temporary file: never a token on disk.
        raise ConfigurationError("the scoring job is too large to ship a token in memory (a very wide signature?)")
    added = [T.StructField(prediction_col, job.out_type, True), T.StructField(error_col, T.StringType(), True)]
    schema = T.StructType([*df.schema.fields, *added])
    return df.mapInPandas(partial(_score_partition, job), schema)


def _driver_settings(predictor: Predictor) -> tuple[PredictorSettings, Signature | None]:
    """The settings to ship, with a model alias pinned to the version it points at now."""
    from . import _sync
    from ._pickling import settings_of
    from ._registry import resolve_registry_uri
    from ._signatures import from_registry

    settings = settings_of(predictor)
    if predictor.mode == "direct" or (predictor.model_uri is not None and predictor.validate):
        assert predictor.model_uri is not None
        registry = resolve_registry_uri(predictor.registry_uri)
        # Read from the registry, not by loading the model: the driver need not hold it.
        signature, ref = _sync.run(from_registry(predictor.model_uri, registry))
        pinned = replace(settings, model_uri=f"models:/{ref.name}/{ref.version}", registry_uri=registry)
        if predictor.mode == "direct":
            return pinned, signature
        # Endpoint mode: the workers validate with this signature, without asking the registry.
        shipped = replace(pinned, signature=signature, signature_loaded=True, model_name=ref.name,
                          model_version=ref.version)
        return shipped, signature
    signature = predictor.get_signature() if predictor.validate else None
    return settings_of(predictor), signature  # now with the signature fetched


def _input_columns(signature: Signature | None, available: Sequence[str]) -> tuple[str, ...]:
    if signature is None or not signature.has_inputs:
        return tuple(available)
    if signature.is_tensor:
        raise ConfigurationError("score() takes models with column inputs; this model's inputs are tensors")
    if all(c.name is None for c in signature.columns):  # unnamed specs match columns by position
        return tuple(available)
    missing = [c.name for c in signature.columns if c.required and c.name not in available]
    if missing:
        raise ConfigurationError(f"the DataFrame lacks required input column(s) {missing}")
    return tuple(str(c.name) for c in signature.columns if c.name in available)


# --------------------------------------------------------------------------- on the executors

_worker_predictors: dict[str, Predictor] = {}
_worker_lock = threading.Lock()
#: Jobs whose Predictor a worker keeps (a reused worker serves one job after another).
_WORKER_KEEPS = 4


def _worker_predictor(job: _Job) -> Predictor:
    """One Predictor per job and Python worker, reused by every task the worker runs."""
    from ._pickling import rebuild

    with _worker_lock:
        p = _worker_predictors.get(job.key)
        if p is None:
            p = _worker_predictors[job.key] = rebuild(job.settings)
            for old in list(_worker_predictors)[:-_WORKER_KEEPS]:  # oldest first: drop finished jobs' models
                del _worker_predictors[old]
        return p


def _score_partition(job: _Job, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    import pandas as pd

    from . import _sync

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


async def _score_frame(predictor: Predictor, frame: pd.DataFrame, job: _Job) -> list[Any]:
    """One outcome per row of ``frame``, in order: its prediction, or the ``PredictorError`` it met."""
    from ._schema import validate

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
    parts = [good[a : a + size] for a in range(0, len(good), size)]
    answers = await asyncio.gather(*(_send(predictor, frame, rows, job.params, slots) for rows in parts))
    for rows, answer in zip(parts, answers, strict=True):
        for i, outcome in zip(rows, answer, strict=True):
            outcomes[i] = outcome
    return outcomes


async def _send(
    predictor: Predictor, frame: pd.DataFrame, rows: list[int], params: dict[str, Any] | None, slots: asyncio.Semaphore
) -> list[Any]:
    """Predict ``rows`` of ``frame`` in one call; if it failed because of one row, halve and resend."""
    try:
        async with slots:
            result = await predictor.apredict(frame.iloc[rows], params=params)
        predictions = result.predictions
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            got = f"{len(predictions)} predictions" if isinstance(predictions, list) else type(predictions).__name__
            raise APIResponseValidationError(f"{len(rows)} rows were answered with {got}")
        return predictions
    except PredictorError as err:
        if len(rows) > 1 and should_isolate(err):
            middle = len(rows) // 2
            first, second = await asyncio.gather(
                _send(predictor, frame, rows[:middle], params, slots),
                _send(predictor, frame, rows[middle:], params, slots),
            )
            return first + second
        return [err] * len(rows)


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


# --------------------------------------------------------------------------- driver helpers


def spark_session(master: str = "local[*]", app_name: str = "predictor") -> SparkSession:
    """A SparkSession whose Python workers run this interpreter (so they can import ``client``),
    without the web UI and with few shuffle partitions. Reuses an active session if there is one.

    Example::

        spark = spark_session("local[2]")
    """
    # PySpark reads the workers' interpreter from the environment when it starts its context;
    # without this, local mode runs them on `python3` from PATH, which may lack this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )


def ai_query_sql(endpoint: str, signature: Signature, table: str, prediction_col: str = "prediction") -> str:
    """The Databricks SQL that scores ``table`` on ``endpoint`` with ``ai_query``: the signature's
    columns as a ``named_struct``, ``failOnError => false`` (the result is a struct
    ``{result, errorMessage}``, so a bad row does not fail the query).

    Example::

        print(ai_query_sql("iris", signature, "main.default.iris_input"))
    """
    if signature.is_tensor or not signature.columns or any(c.name is None for c in signature.columns):
        raise ConfigurationError("ai_query needs a signature with named input columns")
    fields = ",\n    ".join(f"{_sql_string(str(c.name))}, {_sql_ident(str(c.name))}" for c in signature.columns)
    return (
        f"SELECT\n  *,\n  ai_query(\n    {_sql_string(endpoint)},\n    named_struct(\n    {fields}\n    ),\n"
        f"    failOnError => false\n  ) AS {_sql_ident(prediction_col)}\n"
        f"FROM {'.'.join(_sql_ident(part) for part in table.split('.'))}"
    )


def endpoint_ai_query_sql(
    endpoint: str, table: str, *, model_uri: str | None = None, registry_uri: str | None = None
) -> str:
    """:func:`ai_query_sql` with the signature of ``model_uri`` (from the registry), else of the
    endpoint itself (from the workspace)."""
    from . import _sync
    from ._predictor import Predictor
    from ._signatures import from_registry

    if model_uri is not None:
        signature, _ = _sync.run(from_registry(model_uri, registry_uri))
    else:
        signature = Predictor.from_endpoint(endpoint, registry_uri=registry_uri).get_signature()
    if signature is None:
        raise ConfigurationError(f"no signature for endpoint {endpoint!r}: pass --model-uri")
    return ai_query_sql(endpoint, signature, table)


def _sql_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_ident(s: str) -> str:
    return "`" + s.replace("`", "``") + "`"


def run_batch(
    input_path: str,
    output_path: str,
    predictor: Predictor,
    *,
    master: str = "local[*]",
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Any = None,
) -> tuple[int, int]:
    """Score a Parquet or CSV table into a Parquet directory; returns (rows, rows with an error).

    An existing output is refused unless ``overwrite``. ``progress(done_tasks, total_tasks)`` is
    called as Spark's tasks finish. Spark writes the output with its commit protocol: a failed
    job leaves no ``_SUCCESS`` marker and no committed files.

    Example::

        run_batch("iris.csv", "scored.parquet", Predictor.from_endpoint("iris"), master="local[2]")
    """
    lower = input_path.lower().rstrip("/")
    if not (lower.endswith((".csv", ".parquet", ".pq")) or os.path.isdir(input_path)):
        raise ConfigurationError(f"cannot tell the format of {input_path!r}: name it .csv or .parquet")
    if not os.path.exists(input_path):
        raise ConfigurationError(f"no such input: {input_path!r}")
    if os.path.exists(output_path) and not overwrite:
        raise ConfigurationError(f"{output_path!r} exists; pass --overwrite to replace it")
    spark = spark_session(master)
    reader = spark.read
    df = reader.csv(input_path, header=True, inferSchema=True) if lower.endswith(".csv") else reader.parquet(input_path)
    scored = score(df, predictor, params=params)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_tasks, args=(spark, progress, stop), daemon=True) if progress else None
    if watcher is not None:
        watcher.start()
    try:
        scored.write.mode("overwrite" if overwrite else "errorifexists").parquet(output_path)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(5)
    written = spark.read.parquet(output_path)
    return written.count(), written.where(written[scored.columns[-1]].isNotNull()).count()


def _watch_tasks(spark: SparkSession, progress: Any, stop: threading.Event) -> None:
    """Report (tasks done, tasks) of the running stages whenever it changes."""
    tracker = spark.sparkContext.statusTracker()
    last = None
    while not stop.wait(1.0):
        stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        done = sum(s.numCompletedTasks for s in stages if s is not None)
        total = sum(s.numTasks for s in stages if s is not None)
        if total and (done, total) != last:
            last = (done, total)
            progress(done, total)
