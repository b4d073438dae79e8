"""The iris demo model as served: a class name and one probability per class for every row.

``IrisClassifier`` wraps a fitted scikit-learn ``LogisticRegression`` (classes ``setosa``,
``versicolor``, ``virginica``) as an MLflow pyfunc whose output is a DataFrame::

    prediction  probability_setosa  probability_versicolor  probability_virginica
    setosa      0.982               0.018                   0.000

so Model Serving answers ``{"predictions": [{"prediction": "setosa", "probability_setosa": ...}]}``
and the apps draw the probabilities as a chart. Only the fitted coefficients are kept, pickled by
value into the logged model: serving needs numpy, pandas and MLflow, not scikit-learn or this package.
"""

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class IrisClassifier(PythonModel):
    """Class name and class probabilities of a fitted multinomial ``LogisticRegression``."""

    def __init__(self, model: Any) -> None:
        self.features = [str(c) for c in model.feature_names_in_]
        self.classes = [str(c) for c in model.classes_]
        self.coef = model.coef_.copy()  # (classes, features)
        self.intercept = model.intercept_.copy()

    # A DataFrame hint: MLflow infers no signature from it (the logged one is explicit) and does not
    # warn that the hint is missing. No `from __future__ import annotations` in this module: the hint
    # is the class itself in the by-value pickle, not a string to resolve when the model loads.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        x = model_input[self.features].to_numpy(dtype="float64")
        # The same arithmetic as LogisticRegression.predict_proba, but elementwise rather than a
        # BLAS matrix product: a row gets bit-identical probabilities whatever batch it comes in
        # (one row, 500, the whole table), so endpoint, direct and Spark answers compare exactly.
        scores = (x[:, :, None] * self.coef.T[None, :, :]).sum(axis=1) + self.intercept
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        proba = exp / exp.sum(axis=1, keepdims=True)
        out = pd.DataFrame(proba, columns=[f"probability_{c}" for c in self.classes], index=model_input.index)
        out.insert(0, "prediction", np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)])
        return out.reset_index(drop=True)
