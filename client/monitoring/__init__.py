"""Monitoring: is the model still right? Service health, input and prediction drift, data and
label quality per model version (or served entity), from the traces the SDK and the apps write.

The data is a *records frame* (pandas), one row per scored record: ``request_time`` (UTC),
``databricks_request_id``, ``served_entity``, ``model_version``, ``status_code`` (200 = ok),
``error``, ``execution_duration_ms``, one column per signature input, ``prediction``, and, where
known, ``label`` (``expected_prediction`` expectations) and ``thumbs_up`` (``user_feedback``).
:func:`records_from_traces` builds one from MLflow traces; ``client.spark`` builds one from a
workspace's inference table. Drift statistics carry the names of Databricks data profiling's
``_drift_metrics`` table (``ks_test``, ``chi_squared_test``, ``wasserstein_distance``,
``js_distance``, ``tv_distance``, ``population_stability_index``), computed with scipy.

Baselines: a version's training data (``mlflow.log_input(..., context="training")``, as the demo
iris model logs it), a CSV/Parquet file, a table ``catalog.schema.table`` read through Spark
(sampled to 100,000 rows), a frame, or the previous window (CONSECUTIVE).

Example::

    from client.monitoring import monitor, records_from_traces, drift, health, report

    r = monitor("models:/main.default.iris@champion")          # traces + training baseline
    for g in r.groups:
        print(g.group, g.requests, g.error_rate, [d.column_name for d in g.drift if d.drifted])

    frame, meta = records_from_traces("main.default.iris", since=yesterday)
    health(frame, by="served_entity", windows="1h")             # per group, per window
    drift(frame, baseline_frame)                                # per feature, with verdicts
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ._baseline import TRAINING, read_baseline, read_baseline_file, read_baseline_table, training_baseline
from ._errors import BaselineError, EmptyWindowError, MonitoringError, NoDataError, NoTracesError
from ._models import (
    DataQuality,
    DataQualityRule,
    DriftRule,
    FeatureDrift,
    HealthRule,
    HealthWindow,
    LabelQuality,
    MonitorReport,
    RecordsMeta,
    RuleBreak,
    TestResult,
    VersionReport,
)
from ._report import DEFAULT_WINDOW, monitor, report
from ._stats import data_quality, label_quality, population_stability_index
from ._stats import drift as feature_drift
from ._text import format_report
from ._traces import records_from_trace_infos, records_from_traces

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BaselineError",
    "DEFAULT_WINDOW",
    "DataQuality",
    "DataQualityRule",
    "DriftRule",
    "EmptyWindowError",
    "FeatureDrift",
    "HealthRule",
    "HealthWindow",
    "LabelQuality",
    "MonitorReport",
    "MonitoringError",
    "NoDataError",
    "NoTracesError",
    "RecordsMeta",
    "RuleBreak",
    "TRAINING",
    "TestResult",
    "VersionReport",
    "data_quality",
    "drift",
    "feature_drift",
    "format_report",
    "health",
    "label_quality",
    "monitor",
    "population_stability_index",
    "read_baseline",
    "read_baseline_file",
    "read_baseline_table",
    "records_from_trace_infos",
    "records_from_traces",
    "report",
    "training_baseline",
]


def health(records: pd.DataFrame, by: str = "model_version", windows: str = DEFAULT_WINDOW, *,
           since: datetime | None = None, until: datetime | None = None) -> dict[str, list[HealthWindow]]:
    """Requests, error rate and latency p50/p95/p99 per ``by`` group (``"model_version"`` or
    ``"served_entity"``) and window, ``windows`` long (a pandas offset: ``"1h"``, ``"15min"``, ``"1D"``),
    from ``since`` to ``until`` (default: the records' own span, in whole windows).

    Example::

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"request_time": pd.to_datetime(["2026-12-01T10:05Z", "2026-12-01T10:40Z"]),
        ...     "databricks_request_id": ["a", "b"], "served_entity": ["champion", "champion"],
        ...     "model_version": ["3", "3"], "status_code": [200, 500], "error": [None, "InternalServerError"],
        ...     "execution_duration_ms": [12.0, 30.0]})
        >>> [(w.requests, w.error_rate) for w in health(frame)["3"]]
        [(2, 0.5)]
    """
    import pandas as pd

    from ._stats import health_windows
    from ._traces import time_range

    if by not in ("model_version", "served_entity"):
        raise ValueError(f"by={by!r}: expected 'model_version' or 'served_entity'")
    if not len(records):
        raise EmptyWindowError("no records")
    if since is None and until is None:  # the records' own span, in whole windows
        start = records["request_time"].min().floor(windows)
        end = records["request_time"].max().floor(windows) + pd.tseries.frequencies.to_offset(windows)
    else:
        start, end = (pd.Timestamp(t) for t in time_range(since, until))
    groups = records[by].fillna("?").astype(str)
    return {str(key): health_windows(part, windows, start, end) for key, part in records.groupby(groups, sort=True)}


def drift(records: pd.DataFrame, baseline: pd.DataFrame, rules: Mapping[str, DriftRule] | None = None, *,
          signature: Mapping[str, str] | None = None) -> list[FeatureDrift]:
    """Each feature of ``records`` against ``baseline`` (all versions together), then the
    prediction when the baseline has a ``prediction`` column; verdicts by ``rules`` (a feature name
    or ``"*"`` -> :class:`DriftRule`). Raises ``BaselineError`` when the baseline lacks a feature.

    Example::

        [d.column_name for d in drift(frame, read_baseline_file("train.parquet")) if d.drifted]
    """
    from ._baseline import check_baseline
    from ._report import NOT_FEATURES
    from ._stats import feature_kind

    features = list(signature) if signature else [c for c in records.columns if c not in NOT_FEATURES]
    check_baseline(baseline, features, "frame")
    if not len(records):
        raise EmptyWindowError("no records")
    rules = rules or {}
    out = []
    for f in features:
        kind = feature_kind(baseline[f], (signature or {}).get(f))
        out.append(feature_drift(f, baseline[f], records[f], kind=kind, rule=rules.get(f) or rules.get("*")))
    if "prediction" in baseline and "prediction" in records:
        out.append(feature_drift("prediction", baseline["prediction"], records["prediction"],
                                 rule=rules.get("prediction") or rules.get("*")))
    return out


