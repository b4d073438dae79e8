"""Baselines: a model version's training data (logged with ``mlflow.log_input``), or a file.

A training run that logs ``mlflow.data.from_pandas(df, source=<artifact URI of the same frame as
Parquet or CSV>, ...)`` with ``context="training"`` gives its versions a baseline with no
configuration (the demo iris model does). A baseline's columns: the signature's inputs, and
optionally ``prediction`` (for prediction drift) and ``label``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import BaselineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRAINING", "check_baseline", "read_baseline_file", "signature_types", "training_baseline"]

log = logging.getLogger(__name__)

#: ``baseline="training"``: each version's own training data.
TRAINING = "training"
_CONTEXT_TAG = "mlflow.data.context"


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
