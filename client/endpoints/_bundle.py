"""The Asset Bundle's ``model_serving_endpoints`` resources, generated from ``serving_configs/``.

Bundles cannot follow registry aliases, so an entity given by alias gets its version from a
bundle variable (``<endpoint>_<entity>_version``) whose default is the version the alias
pointed to when the block was generated. ``predictor endpoints apply`` follows the alias itself.

Example::

    resources, variables = bundle_resources([load_config("serving_configs/iris.yaml")])
    resources["iris"]["config"]["served_entities"][0]["entity_version"]   # "${var.iris_champion_version}"
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ._config import Resolver, ServingConfig, resolve

__all__ = ["bundle_resources", "check_bundle", "monitor_resources", "variable_name"]


def variable_name(endpoint: str, entity: str) -> str:
    return f"{endpoint}_{entity}_version".replace("-", "_")


def monitor_resources(configs: list[ServingConfig]) -> dict[str, Any]:
    """``resources.quality_monitors`` for ``databricks.yml``: one per file with a ``monitor:`` block,
    keyed ``<endpoint>_monitor``."""
    from ._monitor import bundle_monitor

    out = {}
    for cfg in configs:
        monitor = resolve(cfg, None).monitor
        if monitor is not None:
            out[f"{cfg.name}_monitor".replace("-", "_")] = bundle_monitor(monitor)
    return out


def bundle_resources(
    configs: list[ServingConfig], resolver: Resolver | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(resources.model_serving_endpoints, variables)`` for ``databricks.yml``.

    Variable defaults are resolved through ``resolver``; without one they are left out. The
    monitors are in :func:`monitor_resources`.
    """
    from databricks.sdk.service.serving import EndpointTag

    from ._diff import gateway_config, served_entities, traffic_config

    resources: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    for cfg in configs:
        desired = resolve(cfg, None)
        entities = dict(desired.entities)
        for spec in cfg.served_entities:
            if spec.alias is None:
                continue
            var = variable_name(cfg.name, spec.name)
            entities[spec.name] = replace(entities[spec.name], entity_version=f"${{var.{var}}}")
            variables[var] = {
                "description": f"Version of {spec.entity_name}@{spec.alias} for endpoint {cfg.name} "
                f"(served entity {spec.name}); bundles cannot follow aliases: regenerate with "
                "`predictor endpoints bundle serving_configs/*.yaml`.",
            }
            if resolver is not None:
                variables[var]["default"] = resolver(spec.entity_name, spec.alias, None)
        desired = replace(desired, entities=entities)
        body: dict[str, Any] = {
            "name": cfg.name,
            "config": {
                "served_entities": [e.as_dict() for e in served_entities(desired)],
                "traffic_config": traffic_config(desired).as_dict(),
            },
        }
        if desired.tags:
            body["tags"] = [EndpointTag(key=k, value=v).as_dict() for k, v in desired.tags.items()]
        if desired.rate_limits or desired.inference_table or desired.usage_tracking:
            body["ai_gateway"] = gateway_config(desired, None).as_dict()
        resources[cfg.name.replace("-", "_")] = body
    return resources, variables


def check_bundle(bundle: dict[str, Any], configs: list[ServingConfig]) -> list[str]:
    """Where ``bundle`` (a loaded ``databricks.yml``) disagrees with the config files; ``[]`` if nowhere.

    Variable defaults (the alias's version when generated) are checked to be version numbers only.
    """
    want_res, want_vars = bundle_resources(configs)
    have_res = (bundle.get("resources") or {}).get("model_serving_endpoints") or {}
    have_vars = bundle.get("variables") or {}
    problems = []
    want_mon, have_mon = monitor_resources(configs), (bundle.get("resources") or {}).get("quality_monitors") or {}
    for key in sorted(set(want_mon) | set(have_mon)):
        if have_mon.get(key) != want_mon.get(key):
            what = "is missing" if key not in have_mon else (
                "has no monitor in serving_configs/" if key not in want_mon else "differs from its serving config")
            problems.append(f"resources.quality_monitors.{key} {what}")
    for key in sorted(set(want_res) | set(have_res)):
        if key not in have_res:
            problems.append(f"resources.model_serving_endpoints.{key} is missing")
        elif key not in want_res:
            problems.append(f"resources.model_serving_endpoints.{key} has no file in serving_configs/")
        elif have_res[key] != want_res[key]:
            problems.append(f"resources.model_serving_endpoints.{key} differs from its serving config")
    for var, spec in want_vars.items():
        have = have_vars.get(var)
        if not isinstance(have, dict):
            problems.append(f"variables.{var} is missing")
            continue
        if have.get("description") != spec["description"]:
            problems.append(f"variables.{var}.description differs")
        if not str(have.get("default", "")).isdigit():
            problems.append(f"variables.{var}.default must be a version number, got {have.get('default')!r}")
    return problems
