"""The control plane: Model Serving endpoints as reviewed files (``serving_configs/*.yaml``).

Read a config file, pin its aliases to versions, diff it against the workspace, apply it and
wait, show an endpoint's status, promote a version (optionally through a canary), run a canary
rollout judged on evidence (``rollout``: steps, checks, rollback or promotion; its state on the
endpoint's tags), and generate the Asset Bundle's ``model_serving_endpoints``. The request path
(``client.Predictor``) knows nothing of this package, and this package sends no predictions.

Example::

    from client.endpoints import apply, load_config, plan, registry_resolver, resolve, workspace_client

    w = workspace_client()                       # credentials as databricks-sdk resolves them
    desired = resolve(load_config("serving_configs/iris.yaml"), registry_resolver())
    print(plan(w, desired).text())               # + endpoint iris will be created ...
    apply(w, desired).changed                    # waits until NOT_UPDATING; False the second time

Names load on first use: ``import client.endpoints`` imports neither yaml nor databricks-sdk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bundle import bundle_resources, check_bundle, monitor_resources
    from ._canary import Evidence, Judgment, Policy, RolloutState, judge
    from ._config import (
        DesiredEndpoint,
        EntityState,
        InferenceTable,
        MonitorState,
        RolloutSpec,
        ServingConfig,
        ServingConfigError,
        duration_seconds,
        load_config,
        parse_config,
        registry_resolver,
        resolve,
    )
    from ._diff import Plan, diff, status_text
    from ._evidence import evidence_from_report, monitoring_evidence, records_evidence
    from ._monitor import MonitorUnsupported
    from ._promote import promote, registry_alias_setter
    from ._rollout import (
        EvidenceSource,
        RolloutError,
        abort_rollout,
        plan_rollout,
        policy_of,
        rollout,
        rollout_status,
    )
    from ._workspace import (
        ApplyResult,
        EndpointOperationError,
        EndpointUpdateFailed,
        apply,
        get_endpoint,
        plan,
        workspace_client,
    )

__all__ = [
    "ApplyResult",
    "DesiredEndpoint",
    "EndpointOperationError",
    "EndpointUpdateFailed",
    "EntityState",
    "Evidence",
    "EvidenceSource",
    "InferenceTable",
    "Judgment",
    "MonitorState",
    "MonitorUnsupported",
    "Plan",
    "Policy",
    "RolloutError",
    "RolloutSpec",
    "RolloutState",
    "ServingConfig",
    "ServingConfigError",
    "abort_rollout",
    "apply",
    "bundle_resources",
    "check_bundle",
    "diff",
    "duration_seconds",
    "evidence_from_report",
    "get_endpoint",
    "judge",
    "load_config",
    "monitor_resources",
    "monitoring_evidence",
    "parse_config",
    "plan",
    "plan_rollout",
    "policy_of",
    "promote",
    "records_evidence",
    "registry_alias_setter",
    "registry_resolver",
    "resolve",
    "rollout",
    "rollout_status",
    "status_text",
    "workspace_client",
]

#: The private module each public name lives in.
_MODULE_OF = {
    **dict.fromkeys(("bundle_resources", "check_bundle", "monitor_resources"), "_bundle"),
    **dict.fromkeys(("Evidence", "Judgment", "Policy", "RolloutState", "judge"), "_canary"),
    **dict.fromkeys(
        ("DesiredEndpoint", "EntityState", "InferenceTable", "MonitorState", "RolloutSpec", "ServingConfig",
         "ServingConfigError", "duration_seconds", "load_config", "parse_config", "registry_resolver", "resolve"),
        "_config",
    ),
    **dict.fromkeys(("Plan", "diff", "status_text"), "_diff"),
    **dict.fromkeys(("evidence_from_report", "monitoring_evidence", "records_evidence"), "_evidence"),
    "MonitorUnsupported": "_monitor",
    **dict.fromkeys(("promote", "registry_alias_setter"), "_promote"),
    **dict.fromkeys(
        ("EvidenceSource", "RolloutError", "abort_rollout", "plan_rollout", "policy_of", "rollout", "rollout_status"),
        "_rollout",
    ),
    **dict.fromkeys(
        ("ApplyResult", "EndpointOperationError", "EndpointUpdateFailed", "apply", "get_endpoint", "plan",
         "workspace_client"),
        "_workspace",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'client.endpoints' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
