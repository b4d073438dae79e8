"""Promote a model version: move a registry alias and roll the endpoint, optionally via a canary.

Without a canary: the served entity that serves the alias's current version is switched to the
new version, then the alias is moved. With ``canary=10``: a second served entity
``<entity>-canary`` serving the new version takes 10% of that entity's traffic (90/10 for a
single-entity endpoint) and the alias stays put; running promote again without a canary (or
with ``hold`` seconds) cuts over: 100% to the new version, canary removed, alias moved.

The endpoint is rolled before the alias moves, so a failed rollout leaves the alias where it was.

Example::

    promote(w, "iris-classifier", alias="champion", version="3", canary=10,
            resolver=registry_resolver(), set_alias=registry_alias_setter())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import ServingEndpointDetailed

from ._config import DesiredEndpoint, Resolver
from ._diff import current_of
from ._workspace import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    EndpointOperationError,
    Progress,
    get_endpoint,
    update_config,
    wait_until_settled,
)

__all__ = ["CANARY_SUFFIX", "promote", "registry_alias_setter"]

logger = logging.getLogger(__name__)

CANARY_SUFFIX = "-canary"

#: ``set_alias(model, alias, version)``
AliasSetter = Callable[[str, str, str], None]


def registry_alias_setter(registry_uri: str | None = None) -> AliasSetter:
    """``MlflowClient.set_registered_model_alias`` against the registry (``databricks-uc`` on a workspace)."""
    from .._mlflow import mlflow_error, mlflow_session, resolve_registry_uri
    from .._schema.signatures import clear_cache

    uri = resolve_registry_uri(registry_uri)

    def set_alias(model: str, alias: str, version: str) -> None:
        from mlflow import MlflowClient

        with mlflow_session(uri):
            try:
                MlflowClient(registry_uri=uri).set_registered_model_alias(model, alias, version)
            except Exception as exc:
                raise mlflow_error(exc, f"moving {model}@{alias} to version {version} in {uri}") from exc
        clear_cache()  # cached alias resolutions are stale now

    return set_alias


def _pick_target(cur: DesiredEndpoint, model: str, old_version: str | None, served_entity: str | None) -> str:
    if served_entity is not None:
        if served_entity not in cur.entities:
            raise EndpointOperationError(f"endpoint {cur.name} has no served entity {served_entity!r}")
        return served_entity
    mine = [n for n, e in cur.entities.items() if e.entity_name == model and not n.endswith(CANARY_SUFFIX)]
    by_version = [n for n in mine if cur.entities[n].entity_version == old_version]
    if len(by_version) == 1:
        return by_version[0]
    if len(mine) == 1:
        return mine[0]
    raise EndpointOperationError(
        f"endpoint {cur.name}: cannot tell which served entity to roll "
        f"({', '.join(mine) or 'none serve ' + model}); name it with --served-entity"
    )


def promote(
    w: WorkspaceClient,
    endpoint: str,
    *,
    alias: str,
    version: str,
    resolver: Resolver,
    set_alias: AliasSetter,
    canary: int | None = None,
    hold: float | None = None,
    model: str | None = None,
    served_entity: str | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> list[str]:
    """Roll ``endpoint`` to ``version`` and move ``alias`` there; returns what was done, line by line."""
    if canary is not None and not 1 <= canary <= 99:
        raise EndpointOperationError(f"--canary must be a percentage between 1 and 99, got {canary}")
    ep = get_endpoint(w, endpoint)
    if ep is None:
        raise EndpointOperationError(f"endpoint {endpoint} does not exist; create it with 'endpoints apply'")
    if ep.state and ep.state.config_update and ep.state.config_update.value == "IN_PROGRESS":
        raise EndpointOperationError(f"endpoint {endpoint}: an update is already in progress")
    cur = current_of(ep)
    models = sorted({e.entity_name for e in cur.entities.values()})
    if model is None:
        if len(models) != 1:
            raise EndpointOperationError(f"endpoint {endpoint} serves {', '.join(models) or 'nothing'}; pass --model")
        model = models[0]
    version = resolver(model, None, version)  # the version must exist
    try:
        old_version: str | None = resolver(model, alias, None)
    except Exception:  # the alias is not set yet
        old_version = None
    target = _pick_target(cur, model, old_version, served_entity)
    canary_name = target + CANARY_SUFFIX
    share = cur.traffic.get(target, 0) + cur.traffic.get(canary_name, 0)
    done: list[str] = []

    def settle() -> ServingEndpointDetailed:
        return wait_until_settled(w, endpoint, poll_interval=poll_interval, timeout=timeout, progress=progress)

    if canary is not None:
        if share == 0:
            raise EndpointOperationError(f"{target} gets no traffic on {endpoint}: nothing to canary")
        if cur.entities[target].entity_version == version:
            raise EndpointOperationError(f"{target} already serves {model} version {version}: nothing to canary")
        slice_ = max(1, round(share * canary / 100))
        entities = dict(cur.entities)
        entities[canary_name] = replace(cur.entities[target], name=canary_name, entity_version=version)
        traffic = dict(cur.traffic)
        traffic[target], traffic[canary_name] = share - slice_, slice_
        update_config(w, replace(cur, entities=entities, traffic=traffic))
        settle()
        done.append(
            f"canary: {canary_name} serves {model} version {version} with {slice_}% of traffic; "
            f"{target} keeps version {cur.entities[target].entity_version} with {share - slice_}%"
        )
        if hold is None:
            done.append(f"alias {model}@{alias} not moved yet; promote again without --canary to cut over")
            return done
        logger.info("holding the canary for %.0fs", hold)
        time.sleep(hold)
        ep = settle()
        cur = current_of(ep)

    entities = {n: e for n, e in cur.entities.items() if n != canary_name}
    entities[target] = replace(cur.entities[target], entity_version=version)
    traffic = {n: p for n, p in cur.traffic.items() if n != canary_name}
    traffic[target] = share
    rolled = replace(cur, entities=entities, traffic=traffic)
    if rolled.entities != cur.entities or rolled.traffic != cur.traffic:
        update_config(w, rolled)
        settle()
        done.append(f"cut over: {target} serves {model} version {version} with {share}% of traffic")
    else:
        done.append(f"{target} already serves {model} version {version}")
    if old_version == version:
        done.append(f"alias {model}@{alias} already points to version {version}")
    else:
        set_alias(model, alias, version)
        done.append(f"alias {model}@{alias}: {old_version or '(unset)'} -> {version}")
    return done
