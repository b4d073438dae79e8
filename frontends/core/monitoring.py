"""What both apps' Monitoring tabs show, framework-neutral: the SDK's monitoring report
(``client.monitoring.monitor``) on the app's traces, as chart and table rows.

Same access as the Feedback tab (``feedback_access``): only the model's reviewers
(``PREDICTOR_REVIEWERS``, or the one local user) see it. Computed only while the tab is open.

Example::

    view = monitoring_view("main.default.iris", experiment_id, feedback_access(headers))
    view.lines["error rate"]                 # [{"window": ..., "version": "v1", "error rate": 0.0}, ...]
    view.drift["v1"]                         # feature, statistic, value, threshold, verdict, ...
    overlay_rows(view, "v1", "sepal width (cm)")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from client.monitoring import MonitorReport, NoDataError, VersionReport, monitor

from .feedback import FeedbackAccess, trace_experiment_ids

__all__ = [
    "LINE_METRICS",
    "MONITOR_FAILED",
    "MONITOR_NOTHING_YET",
    "MONITOR_NO_EXPERIMENT",
    "MONITOR_REVIEWERS_ONLY",
    "MonitoringView",
    "default_feature",
    "drift_rows",
    "line_rows",
    "monitoring_view",
    "overlay_rows",
    "view_of",
]

log = logging.getLogger(__name__)

MONITOR_NO_EXPERIMENT = "No MLflow experiment is available: predictions are not traced, so there is nothing to monitor."
MONITOR_NOTHING_YET = "No traced predictions in the last 7 days: nothing to monitor yet."
MONITOR_FAILED = "The monitoring report could not be computed from the tracking store."
MONITOR_REVIEWERS_ONLY = "Monitoring is shown only to the model's reviewers."
#: The line charts: a label and the window field it plots.
LINE_METRICS = {"requests": "requests", "error rate": "error_rate", "latency p95 (ms)": "latency_p95_ms",
                "thumbs-up rate": "thumbs_up_rate"}


@dataclass(frozen=True)
class MonitoringView:
    """A Monitoring tab's content: a note, and (when there is a report) its rows."""

    note: str
    failed: bool = False
    report: MonitorReport | None = None
    #: ``"v2 challenger"`` per group, as the Feedback tab labels versions.
    versions: list[str] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    drift: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)


def _label(g: VersionReport) -> str:
    return f"v{g.model_version or '?'}" + (f" {g.served_entity}" if g.served_entity else "")


def line_rows(report: MonitorReport, metric: str) -> list[dict[str, Any]]:
    """Long-format rows of one :data:`LINE_METRICS` metric per window and version, windows with
    no value left out (a line chart joins the points it has)."""
    attr = LINE_METRICS[metric]
    return [{"window": w.start.strftime("%Y-%m-%d %H:%M"), "version": _label(g), metric: getattr(w, attr)}
            for g in report.groups for w in g.windows if getattr(w, attr) is not None]


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def drift_rows(g: VersionReport) -> list[dict[str, Any]]:
    """One row per feature (and the prediction): its deciding statistic, value, threshold, verdict,
    and data quality."""
    quality = {q.column_name: q for q in g.data_quality}
    rows = []
    for d in [*g.drift, *([g.prediction_drift] if g.prediction_drift else [])]:
        q = quality.get(d.column_name)
        rows.append({
            "feature": d.column_name, "statistic": d.statistic or "-", "value": _fmt(d.value),
            "threshold": _fmt(d.threshold, "g"),
            "verdict": "too few rows" if d.drifted is None else ("DRIFTED" if d.drifted else "ok"),
            "nulls": "-" if q is None else f"{q.null_share:.0%}",
            "data quality": "-" if q is None else ("; ".join(q.problems) or "ok"),
        })
    return rows


def default_feature(rows: list[dict[str, Any]]) -> str | None:
    """The feature whose distributions a tab shows first: the first drifted one, else the first."""
    drifted = [r["feature"] for r in rows if r["verdict"] == "DRIFTED"]
    return drifted[0] if drifted else (rows[0]["feature"] if rows else None)


def view_of(report: MonitorReport) -> MonitoringView:
    """The rows of ``report`` (pure)."""
    summary = [{"version": _label(g), "requests": g.requests, "error rate": _fmt(g.error_rate, ".1%"),
                "latency p95 (ms)": _fmt(g.latency_p95_ms, ".0f"),
                "drifted": ", ".join(d.column_name for d in g.drift if d.drifted) or "-",
                "broken rules": len(g.broken)} for g in report.groups]
    m = report.meta
    against = (f" against {report.baseline_source}" if report.baseline_source
               else " (each window against the one before)")
    note = (f"Last 7 days in {report.window} windows; drift {report.drift_type}{against}"
            + f". Based on {m.predictions} predictions in {m.traces} traces ({m.dropped_traces} dropped).")
    return MonitoringView(
        note=note, report=report, versions=[_label(g) for g in report.groups], summary=summary,
        lines={metric: line_rows(report, metric) for metric in LINE_METRICS},
        drift={_label(g): drift_rows(g) for g in report.groups},
        problems=[{"version": _label(g), "kind": b.kind, "feature": b.column or "-", "problem": b.message}
                  for g in report.groups for b in g.broken])


def overlay_rows(view: MonitoringView, version: str, feature: str) -> list[dict[str, Any]]:
    """Baseline and current shares of ``feature`` for ``version``'s group, per bin or category
    (long format: ``bin``, ``share``, ``sample``), for an overlaid bar chart."""
    if view.report is None:
        return []
    for g in view.report.groups:
        if _label(g) != version:
            continue
        for d in [*g.drift, *([g.prediction_drift] if g.prediction_drift else [])]:
            if d.column_name == feature:
                return ([{"bin": k, "share": v, "sample": "baseline"} for k, v in d.baseline_shares.items()]
                        + [{"bin": k, "share": v, "sample": "current"} for k, v in d.shares.items()])
    return []


def monitoring_view(model_name: str | None, experiment_id: str | None, access: FeedbackAccess,
                    registry_uri: str | None = None) -> MonitoringView:
    """The Monitoring tab's content (blocking: MLflow, statistics), for a reviewer only. Never raises."""
    if not access.reviewer:
        return MonitoringView(MONITOR_REVIEWERS_ONLY)
    if experiment_id is None:
        return MonitoringView(MONITOR_NO_EXPERIMENT)
    try:
        report = monitor(model_name, experiments=trace_experiment_ids(experiment_id), registry_uri=registry_uri)
    except NoDataError:
        return MonitoringView(MONITOR_NOTHING_YET)
    except Exception as err:
        log.warning("monitoring report unavailable: %s: %s", type(err).__name__, err)
        return MonitoringView(MONITOR_FAILED, failed=True)
    return view_of(report)
