"""The ``monitor:`` block: a data profiling monitor on the endpoint's unpacked records table.

Through databricks-sdk's typed ``data_quality`` API (``w.data_quality``, databricks-sdk >= 0.68):
the table and output schema are named in the file and identified by UUID on the wire
(``w.tables.get`` / ``w.schemas.get``). An SDK without that API gets :class:`MonitorUnsupported`
with what to do instead. The bundle's ``quality_monitors`` resource (legacy field names, what the
bundle schema takes) is built here too, from the legacy ``catalog`` types every SDK version has.

Example::

    lines, notes = monitor_plan(w, desired.monitor)   # ["+ monitor: classification on ..."]
    apply_monitor(w, desired.monitor)                 # create, or update the fields that differ
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from databricks.sdk.errors import DatabricksError, NotFound

from .._exceptions import PredictorError
from ._config import GRANULARITIES, MonitorState

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

__all__ = ["MonitorOperationError", "MonitorUnsupported", "apply_monitor", "bundle_monitor", "monitor_plan",
           "monitor_wire"]

logger = logging.getLogger(__name__)

_WIRE_GRANULARITY = {g: "AGGREGATION_GRANULARITY_" + g.upper().replace(" ", "_")
                     for g in GRANULARITIES}
_FROM_WIRE_GRANULARITY = {v: k for k, v in _WIRE_GRANULARITY.items()}
#: The fields the file manages, as ``update_mask`` paths.
_MASK = {
    "granularities": "data_profiling_config.inference_log",
    "problem_type": "data_profiling_config.inference_log",
    "label_column": "data_profiling_config.inference_log",
    "output_schema": "data_profiling_config.output_schema_id",
    "baseline_table": "data_profiling_config.baseline_table_name",
    "slicing_exprs": "data_profiling_config.slicing_exprs",
    "cron": "data_profiling_config.schedule",
    "timezone": "data_profiling_config.schedule",
    "emails": "data_profiling_config.notification_settings",
    "assets_dir": "data_profiling_config.assets_dir",
}


class MonitorUnsupported(PredictorError):
    """The installed databricks-sdk has no ``data_quality`` API (databricks-sdk < 0.68)."""


class MonitorOperationError(PredictorError):
    """A workspace call about the monitor (or its table or schema) failed."""


def _call(what: str, fn: Any, *args: Any) -> Any:
    """Like ``_workspace._call`` (which imports this module): SDK errors as one typed error."""
    try:
        return fn(*args)
    except (DatabricksError, TimeoutError, OSError) as exc:
        raise MonitorOperationError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _api(w: WorkspaceClient) -> Any:
    api = getattr(w, "data_quality", None)
    if api is None:
        from databricks.sdk.version import __version__

        raise MonitorUnsupported(
            f"the 'monitor:' block needs databricks-sdk >= 0.68 (the data_quality API); this is {__version__}. "
            "Upgrade databricks-sdk, or deploy the monitor with the bundle (`predictor endpoints bundle`)")
    return api


def monitor_wire(m: MonitorState, schema_id: str) -> Any:
    """The ``DataProfilingConfig`` of ``m`` (``schema_id``: the output schema's UUID)."""
    from databricks.sdk.service import dataquality as dq

    return dq.DataProfilingConfig(
        output_schema_id=schema_id,
        assets_dir=m.assets_dir,
        inference_log=dq.InferenceLogConfig(
            problem_type=dq.InferenceProblemType(f"INFERENCE_PROBLEM_TYPE_{m.problem_type.upper()}"),
            timestamp_column=m.timestamp_column, granularities=[
                dq.AggregationGranularity(_WIRE_GRANULARITY[g]) for g in m.granularities],
            prediction_column=m.prediction_column, model_id_column=m.model_id_column, label_column=m.label_column),
        baseline_table_name=m.baseline_table,
        slicing_exprs=list(m.slicing_exprs) or None,
        schedule=dq.CronSchedule(quartz_cron_expression=m.cron, timezone_id=m.timezone or "UTC") if m.cron else None,
        notification_settings=dq.NotificationSettings(on_failure=dq.NotificationDestination(
            email_addresses=list(m.emails))) if m.emails else None,
    )


def _state_of(table: str, output_schema: str, cfg: Any) -> MonitorState:
    """The workspace's monitor in comparable form (``output_schema`` already matched by id)."""
    log = cfg.inference_log
    emails = (cfg.notification_settings.on_failure.email_addresses or []) if (
        cfg.notification_settings and cfg.notification_settings.on_failure) else []
    return MonitorState(
        table=table,
        problem_type=str(getattr(log.problem_type, "value", log.problem_type) or "").removeprefix(
            "INFERENCE_PROBLEM_TYPE_").lower() if log else "",
        output_schema=output_schema,
        granularities=tuple(_FROM_WIRE_GRANULARITY.get(str(getattr(g, "value", g)), str(g))
                            for g in (log.granularities or [])) if log else (),
        baseline_table=cfg.baseline_table_name, label_column=log.label_column if log else None,
        slicing_exprs=tuple(cfg.slicing_exprs or ()),
        cron=cfg.schedule.quartz_cron_expression if cfg.schedule else None,
        timezone=cfg.schedule.timezone_id if cfg.schedule else None, emails=tuple(emails), assets_dir=cfg.assets_dir,
    )


def _ids(w: WorkspaceClient, m: MonitorState) -> tuple[str | None, str | None]:
    """The records table's and the output schema's UUIDs (``None``: it does not exist)."""
    def one(fn: Any, name: str, field: str) -> str | None:
        try:
            return str(getattr(_call(f"reading {name}", _not_found_passes(fn), name), field) or "") or None
        except _Missing:
            return None

    return one(w.tables.get, m.table, "table_id"), one(w.schemas.get, m.output_schema, "schema_id")


class _Missing(Exception):
    pass


def _not_found_passes(fn: Any) -> Any:
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except NotFound as exc:
            raise _Missing() from exc
    return call


def _current(w: WorkspaceClient, m: MonitorState) -> tuple[str | None, str | None, Any]:
    """``(table_id, schema_id, the workspace's Monitor or None)``."""
    api = _api(w)
    table_id, schema_id = _ids(w, m)
    if table_id is None:
        return None, schema_id, None
    try:
        monitor = _call(f"reading the monitor of {m.table}", _not_found_passes(api.get_monitor), "table", table_id)
    except _Missing:
        monitor = None
    return table_id, schema_id, monitor


def _changes(m: MonitorState, schema_id: str | None, monitor: Any) -> list[str]:
    """The fields of ``m`` the workspace's ``monitor`` does not have."""
    cfg = monitor.data_profiling_config
    same_schema = schema_id is not None and cfg.output_schema_id == schema_id
    have = _state_of(m.table, m.output_schema if same_schema else "(another schema)", cfg)
    return [f for f in _MASK if getattr(have, f) != getattr(m, f)]


def monitor_plan(w: WorkspaceClient, m: MonitorState) -> tuple[list[str], list[str]]:
    """``(diff lines, notes)`` for the file's monitor; no lines when the workspace already has it."""
    table_id, schema_id, monitor = _current(w, m)
    notes = []
    if table_id is None:
        notes.append(f"monitor: table {m.table} does not exist yet; write the unpacked inference table there "
                     "(client.spark.unpack_payload) and apply again")
        return [f"+ monitor: {m}"], notes
    if schema_id is None:
        notes.append(f"monitor: output schema {m.output_schema} does not exist; create it first")
    if monitor is None:
        return [f"+ monitor: {m}"], notes
    changed = _changes(m, schema_id, monitor)
    if not changed:
        return [], notes
    return [f"~ monitor on {m.table}: " + ", ".join(dict.fromkeys(changed)) + f" -> {m}"], notes


def apply_monitor(w: WorkspaceClient, m: MonitorState) -> str:
    """Create the monitor or update what differs; what happened, in words."""
    from databricks.sdk.service import dataquality as dq

    api = _api(w)
    table_id, schema_id, monitor = _current(w, m)
    if table_id is None:
        return f"monitor skipped: table {m.table} does not exist yet (unpack the inference table into it first)"
    if schema_id is None:
        raise MonitorOperationError(f"monitor on {m.table}: output schema {m.output_schema} does not exist")
    wanted = dq.Monitor(object_type="table", object_id=table_id, data_profiling_config=monitor_wire(m, schema_id))
    if monitor is None:
        logger.info("creating the monitor on %s", m.table)
        _call(f"creating the monitor on {m.table}", api.create_monitor, wanted)
        return f"monitor created on {m.table}"
    changed = _changes(m, schema_id, monitor)
    if not changed:
        return f"monitor on {m.table}: no changes"
    mask = ",".join(dict.fromkeys(_MASK[f] for f in changed))
    _call(f"updating the monitor on {m.table}", api.update_monitor, "table", table_id, wanted, mask)
    return f"monitor on {m.table} updated ({mask})"


def bundle_monitor(m: MonitorState) -> dict[str, Any]:
    """The bundle's ``quality_monitors`` resource (legacy field names: what bundles deploy)."""
    from databricks.sdk.service import catalog

    # MonitorInfo: the legacy API's monitor, whose settable fields are the bundle resource's.
    body = catalog.MonitorInfo(
        table_name=m.table, output_schema_name=m.output_schema, assets_dir=m.assets_dir,
        status=None, profile_metrics_table_name=None, drift_metrics_table_name=None,  # type: ignore[arg-type]
        monitor_version=None,  # type: ignore[arg-type]
        inference_log=catalog.MonitorInferenceLog(
            problem_type=catalog.MonitorInferenceLogProblemType(f"PROBLEM_TYPE_{m.problem_type.upper()}"),
            timestamp_col=m.timestamp_column, granularities=list(m.granularities),
            prediction_col=m.prediction_column, model_id_col=m.model_id_column, label_col=m.label_column),
        baseline_table_name=m.baseline_table, slicing_exprs=list(m.slicing_exprs) or None,
        schedule=catalog.MonitorCronSchedule(quartz_cron_expression=m.cron, timezone_id=m.timezone or "UTC")
        if m.cron else None,
        notifications=catalog.MonitorNotifications(on_failure=catalog.MonitorDestination(
            email_addresses=list(m.emails))) if m.emails else None,
    ).as_dict()
    return body
