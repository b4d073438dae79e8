"""Baselines: a model version's training data (logged with ``mlflow.log_input``), a file, or a table.

A training run that logs ``mlflow.data.from_pandas(df, source=<artifact URI of the same frame as
Parquet or CSV>, ...)`` with ``context="training"`` gives its versions a baseline with no
configuration (the demo iris model does). A table named ``catalog.schema.table`` (a Unity Catalog
table in a workspace; Spark's own ``spark_catalog.<database>.<table>`` locally) is read through
Spark, sampled to :data:`~client._constants.DEFAULT_BASELINE_MAX_ROWS` rows. A baseline's columns:
the signature's inputs, and optionally ``prediction`` (for prediction drift) and ``label``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import BaselineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRAINING", "check_baseline", "is_table_name", "read_baseline", "read_baseline_file", "read_baseline_table",
           "signature_types", "training_baseline"]

log = logging.getLogger(__name__)

#: ``baseline="training"``: each version's own training data.
TRAINING = "training"
_CONTEXT_TAG = "mlflow.data.context"
# Three identifiers, each plain or `back-quoted` (Unity Catalog names may hold dashes when quoted).
_PART = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_TABLE_NAME = re.compile(rf"{_PART}\.{_PART}\.{_PART}")


def read_baseline_file(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file (or a directory of Parquet files) as a frame.

    Example::

        read_baseline_file("baseline.parquet")
    """
    import pandas as pd

    text = str(path)
    try:
        if text.lower().endswith(".csv"):
            return pd.read_csv(text)
        if text.lower().endswith((".parquet", ".pq")) or Path(text).is_dir():
            return pd.read_parquet(text)
    except (OSError, ValueError, ImportError) as err:
        raise BaselineError(f"cannot read it ({type(err).__name__}: {err})", source=text) from err
    raise BaselineError("not a .csv or .parquet file", source=text)


def is_table_name(spec: str) -> bool:
    """``catalog.schema.table``: three identifiers, not a file that exists nor a ``.csv`` or
    ``.parquet`` name (``train.v2.csv`` is a file)."""
    text = str(spec)
    return (bool(_TABLE_NAME.fullmatch(text)) and not text.lower().endswith((".csv", ".parquet", ".pq"))
            and not Path(text).exists())


def read_baseline_table(name: str, spark: Any = None, *, max_rows: int | None = None) -> pd.DataFrame:
    """The table ``catalog.schema.table`` as a frame, through Spark (the active session, else
    ``client.spark.spark_session()``): at most ``max_rows`` rows (default
    :data:`~client._constants.DEFAULT_BASELINE_MAX_ROWS`), a sample with a fixed seed when the table
    has more.

    Example::

        read_baseline_table("main.ml.iris_training")            # in a workspace: Unity Catalog
        read_baseline_table("spark_catalog.default.iris_train")  # locally: Spark's session catalog
    """
    from .._constants import BASELINE_SAMPLE_SEED, DEFAULT_BASELINE_MAX_ROWS

    cap = DEFAULT_BASELINE_MAX_ROWS if max_rows is None else max_rows
    try:
        from pyspark.errors import AnalysisException
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise BaselineError("a table baseline is read through Spark, and pyspark is not installed",
                            source=name) from err
    if spark is None:
        spark = SparkSession.getActiveSession()
    if spark is None:
        from ..spark import spark_session

        spark = spark_session()
    try:
        table = spark.table(name)
        rows = table.count()
        if rows > cap:  # sample() keeps each row with a probability: ask for a little more, then cut
            table = table.sample(fraction=min(1.0, cap * 1.1 / rows), seed=BASELINE_SAMPLE_SEED).limit(cap)
            log.info("baseline %s: %d rows, a sample of %d read", name, rows, cap)
        return table.toPandas()
    except AnalysisException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BaselineError(f"cannot read the table ({first})", source=name) from err


def read_baseline(spec: str | Path, spark: Any = None) -> pd.DataFrame:
    """A baseline named by the user: a table (:func:`is_table_name`) or a CSV/Parquet file.

    Example::

        read_baseline("main.ml.iris_training")  # or "baseline.parquet"
    """
    if is_table_name(str(spec)):
        return read_baseline_table(str(spec), spark)
    return read_baseline_file(spec)


def check_baseline(frame: pd.DataFrame, features: Iterable[str], source: str) -> pd.DataFrame:
    """``frame`` if it has every one of ``features``; else ``BaselineError`` naming the missing ones."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        has = ", ".join(map(repr, list(frame.columns)[:12]))
        raise BaselineError(f"lacks the signature's column(s) {', '.join(map(repr, missing))} (it has {has})",
                            source=source, missing=missing)
    if not len(frame):
        raise BaselineError("has no rows", source=source)
    return frame


def signature_types(model_uri: str) -> dict[str, str]:
    """The model's input columns and their types, from its logged signature (MLflow session held
    by the caller). Empty for a model without a column signature."""
    import mlflow.models

    info = mlflow.models.get_model_info(model_uri)
    if info.signature is None or info.signature.inputs is None:
        return {}
    out = {}
    for col in info.signature.inputs.to_dict():
        if col.get("name") is not None and "type" in col:
            out[str(col["name"])] = str(col["type"])
    return out


def _source_uri(dataset: Any) -> str | None:
    try:
        source = json.loads(dataset.source or "{}")
    except ValueError:
        return None
    for key in ("uri", "url", "path"):
        if isinstance(source.get(key), str):
            return str(source[key])
    return None


def training_baseline(model_name: str, version: str) -> tuple[pd.DataFrame, str]:
    """The training data ``model_name`` version ``version``'s run logged (``mlflow.log_input``,
    ``context="training"``) and where it came from (MLflow session held by the caller).

    Raises ``BaselineError`` when the run logged none, or one that cannot be read back (a dataset
    logged without a loadable source, such as ``from_pandas(df)`` alone, keeps only its schema).
    """
    import mlflow

    where = f"training data of {model_name} version {version}"
    try:
        mv = mlflow.MlflowClient().get_model_version(model_name, str(version))
        run = mlflow.get_run(mv.run_id) if mv.run_id else None
    except Exception as err:
        raise BaselineError(f"cannot look it up ({type(err).__name__}: {err})", source=where) from err
    inputs = run.inputs.dataset_inputs if run is not None and run.inputs is not None else []
    training = [d for d in inputs if any(t.key == _CONTEXT_TAG and t.value == "training" for t in d.tags or [])]
    if not training:
        raise BaselineError("the version's run logged no training dataset (mlflow.log_input(..., context='training'))",
                            source=where)
    dataset = training[0].dataset
    uri = _source_uri(dataset)
    if uri is None:
        raise BaselineError(f"dataset {dataset.name!r} has no loadable source ({dataset.source_type})", source=where)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except Exception as err:
        raise BaselineError(f"cannot download {uri} ({type(err).__name__}: {err})", source=where) from err
    return read_baseline_file(local), f"{where} ({dataset.name})"
