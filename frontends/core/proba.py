"""Class probabilities in one record's prediction, whatever shape the model returns them in.

Recognised shapes (``pred`` is one row of ``predictions``):

* ``{"cat": 0.7, "dog": 0.3}``: numbers in [0, 1] that sum to 1 (other keys are ignored);
* ``{"label": "cat", "probability_cat": 0.7, "probability_dog": 0.3}``: columns named
  ``probability_*`` / ``proba_*`` / ``prob_*`` (a DataFrame output), no sum needed;
* ``{"label": "cat", "probabilities": {...} | [...]}``: a nested mapping or list
  (keys ``probabilities``, ``probability``, ``proba``, ``probs``, ``scores``);
* ``[0.7, 0.3]``: a row of ``predict_proba`` (classes named ``"0"``, ``"1"``, ...).

Anything else (a number, a label, a regression output) gives ``None``: no chart.

Example::

    class_probabilities({"label": "cat", "proba_cat": 0.7, "proba_dog": 0.3})  # {"cat": 0.7, "dog": 0.3}
    prediction_label({"proba_cat": 0.7, "proba_dog": 0.3})                     # "cat"
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["class_probabilities", "prediction_label", "single_prediction"]

_NESTED_KEYS = ("probabilities", "probability", "proba", "probs", "scores")
_PREFIXES = ("probability_", "probability.", "proba_", "prob_")
_SUM_TOLERANCE = 0.01


def single_prediction(predictions: Any) -> Any:
    """The first record's prediction out of a ``predictions`` list (or the value itself)."""
    value = predictions
    if isinstance(value, dict) and "predictions" in value:
        value = value["predictions"]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _is_distribution(values: list[float]) -> bool:
    return (len(values) >= 2 and all(0.0 <= v <= 1.0 for v in values)
            and abs(sum(values) - 1.0) <= _SUM_TOLERANCE)


def class_probabilities(pred: Any) -> dict[str, float] | None:
    """``{class: probability}`` when ``pred`` (one record's prediction) carries them, else ``None``."""
    if isinstance(pred, (list, tuple)):
        numbers = [_number(v) for v in pred]
        if any(n is None for n in numbers):
            return None
        values = [n for n in numbers if n is not None]
        return {str(i): v for i, v in enumerate(values)} if _is_distribution(values) else None
    if not isinstance(pred, dict):
        return None
    for key in _NESTED_KEYS:
        if key in pred and isinstance(pred[key], (dict, list, tuple)):
            nested = pred[key]
            if isinstance(nested, dict):
                clean = {str(k): n for k, v in nested.items() if (n := _number(v)) is not None}
                if len(clean) == len(nested) and len(clean) >= 2 and all(0 <= v <= 1 for v in clean.values()):
                    return clean
                return None
            return class_probabilities(list(nested))
    prefixed: dict[str, float] = {}
    for key, value in pred.items():
        number = _number(value)
        for prefix in _PREFIXES:
            if str(key).startswith(prefix) and number is not None:
                prefixed[str(key)[len(prefix):]] = number
    if len(prefixed) >= 2 and all(0 <= v <= 1 for v in prefixed.values()):
        return prefixed
    numeric = {str(k): n for k, v in pred.items() if (n := _number(v)) is not None}
    return numeric if _is_distribution(list(numeric.values())) else None


def prediction_label(pred: Any) -> Any:
    """What to show as "Prediction" for one record: its label, or the most probable class."""
    probs = class_probabilities(pred)
    if probs is None:
        if isinstance(pred, dict) and len(pred) == 1:
            return next(iter(pred.values()))
        return pred
    if isinstance(pred, dict):
        rest = {k: v for k, v in pred.items() if k not in _NESTED_KEYS and _number(v) is None}
        if len(rest) == 1:
            return next(iter(rest.values()))
        for key in ("label", "prediction", "class", "predicted_label"):
            if key in pred and _number(pred[key]) is None:
                return pred[key]
    return max(probs, key=lambda k: probs[k])
