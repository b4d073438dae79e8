"""Unpacking an AI Gateway inference table (``<catalog>.<schema>.<prefix>_payload``) into records.

The payload table holds one row per request with the raw request and response JSON; monitoring
needs one row per scored record with its features, its prediction and the model version that
answered. :func:`unpack_payload` does that on Spark (``mapInPandas``, one pass over the table);
the per-row parsing below is pure and tested on its own.

Records frame (what the monitoring reads): ``request_time``, ``databricks_request_id``,
``served_entity``, ``model_version``, ``status_code``, ``error``, ``execution_duration_ms``, one
column per input feature, ``prediction``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .._exceptions import ConfigurationError
from .._types import Signature

__all__ = ["PAYLOAD_SCHEMA", "RECORD_METADATA", "PayloadSummary", "UnpackedPayload", "parse_payload_row",
           "unpack_payload"]

#: The documented columns of an AI Gateway payload table and their types.
PAYLOAD_SCHEMA = T.StructType([
    T.StructField("databricks_request_id", T.StringType()),
    T.StructField("request_date", T.DateType()),
    T.StructField("client_request_id", T.StringType()),
    T.StructField("request_time", T.TimestampType()),
    T.StructField("status_code", T.IntegerType()),
    T.StructField("sampling_fraction", T.DoubleType()),
    T.StructField("execution_duration_ms", T.LongType()),
    T.StructField("request", T.StringType()),
    T.StructField("response", T.StringType()),
    T.StructField("logging_error_codes", T.ArrayType(T.StringType())),
    T.StructField("served_entity_id", T.StringType()),
    T.StructField("requester", T.StringType()),
])

#: The records frame's columns before the features (then the features, then ``prediction``).
RECORD_METADATA = ("request_time", "databricks_request_id", "served_entity", "model_version", "status_code", "error",
                   "execution_duration_ms")

_TYPES: dict[str, T.DataType] = {"double": T.DoubleType(), "long": T.LongType(), "boolean": T.BooleanType(),
                                 "string": T.StringType()}
#: MLflow signature types -> the four feature types we write.
_FROM_SIGNATURE = {"double": "double", "float": "double", "integer": "long", "long": "long", "boolean": "boolean",
                   "string": "string"}


class UnreadablePayload(ValueError):
    """Why one payload row gives no records (the reason is its message)."""


# --- one row, pure ----------------------------------------------------------------------------


def _records(request: Any) -> list[dict[str, Any]]:
    """The scored records of a parsed request body, as dicts (the four documented input shapes)."""
    if not isinstance(request, dict):
        raise UnreadablePayload("request is not a JSON object")
    if "dataframe_split" in request:
        split = request["dataframe_split"]
        columns, data = (split.get("columns"), split.get("data")) if isinstance(split, dict) else (None, None)
        if not isinstance(columns, list) or not isinstance(data, list) or not all(
                isinstance(r, list) and len(r) == len(columns) for r in data):
            raise UnreadablePayload("dataframe_split needs columns and rows of as many values")
        return [dict(zip(columns, row, strict=True)) for row in data]
    for key in ("dataframe_records", "instances", "inputs"):
        if key not in request:
            continue
        value = request[key]
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return value
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):  # columnar
            lengths = {len(v) for v in value.values()}
            if len(lengths) == 1:
                return [dict(zip(value, row, strict=True)) for row in zip(*value.values(), strict=True)]
        raise UnreadablePayload(f"{key} holds no named columns (tensor inputs are not unpacked)")
    raise UnreadablePayload("request has none of dataframe_split, dataframe_records, instances, inputs")


def _predictions(response: Any) -> list[Any]:
    """One prediction per record: ``predictions`` (or ``outputs``, or a bare list); a record's dict
    with a ``prediction`` key (a classifier's label beside its probabilities) gives that label."""
    found = response.get("predictions", response.get("outputs")) if isinstance(response, dict) else response
    if isinstance(found, dict) and all(isinstance(v, list) for v in found.values()):  # columnar outputs
        found = [dict(zip(found, row, strict=True)) for row in zip(*found.values(), strict=True)]
    if not isinstance(found, list):
        raise UnreadablePayload("response has no predictions list")
    return [p["prediction"] if isinstance(p, dict) and "prediction" in p else p for p in found]


def _error_of(status: int, response: str | None) -> str:
    try:
        body = json.loads(response) if response else None
    except ValueError:
        body = None
    message = body.get("message") or body.get("error_code") if isinstance(body, dict) else None
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _parsed(text: str, what: str, read: Callable[[Any], list[Any]]) -> list[Any]:
    """``read`` of the JSON ``text``; ``UnreadablePayload`` when it is not JSON (or ``read`` refuses it)."""
    try:
        return read(json.loads(text))
    except UnreadablePayload:
        raise
    except ValueError as exc:
        raise UnreadablePayload(f"{what} is not JSON") from exc


def parse_payload_row(request: str | None, response: str | None, status_code: int,
                      logging_error_codes: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[Any],
                                                                                   str | None]:
    """``(records, predictions, error)`` of one payload row; raises :class:`UnreadablePayload`.

    A failed request (status not 2xx) keeps its records, with no predictions and the error.

    Example::

        parse_payload_row('{"dataframe_records": [{"x": 1}]}', '{"predictions": [0]}', 200)
        # ([{"x": 1}], [0], None)
    """
    codes = ", ".join(logging_error_codes or ()) or "no logging error code"
    if request is None:
        raise UnreadablePayload(f"request not logged ({codes})")
    records = _parsed(request, "request", _records)
    if not 200 <= status_code < 300:
        return records, [None] * len(records), _error_of(status_code, response)
    if response is None:
        raise UnreadablePayload(f"response not logged ({codes})")
    predictions = _parsed(response, "response", _predictions)
    if len(predictions) != len(records):
        raise UnreadablePayload(f"{len(records)} records but {len(predictions)} predictions")
    return records, predictions, None


def _convert(value: Any, kind: str) -> Any:
    """``value`` as a ``kind`` column holds it; ``None`` when it is not one (a data-quality finding
    for the monitor, not a parsing failure)."""
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if kind == "long":
        return int(number) if math.isfinite(number) and number.is_integer() else None
    return number


def _kind_of(values: Sequence[Any]) -> str:
    seen = [v for v in values if v is not None]
    if seen and all(isinstance(v, bool) for v in seen):
        return "boolean"
    if seen and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return "double"
    return "string"


# --- on Spark ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    features: tuple[tuple[str, str], ...]
    prediction: str
    entities: dict[str, tuple[str, str]]


def _unpack_partition(job: _Job, batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    names = [f"_f{i}" for i in range(len(job.features))]
    for batch in batches:
        out: dict[str, list[Any]] = {c: [] for c in (*RECORD_METADATA, *names, "_prediction", "_reason")}
        rows = zip(batch["request_time"], batch["databricks_request_id"], batch["served_entity_id"],
                   batch["status_code"], batch["execution_duration_ms"], batch["request"], batch["response"],
                   batch["logging_error_codes"], strict=True)
        for when, rid, entity_id, status, duration, request, response, codes in rows:
            served, version = job.entities.get(entity_id, (None, None)) if entity_id is not None else (None, None)
            status = int(status)
            try:
                records, predictions, error = parse_payload_row(
                    None if pd.isna(request) else request, None if pd.isna(response) else response, status,
                    list(codes) if codes is not None else None)
                reason = None
            except UnreadablePayload as exc:
                records, predictions, error, reason = [{}], [None], None, str(exc)
            for record, prediction in zip(records, predictions, strict=True):
                for col, value in zip(RECORD_METADATA, (when, rid, served, version, status, error,
                                                        None if pd.isna(duration) else float(duration)), strict=True):
                    out[col].append(value)
                for name, (feature, kind) in zip(names, job.features, strict=True):
                    out[name].append(_convert(record.get(feature), kind))
                out["_prediction"].append(_convert(prediction, job.prediction))
                out["_reason"].append(reason)
        yield pd.DataFrame(out)


@dataclass(frozen=True)
class PayloadSummary:
    """What one pass over the payload gave: records, and payload rows not unpacked by reason."""

    records: int
    unreadable: int
    reasons: dict[str, int]

    def text(self) -> str:
        """``"1200 records; 3 payload rows not unpacked: request is not JSON (2), ..."``"""
        if not self.unreadable:
            return f"{self.records} records; every payload row unpacked"
        why = ", ".join(f"{r} ({n})" for r, n in sorted(self.reasons.items()))
        return f"{self.records} records; {self.unreadable} payload rows not unpacked: {why}"


@dataclass(frozen=True)
class UnpackedPayload:
    """``records`` (the records frame) and ``unreadable`` (payload rows not unpacked, with ``reason``)."""

    records: DataFrame
    unreadable: DataFrame
    _all: DataFrame

    def summary(self) -> PayloadSummary:
        """Count records and unreadable rows (one Spark job). Report it with the records: a payload
        row not unpacked is a gap in the data, not a healthy model."""
        counts = {r["_reason"]: int(r["count"]) for r in self._all.groupBy("_reason").count().collect()}
        records = counts.pop(None, 0)
        return PayloadSummary(records, sum(counts.values()), counts)


def _served_entities(served_entities: Mapping[str, tuple[str, str]] | DataFrame | None) -> dict[str, tuple[str, str]]:
    if served_entities is None:
        return {}
    if isinstance(served_entities, DataFrame):
        need = {"served_entity_id", "served_entity_name", "entity_version"}
        if missing := sorted(need - set(served_entities.columns)):
            raise ConfigurationError(f"the served entities table lacks column(s) {missing} "
                                     "(expected system.serving.served_entities' columns)")
        rows = served_entities.select(*sorted(need)).distinct().collect()
        return {r["served_entity_id"]: (r["served_entity_name"], str(r["entity_version"])) for r in rows}
    return {str(k): (str(v[0]), str(v[1])) for k, v in served_entities.items()}


def _feature_kinds(features: Mapping[str, str] | Signature | None, payload: DataFrame,
                   sample_rows: int) -> tuple[tuple[tuple[str, str], ...], str]:
    """Feature names and types (given, from a signature, or from the first readable rows), and
    the prediction's type (from those rows)."""
    # Answered requests only: a refused one may carry exactly the values its model did not take.
    sample = payload.where(F.col("request").isNotNull() & F.col("status_code").between(200, 299)) \
        .select("request", "response", "status_code").limit(sample_rows).collect()
    records: list[dict[str, Any]] = []
    predictions: list[Any] = []
    for row in sample:
        try:
            r, p, _ = parse_payload_row(row["request"], row["response"], int(row["status_code"]))
        except UnreadablePayload:
            continue
        records += r
        predictions += p
    prediction = _kind_of(predictions)
    if isinstance(features, Signature):
        if not features.has_inputs or features.is_tensor or any(c.name is None for c in features.columns):
            raise ConfigurationError("unpack_payload takes a signature with named input columns")
        return tuple((str(c.name), _FROM_SIGNATURE.get(c.type, "string")) for c in features.columns), prediction
    if features is not None:
        bad = {n: k for n, k in features.items() if k not in _TYPES}
        if bad:
            raise ConfigurationError(f"feature types must be one of {sorted(_TYPES)}, got {bad}")
        return tuple(features.items()), prediction
    if not records:
        raise ConfigurationError(f"no readable request in the first {sample_rows} payload rows to take the features "
                                 "from: pass features={name: type}")
    names = list(dict.fromkeys(k for r in records for k in r))
    return tuple((n, _kind_of([r.get(n) for r in records])) for n in names), prediction


def unpack_payload(
    payload: DataFrame,
    served_entities: Mapping[str, tuple[str, str]] | DataFrame | None = None,
    *,
    features: Mapping[str, str] | Signature | None = None,
    prediction_type: str | None = None,
    sample_rows: int = 1000,
) -> UnpackedPayload:
    """An inference table's payload rows as the records frame: one row per scored record.

    ``payload`` has the documented payload-table columns (:data:`PAYLOAD_SCHEMA`). Features come
    from each request's ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``;
    ``prediction`` from the response's ``predictions`` (a classifier's ``{"prediction": label,
    ...}`` gives the label). ``served_entities`` maps ``served_entity_id`` to ``(served entity
    name, model version)``: a dict, or ``system.serving.served_entities`` as a DataFrame; an
    unknown id leaves both ``None``. A request that failed (status not 2xx) keeps its records,
    without prediction, with ``error``. Feature types (``double``, ``long``, ``boolean``,
    ``string``) come from ``features`` (a mapping or the model's signature) or else from the first
    ``sample_rows`` answered (2xx) rows, as does the prediction's unless ``prediction_type`` is given; a value not
    of its column's type becomes null.

    A row whose request or response is NULL (see ``logging_error_codes``) or not JSON of a known
    shape gives no records: it is in ``unreadable`` with its ``reason``, and counted by
    :meth:`UnpackedPayload.summary`.

    Example::

        payload = spark.read.table("main.serving_logs.iris_payload")
        unpacked = unpack_payload(payload, spark.read.table("system.serving.served_entities"))
        unpacked.records.write.saveAsTable("main.serving_logs.iris_records")
        print(unpacked.summary().text())   # 1200 records; 3 payload rows not unpacked: request is not JSON (3)
    """
    missing = [f.name for f in PAYLOAD_SCHEMA.fields if f.name not in payload.columns]
    if missing:
        raise ConfigurationError(f"the payload table lacks column(s) {missing}")
    feats, guessed = _feature_kinds(features, payload, sample_rows)
    prediction = prediction_type or guessed
    if prediction not in _TYPES:
        raise ConfigurationError(f"prediction_type must be one of {sorted(_TYPES)}, got {prediction!r}")
    clash = [n for n, _ in feats if n in (*RECORD_METADATA, "prediction")]
    if clash:
        raise ConfigurationError(f"feature(s) {clash} share a name with a records-frame column")
    job = _Job(feats, prediction, _served_entities(served_entities))
    # Placeholder names: Spark parses mapInPandas' output names, so a feature named with a dot fails there.
    schema = T.StructType([
        T.StructField("request_time", T.TimestampType()), T.StructField("databricks_request_id", T.StringType()),
        T.StructField("served_entity", T.StringType()), T.StructField("model_version", T.StringType()),
        T.StructField("status_code", T.IntegerType()), T.StructField("error", T.StringType()),
        T.StructField("execution_duration_ms", T.DoubleType()),
        *(T.StructField(f"_f{i}", _TYPES[kind]) for i, (_, kind) in enumerate(feats)),
        T.StructField("_prediction", _TYPES[prediction]), T.StructField("_reason", T.StringType()),
    ])
    columns = ["request_time", "databricks_request_id", "served_entity_id", "status_code", "execution_duration_ms",
               "request", "response", "logging_error_codes"]
    unpacked = payload.select(*columns).mapInPandas(partial(_unpack_partition, job), schema)
    everything = unpacked.toDF(*RECORD_METADATA, *(n for n, _ in feats), "prediction", "_reason")
    records = everything.where(F.col("_reason").isNull()).drop("_reason")
    unreadable = everything.where(F.col("_reason").isNotNull()).select(
        "request_time", "databricks_request_id", "served_entity", "model_version", "status_code",
        F.col("_reason").alias("reason"))
    return UnpackedPayload(records, unreadable, everything)
