"""The one owner of MLflow's process-global state: which registry and tracking store MLflow
points at, the lock that serializes switching them, and the few registry calls the SDK makes.

MLflow keeps its tracking and registry URIs (and the active experiment) in process globals, so
two threads that each "point MLflow at their registry, then read a model" would read each
other's. Every MLflow call of the SDK runs inside :func:`mlflow_session`, which takes the lock
and points MLflow at the registry; MLflow's errors become the SDK's own (:func:`mlflow_error`).

Which registry (:func:`resolve_registry_uri`): an explicit ``registry_uri``;
``MLFLOW_REGISTRY_URI``; ``MLFLOW_TRACKING_URI``; ``databricks-uc`` when a workspace is
configured (``DATABRICKS_HOST``); else the embedded default, a sqlite file under
``$PREDICTOR_HOME`` (``./.predictor``).

Example::

    with mlflow_session(registry_uri) as registry:
        version = resolve_alias(registry, "main.default.iris", "champion")
        info = mlflow.models.get_model_info(f"models:/main.default.iris/{version}")
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._constants import DATABASE_TRACE_PAGE, DEFAULT_HOME_DIR, TRACKING_SERVER_TRACE_PAGE
from .._exceptions import ConfigurationError, NotFoundError, PredictorError

__all__ = [
    "activate",
    "bulk_read",
    "ensure_experiment",
    "home_dir",
    "local_registry_uri",
    "mlflow_error",
    "mlflow_lock",
    "mlflow_session",
    "resolve_alias",
    "resolve_registry_uri",
    "search_trace_infos",
    "shorten",
    "trace_page_size",
    "tracking_session",
    "use_experiment",
    "version_exists",
]

#: Held while MLflow's process-global URIs are switched and used. Reentrant: a session may call
#: helpers here that open a session of their own (``resolve_alias`` inside ``mlflow_session``).
mlflow_lock = threading.RLock()


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
    """Point MLflow (imported here, lazily) at ``registry_uri`` and its tracking store, and leave
    it there. Prefer :func:`mlflow_session`, which also keeps other threads from switching it
    while you use it.

    MLflow 3 needs the tracking store as well as the registry to resolve ``models:/`` URIs.
    """
    import mlflow

    tracking = "databricks" if registry_uri.startswith("databricks") else registry_uri
    if registry_uri.startswith("sqlite:///"):
        from .store import seed_sqlite_store

        seed_sqlite_store(Path(registry_uri.removeprefix("sqlite:///")))  # a new store: no migrations to run
    with mlflow_lock:
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


@contextmanager
def mlflow_session(registry_uri: str | None = None) -> Iterator[str]:
    """Hold :data:`mlflow_lock` with MLflow pointed at ``registry_uri`` (resolved as
    :func:`resolve_registry_uri` does); yields the registry URI used.

    Example::

        with mlflow_session("databricks-uc") as registry:
            mlflow.models.get_model_info("models:/main.default.iris/3")
    """
    registry = resolve_registry_uri(registry_uri)
    with mlflow_lock:
        activate(registry)
        yield registry


@contextmanager
def tracking_session(registry_uri: str | None = None) -> Iterator[None]:
    """Hold :data:`mlflow_lock` with MLflow pointed at the tracking store traces and feedback go
    to: ``MLFLOW_TRACKING_URI`` when set (MLflow reads it itself, and it may differ from the
    registry), else the registry's store (the local demo store by default)."""
    with mlflow_lock:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            activate(resolve_registry_uri(registry_uri))
        yield


@contextmanager
def bulk_read() -> Iterator[None]:
    """Python's cyclic garbage collector paused while thousands of traces are read and parsed (a
    report's 10,000 traces are ~1 million new objects, none of them garbage, and each collection
    also walks everything pandas, MLflow and SQLAlchemy hold: 0.2-0.3 s of a 1 s read). Memory is
    still freed by reference counting; the collector is turned back on at the end by whoever turned
    it off (a reader that found it already off leaves it to the other)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def trace_page_size(tracking_uri: str) -> int:
    """The most traces one ``search_traces`` request may ask of this tracking store: a database
    (``sqlite:///...``, ``postgresql://...``, with or without a ``+driver``) takes up to
    :data:`~client._constants.DATABASE_TRACE_PAGE`; a tracking server (``http(s)://``,
    ``databricks``) refuses more than :data:`~client._constants.TRACKING_SERVER_TRACE_PAGE`."""
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in tracking_uri else ""
    return DATABASE_TRACE_PAGE if scheme in _DATABASE_SCHEMES else TRACKING_SERVER_TRACE_PAGE


def search_trace_infos(locations: Sequence[str], filter_string: str | None, max_traces: int,
                       order_by: Sequence[str] = ("timestamp_ms DESC",)) -> tuple[list[Any], bool]:
    """The first ``max_traces`` traces (infos only, no spans) of ``locations`` matching
    ``filter_string`` in the current tracking store, and whether more matched (a next page was
    offered). As few requests as the store allows (:func:`trace_page_size`): one for a database,
    pages of 500 for a tracking server.

    Example::

        infos, truncated = search_trace_infos(["1"], "tags.`predictor.model_name` = 'iris'", 10_000)
    """
    import mlflow

    client, token = mlflow.MlflowClient(), None
    page_size = trace_page_size(mlflow.get_tracking_uri())
    infos: list[Any] = []
    while len(infos) < max_traces:
        page = client.search_traces(locations=list(locations), filter_string=filter_string,
                                    max_results=min(page_size, max_traces - len(infos)), order_by=list(order_by),
                                    page_token=token, include_spans=False)
        infos.extend(page)
        token = page.token
        if not token:
            break
    return infos, bool(token) and len(infos) >= max_traces


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters: for error messages and log lines."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mlflow_error(exc: Exception, what: str) -> PredictorError:
    """MLflow's exception as the SDK's: ``NotFoundError`` for a missing model, version or alias,
    else ``ConfigurationError``; ``what`` says what was being done (and where)."""
    text = str(exc)
    code = getattr(exc, "error_code", "") or ""
    lowered = text.lower()
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in lowered or "does not exist" in lowered:
        return NotFoundError(f"{what}: not found ({shorten(text)})", status_code=404, error_code=code or "NOT_FOUND")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return ConfigurationError(f"{what}: permission denied ({shorten(text)})")
    return ConfigurationError(f"{what}: {type(exc).__name__}: {shorten(text)}")


def resolve_alias(registry_uri: str | None, name: str, alias: str) -> str:
    """The version ``name@alias`` points to in ``registry_uri`` now (blocking; MLflow errors mapped)."""
    from mlflow import MlflowClient

    with mlflow_session(registry_uri) as registry:
        try:
            mv = MlflowClient(registry_uri=registry).get_model_version_by_alias(name, alias)
        except Exception as exc:
            raise mlflow_error(exc, f"resolving alias {name}@{alias} in {registry}") from exc
    return str(mv.version)


def version_exists(registry_uri: str | None, name: str, version: str) -> str:
    """``version`` of model ``name``, checked to exist in ``registry_uri`` (raises ``NotFoundError``)."""
    from mlflow import MlflowClient

    with mlflow_session(registry_uri) as registry:
        try:
            return str(MlflowClient(registry_uri=registry).get_model_version(name, str(version)).version)
        except Exception as exc:
            raise mlflow_error(exc, f"{name} version {version} in registry {registry}") from exc


def ensure_experiment(name: str) -> str:
    """Create (or reuse) experiment ``name`` with its artifacts under ``home_dir()``, not ./mlruns,
    and make it MLflow's active one; its id. For a local (sqlite) store."""
    import mlflow

    with mlflow_lock:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            location = (home_dir() / "artifacts" / name.strip("/").replace("/", "_")).resolve()
            location.mkdir(parents=True, exist_ok=True)
            exp_id = mlflow.create_experiment(name, artifact_location=location.as_uri())
        else:
            exp_id = exp.experiment_id
        mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def use_experiment(experiment: str) -> str:
    """Make ``experiment`` (an id, or a name, created if missing) MLflow's active one; its id.

    In a local (sqlite) store a new experiment keeps its artifacts under the predictor home
    (:func:`ensure_experiment`); elsewhere MLflow places them.
    """
    import mlflow

    with mlflow_lock:
        if experiment.isdigit():  # a Databricks App's experiment resource gives the id
            return str(mlflow.set_experiment(experiment_id=experiment).experiment_id)
        if mlflow.get_tracking_uri().startswith("sqlite"):
            return ensure_experiment(experiment)
        return str(mlflow.set_experiment(experiment).experiment_id)
