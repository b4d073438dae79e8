"""Model Serving endpoints from config files: plan (a readable diff), apply (create or update, then
wait), status. The wire form is built with databricks-sdk's own types.

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
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointTag,
    Route,
    ServedEntityInput,
    ServingEndpointDetailed,
    ServingModelWorkloadType,
    TrafficConfig,
)

from .._exceptions import PredictorError
from ._config import DesiredEndpoint, EntityState

__all__ = [
    "ApplyResult",
    "EndpointOperationError",
    "EndpointUpdateFailed",
    "Plan",
    "apply",
    "current_of",
    "get_endpoint",
    "plan",
    "status_text",
    "update_config",
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


# --- the workspace's state in comparable form -------------------------------------------------


def _enum(value: Any, default: str = "") -> str:
    return str(getattr(value, "value", value)) if value is not None else default


def current_of(ep: ServingEndpointDetailed) -> DesiredEndpoint:
    """The endpoint's active config as a :class:`DesiredEndpoint` (empty if it has none yet)."""
    cfg = ep.config
    entities: dict[str, EntityState] = {}
    for e in (cfg.served_entities if cfg else None) or []:
        name = e.name or f"{(e.entity_name or '').split('.')[-1]}-{e.entity_version}"
        entities[name] = EntityState(
            name=name,
            entity_name=e.entity_name or "",
            entity_version=str(e.entity_version or ""),
            workload_size=e.workload_size or "Small",
            workload_type=_enum(e.workload_type, "CPU"),
            scale_to_zero_enabled=bool(e.scale_to_zero_enabled),
            environment_vars=tuple(sorted((e.environment_vars or {}).items())),
        )
    routes = (cfg.traffic_config.routes if cfg and cfg.traffic_config else None) or []
    traffic = {(r.served_entity_name or r.served_model_name or ""): int(r.traffic_percentage or 0) for r in routes}
    tags = {t.key: t.value or "" for t in ep.tags or []}
    limits = tuple(
        (int(r.calls or 0), _enum(r.key, "endpoint"), _enum(r.renewal_period, "minute"), r.principal)
        for r in (ep.ai_gateway.rate_limits if ep.ai_gateway else None) or []
    )
    return DesiredEndpoint(ep.name or "", entities, traffic, tags, limits)


def _describe(e: EntityState) -> str:
    scale = ", scale to zero" if e.scale_to_zero_enabled else ""
    return f"{e.entity_name} version {e.entity_version}, {e.workload_size} {e.workload_type}{scale}"


def _limit(r: tuple[int, str, str, str | None]) -> str:
    return f"{r[0]} calls/{r[2]} per {r[1]}" + (f" ({r[3]})" if r[3] else "")


@dataclass
class Plan:
    """What ``apply`` would do. ``lines`` is the readable diff; empty when nothing changes."""

    name: str
    action: str  # "create" | "update" | "none"
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    core: bool = False
    tags: bool = False
    rate_limits: bool = False

    @property
    def changed(self) -> bool:
        return self.action != "none"

    def text(self, applied: bool = False) -> str:
        """The diff; ``applied=True`` words it as done (after ``apply``)."""
        will = "" if applied else "will be "
        head = {
            "create": f"+ endpoint {self.name} {will}created",
            "update": f"~ endpoint {self.name} {will}updated",
            "none": f"= endpoint {self.name}: no changes",
        }[self.action]
        return "\n".join([head, *("  " + n for n in self.notes), *("  " + ln for ln in self.lines)])


def diff(current: DesiredEndpoint | None, desired: DesiredEndpoint) -> Plan:
    """Compare the workspace's ``current`` config (``None``: no endpoint) with ``desired``."""
    notes = [f"{m}@{a} resolves to version {v}" for m, a, v in desired.aliases.values()]
    if current is None:
        lines = [f"+ served entity {n}: {_describe(e)}" for n, e in desired.entities.items()]
        lines.append("+ traffic: " + ", ".join(f"{n} {p}%" for n, p in desired.traffic.items()))
        if desired.tags:
            lines.append("+ tags: " + ", ".join(f"{k}={v}" for k, v in desired.tags.items()))
        if desired.rate_limits:
            lines.append("+ rate limits: " + ", ".join(_limit(r) for r in desired.rate_limits))
        return Plan(desired.name, "create", lines, notes, True, bool(desired.tags), bool(desired.rate_limits))
    cur = current
    lines = []
    for name, want in desired.entities.items():
        have = cur.entities.get(name)
        if have is None:
            lines.append(f"+ served entity {name}: {_describe(want)}")
            continue
        changes = [
            f"{f}: {getattr(have, f)!r} -> {getattr(want, f)!r}"
            for f in ("entity_name", "entity_version", "workload_size", "workload_type", "scale_to_zero_enabled")
            if getattr(have, f) != getattr(want, f)
        ]
        if have.environment_vars != want.environment_vars:
            old, new = dict(have.environment_vars), dict(want.environment_vars)
            keys = sorted(set(old) | set(new))
            changes.append("environment_vars: " + ", ".join(
                f"{'+' if k not in old else '-' if k not in new else '~'}{k}" for k in keys if old.get(k) != new.get(k)
            ))
        if changes:
            lines.append(f"~ served entity {name}:")
            lines += [f"    {c}" for c in changes]
    lines += [f"- served entity {n}: {_describe(e)}" for n, e in cur.entities.items() if n not in desired.entities]
    core = bool(lines)
    if cur.traffic != desired.traffic:
        core = True
        parts = [f"{n} {cur.traffic.get(n, 0)}% -> {desired.traffic.get(n, 0)}%"
                 for n in sorted(set(cur.traffic) | set(desired.traffic))
                 if cur.traffic.get(n, 0) != desired.traffic.get(n, 0) or n not in cur.traffic]
        lines.append("~ traffic: " + ", ".join(parts))
    tags = cur.tags != desired.tags
    if tags:
        keys = sorted(set(cur.tags) | set(desired.tags))
        lines.append("~ tags: " + ", ".join(
            f"+{k}={desired.tags[k]}" if k not in cur.tags else f"-{k}" if k not in desired.tags
            else f"{k}: {cur.tags[k]} -> {desired.tags[k]}"
            for k in keys if cur.tags.get(k) != desired.tags.get(k)
        ))
    limits = sorted(cur.rate_limits, key=str) != sorted(desired.rate_limits, key=str)
    if limits:
        before = ", ".join(_limit(r) for r in cur.rate_limits) or "none"
        after = ", ".join(_limit(r) for r in desired.rate_limits) or "none"
        lines.append(f"~ rate limits: {before} -> {after}")
    return Plan(desired.name, "update" if lines else "none", lines, notes, core, tags, limits)


def plan(w: WorkspaceClient, desired: DesiredEndpoint) -> Plan:
    """Read the endpoint and diff it against ``desired``; notes say if an update is running or failed."""
    ep = get_endpoint(w, desired.name)
    result = diff(current_of(ep) if ep else None, desired)
    if ep is not None:
        state = _enum(ep.state.config_update if ep.state else None, "NOT_UPDATING")
        if state == EndpointStateConfigUpdate.IN_PROGRESS.value:
            result.notes.append("an update is in progress: apply will refuse until it finishes")
        elif state in ("UPDATE_FAILED", "UPDATE_CANCELED"):
            result.notes.append(f"the last update ended {state}: {failure_reason(ep)}")
    return result


# --- wire form (databricks-sdk types) ----------------------------------------------------------


def served_entities(desired: DesiredEndpoint) -> list[ServedEntityInput]:
    return [
        ServedEntityInput(
            name=e.name,
            entity_name=e.entity_name,
            entity_version=e.entity_version,
            workload_size=e.workload_size,
            workload_type=ServingModelWorkloadType(e.workload_type),
            scale_to_zero_enabled=e.scale_to_zero_enabled,
            environment_vars=dict(e.environment_vars) or None,
        )
        for e in desired.entities.values()
    ]


def traffic_config(desired: DesiredEndpoint) -> TrafficConfig:
    return TrafficConfig(routes=[Route(served_model_name=n, traffic_percentage=p) for n, p in desired.traffic.items()])


def rate_limits(desired: DesiredEndpoint) -> list[AiGatewayRateLimit]:
    return [
        AiGatewayRateLimit(
            calls=calls,
            key=AiGatewayRateLimitKey(key),
            renewal_period=AiGatewayRateLimitRenewalPeriod(period),
            principal=principal,
        )
        for calls, key, period, principal in desired.rate_limits
    ]


# --- waiting ----------------------------------------------------------------------------------


def failure_reason(ep: ServingEndpointDetailed) -> str:
    """The workspace's words for a failed update: the served entities' deployment messages."""
    for wanted in ("DEPLOYMENT_FAILED", None):
        for cfg in (ep.pending_config, ep.config):
            messages = [
                f"{e.name}: {e.state.deployment_state_message}"
                for e in (cfg.served_entities if cfg else None) or []
                if e.state and e.state.deployment_state_message
                and _enum(e.state.deployment) == (wanted or _enum(e.state.deployment))
                and _enum(e.state.deployment) != "DEPLOYMENT_READY"
            ]
            if messages:
                return "; ".join(messages)
    return "the workspace gave no reason (see the endpoint's events and build logs)"


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
        state = _enum(ep.state.config_update if ep.state else None, "NOT_UPDATING")
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


def apply(
    w: WorkspaceClient,
    desired: DesiredEndpoint,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> ApplyResult:
    """Create the endpoint or bring it to ``desired``, then wait; nothing is sent when it already matches."""
    name = desired.name
    ep = get_endpoint(w, name)
    if ep is not None and ep.state and ep.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS:
        raise EndpointOperationError(f"endpoint {name}: an update is already in progress; try again when it ends")
    result = diff(current_of(ep) if ep else None, desired)
    if not result.changed:
        return ApplyResult(result, ep)
    limits = rate_limits(desired)
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
            ai_gateway=AiGatewayConfig(rate_limits=limits) if limits else None,
        )
    else:
        current = current_of(ep)
        if result.tags:
            _call(
                f"updating tags of {name}",
                w.serving_endpoints.patch,
                name,
                add_tags=[EndpointTag(key=k, value=v) for k, v in desired.tags.items()] or None,
                delete_tags=[k for k in current.tags if k not in desired.tags] or None,
            )
        if result.rate_limits:
            gw = ep.ai_gateway or AiGatewayConfig()
            _call(
                f"updating rate limits of {name}",
                w.serving_endpoints.put_ai_gateway,
                name,
                rate_limits=limits,
                guardrails=gw.guardrails,
                inference_table_config=gw.inference_table_config,
                usage_tracking_config=gw.usage_tracking_config,
                fallback_config=gw.fallback_config,
            )
        if result.core:
            logger.info("updating endpoint %s", name)
            update_config(w, desired)
    final = wait_until_settled(w, name, poll_interval=poll_interval, timeout=timeout, progress=progress)
    return ApplyResult(result, final)


# --- status -------------------------------------------------------------------------------------


def status_text(ep: ServingEndpointDetailed) -> str:
    """State, served entities, traffic and which model versions answer, as a few lines of text."""
    state = ep.state
    lines = [
        f"endpoint {ep.name}: ready={_enum(state.ready if state else None, '?')} "
        f"config_update={_enum(state.config_update if state else None, '?')}"
    ]
    current = current_of(ep)
    if current.entities:
        lines.append("served entities:")
        deploy = {e.name: e.state for e in (ep.config.served_entities if ep.config else None) or []}
        for n, e in current.entities.items():
            st = deploy.get(n)
            lines.append(f"  {n}: {_describe(e)} [{_enum(st.deployment if st else None, '?')}]")
        lines.append("traffic:")
        lines += [f"  {n}: {p}%" for n, p in current.traffic.items()]
        answering = [
            f"{current.entities[n].entity_name} v{current.entities[n].entity_version} ({p}%)"
            for n, p in current.traffic.items() if p > 0 and n in current.entities
        ]
        lines.append("answering: " + (", ".join(answering) or "nothing"))
    else:
        lines.append("no active config yet")
    if ep.pending_config and ep.pending_config.served_entities:
        pending = ", ".join(
            f"{e.name} ({e.entity_name} v{e.entity_version})" for e in ep.pending_config.served_entities
        )
        lines.append(f"pending config: {pending}")
    if state and _enum(state.config_update) in ("UPDATE_FAILED", "UPDATE_CANCELED"):
        lines.append(f"last update failed: {failure_reason(ep)}")
    if current.tags:
        lines.append("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(current.tags.items())))
    if current.rate_limits:
        lines.append("rate limits: " + ", ".join(_limit(r) for r in current.rate_limits))
    return "\n".join(lines)
