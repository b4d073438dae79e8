"""Test-only models: a pyfunc with a mixed-type column signature, optional column and a param."""

from __future__ import annotations

import mlflow.pyfunc

MIXED_MODEL_NAME = "main.default.mixed"
MIXED_MODEL_URI = f"models:/{MIXED_MODEL_NAME}@champion"


class MixedModel(mlflow.pyfunc.PythonModel):
    """One deterministic number per row, computed from every column and the param."""

    def predict(self, context, model_input, params=None):  # type: ignore[override]
        import pandas as pd

        threshold = float((params or {}).get("threshold", 0.5))
        out = []
        for _, row in model_input.iterrows():
            t = pd.Timestamp(row["t"])
            note = row.get("note") if "note" in model_input.columns else None
            note_len = len(note) if isinstance(note, str) else 0
            out.append(
                float(row["x"])
                + float(row["f"])
                + int(row["n"])
                + len(str(row["s"]))
                + (1 if bool(row["b"]) else 0)
                + t.day
                + note_len
                + threshold
            )
        return out


def register_mixed_model(registry_uri: str | None = None) -> str:
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from client._mlflow import activate, ensure_experiment, resolve_registry_uri
    from client.local.demo import alias_exists

    uri = resolve_registry_uri(registry_uri)
    activate(uri)
    if alias_exists(MIXED_MODEL_NAME, "champion", uri):
        return MIXED_MODEL_URI
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec("double", "x"),
                ColSpec("float", "f"),
                ColSpec("long", "n"),
                ColSpec("string", "s"),
                ColSpec("boolean", "b"),
                ColSpec("datetime", "t"),
                ColSpec("string", "note", required=False),
            ]
        ),
        outputs=Schema([ColSpec("double")]),
        params=ParamSchema([ParamSpec("threshold", "double", 0.5)]),
    )
    import sys

    import cloudpickle

    # Pickle MixedModel by value so that loading it does not need tests/ on sys.path.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ensure_experiment("/predictor-tests")
    with mlflow.start_run(run_name="mixed"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=MixedModel(),
            signature=signature,
            registered_model_name=MIXED_MODEL_NAME,
        )
    MlflowClient().set_registered_model_alias(MIXED_MODEL_NAME, "champion", str(info.registered_model_version))
    return MIXED_MODEL_URI


def mixed_expected(row: dict, threshold: float = 0.5) -> float:
    """What MixedModel returns for one row given as plain Python values."""
    import pandas as pd

    note = row.get("note")
    return (
        float(row["x"])
        + float(row["f"])
        + int(row["n"])
        + len(str(row["s"]))
        + (1 if row["b"] else 0)
        + pd.Timestamp(row["t"]).day
        + (len(note) if isinstance(note, str) else 0)
        + threshold
    )


#: The demo agent behind MLflow's two legacy chat interfaces (``client/local/demo_agent.py``).
CHAT_AGENT_NAME = "main.default.assistant_chat_agent"  # ChatAgent, agent/v2/chat
CHAT_MODEL_NAME = "main.default.assistant_chat_model"  # ChatModel, agent/v1/chat (chat completions)


def register_chat_demos(registry_uri: str) -> dict[str, str]:
    """Register ``IrisChatAgent`` and ``IrisChatModel``; ``{format: models:/ URI}``. Idempotent."""
    from mlflow import MlflowClient

    from client._mlflow import ensure_experiment, mlflow_session
    from client.local.demo import alias_exists
    from client.local.demo_agent import IrisChatAgent, IrisChatModel

    uris = {}
    with mlflow_session(registry_uri) as uri:
        for fmt, name, model in (("chat_agent", CHAT_AGENT_NAME, IrisChatAgent()),
                                 ("completions", CHAT_MODEL_NAME, IrisChatModel())):
            uris[fmt] = f"models:/{name}@champion"
            if alias_exists(name, "champion", uri):
                continue
            ensure_experiment("/predictor-tests")
            with mlflow.start_run(run_name=name.rsplit(".", 1)[-1]):
                # MLflow gives both interfaces their signature, input example and metadata.task;
                # pinned requirements skip its slow inference (a subprocess importing the model).
                info = mlflow.pyfunc.log_model(name="agent", python_model=model, registered_model_name=name,
                                               pip_requirements=[f"mlflow=={mlflow.__version__}"])
            MlflowClient().set_registered_model_alias(name, "champion", str(info.registered_model_version))
    return uris
