"""Getting a model's signature: from the MLflow registry, or from a serving endpoint.

MLflow is imported lazily and every MLflow call runs in ``asyncio.to_thread``. Only the
``MLmodel`` file is read (``mlflow.models.get_model_info``), never the weights.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._constants import SIGNATURE_ALIAS_TTL
from .._exceptions import ConfigurationError
from .._mlflow import mlflow_error, mlflow_session, resolve_alias, resolve_registry_uri, shorten
from .._types import Signature
from .openapi import load_openapi, signature_from_openapi

if TYPE_CHECKING:
    from .._http.transport import WorkspaceApi

__all__ = ["ModelRef", "from_endpoint", "from_registry", "get_endpoint", "parse_model_uri", "signature_from_openapi"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """Which registered model (and version) a signature belongs to, when known."""

    name: str | None
    version: str | None
    #: The MLflow run that logged the model version, when the registry said.
    run_id: str | None = None


_NAME_RE = re.compile(r"^[A-Za-z0-9_\-.`]+$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split ``models:/name/version`` or ``models:/name@alias`` into ``(name, version, alias)``.

    Example::

        parse_model_uri("models:/main.default.iris@champion")  # ("main.default.iris", None, "champion")
        parse_model_uri("models:/main.default.iris/3")         # ("main.default.iris", "3", None)
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigurationError("model URI is empty; expected models:/<name>/<version> or models:/<name>@<alias>")
    uri = uri.strip()
    if not uri.startswith("models:/"):
        raise ConfigurationError(
            f"model URI {uri!r} must start with 'models:/' (models:/<name>/<version> or models:/<name>@<alias>)"
        )
    rest = uri[len("models:/") :].strip("/") if uri.endswith("/") else uri[len("models:/") :]
    if not rest or rest.startswith("/"):
        raise ConfigurationError(f"model URI {uri!r} names no model")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if not name or not _NAME_RE.match(name):
            raise ConfigurationError(f"model URI {uri!r}: bad model name {name!r}")
        if not alias or not _ALIAS_RE.match(alias):
            raise ConfigurationError(f"model URI {uri!r}: bad alias {alias!r}")
        return name, None, alias
    parts = rest.split("/")
    if len(parts) != 2:
        raise ConfigurationError(
            f"model URI {uri!r} needs a version or an alias: models:/<name>/<version> or models:/<name>@<alias>"
        )
    name, version = parts
    if not name or not _NAME_RE.match(name):
        raise ConfigurationError(f"model URI {uri!r}: bad model name {name!r}")
    if not version.isdigit():
        if version.lower() in ("latest", "production", "staging", "none", "archived"):
            raise ConfigurationError(
                f"model URI {uri!r}: stage/'latest' references are not supported; use a version number or an @alias"
            )
        raise ConfigurationError(f"model URI {uri!r}: version {version!r} is not a number")
    return name, version, None


# --- registry --------------------------------------------------------------------------

_cache_lock = threading.Lock()
_signature_cache: dict[tuple[str, str, str], tuple[Signature | None, str | None]] = {}
_alias_cache: dict[tuple[str, str, str], tuple[str, float]] = {}


def clear_cache() -> None:
    """Forget cached signatures and alias resolutions (tests; after re-registering a model)."""
    with _cache_lock:
        _signature_cache.clear()
        _alias_cache.clear()


def _load_signature_sync(registry: str, name: str, version: str) -> tuple[Signature | None, str | None]:
    """The signature of a model version, and the run that logged it."""
    import mlflow

    with mlflow_session(registry):
        try:
            info = mlflow.models.get_model_info(f"models:/{name}/{version}")
        except Exception as exc:
            raise mlflow_error(exc, f"reading model {name} version {version} from {registry}") from exc
    sig = info.signature
    return (Signature.from_mlflow(sig.to_dict()) if sig is not None else None), info.run_id


async def from_registry(model_uri: str, registry_uri: str | None = None) -> tuple[Signature | None, ModelRef]:
    """Resolve ``model_uri`` (alias → version) and read its signature from the registry.

    Signatures are cached per (registry, name, version); alias resolutions for
    ``SIGNATURE_ALIAS_TTL`` seconds.
    """
    name, version, alias = parse_model_uri(model_uri)
    registry = resolve_registry_uri(registry_uri)
    if version is None:
        assert alias is not None
        key = (registry, name, alias)
        now = time.monotonic()
        with _cache_lock:
            hit = _alias_cache.get(key)
        if hit is not None and hit[1] > now:
            version = hit[0]
        else:
            version = await asyncio.to_thread(resolve_alias, registry, name, alias)
            with _cache_lock:
                _alias_cache[key] = (version, now + SIGNATURE_ALIAS_TTL)
    skey = (registry, name, version)
    with _cache_lock:
        hit_sig = _signature_cache.get(skey)
    if hit_sig is None:
        hit_sig = await asyncio.to_thread(_load_signature_sync, registry, name, version)
        with _cache_lock:
            _signature_cache[skey] = hit_sig
    sig, run_id = hit_sig
    return sig, ModelRef(name, version, run_id)


# --- endpoint ---------------------------------------------------------------------------

async def from_endpoint(
    api: WorkspaceApi, name: str, registry_uri: str | None = None
) -> tuple[Signature | None, ModelRef]:
    """The signature of serving endpoint ``name``, looked up through ``api`` (the transport's one
    request method: retries, auth flow, typed errors).

    1. ``GET /api/2.0/serving-endpoints/{name}/openapi`` (needs only endpoint access);
    2. else the endpoint's served entity (``entity_name``/``entity_version``), read from
       ``registry_uri`` (default ``databricks-uc``, where a workspace's served entities live);
    3. else ``(None, ModelRef(None, None))`` with a warning: predictions go unvalidated.
    """
    ref = ModelRef(None, None)
    entity: tuple[str, str] | None = None
    served: str | None = None
    try:
        detail = await get_endpoint(api, name)
        found = _served_entity(detail)
        if found:
            served, entity = found[0], found[1:]
            ref = ModelRef(*entity)
    except Exception as exc:
        logger.debug("reading serving endpoint %s failed: %s", name, shorten(str(exc)))
    try:
        doc = load_openapi(await api.get_json(f"/api/2.0/serving-endpoints/{name}/openapi"))
        sig = signature_from_openapi(doc, served_entity=served)
        if sig is not None and sig.has_inputs:
            return sig, ref
    except Exception as exc:
        logger.debug("openapi for serving endpoint %s unavailable: %s", name, shorten(str(exc)))
    if entity:
        try:
            return await from_registry(f"models:/{entity[0]}/{entity[1]}", registry_uri or "databricks-uc")
        except Exception as exc:
            logger.warning(
                "could not read the signature of %s version %s (served by endpoint %s): %s; "
                "predictions will not be validated",
                entity[0],
                entity[1],
                name,
                shorten(str(exc)),
            )
            return None, ref
    logger.warning("no signature found for serving endpoint %s; predictions will not be validated", name)
    return None, ref


def _served_entity(detail: dict[str, Any]) -> tuple[str | None, str, str] | None:
    """``(served entity name, model, version)`` of the entity with the most traffic."""
    config = detail.get("config") or detail.get("pending_config") or {}
    entities = config.get("served_entities") or config.get("served_models") or []
    routes = ((config.get("traffic_config") or {}).get("routes")) or []
    best = None
    if routes and entities:
        top = max(routes, key=lambda r: r.get("traffic_percentage", 0))
        target = top.get("served_entity_name") or top.get("served_model_name")
        best = next((e for e in entities if e.get("name") == target), None)
    for e in ([best] if best else []) + list(entities):
        name = e.get("entity_name") or e.get("model_name")
        version = e.get("entity_version") or e.get("model_version")
        if name and version:
            return e.get("name"), str(name), str(version)
    return None


async def get_endpoint(api: WorkspaceApi, name: str) -> dict[str, Any]:
    """``GET /api/2.0/serving-endpoints/{name}``: the endpoint's detail (state, config, ...)."""
    return await api.get_json(f"/api/2.0/serving-endpoints/{name}")
