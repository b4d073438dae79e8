"""The driver's side of ``score``: the job's settings, input columns and prediction type."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from .._constants import DEFAULT_SPARK_BATCH_ROWS, DEFAULT_SPARK_CONCURRENCY
from .._exceptions import ConfigurationError
from .._types import ColumnSpec, Signature, TensorSpec
from ._job import Job
from ._worker import score_partition

if TYPE_CHECKING:
    from .._pickling import Portable
    from .._predictor import Predictor

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
    _refuse_duplicates(df)
    clash = [c for c in (prediction_col, error_col) if c in df.columns]
    if clash:
        raise ConfigurationError(f"the DataFrame already has column(s) {clash}; pass other prediction_col/error_col")
    settings, signature = _driver_settings(predictor)
    columns = _input_columns(signature, df.columns)
    if settings.settings.mode == "endpoint" and batch_rows is None:
        batch_rows = DEFAULT_SPARK_BATCH_ROWS
    # The worker's Predictor sends each of our calls as it is: we batch and bound concurrency here.
    job = Job(
        key=uuid.uuid4().hex, settings=settings.with_batching(None), columns=columns, params=params,
        batch_rows=batch_rows, concurrency=concurrency, fail_on_error=fail_on_error,
        out_type=prediction_type(signature), prediction_col="_predictor_prediction", error_col="_predictor_error",
    )
    if settings.token is not None and len(pickle.dumps(job)) > _MAX_CLOSURE_WITH_TOKEN:
        # PySpark broadcasts a closure over 1 MiB through a temporary file: never a token on disk.
        raise ConfigurationError("the scoring job is too large to ship a token in memory (a very wide signature?)")
    # Why the renaming: Spark parses the names of mapInPandas' output schema, so a legal column name
    # with a dot or a backtick fails there. Columns the model does not read travel under plain
    # names and get theirs back afterwards; the model's own inputs keep their names.
    names = df.columns
    plain = [c if c in columns else f"_predictor_extra_{i}" for i, c in enumerate(names)]
    renamed = df.toDF(*plain)
    added = [T.StructField(job.prediction_col, job.out_type, True), T.StructField(job.error_col, T.StringType(), True)]
    schema = T.StructType([*renamed.schema.fields, *added])
    return renamed.mapInPandas(partial(score_partition, job), schema).toDF(*names, prediction_col, error_col)


def _refuse_duplicates(df: DataFrame) -> None:
    """Two columns of one name (a join makes them) fail late in Arrow: refuse them now, naming them.
    Spark compares names without case unless ``spark.sql.caseSensitive`` is on."""
    fold = str(df.sparkSession.conf.get("spark.sql.caseSensitive", "false")).lower() != "true"
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for name in df.columns:
        key = name.lower() if fold else name
        if key in seen:
            duplicates.append(f"{seen[key]!r} and {name!r}" if seen[key] != name else repr(name))
        seen.setdefault(key, name)
    if duplicates:
        raise ConfigurationError(f"the DataFrame has duplicate column names: {', '.join(duplicates)}; "
                                 "rename or drop one of each before scoring")


def _driver_settings(predictor: Predictor) -> tuple[Portable, Signature | None]:
    """What to ship, with a model alias pinned to the version it points at now."""
    from .._http import sync as _sync
    from .._mlflow import resolve_registry_uri
    from .._predictor import portable
    from .._schema.signatures import from_registry
    from .._settings import Identity

    shipped = portable(predictor)
    if predictor.mode == "direct" or (predictor.model_uri is not None and predictor.validate):
        assert predictor.model_uri is not None
        registry = resolve_registry_uri(predictor.registry_uri)
        # Read from the registry, not by loading the model: the driver need not hold it.
        signature, ref = _sync.run(from_registry(predictor.model_uri, registry))
        pinned = shipped.with_settings(model_uri=f"models:/{ref.name}/{ref.version}", registry_uri=registry)
        if predictor.mode == "direct":
            return pinned, signature
        # Endpoint mode: the workers validate with this signature, without asking the registry.
        return replace(pinned, identity=Identity(signature, ref.name, ref.version, ref.run_id)), signature
    signature = predictor.get_signature() if predictor.validate else None
    return portable(predictor), signature  # now with the signature fetched


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

