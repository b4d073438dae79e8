"""What a monitoring report says, as pydantic models (``model_dump_json`` for machines).

The drift statistics carry the names Databricks data profiling writes into its ``_drift_metrics``
table (``ks_test``, ``chi_squared_test``, ``js_distance``, ``tv_distance``,
``wasserstein_distance``, ``population_stability_index``), so our report and the workspace's can
be read side by side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DataQuality",
    "DataQualityRule",
    "DriftRule",
    "FeatureDrift",
    "HealthRule",
    "HealthWindow",
    "LabelQuality",
    "MonitorReport",
    "RecordsMeta",
    "RuleBreak",
    "TestResult",
    "VersionReport",
]

DriftMethod = Literal[
    "auto", "ks_test", "chi_squared_test", "wasserstein_distance", "js_distance", "tv_distance",
    "population_stability_index",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecordsMeta(_Model):
    """Where a records frame came from and what is missing from it: a gap in the data is never
    to be read as a healthy model."""

    #: Traces read (one per prediction call).
    traces: int = 0
    #: Scored records in the frame (a call of several rows gives several).
    predictions: int = 0
    #: Rows of calls larger than the trace keeps (``MAX_TRACED_ROWS``): scored, counted, not in the frame.
    untraced_rows: int = 0
    #: Traces missing from the store: gaps in each tracer's sequence numbers (queue full, store down, exit).
    dropped_traces: int = 0
    #: Traces whose inputs or outputs could not be read (not JSON): counted here, never silently dropped.
    unreadable_traces: int = 0
    #: The latest ``max_traces`` were read: older traces in the range were left out.
    truncated: bool = False
    experiments: list[str] = Field(default_factory=list)


class HealthWindow(_Model):
    """Service health of one group (version or served entity) in one window."""

    start: datetime
    end: datetime
    requests: int
    errors: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    thumbs_up_rate: float | None = None


class TestResult(_Model):
    """A two-sample test: ``statistic`` and ``pvalue``."""

    __test__ = False  # not a pytest class
    statistic: float
    pvalue: float


class DriftRule(_Model):
    """When a feature counts as drifted.

    ``method="auto"`` (the default) is Evidently's ``DataDriftPreset`` rule: with a baseline of at
    most ``small_sample`` rows, a numeric feature (more than 5 distinct values) is drifted when
    ``ks_test``'s p-value is below ``pvalue`` and any other feature when ``chi_squared_test``'s is;
    with a larger baseline, when the normed ``wasserstein_distance`` (numeric) or ``js_distance``
    (categorical) reaches ``distance``; and a numeric feature whose ``population_stability_index``
    exceeds ``psi`` is drifted in both cases when both samples have at least ``small_sample`` rows.
    Any other method compares that one statistic with ``threshold`` (p-values: below it;
    distances: at or above it; PSI: above it). Fewer than ``min_rows`` current values: no verdict.

    Example::

        rules = {"*": DriftRule(), "petal width (cm)": DriftRule(method="js_distance", threshold=0.2)}
    """

    method: DriftMethod = "auto"
    threshold: float | None = None
    pvalue: float = 0.05
    distance: float = 0.1
    psi: float = 0.25
    small_sample: int = 1000
    min_rows: int = 30


class FeatureDrift(_Model):
    """One feature (or the prediction) against the baseline, under Databricks' names."""

    column_name: str
    kind: Literal["numeric", "categorical"]
    baseline_count: int
    count: int
    ks_test: TestResult | None = None
    wasserstein_distance: float | None = None
    wasserstein_distance_normed: float | None = None
    population_stability_index: float | None = None
    chi_squared_test: TestResult | None = None
    js_distance: float | None = None
    tv_distance: float | None = None
    #: Which statistic decided the verdict, its value and the threshold it was held to.
    statistic: str | None = None
    value: float | None = None
    threshold: float | None = None
    #: ``None``: too few rows for a verdict.
    drifted: bool | None = None
    #: Shares per category (categorical) or per baseline decile bin (numeric), for plots.
    baseline_shares: dict[str, float] = Field(default_factory=dict)
    shares: dict[str, float] = Field(default_factory=dict)


class DataQualityRule(_Model):
    """When a feature has a data-quality problem: null share above the baseline's by more than
    ``null_share``; more than ``out_of_range`` of values outside the baseline's [min, max]; more
    than ``unseen`` of values in categories the baseline never had; any value of the wrong type."""

    null_share: float = 0.05
    out_of_range: float = 0.05
    unseen: float = 0.05


class DataQuality(_Model):
    column_name: str
    count: int
    null_share: float
    baseline_null_share: float | None = None
    out_of_range_share: float | None = None
    wrong_type_share: float = 0.0
    unseen_share: float | None = None
    unseen_categories: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class LabelQuality(_Model):
    """Quality where the truth is known: labels (``expected_prediction`` expectations, or a joined
    table) and users' thumbs (``user_feedback``)."""

    labelled: int = 0
    accuracy: float | None = None
    f1_macro: float | None = None
    rmse: float | None = None
    mae: float | None = None
    votes: int = 0
    thumbs_up: int = 0
    thumbs_up_rate: float | None = None


class HealthRule(_Model):
    """When a group's service health is a problem: error rate above ``max_error_rate``; latency
    p95 above ``max_latency_p95_ms`` (when set); latency p95 above ``max_latency_ratio`` times the
    fastest group's (when there are several). Groups under ``min_requests`` requests: no verdict.

    Per served entity of an A/B endpoint, the defaults flag a challenger that fails 20 % of its
    requests (> 5 %) or answers 3x slower than the champion (p95 > 2x the fastest entity's).

    Example::

        report(frame, by="served_entity", health_rule=HealthRule(max_error_rate=0.01, max_latency_ratio=1.5))
    """

    max_error_rate: float = 0.05
    max_latency_p95_ms: float | None = None
    max_latency_ratio: float = 2.0
    min_requests: int = 20


class RuleBreak(_Model):
    """One broken rule: what (``health``, ``drift``, ``prediction_drift``, ``data_quality``),
    where (``column``), and why."""

    kind: Literal["health", "drift", "prediction_drift", "data_quality"]
    column: str | None = None
    message: str


class VersionReport(_Model):
    """Everything about one model version (or served entity)."""

    group: str
    model_version: str | None = None
    served_entity: str | None = None
    requests: int
    errors: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    windows: list[HealthWindow]
    drift: list[FeatureDrift]
    prediction_drift: FeatureDrift | None = None
    data_quality: list[DataQuality]
    labels: LabelQuality
    broken: list[RuleBreak]


class MonitorReport(_Model):
    """A monitoring report: per version (or served entity), health, drift, data and label quality.

    ``ok`` is false when any rule is broken (``predictor monitor`` then exits 1).
    """

    model: str | None = None
    by: Literal["model_version", "served_entity"]
    since: datetime
    until: datetime
    window: str
    #: ``BASELINE`` (against ``baseline_source``) or ``CONSECUTIVE`` (each group's last window
    #: against the window before it), as Databricks names its drift types.
    drift_type: Literal["BASELINE", "CONSECUTIVE"]
    baseline_source: str | None = None
    baseline_rows: int = 0
    meta: RecordsMeta
    groups: list[VersionReport]

    @property
    def ok(self) -> bool:
        return not any(g.broken for g in self.groups)

    def broken(self) -> list[tuple[str, RuleBreak]]:
        """Every broken rule with its group."""
        return [(g.group, b) for g in self.groups for b in g.broken]
