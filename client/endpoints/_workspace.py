"""Model Serving endpoints from config files against a workspace: plan (a readable diff), apply
(create or update, then wait). Calls go through databricks-sdk; everything without I/O (the diff,
the wire form, the status text) is in ``_diff``.

It imports databricks-sdk; ``client.endpoints`` loads it on first use.

Example::

    from client.endpoints import apply, load_config, plan, registry_resolver, resolve, workspace_client

    w = workspace_client()
    desired = resolve(load_config("serving_configs/iris.yaml"), registry_resolver())
    print(plan(w, desired).text())
    result = apply(w, desired)          # waits until NOT_UPDATING; raises on UPDATE_FAILED
    result.changed                      # False the second time
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointTag,
    ServingEndpointDetailed,
)

from .._exceptions import PredictorError
from ._canary import state_from_tags
from ._config import DesiredEndpoint
from ._diff import (
    ROLLOUT_TAG_PREFIX,
    Plan,
    config_update,
    current_of,
    diff,
    failure_reason,
    gateway_config,
    inference_table_config,
    served_entities,
    traffic_config,
)

__all__ = [
    "ApplyResult",
    "EndpointOperationError",
    "EndpointUpdateFailed",
    "apply",
    "get_endpoint",
    "plan",
    "update_config",
    "update_tags",
    "wait_until_settled",
    "workspace_client",
]

logger = logging.getLogger(__name__)

#: ``progress(endpoint, seconds_elapsed)`` is called after every poll.
Progress = Callable[[ServingEndpointDetailed, float], None]

DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_TIMEOUT = 20 * 60.0
#: Seconds databricks-sdk keeps retrying one call.
SDK_RETRY_BUDGET = 30


class EndpointOperationError(PredictorError):
    """A workspace call about a serving endpoint failed, or the endpoint is busy."""


class EndpointUpdateFailed(EndpointOperationError):
    """The workspace reported ``UPDATE_FAILED``/``UPDATE_CANCELED``; ``reason`` is its explanation."""

    def __init__(self, name: str, state: str, reason: str) -> None:
        self.endpoint, self.state, self.reason = name, state, reason
        super().__init__(f"endpoint {name}: {state}: {reason}")


def workspace_client(host: str | None = None, profile: str | None = None) -> WorkspaceClient:
    """databricks-sdk's client; credentials resolve as the SDK does (env, profile, ...).

    Each call retries (429, 503, connection errors) for :data:`SDK_RETRY_BUDGET` seconds, not
    the SDK's default five minutes, so a dead host fails in about a minute, not ten.
    """
    from databricks.sdk.core import Config

    try:
        return WorkspaceClient(config=Config(host=host, profile=profile, retry_timeout_seconds=SDK_RETRY_BUDGET))
    except ValueError as exc:  # no host, several auth methods, unknown profile
        raise EndpointOperationError(f"no usable Databricks workspace configuration: {exc}") from exc


#: What databricks-sdk raises: API errors, and (after its retry budget) timeouts and connection errors.
_SDK_ERRORS = (DatabricksError, TimeoutError, OSError)


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except _SDK_ERRORS as exc:
        raise EndpointOperationError(f"{what}: {type(exc).__name__}: {exc}") from exc


def get_endpoint(w: WorkspaceClient, name: str) -> ServingEndpointDetailed | None:
    """The endpoint, or ``None`` when it does not exist."""
    try:
        return w.serving_endpoints.get(name)
    except NotFound:
        return None
    except _SDK_ERRORS as exc:
        raise EndpointOperationError(f"reading endpoint {name}: {type(exc).__name__}: {exc}") from exc


def _with_monitor(w: WorkspaceClient, desired: DesiredEndpoint, result: Plan) -> Plan:
    """Add the file's monitor to the plan (a monitor the file does not name is left alone)."""
    if desired.monitor is None:
        return result
    from ._monitor import monitor_plan

    lines, notes = monitor_plan(w, desired.monitor)
    result.lines += lines
    result.notes += notes
    if lines:
        result.monitor = True
        if result.action == "none":
            result.action = "update"
    return result


def plan(w: WorkspaceClient, desired: DesiredEndpoint) -> Plan:
    """Read the endpoint and diff it against ``desired``; notes say if an update is running or failed."""
    ep = get_endpoint(w, desired.name)
    result = _with_monitor(w, desired, diff(current_of(ep) if ep else None, desired))
    if ep is not None:
        state = config_update(ep)
        if state == EndpointStateConfigUpdate.IN_PROGRESS.value:
            result.notes.append("an update is in progress: apply will refuse until it finishes")
        elif state in ("UPDATE_FAILED", "UPDATE_CANCELED"):
            result.notes.append(f"the last update ended {state}: {failure_reason(ep)}")
    return result


# --- waiting ----------------------------------------------------------------------------------


def wait_until_settled(
    w: WorkspaceClient,
    name: str,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> ServingEndpointDetailed:
    """Poll until ``config_update`` is ``NOT_UPDATING``; raise :class:`EndpointUpdateFailed` on
    ``UPDATE_FAILED``/``UPDATE_CANCELED``, :class:`EndpointOperationError` after ``timeout`` s."""
    started = time.monotonic()
    delay = poll_interval
    while True:
        ep = _call(f"reading endpoint {name}", w.serving_endpoints.get, name)
        elapsed = time.monotonic() - started
        state = config_update(ep)
        logger.debug("endpoint %s: %s after %.1fs", name, state, elapsed)
        if progress is not None:
            progress(ep, elapsed)
        if state == "NOT_UPDATING":
            return ep
        if state in ("UPDATE_FAILED", "UPDATE_CANCELED"):
            raise EndpointUpdateFailed(name, state, failure_reason(ep))
        if elapsed + delay > timeout:
            raise EndpointOperationError(
                f"endpoint {name}: still {state} after {elapsed:.0f}s (timeout {timeout:.0f}s)"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, max(poll_interval, 10.0))


# --- apply --------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    plan: Plan
    endpoint: ServingEndpointDetailed | None

    @property
    def changed(self) -> bool:
        return self.plan.changed


def update_config(w: WorkspaceClient, desired: DesiredEndpoint) -> None:
    """``PUT .../config`` with the served entities and traffic of ``desired`` (no waiting)."""
    _call(
        f"updating endpoint {desired.name}",
        w.serving_endpoints.update_config,
        desired.name,
        served_entities=served_entities(desired),
        traffic_config=traffic_config(desired),
    )


def update_tags(w: WorkspaceClient, name: str, add: dict[str, str] | Any, delete: Any = ()) -> None:
    """``PATCH .../tags``: add (or overwrite) ``add``, drop the keys in ``delete``."""
    _call(
        f"updating tags of {name}",
        w.serving_endpoints.patch,
        name,
        add_tags=[EndpointTag(key=k, value=v) for k, v in add.items()] or None,
        delete_tags=list(delete) or None,
    )


def apply(
    w: WorkspaceClient,
    desired: DesiredEndpoint,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> ApplyResult:
    """Create the endpoint or bring it to ``desired``, then wait; nothing is sent when it already matches.
    The file's monitor (if any) is created or updated after the endpoint is ready."""
    name = desired.name
    ep = get_endpoint(w, name)
    if ep is not None and ep.state and ep.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS:
        raise EndpointOperationError(f"endpoint {name}: an update is already in progress; try again when it ends")
    rollout = state_from_tags({t.key: t.value or "" for t in ep.tags or []}) if ep is not None else None
    if rollout is not None and rollout.active:
        raise EndpointOperationError(
            f"endpoint {name}: a rollout of {rollout.challenger} is {rollout.phase} and owns its traffic; "
            f"wait for it, or 'predictor rollout abort {name}'"
        )
    result = _with_monitor(w, desired, diff(current_of(ep) if ep else None, desired))
    if not result.changed:
        return ApplyResult(result, ep)
    gateway = gateway_config(desired, ep.ai_gateway if ep else None)
    if ep is None:
        logger.info("creating endpoint %s", name)
        _call(
            f"creating endpoint {name}",
            w.serving_endpoints.create,
            name,
            config=EndpointCoreConfigInput(
                name=name, served_entities=served_entities(desired), traffic_config=traffic_config(desired)
            ),
            tags=[EndpointTag(key=k, value=v) for k, v in desired.tags.items()] or None,
            ai_gateway=gateway if result.ai_gateway else None,
        )
    else:
        current = current_of(ep)
        if result.tags:
            _call(
                f"updating tags of {name}",
                w.serving_endpoints.patch,
                name,
                add_tags=[EndpointTag(key=k, value=v) for k, v in desired.tags.items()] or None,
                delete_tags=[k for k in current.tags if k not in desired.tags
                             and not k.startswith(ROLLOUT_TAG_PREFIX)] or None,
            )
        if result.ai_gateway:
            old, new = current.inference_table, desired.inference_table
            if old is not None and new is not None and old != new:
                # The workspace changes no catalog, schema or prefix of an enabled table: disable it first.
                _put_gateway(w, name, replace(gateway, inference_table_config=inference_table_config(old, False)))
            _put_gateway(w, name, gateway)
        if result.core:
            logger.info("updating endpoint %s", name)
            update_config(w, desired)
    final = wait_until_settled(w, name, poll_interval=poll_interval, timeout=timeout, progress=progress)
    if result.monitor and desired.monitor is not None:
        from ._monitor import apply_monitor

        result.notes.append(apply_monitor(w, desired.monitor))
    return ApplyResult(result, final)


def _put_gateway(w: WorkspaceClient, name: str, gateway: AiGatewayConfig) -> None:
    """``PUT .../ai-gateway``: the whole AI Gateway config (rate limits, inference table, usage tracking)."""
    _call(
        f"updating the AI Gateway of {name}",
        w.serving_endpoints.put_ai_gateway,
        name,
        rate_limits=gateway.rate_limits,
        inference_table_config=gateway.inference_table_config,
        usage_tracking_config=gateway.usage_tracking_config,
        guardrails=gateway.guardrails,
        fallback_config=gateway.fallback_config,
    )
