"""The MLflow registry the SDK reads, for code beside it that calls MLflow itself (an app, a notebook).

MLflow keeps its registry and tracking URIs in process globals. :func:`mlflow_session` holds the
SDK's own lock with MLflow pointed at a registry, so such code and the SDK's registry reads
(signatures, aliases, direct-mode loads) never switch MLflow under each other.
:func:`resolve_registry_uri` says which registry a ``None`` means; :func:`parse_model_uri` splits
a ``models:/`` URI. Importing this module imports no MLflow.

Example::

    from client.registry import mlflow_session, parse_model_uri

    name, version, alias = parse_model_uri("models:/main.default.iris@champion")
    with mlflow_session() as registry:                # the default registry, locked and active
        model = mlflow.models.Model.load("models:/main.default.iris@champion")
"""

from __future__ import annotations

from ._mlflow import mlflow_session, resolve_registry_uri
from ._schema.signatures import parse_model_uri

__all__ = ["mlflow_session", "parse_model_uri", "resolve_registry_uri"]
