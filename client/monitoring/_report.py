"""A monitoring report: health, drift, data and label quality per version (or served entity).

:func:`report` is pure (a records frame and a baseline in, a ``MonitorReport`` out); :func:`monitor`
reads the traces and the baselines first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ._baseline import TRAINING, check_baseline, read_baseline, signature_types, training_baseline
from ._errors import BaselineError, EmptyWindowError
from ._models import (
    DataQuality,
    DataQualityRule,
    DriftRule,
    FeatureDrift,
    HealthRule,
    MonitorReport,
    RecordsMeta,
    RuleBreak,
    VersionReport,
)
from ._stats import data_quality, drift, feature_kind, health_windows, label_quality, latency_percentiles
from ._traces import BASE_COLUMNS, DEFAULT_MAX_TRACES, records_from_traces, time_range

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_WINDOW", "monitor", "report"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = "1h"
#: Columns of a records frame that are not features.
NOT_FEATURES = frozenset({*BASE_COLUMNS, "trace_id", "prediction", "label", "thumbs_up"})
Group = Literal["model_version", "served_entity"]


def _features(records: pd.DataFrame, signature: Mapping[str, str] | None) -> list[str]:
    if signature:
        return list(signature)
    return [c for c in records.columns if c not in NOT_FEATURES]


def _rule(rules: Mapping[str, DriftRule] | None, column: str) -> DriftRule:
    rules = rules or {}
    return rules.get(column) or rules.get("*") or DriftRule()


def _drift_breaks(d: FeatureDrift, kind: Literal["drift", "prediction_drift"]) -> list[RuleBreak]:
    if not d.drifted:
        return []
    return [RuleBreak(kind=kind, column=d.column_name,
                      message=f"drifted: {d.statistic} {d.value:.3g} (threshold {d.threshold:g})")]


def _health_breaks(g: dict[str, Any], fastest_p95: float | None, rule: HealthRule) -> list[RuleBreak]:
    if g["requests"] < rule.min_requests:
        return []
    out = []
    if g["error_rate"] is not None and g["error_rate"] > rule.max_error_rate:
        out.append(RuleBreak(kind="health", message=f"error rate {g['error_rate']:.1%} > {rule.max_error_rate:.1%}"))
    p95 = g["latency_p95_ms"]
    if p95 is not None and rule.max_latency_p95_ms is not None and p95 > rule.max_latency_p95_ms:
        out.append(RuleBreak(kind="health", message=f"latency p95 {p95:.0f} ms > {rule.max_latency_p95_ms:.0f} ms"))
    if p95 is not None and fastest_p95 and p95 > rule.max_latency_ratio * fastest_p95:
        out.append(RuleBreak(kind="health", message=f"latency p95 {p95:.0f} ms > {rule.max_latency_ratio:g}x "
                                                    f"the fastest group's {fastest_p95:.0f} ms"))
    return out


def _consecutive(part: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The group's last window with records, and the window with records before it."""
    windows = part["request_time"].dt.floor(freq)
    filled = sorted(windows.unique())
    if len(filled) < 2:
        return None
    return part[windows == filled[-2]], part[windows == filled[-1]]


def report(
    records: pd.DataFrame, baseline: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None, *,
    meta: RecordsMeta | None = None, by: Group = "model_version", window: str = DEFAULT_WINDOW,
    since: datetime | None = None, until: datetime | None = None, signature: Mapping[str, str] | None = None,
    rules: Mapping[str, DriftRule] | None = None, health_rule: HealthRule | None = None,
    quality_rule: DataQualityRule | None = None, baseline_source: str | None = None, model: str | None = None,
) -> MonitorReport:
    """Health, drift, data and label quality of ``records`` per ``by`` group, over ``window``s.

    ``baseline``: one frame for every group, a mapping from model version to its frame, or
    ``None`` (CONSECUTIVE: each group's last window against the one before). ``signature``
    (column name -> MLflow type) names the features and their types; without it every column
    that is not a records-frame column is a feature. ``rules`` maps a feature (or ``"*"``, or
    ``"prediction"``) to its :class:`DriftRule`. Naive ``request_time`` values (a Spark-unpacked
    inference table's, after ``toPandas()``) are read as UTC.

    Raises ``EmptyWindowError`` for no records in the range, ``BaselineError`` for a baseline
    without the features.

    Example::

        frame, meta = records_from_traces("models:/main.default.iris@champion")
        r = report(frame, read_baseline_file("train.parquet"), meta=meta)
        [(g.group, [d.column_name for d in g.drift if d.drifted]) for g in r.groups]
    """
    import pandas as pd

    if by not in ("model_version", "served_entity"):
        raise ValueError(f"by={by!r}: expected 'model_version' or 'served_entity'")
    try:
        pd.tseries.frequencies.to_offset(window)
    except ValueError as err:
        raise ValueError(f"window={window!r} is not a pandas offset such as '1h' or '1D'") from err
    # Naive times (a Spark-unpacked inference table's, through toPandas) are read as UTC.
    times = pd.to_datetime(records["request_time"], utc=True) if len(records) else None
    if times is not None and since is None and until is None:  # the records' own span, whole windows
        start = times.min().floor(window)
        end = times.max().floor(window) + pd.tseries.frequencies.to_offset(window)
    else:
        start, end = (pd.Timestamp(t) for t in time_range(since, until))
    part_all = records[(times >= start) & (times < end)] if times is not None else records
    if not len(part_all):
        raise EmptyWindowError(f"no records between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    features = _features(part_all, signature)
    missing = [f for f in features if f not in part_all.columns]
    for f in missing:  # a signature column no call sent: all null (data quality says so)
        part_all = part_all.assign(**{f: None})
    baselines: Mapping[str, pd.DataFrame] | None
    if isinstance(baseline, pd.DataFrame):
        check_baseline(baseline, features, baseline_source or "frame")
        baselines = None
    else:
        baselines = baseline
        for version, frame in (baseline or {}).items():
            check_baseline(frame, features, f"{baseline_source or 'baseline'} of version {version}")
    health_rule, quality_rule = health_rule or HealthRule(), quality_rule or DataQualityRule()
    kinds = {f: feature_kind(part_all[f], (signature or {}).get(f)) for f in features}

    groups: list[dict[str, Any]] = []
    for key, part in part_all.groupby(part_all[by].fillna("?").astype(str), sort=True):
        versions = part["model_version"].dropna().astype(str)
        entities = part["served_entity"].dropna().astype(str)
        version = versions.mode().iat[0] if len(versions) else None
        entity = entities.mode().iat[0] if len(entities) else None
        reqs = part.drop_duplicates("databricks_request_id")
        errors = int((reqs["status_code"] != 200).sum())
        p50, p95, p99 = latency_percentiles(reqs["execution_duration_ms"])
        base: pd.DataFrame | None
        if isinstance(baseline, pd.DataFrame):
            base, current = baseline, part
        elif baselines is not None:
            base, current = baselines.get(str(version)) if version is not None else None, part
        else:
            pair = _consecutive(part, window)
            base, current = pair if pair is not None else (None, part)
        drifts, pred_drift, quality = [], None, []
        for f in features:
            b = base[f] if base is not None else None
            if b is not None:
                drifts.append(drift(f, b, current[f], kind=kinds[f], rule=_rule(rules, f)))
            quality.append(data_quality(f, current[f], b, kind=kinds[f], declared=(signature or {}).get(f),
                                        rule=quality_rule))
        ok_preds = current[current["status_code"] == 200]["prediction"] if "prediction" in current else None
        if base is not None and "prediction" in base and ok_preds is not None and ok_preds.notna().any():
            pred_drift = drift("prediction", base["prediction"], ok_preds, rule=_rule(rules, "prediction"))
        groups.append({
            "group": str(key), "model_version": version, "served_entity": entity, "requests": len(reqs),
            "errors": errors, "error_rate": errors / len(reqs) if len(reqs) else None,
            "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99,
            "windows": health_windows(part, window, start, end), "drift": drifts, "prediction_drift": pred_drift,
            "data_quality": quality, "labels": label_quality(part),
        })
    eligible = [g["latency_p95_ms"] for g in groups
                if g["requests"] >= health_rule.min_requests and g["latency_p95_ms"] is not None]
    fastest = min(eligible) if len(eligible) > 1 else None
    out = []
    for g in groups:
        broken = _health_breaks(g, fastest, health_rule)
        for d in g["drift"]:
            broken += _drift_breaks(d, "drift")
        if g["prediction_drift"] is not None:
            broken += _drift_breaks(g["prediction_drift"], "prediction_drift")
        q: DataQuality
        for q in g["data_quality"]:
            broken += [RuleBreak(kind="data_quality", column=q.column_name, message=p) for p in q.problems]
        out.append(VersionReport(**g, broken=broken))
    first_base = baseline if isinstance(baseline, pd.DataFrame) else next(iter((baselines or {}).values()), None)
    return MonitorReport(
        model=model, by=by, since=start, until=end, window=window,
        drift_type="CONSECUTIVE" if baseline is None else "BASELINE", baseline_source=baseline_source,
        baseline_rows=len(first_base) if first_base is not None else 0,
        meta=meta or RecordsMeta(traces=part_all["databricks_request_id"].nunique(), predictions=len(part_all)),
        groups=out)


def _baselines_for(spec: Any, model_name: str | None, versions: Sequence[str], features: Sequence[str]
                   ) -> tuple[Any, str | None]:
    """The baseline ``monitor`` passes to :func:`report`, and its description."""
    import pandas as pd

    if spec is None:
        return None, None
    if isinstance(spec, pd.DataFrame):
        return spec, "frame"
    if str(spec) not in (TRAINING, "auto"):
        return read_baseline(spec), str(spec)
    if not model_name:
        if spec == "auto":
            return None, None
        raise BaselineError("baseline='training' needs a model", source=TRAINING)
    found: dict[str, pd.DataFrame] = {}
    sources = []
    for version in versions:
        try:
            found[version], where = training_baseline(model_name, version)
            sources.append(where)
        except BaselineError as err:
            if spec != "auto":
                raise
            log.info("no training baseline (%s); comparing consecutive windows", err)
            return None, None
    return (found or None), ("; ".join(sources) or None)


def monitor(
    model: str | None = None, *, endpoint: str | None = None, experiments: Sequence[str] | None = None,
    since: datetime | None = None, until: datetime | None = None, window: str = DEFAULT_WINDOW,
    baseline: Any = "auto", by: Group = "model_version", rules: Mapping[str, DriftRule] | None = None,
    health_rule: HealthRule | None = None, quality_rule: DataQualityRule | None = None,
    max_traces: int = DEFAULT_MAX_TRACES, registry_uri: str | None = None,
) -> MonitorReport:
    """Read the traces of ``model`` (a registered name or a ``models:/`` URI: all the model's
    versions, or the one a ``models:/name/3`` URI names) or ``endpoint`` and report on them (see
    :func:`report`).

    ``baseline``: ``"auto"`` (each version's training data when its run logged it, else
    CONSECUTIVE windows), ``"training"`` (required), a CSV/Parquet path, a table
    ``catalog.schema.table`` (read through Spark, sampled: :func:`read_baseline_table`), a frame,
    or ``None`` (CONSECUTIVE). The signature of the newest version traced names the features.

    Example::

        r = monitor("models:/main.default.iris@champion", since=datetime(2026, 12, 1, tzinfo=timezone.utc))
        r.ok, [b.message for _, b in r.broken()]
    """
    from .._mlflow import tracking_session

    name, version = model, None
    if model and model.startswith("models:"):
        from .._schema.signatures import parse_model_uri

        name, version, _alias = parse_model_uri(model)
    frame, meta = records_from_traces(name, endpoint=endpoint, experiments=experiments, since=since, until=until,
                                      max_traces=max_traces, registry_uri=registry_uri, version=version)
    versions = sorted({str(v) for v in frame["model_version"].dropna()}, key=lambda v: (len(v), v))
    signature: dict[str, str] = {}
    with tracking_session(registry_uri):
        if name and versions:
            try:
                signature = signature_types(f"models:/{name}/{versions[-1]}")
            except Exception as err:  # a model not in this registry: the traced columns are the features
                log.info("no signature for %s version %s (%s)", name, versions[-1], err)
        features = _features(frame, signature)
        base, source = _baselines_for(baseline, name, versions, features)
    if since is None and until is None:
        since, until = time_range(None, None)
    return report(frame, base, meta=meta, by=by, window=window, since=since, until=until, signature=signature or None,
                  rules=rules, health_rule=health_rule, quality_rule=quality_rule, baseline_source=source,
                  model=name or endpoint)
