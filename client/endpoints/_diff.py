"""Comparing an endpoint with its file: the workspace's state in comparable form, the readable
diff (:class:`Plan`), the wire form built from databricks-sdk's own types, and an endpoint's
status as text. No I/O here.

Example::

    plan = diff(current_of(w.serving_endpoints.get("iris")), desired)
    print(plan.text())          # ~ endpoint iris will be updated / ~ traffic: ...
    gateway_config(desired, None).as_dict()   # the ai_gateway block of a create
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    Route,
    ServedEntityInput,
    ServingEndpointDetailed,
    ServingModelWorkloadType,
    TrafficConfig,
)

from ._config import DesiredEndpoint, EntityState, InferenceTable

__all__ = [
    "Plan",
    "config_update",
    "current_of",
    "diff",
    "failure_reason",
    "gateway_config",
    "rate_limits",
    "served_entities",
    "status_text",
    "traffic_config",
]

# --- the workspace's state in comparable form -------------------------------------------------


def _enum(value: Any, default: str = "") -> str:
    return str(getattr(value, "value", value)) if value is not None else default


def config_update(ep: ServingEndpointDetailed) -> str:
    """``NOT_UPDATING`` | ``IN_PROGRESS`` | ``UPDATE_FAILED`` | ``UPDATE_CANCELED``."""
    return _enum(ep.state.config_update if ep.state else None, "NOT_UPDATING")


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
    gw = ep.ai_gateway or AiGatewayConfig()
    limits = tuple(
        (int(r.calls or 0), _enum(r.key, "endpoint"), _enum(r.renewal_period, "minute"), r.principal)
        for r in gw.rate_limits or []
    )
    it = gw.inference_table_config
    table = (
        InferenceTable(it.catalog_name or "", it.schema_name or "", it.table_name_prefix or "")
        if it and it.enabled
        else None
    )
    usage = bool(gw.usage_tracking_config and gw.usage_tracking_config.enabled)
    return DesiredEndpoint(ep.name or "", entities, traffic, tags, limits, {}, table, usage)


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
    ai_gateway: bool = False
    #: The file's data profiling monitor is missing or differs (``client.endpoints._monitor``).
    monitor: bool = False

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


#: Tags with this prefix belong to a rollout (``_canary``): plan and apply leave them alone.
ROLLOUT_TAG_PREFIX = "rollout_"


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
        if desired.inference_table:
            lines.append(f"+ inference table: {desired.inference_table}")
        if desired.usage_tracking:
            lines.append("+ usage tracking: on")
        gateway = bool(desired.rate_limits or desired.inference_table or desired.usage_tracking)
        return Plan(desired.name, "create", lines, notes, True, bool(desired.tags), gateway)
    # The rollout's own tags (its state, kept on the endpoint by ``predictor rollout``) are not the file's.
    cur = replace(current, tags={k: v for k, v in current.tags.items() if not k.startswith(ROLLOUT_TAG_PREFIX)})
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
    table = cur.inference_table != desired.inference_table
    if table:
        how = " (disabled, then enabled: the workspace renames no enabled table)" if (
            cur.inference_table and desired.inference_table) else ""
        lines.append(f"~ inference table: {cur.inference_table or 'none'} -> {desired.inference_table or 'none'}{how}")
    usage = cur.usage_tracking != desired.usage_tracking
    if usage:
        lines.append(f"~ usage tracking: {_on(cur.usage_tracking)} -> {_on(desired.usage_tracking)}")
    gateway = limits or table or usage
    return Plan(desired.name, "update" if lines else "none", lines, notes, core, tags, gateway)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


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


def inference_table_config(table: InferenceTable, enabled: bool = True) -> AiGatewayInferenceTableConfig:
    return AiGatewayInferenceTableConfig(
        catalog_name=table.catalog, schema_name=table.schema, table_name_prefix=table.table_prefix, enabled=enabled
    )


def gateway_config(desired: DesiredEndpoint, current: AiGatewayConfig | None) -> AiGatewayConfig:
    """The whole AI Gateway config for ``PUT .../ai-gateway`` (or a create's ``ai_gateway``).

    What the file does not manage (guardrails, fallback) is kept from ``current``; an inference
    table or usage tracking the file drops is sent as disabled rather than left on.
    """
    cur = current or AiGatewayConfig()
    table = cur.inference_table_config
    if desired.inference_table is not None:
        table = inference_table_config(desired.inference_table)
    elif table is not None and table.enabled:
        table = AiGatewayInferenceTableConfig(enabled=False)
    usage = cur.usage_tracking_config
    if desired.usage_tracking or (usage is not None and usage.enabled):
        usage = AiGatewayUsageTrackingConfig(enabled=desired.usage_tracking)
    return AiGatewayConfig(
        rate_limits=rate_limits(desired),
        inference_table_config=table,
        usage_tracking_config=usage,
        guardrails=cur.guardrails,
        fallback_config=cur.fallback_config,
    )


# --- status (of an endpoint already read) -------------------------------------------------------


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
        deploy = {e.name: e for e in (ep.config.served_entities if ep.config else None) or []}
        for n, e in current.entities.items():
            lines.append(f"  {n}: {_describe(e)} {_deployment(deploy.get(n))}")
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
        lines.append("pending config:")
        lines += [
            f"  {e.name}: {e.entity_name} version {e.entity_version} {_deployment(e)}"
            for e in ep.pending_config.served_entities
        ]
    if state and _enum(state.config_update) in ("UPDATE_FAILED", "UPDATE_CANCELED"):
        lines.append(f"last update failed: {failure_reason(ep)}")
    if current.tags:
        lines.append("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(current.tags.items())))
    if current.rate_limits:
        lines.append("rate limits: " + ", ".join(_limit(r) for r in current.rate_limits))
    if current.inference_table:
        lines.append(f"inference table: {current.inference_table}")
    if current.usage_tracking:
        lines.append("usage tracking: on")
    return "\n".join(lines)


def _deployment(entity: Any) -> str:
    """``[DEPLOYMENT_READY]``, with the workspace's ``deployment_state_message`` when it says something."""
    st = getattr(entity, "state", None)
    message = (st.deployment_state_message or "").strip() if st else ""
    return f"[{_enum(st.deployment if st else None, '?')}]" + (f" {message}" if message else "")
