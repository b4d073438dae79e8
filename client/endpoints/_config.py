"""Serving endpoint config files (``serving_configs/*.yaml``): parse, validate, resolve.

A file names one Model Serving endpoint and the Unity Catalog model versions it serves::

    name: iris-classifier
    served_entities:
      - name: champion
        entity_name: main.default.iris
        alias: champion            # or entity_version: 3
        workload_size: Small
        workload_type: CPU
        scale_to_zero_enabled: true
        environment_vars:
          LOG_LEVEL: info
    traffic:                       # served entity name -> percent; sums to 100
      champion: 100
    rate_limits:
      - {calls: 100, key: user, renewal_period: minute}
    inference_table:               # AI Gateway inference table: requests and responses in Unity Catalog
      {catalog: main, schema: serving_logs, table_prefix: iris}
    usage_tracking: true           # AI Gateway usage tracking (system.serving tables)
    monitor:                       # a data profiling monitor on the unpacked inference table
      problem_type: classification # or regression
      output_schema: main.serving_monitoring
      granularities: [1 hour, 1 day]
    tags:
      project: uc-predictor
    rollout:                       # canary rollouts (``predictor rollout FILE --challenger NAME``)
      steps: [10, 25, 50, 100]     # challenger's percent of the champion+challenger traffic
      interval: 5m                 # judge each step after this long (s, ms, m, h; or seconds)
      max_p99_ratio: 1.5           # see RolloutSpec for every key

The legacy ``auto_capture_config`` is refused: Databricks stopped supporting it on 2026-03-20.

Errors name the file, the line and the field (``iris.yaml:7: served_entities.0.workload_size:
...``). It pulls in yaml and pydantic (databricks-sdk only to list workload types); ``client.endpoints``
loads it on first use.

Example::

    cfg = load_config("serving_configs/iris.yaml")
    desired = resolve(cfg, registry_resolver("databricks-uc"))
    desired.entities["champion"].entity_version   # "3"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .._exceptions import ConfigurationError

__all__ = [
    "GRANULARITIES",
    "DesiredEndpoint",
    "EntityState",
    "InferenceTable",
    "MonitorState",
    "RolloutSpec",
    "ServingConfig",
    "ServingConfigError",
    "duration_seconds",
    "load_config",
    "registry_resolver",
    "resolve",
]

logger = logging.getLogger(__name__)

_NAME = r"^[A-Za-z0-9_-]{1,63}$"
_UC_PART = r"^[A-Za-z0-9_`-]+$"
_UC_NAME = r"^[A-Za-z0-9_`-]+\.[A-Za-z0-9_`-]+\.[A-Za-z0-9_`-]+$"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
_SECRET_REF = re.compile(r"^\{\{secrets/[^/\s{}]+/[^/\s{}]+\}\}$")


def _workload_types() -> tuple[str, ...]:
    from databricks.sdk.service.serving import ServingModelWorkloadType

    return tuple(m.value for m in ServingModelWorkloadType)


class ServingConfigError(ConfigurationError):
    """A config file that does not parse or validate; ``problems`` holds ``(line, field, message)``."""

    def __init__(self, path: str, problems: Sequence[tuple[int, str, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = [f"{path}:{line}: {loc + ': ' if loc else ''}{msg}" for line, loc, msg in self.problems]
        super().__init__("\n".join(lines))


# --- the file model -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntitySpec(_Strict):
    """One served entity: a Unity Catalog model version, by alias or by number."""

    name: str = Field(pattern=_NAME, description="served entity name, unique in the endpoint")
    entity_name: str = Field(pattern=_UC_NAME, description="catalog.schema.model")
    alias: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    entity_version: int | None = Field(default=None, ge=1)
    workload_size: Literal["Small", "Medium", "Large"] = "Small"
    workload_type: str = "CPU"
    scale_to_zero_enabled: bool = False
    environment_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("workload_type")
    @classmethod
    def _known_workload_type(cls, value: str) -> str:
        allowed = _workload_types()
        if value not in allowed:
            raise ValueError(f"unknown workload type {value!r}; one of {', '.join(allowed)}")
        return value

    @model_validator(mode="after")
    def _alias_xor_version(self) -> EntitySpec:
        if (self.alias is None) == (self.entity_version is None):
            raise ValueError("give exactly one of 'alias' (e.g. champion) or 'entity_version' (e.g. 3)")
        return self


class RateLimitSpec(_Strict):
    """An AI Gateway rate limit (``AiGatewayRateLimit``)."""

    calls: int = Field(ge=1)
    key: Literal["endpoint", "user", "user_group", "service_principal"] = "endpoint"
    renewal_period: Literal["minute"] = "minute"
    principal: str | None = None


class InferenceTableSpec(_Strict):
    """An AI Gateway inference table (``AiGatewayInferenceTableConfig``): payloads logged to Unity Catalog."""

    catalog: str = Field(pattern=_UC_PART)
    schema_name: str = Field(alias="schema", pattern=_UC_PART)  # "schema" would shadow BaseModel.schema
    table_prefix: str = Field(pattern=_UC_PART)


#: The aggregation windows a data profiling monitor takes (the bundle's and legacy API's spelling).
GRANULARITIES = ("5 minutes", "30 minutes", "1 hour", "1 day", "1 week", "2 weeks", "3 weeks", "4 weeks", "1 month",
                 "1 year")


class ScheduleSpec(_Strict):
    """When the monitor refreshes: a Quartz cron expression in a Java time zone."""

    cron: str = Field(pattern=r"^\S+( \S+){5,6}$", description="Quartz cron, e.g. '0 0 * * * ?' (hourly)")
    timezone: str = Field(default="UTC", pattern=r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$")


class MonitorSpec(_Strict):
    """A data profiling monitor (inference profile) on the endpoint's unpacked records table.

    The records table is what ``client.spark.unpack_payload`` writes from the inference table:
    ``request_time`` is its timestamp, ``prediction`` its prediction, ``model_version`` its model id.
    """

    problem_type: Literal["classification", "regression"]
    output_schema: str = Field(pattern=r"^[A-Za-z0-9_`-]+\.[A-Za-z0-9_`-]+$", description="catalog.schema")
    #: Default: ``<inference table catalog>.<schema>.<prefix>_records``.
    table: str | None = Field(default=None, pattern=_UC_NAME)
    granularities: list[Literal[GRANULARITIES]] = Field(default_factory=lambda: ["1 day"], min_length=1)  # type: ignore[valid-type]
    baseline_table: str | None = Field(default=None, pattern=_UC_NAME)
    label_column: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+$")
    slice_by_served_entity: bool = True
    slicing_exprs: list[str] = Field(default_factory=list)
    schedule: ScheduleSpec | None = None
    email_on_failure: list[str] = Field(default_factory=list, max_length=5)
    assets_dir: str | None = Field(default=None, pattern=r"^/")

    @field_validator("email_on_failure")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration_seconds(value: Any) -> float:
    """``30`` / ``"30s"`` / ``"250ms"`` / ``"5m"`` / ``"1h"`` -> seconds (a YAML number is seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise ValueError(f"{value!r} is not a duration such as 30s, 250ms, 5m or 1h")
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{value!r} must be a positive duration")
    return seconds


class RolloutSpec(_Strict):
    """A canary rollout's plan and checks (``rollout:``); ``client.endpoints._canary`` explains each check."""

    #: the served entity the challenger is compared with (default: the other one with traffic)
    champion: str | None = Field(default=None, pattern=_NAME)
    steps: list[int] = Field(default_factory=lambda: [10, 25, 50, 100], min_length=1, max_length=20)
    interval: float = 300.0
    #: per step: how long it may wait for enough samples before the rollout is rolled back
    deadline: float = 3600.0
    #: failed judgments that roll back (Flagger's ``threshold``)
    threshold: int = Field(default=1, ge=1, le=100)
    min_requests: int = Field(default=100, ge=1)
    min_feedback: int = Field(default=30, ge=1)
    min_labels: int = Field(default=30, ge=1)
    #: challenger error rate <= champion's + this (a fraction: 0.01 = one percentage point)
    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    #: challenger p99 <= champion's p99 x this + p99_slack_ms
    max_p99_ratio: float = Field(default=1.5, ge=1)
    p99_slack_ms: float = Field(default=10.0, ge=0)
    #: challenger thumbs-up rate >= champion's - this (a fraction)
    max_thumbs_up_drop: float = Field(default=0.05, ge=0, le=1)
    #: challenger accuracy (RMSE) no worse than the champion's by more than this fraction of it
    max_label_metric_drop: float = Field(default=0.05, ge=0, le=1)
    #: a drift or data-quality rule broken on the challenger alone fails the step
    check_drift: bool = True
    #: the registry alias moved to the challenger's version on promotion
    alias: str = Field(default="champion", pattern=r"^[A-Za-z0-9_-]+$")
    #: on promotion, the old champion entity is removed, or kept with 0 % (a quick way back)
    old_entity: Literal["remove", "keep"] = "remove"

    @field_validator("interval", "deadline", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return duration_seconds(value)

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= s <= 100 for s in steps):
            raise ValueError(f"steps {steps}: each is a percentage between 1 and 100")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValueError(f"steps {steps} must increase")
        if steps[-1] != 100:
            raise ValueError(f"steps {steps} must end at 100 (the promotion)")
        return steps


class ServingConfig(_Strict):
    """The whole file."""

    name: str = Field(pattern=_NAME, description="endpoint name")
    served_entities: list[EntitySpec] = Field(min_length=1, max_length=10)
    traffic: dict[str, int] | None = None
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    inference_table: InferenceTableSpec | None = None
    usage_tracking: bool = False
    monitor: MonitorSpec | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    rollout: RolloutSpec | None = None
    #: Accepted only to be refused with a pointer to its replacement (see the validator).
    auto_capture_config: Any = None

    @field_validator("auto_capture_config")
    @classmethod
    def _legacy_inference_tables(cls, value: Any) -> None:
        v = value if isinstance(value, dict) else {}
        table = (
            f"{{catalog: {v.get('catalog_name', '<catalog>')}, schema: {v.get('schema_name', '<schema>')}, "
            f"table_prefix: {v.get('table_name_prefix', '<prefix>')}}}"
        )
        raise ValueError(
            "legacy inference tables are deprecated and unsupported since 2026-03-20; log requests "
            f"with an AI Gateway inference table instead: 'inference_table: {table}'"
        )
    #: Where it came from, for errors found later (registry lookups): file name and YAML nodes.
    _path: str = PrivateAttr("<config>")
    _root: Any = PrivateAttr(None)


# --- loading, with line numbers ---------------------------------------------------------------


def _node_at(root: yaml.Node | None, loc: Sequence[Any]) -> yaml.Node | None:
    """The deepest YAML node along ``loc`` (pydantic's error location)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next((kv for kv in node.value if getattr(kv[0], "value", None) == str(part)), None)
            if pair is None:
                return node
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _key_node(root: yaml.Node | None, loc: Sequence[Any]) -> yaml.Node | None:
    """For ``(..., key, "[key]")`` (a bad mapping key) the key's own node."""
    parent = _node_at(root, loc[:-2])
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if getattr(k, "value", None) == str(loc[-2])), parent)
    return parent


def _line(root: yaml.Node | None, loc: Sequence[Any]) -> int:
    node = _key_node(root, loc) if len(loc) >= 2 and loc[-1] == "[key]" else _node_at(root, loc)
    return node.start_mark.line + 1 if node is not None else 1


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]")


def _duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = getattr(k, "value", "")
            if key in seen:
                found.append((k.start_mark.line + 1, _dotted((*path, key)), "duplicate key"))
            seen.add(key)
            found += _duplicate_keys(v, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found += _duplicate_keys(v, (*path, i))
    return found


def _cross_checks(cfg: ServingConfig) -> list[tuple[tuple[Any, ...], str]]:
    """What pydantic's per-field rules cannot see: names, traffic, secrets in env vars."""
    issues: list[tuple[tuple[Any, ...], str]] = []
    names = [e.name for e in cfg.served_entities]
    for i, name in enumerate(names):
        if name in names[:i]:
            issues.append((("served_entities", i, "name"), f"served entity name {name!r} is used twice"))
    for i, e in enumerate(cfg.served_entities):
        for var, value in e.environment_vars.items():
            if _SECRET_NAME.search(var) and not _SECRET_REF.match(value):
                issues.append(
                    (
                        ("served_entities", i, "environment_vars", var),
                        f"{var} looks like a secret: store it in a Databricks secret scope and write "
                        "'{{secrets/<scope>/<key>}}' instead of the value",
                    )
                )
    if cfg.monitor is not None and cfg.monitor.table is None and cfg.inference_table is None:
        issues.append((("monitor",), "a monitor needs 'table' (the unpacked records table) or an 'inference_table' "
                                     "to take it from (<catalog>.<schema>.<prefix>_records)"))
    if cfg.traffic is None:
        if len(names) > 1:
            issues.append((("traffic",), f"{len(names)} served entities need a traffic split, e.g. {names[0]}: 100"))
        return issues
    for key, pct in cfg.traffic.items():
        if key not in names:
            issues.append((("traffic", key), f"no served entity named {key!r} (have: {', '.join(names)})"))
        if not 0 <= pct <= 100:
            issues.append((("traffic", key), f"percentage {pct} is not between 0 and 100"))
    for i, name in enumerate(names):
        if name not in cfg.traffic:
            issues.append((("traffic",), f"served entity {name!r} (served_entities.{i}) has no traffic entry"))
    total = sum(cfg.traffic.values())
    if total != 100:
        issues.append((("traffic",), f"percentages sum to {total}, not 100"))
    if cfg.rollout is not None and cfg.rollout.champion is not None and cfg.rollout.champion not in names:
        issues.append((("rollout", "champion"),
                       f"no served entity named {cfg.rollout.champion!r} (have: {', '.join(names)})"))
    return issues


def parse_config(text: str, path: str = "<config>") -> ServingConfig:
    """Validate config ``text``; raise :class:`ServingConfigError` listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ServingConfigError(path, [(line, "", f"not valid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ServingConfigError(path, [(1, "", f"not valid YAML: {exc}")]) from exc
    problems = _duplicate_keys(root)
    if not isinstance(data, dict):
        raise ServingConfigError(path, [(1, "", "expected a mapping with 'name' and 'served_entities'")])
    try:
        cfg = ServingConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append((_line(root, err["loc"]), _dotted(err["loc"]), msg))
        raise ServingConfigError(path, sorted(problems)) from None
    problems += [(_line(root, loc), _dotted(loc), msg) for loc, msg in _cross_checks(cfg)]
    if problems:
        raise ServingConfigError(path, sorted(problems))
    cfg._path, cfg._root = path, root
    return cfg


def load_config(path: str | Path) -> ServingConfig:
    """Read and validate one config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read serving config {str(p)!r}: {exc.strerror or exc}") from exc
    cfg = parse_config(text, str(p))
    return cfg


# --- resolution: aliases to versions ----------------------------------------------------------


@dataclass(frozen=True)
class EntityState:
    """One served entity as the workspace sees it: everything pinned, defaults filled in."""

    name: str
    entity_name: str
    entity_version: str
    workload_size: str = "Small"
    workload_type: str = "CPU"
    scale_to_zero_enabled: bool = False
    environment_vars: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InferenceTable:
    """Where AI Gateway logs an endpoint's requests and responses."""

    catalog: str
    schema: str
    table_prefix: str

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}, prefix {self.table_prefix}"


@dataclass(frozen=True)
class MonitorState:
    """A data profiling monitor on the records table, in comparable form (every default filled in)."""

    table: str
    problem_type: str
    output_schema: str
    granularities: tuple[str, ...]
    baseline_table: str | None = None
    label_column: str | None = None
    slicing_exprs: tuple[str, ...] = ()
    cron: str | None = None
    timezone: str | None = None
    emails: tuple[str, ...] = ()
    assets_dir: str | None = None

    #: The records frame's columns the monitor reads (client.spark.unpack_payload writes them).
    timestamp_column = "request_time"
    prediction_column = "prediction"
    model_id_column = "model_version"

    def __str__(self) -> str:
        parts = [f"{self.problem_type} on {self.table}", "every " + ", ".join(self.granularities),
                 f"metrics in {self.output_schema}"]
        if self.baseline_table:
            parts.append(f"baseline {self.baseline_table}")
        if self.slicing_exprs:
            parts.append("sliced by " + ", ".join(self.slicing_exprs))
        if self.cron:
            parts.append(f"schedule '{self.cron}' {self.timezone}")
        if self.emails:
            parts.append("failures to " + ", ".join(self.emails))
        return "; ".join(parts)


def monitor_state(cfg: ServingConfig) -> MonitorState | None:
    """The file's monitor with its defaults filled in (``None`` without one)."""
    m, it = cfg.monitor, cfg.inference_table
    if m is None:
        return None
    table = m.table or (f"{it.catalog}.{it.schema_name}.{it.table_prefix}_records" if it else "")
    slicing = (("served_entity",) if m.slice_by_served_entity else ()) + tuple(
        e for e in m.slicing_exprs if not (m.slice_by_served_entity and e == "served_entity"))
    return MonitorState(
        table=table, problem_type=m.problem_type, output_schema=m.output_schema,
        granularities=tuple(dict.fromkeys(m.granularities)), baseline_table=m.baseline_table,
        label_column=m.label_column, slicing_exprs=slicing, cron=m.schedule.cron if m.schedule else None,
        timezone=m.schedule.timezone if m.schedule else None, emails=tuple(m.email_on_failure),
        assets_dir=m.assets_dir or f"/Workspace/Shared/predictor-monitors/{cfg.name}",
    )


@dataclass(frozen=True)
class DesiredEndpoint:
    """An endpoint's config in comparable form; ``aliases`` says where versions came from."""

    name: str
    entities: dict[str, EntityState]
    traffic: dict[str, int]
    tags: dict[str, str] = field(default_factory=dict)
    rate_limits: tuple[tuple[int, str, str, str | None], ...] = ()
    #: served entity name -> (model, alias, version) for the entities given by alias
    aliases: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    inference_table: InferenceTable | None = None
    usage_tracking: bool = False
    #: The data profiling monitor the file asks for; ``None``: the file manages none.
    monitor: MonitorState | None = None


#: ``(model name, alias or None, version or None) -> version``; raises when it does not exist.
Resolver = Callable[[str, "str | None", "str | None"], str]


def registry_resolver(registry_uri: str | None = None) -> Resolver:
    """A :data:`Resolver` over the MLflow registry (``databricks-uc`` on a workspace).

    Aliases resolve, and versions are checked to exist, through ``client._mlflow``.
    """
    from .._mlflow import resolve_alias, resolve_registry_uri, version_exists

    uri = resolve_registry_uri(registry_uri)

    def resolve_one(model: str, alias: str | None, version: str | None) -> str:
        if alias:
            return resolve_alias(uri, model, alias)
        return version_exists(uri, model, str(version))

    return resolve_one


def resolve(cfg: ServingConfig, resolver: Resolver | None) -> DesiredEndpoint:
    """Pin every served entity to a version (``resolver=None``: aliases stay unresolved as ``"@alias"``)."""
    root, path = cfg._root, cfg._path
    entities: dict[str, EntityState] = {}
    aliases: dict[str, tuple[str, str, str]] = {}
    problems: list[tuple[int, str, str]] = []
    for i, e in enumerate(cfg.served_entities):
        version = str(e.entity_version) if e.entity_version is not None else f"@{e.alias}"
        if resolver is not None:
            loc = ("served_entities", i, "alias" if e.alias else "entity_version")
            try:
                version = resolver(e.entity_name, e.alias, None if e.alias else version)
            except Exception as exc:  # NotFoundError, ConfigurationError, a dead registry
                problems.append((_line(root, loc), _dotted(loc), getattr(exc, "message", None) or str(exc)))
                continue
        if e.alias:
            aliases[e.name] = (e.entity_name, e.alias, version)
        entities[e.name] = EntityState(
            name=e.name,
            entity_name=e.entity_name,
            entity_version=version,
            workload_size=e.workload_size,
            workload_type=e.workload_type,
            scale_to_zero_enabled=e.scale_to_zero_enabled,
            environment_vars=tuple(sorted(e.environment_vars.items())),
        )
    if problems:
        raise ServingConfigError(path, problems)
    traffic = dict(cfg.traffic) if cfg.traffic is not None else {cfg.served_entities[0].name: 100}
    limits = tuple((r.calls, r.key, r.renewal_period, r.principal) for r in cfg.rate_limits)
    it = cfg.inference_table
    table = InferenceTable(it.catalog, it.schema_name, it.table_prefix) if it else None
    return DesiredEndpoint(cfg.name, entities, traffic, dict(cfg.tags), limits, aliases, table, cfg.usage_tracking,
                           monitor_state(cfg))
