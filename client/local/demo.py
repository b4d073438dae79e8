"""Demo models to try the SDK with: ``main.default.iris@champion`` (logistic regression on iris,
answering a class name and class probabilities, see ``_demo_iris``) and the demo agent."""

from __future__ import annotations

import logging
from typing import Any

from .._constants import DEMO_AGENT_NAME, DEMO_AGENT_URI, DEMO_MODEL_ALIAS, DEMO_MODEL_NAME, DEMO_MODEL_URI
from .._exceptions import PredictorError
from .._mlflow import ensure_experiment, mlflow_session, resolve_alias

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_AGENT_URI",
    "DEMO_MODEL_URI",
    "IRIS_REQUIREMENTS",
    "alias_exists",
    "pip_requirements",
    "register_demo_agent",
    "register_demo_model",
]


def pip_requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged model, from what is installed.

    Given explicitly, MLflow skips its own inference, which loads the model in a subprocess
    to see what it imports (seconds per model). Every demo registration passes these.
    """
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in packages]


#: What the iris demo (``_demo_iris.IrisClassifier``, coefficients and numpy) needs at serving time.
IRIS_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas")


def alias_exists(name: str, alias: str, registry_uri: str | None = None) -> bool:
    """Whether ``name@alias`` is set in the registry (any registry error counts as "not")."""
    try:
        resolve_alias(registry_uri, name, alias)
        return True
    except PredictorError:
        return False


def _answers_class_names() -> bool:
    """Whether the registered demo model answers a class name and probabilities (older ones: 0, 1, 2)."""
    from mlflow.models import get_model_info

    signature = get_model_info(DEMO_MODEL_URI).signature
    outputs = signature.outputs.input_names() if signature is not None and signature.outputs is not None else []
    return "prediction" in outputs and any(str(n).startswith("probability_") for n in outputs)


def register_demo_model(registry_uri: str | None = None) -> str:
    """Train, log and register the iris demo model; return its ``models:/`` URI.

    Idempotent: if ``main.default.iris@champion`` already exists nothing is done, unless it is an
    older demo that answered class indices; then a new version becomes the champion.
    """
    with mlflow_session(registry_uri) as uri:  # the whole registration: MLflow's globals stay on this registry
        return _register_demo_model(uri)


def _register_demo_model(uri: str) -> str:
    if alias_exists(DEMO_MODEL_NAME, DEMO_MODEL_ALIAS, uri):
        if _answers_class_names() and _logged_training_data():
            logger.info("%s already registered", DEMO_MODEL_URI)
            return DEMO_MODEL_URI
        logger.info("%s is an older demo (class indices, or no training data logged): registering a new version",
                    DEMO_MODEL_URI)

    import sys

    import cloudpickle
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from . import demo_iris as _demo_iris

    data = load_iris(as_frame=True)
    X = data.data.astype("float64")
    y = data.target_names[data.target]  # class names, not 0/1/2
    model = _demo_iris.IrisClassifier(LogisticRegression(max_iter=500).fit(X, y))
    example = X.head(3)
    signature = infer_signature(example, model.predict(None, example))
    ensure_experiment("/predictor-demo")
    cloudpickle.register_pickle_by_value(sys.modules[_demo_iris.__name__])  # the logged model needs no `client`
    try:
        with mlflow.start_run(run_name="iris-demo"):
            _log_training_data(X.assign(label=y, prediction=model.predict(None, X)["prediction"].to_numpy()))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=signature,
                input_example=example,
                registered_model_name=DEMO_MODEL_NAME,
                pip_requirements=pip_requirements(*IRIS_REQUIREMENTS),
            )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[_demo_iris.__name__])
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(DEMO_MODEL_NAME, DEMO_MODEL_ALIAS, str(version))
    logger.info("registered %s version %s", DEMO_MODEL_NAME, version)
    return DEMO_MODEL_URI


#: Where the demo run keeps its training set (Parquet), logged as its ``training`` dataset input.
TRAINING_ARTIFACT = "baseline/training.parquet"


def _log_training_data(train: Any) -> None:
    """Log the training set in the active run: as a Parquet artifact, and as an MLflow dataset
    input (``context="training"``) whose source is that artifact, so monitoring can read it back
    as the version's baseline (``client.monitoring``)."""
    import tempfile
    from pathlib import Path

    import mlflow
    import mlflow.data.pandas_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(TRAINING_ARTIFACT).name
        train.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(TRAINING_ARTIFACT).parent))
    source = mlflow.get_artifact_uri(TRAINING_ARTIFACT)
    dataset = mlflow.data.pandas_dataset.from_pandas(train, source=source, name="iris-training", targets="label",
                                      predictions="prediction")
    mlflow.log_input(dataset, context="training")


def _logged_training_data() -> bool:
    """Whether the champion's run logged its training set (demos registered before it did: no)."""
    import mlflow

    try:
        client = mlflow.MlflowClient()
        run = mlflow.get_run(str(client.get_model_version_by_alias(DEMO_MODEL_NAME, DEMO_MODEL_ALIAS).run_id))
        inputs = run.inputs.dataset_inputs if run.inputs is not None else []
        return any(t.key == "mlflow.data.context" and t.value == "training" for d in inputs for t in d.tags or [])
    except Exception:
        return False


def register_demo_agent(registry_uri: str | None = None) -> str:
    """Log and register the demo agent (``client/local/demo_agent.py``, a ``ResponsesAgent``) as
    ``main.default.assistant@champion``; return its URI. Idempotent like :func:`register_demo_model`.
    """
    with mlflow_session(registry_uri) as uri:
        return _register_demo_agent(uri)


def _register_demo_agent(uri: str) -> str:
    if alias_exists(DEMO_AGENT_NAME, DEMO_MODEL_ALIAS, uri):
        logger.info("%s already registered", DEMO_AGENT_URI)
        return DEMO_AGENT_URI

    import mlflow
    from mlflow import MlflowClient

    from .demo_agent import IrisAssistant

    ensure_experiment("/predictor-demo")
    with mlflow.start_run(run_name="assistant-demo"):
        # The ResponsesAgent signature is MLflow's own; pinning the requirements skips MLflow's slow
        # requirement inference (a subprocess that imports the model).
        info = mlflow.pyfunc.log_model(
            name="agent",
            python_model=IrisAssistant(),
            registered_model_name=DEMO_AGENT_NAME,
            pip_requirements=[f"mlflow=={mlflow.__version__}"],
            input_example={"input": [{"role": "user", "content": "hello"}]},
        )
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(DEMO_AGENT_NAME, DEMO_MODEL_ALIAS, str(version))
    logger.info("registered %s version %s", DEMO_AGENT_NAME, version)
    return DEMO_AGENT_URI
