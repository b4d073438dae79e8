"""What the demo iris model (``main.default.iris@champion``) answers, checked.

Each row's prediction is ``{"prediction": <class name>, "probability_setosa": ..., ...}``:
:func:`iris_labels` checks that shape (three probabilities in [0, 1] summing to 1, the named class
the most probable) and returns the class names, for tests to compare.
"""

from __future__ import annotations

import math
from typing import Any

IRIS_CLASSES = ("setosa", "versicolor", "virginica")
IRIS_OUTPUT_COLUMNS = ("prediction", *(f"probability_{c}" for c in IRIS_CLASSES))


def iris_label(prediction: Any) -> str:
    """The class name of one row's prediction, after checking the prediction is well formed."""
    assert isinstance(prediction, dict) and tuple(prediction) == IRIS_OUTPUT_COLUMNS, prediction
    probs = {c: prediction[f"probability_{c}"] for c in IRIS_CLASSES}
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs.values()), prediction
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9), prediction
    assert prediction["prediction"] == max(probs, key=lambda c: probs[c]), prediction
    return str(prediction["prediction"])


def iris_labels(predictions: Any) -> list[str]:
    """The class names of a ``predictions`` list, each row checked as in :func:`iris_label`."""
    assert isinstance(predictions, list), predictions
    return [iris_label(p) for p in predictions]
