"""Test-only classifier returning a label and class probabilities, logged with an input example.

``main.default.animals@champion``: columns ``size`` (double), ``color`` (string), ``legs``
(long); the output is a DataFrame ``label, probability_bird, probability_cat, probability_dog``,
so serving answers ``[{"label": ..., "probability_bird": ..., ...}]``.
"""

from __future__ import annotations

import math

import mlflow.pyfunc

PROBA_MODEL_NAME = "main.default.animals"
PROBA_MODEL_URI = f"models:/{PROBA_MODEL_NAME}@champion"
CLASSES = ("bird", "cat", "dog")
EXAMPLE = [
    {"size": 0.3, "color": "brown", "legs": 2},
    {"size": 0.5, "color": "black", "legs": 4},
    {"size": 1.2, "color": "white", "legs": 4},
]


def probabilities(row: dict) -> dict[str, float]:
    """What the model returns for one row: a softmax over three simple scores."""
    scores = [3.0 - row["legs"], 2.0 - abs(row["size"] - 0.5) * 4, row["size"] * 2 + (row["color"] == "white")]
    exps = [math.exp(s) for s in scores]
    return {c: e / sum(exps) for c, e in zip(CLASSES, exps, strict=True)}


class AnimalModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[override]
        import pandas as pd

        rows = []
        for _, r in model_input.iterrows():
            p = probabilities({"size": float(r["size"]), "color": str(r["color"]), "legs": int(r["legs"])})
            rows.append({"label": max(p, key=lambda c: p[c]), **{f"probability_{c}": p[c] for c in CLASSES}})
        return pd.DataFrame(rows)


def register_proba_model(registry_uri: str) -> str:
    import sys

    import cloudpickle
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from client._mlflow import activate, ensure_experiment
    from client.local.demo import alias_exists

    activate(registry_uri)
    if alias_exists(PROBA_MODEL_NAME, "champion", registry_uri):
        return PROBA_MODEL_URI
    example = pd.DataFrame(EXAMPLE).astype({"size": "float64", "color": "object", "legs": "int64"})
    signature = infer_signature(example, AnimalModel().predict(None, example))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ensure_experiment("/predictor-tests")
    with mlflow.start_run(run_name="animals"):
        info = mlflow.pyfunc.log_model(name="model", python_model=AnimalModel(), signature=signature,
                                       input_example=example, registered_model_name=PROBA_MODEL_NAME)
    MlflowClient().set_registered_model_alias(PROBA_MODEL_NAME, "champion", str(info.registered_model_version))
    return PROBA_MODEL_URI
