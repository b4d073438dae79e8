"""Which MLflow registry a model URI is resolved against, and switching MLflow to it.

Order: an explicit ``registry_uri``; ``MLFLOW_REGISTRY_URI``; ``MLFLOW_TRACKING_URI``;
``databricks-uc`` when a workspace is configured (``DATABRICKS_HOST``); else the embedded
default, a sqlite file under ``$PREDICTOR_HOME`` (``./.predictor``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .._constants import DEFAULT_HOME_DIR

_lock = threading.Lock()


def home_dir() -> Path:
    return Path(os.environ.get("PREDICTOR_HOME", DEFAULT_HOME_DIR)).resolve()


def local_registry_uri() -> str:
    """The embedded default registry: ``sqlite:///<home>/mlflow.db``."""
    return f"sqlite:///{home_dir() / 'mlflow.db'}"


def resolve_registry_uri(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("DATABRICKS_HOST"):
        return "databricks-uc"
    return local_registry_uri()


def activate(registry_uri: str) -> None:
    """Point MLflow (imported here, lazily) at ``registry_uri`` and its tracking store.

    MLflow 3 needs the tracking store as well as the registry to resolve ``models:/`` URIs.
    """
    import mlflow

    tracking = "databricks" if registry_uri.startswith("databricks") else registry_uri
    if registry_uri.startswith("sqlite:///"):
        from .store import seed_sqlite_store

        seed_sqlite_store(Path(registry_uri.removeprefix("sqlite:///")))  # a new store: no migrations to run
    with _lock:
        # MLflow also writes these into os.environ (for subprocesses); a library must not
        # change its caller's environment, or the next resolve_registry_uri() would see it.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
