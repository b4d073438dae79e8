"""Defaults and dropdown choices for the form: the model's input example, and hints.

MLflow stores the input example next to the model (``input_example.json``); reading it needs
MLflow, imported here lazily, so ``import client`` stays light. Only that small file and
``MLmodel`` are downloaded, never the weights.

Hints come from ``PREDICTOR_FIELD_CHOICES``, a JSON object ``{"column": ["a", "b"], ...}``:
those columns become dropdowns limited to the listed values. String columns of a multi-row
input example become dropdowns *suggesting* the example's values (other values allowed).

Example::

    rows = load_example_rows("models:/main.default.iris@champion")   # [{"sepal length (cm)": 5.1, ...}, ...]
    fields = form_fields(signature, rows, os.environ)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from client import Signature
from frontends.core.form import Field, build_fields

__all__ = ["choices_hint", "form_fields", "load_example_rows", "suggestions_from_example"]

log = logging.getLogger(__name__)

CHOICES_ENV = "PREDICTOR_FIELD_CHOICES"
#: A string column with more distinct example values than this stays a text box.
MAX_SUGGESTIONS = 50


def load_example_rows(model_uri: str | None, registry_uri: str | None = None) -> list[dict[str, Any]]:
    """The model's input example as records; ``[]`` when there is none or it cannot be read."""
    if not model_uri:
        return []
    try:
        from mlflow.models import Model

        from client.registry import mlflow_session

        with mlflow_session(registry_uri):
            model = Model.load(model_uri)
            if not model.saved_input_example_info:
                return []
            example = model.load_input_example(model_uri)
    except Exception as e:  # no permission on the model (an App's service principal), offline, ...
        log.info("no input example for %s (%s)", model_uri, type(e).__name__)
        return []
    return _records(example)


def _records(example: Any) -> list[dict[str, Any]]:
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return [{str(k): _plain(v) for k, v in row.items()} for row in example.to_dict(orient="records")]
    if isinstance(example, dict):
        if all(isinstance(v, list) for v in example.values()) and example:
            n = min(len(v) for v in example.values())
            return [{str(k): _plain(v[i]) for k, v in example.items()} for i in range(n)]
        return [{str(k): _plain(v) for k, v in example.items()}]
    if isinstance(example, list) and all(isinstance(r, dict) for r in example):
        return [{str(k): _plain(v) for k, v in r.items()} for r in example]
    return []


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def suggestions_from_example(signature: Signature | None, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each string column: its distinct values in the example, when there are 2 to 50."""
    if signature is None or len(rows) < 2:
        return {}
    out: dict[str, list[str]] = {}
    for col in signature.columns:
        if col.type != "string" or col.name is None:
            continue
        seen = list(dict.fromkeys(str(r[col.name]) for r in rows if r.get(col.name) not in (None, "")))
        if 2 <= len(seen) <= MAX_SUGGESTIONS:
            out[col.name] = seen
    return out


def choices_hint(env: Mapping[str, str]) -> dict[str, list[str]]:
    """``PREDICTOR_FIELD_CHOICES`` parsed; a malformed hint is logged and ignored."""
    raw = (env.get(CHOICES_ENV) or "").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError("expected an object of lists")
    except ValueError as e:
        log.warning("ignoring %s: %s", CHOICES_ENV, e)
        return {}
    return {str(k): [str(x) for x in v] for k, v in data.items()}


def form_fields(signature: Signature | None, rows: list[dict[str, Any]], env: Mapping[str, str]) -> list[Field]:
    """The form: defaults from the example's first row, choices from the hint, then the example."""
    return build_fields(signature, example=rows[0] if rows else None, choices=choices_hint(env),
                        suggestions=suggestions_from_example(signature, rows))
