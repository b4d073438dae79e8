"""The statistics of a report, pure (no I/O): drift with scipy, PSI, health, data and label quality.

Inputs are pandas Series and DataFrames (a records frame, see ``client.monitoring``); outputs are
the report's pydantic models.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._models import (
    DataQuality,
    DataQualityRule,
    DriftRule,
    FeatureDrift,
    HealthWindow,
    LabelQuality,
    TestResult,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NUMERIC_TYPES",
    "data_quality",
    "drift",
    "feature_kind",
    "health_windows",
    "label_quality",
    "latency_percentiles",
    "population_stability_index",
]

#: Signature column types compared as numbers; every other type is compared as categories.
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
#: Bins of the population stability index: the baseline's deciles.
PSI_BINS = 10
#: Share given to an empty bin in PSI (log of zero otherwise), as is customary.
PSI_EPSILON = 1e-4
#: A numeric feature with at most this many distinct baseline values is tested as categories (Evidently).
FEW_VALUES = 5
#: Categories shown by name in a plot's shares; the rest are summed under "other".
MAX_SHOWN_CATEGORIES = 20


def feature_kind(values: pd.Series, declared: str | None = None) -> str:
    """``"numeric"`` or ``"categorical"``: from the signature's type when given, else the dtype."""
    if declared is not None:
        return "numeric" if declared in NUMERIC_TYPES else "categorical"
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return "numeric" if is_numeric_dtype(values) and not is_bool_dtype(values) else "categorical"


def _numbers(values: pd.Series) -> Any:
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")


def _labels(values: pd.Series) -> pd.Series:
    return values.dropna().map(str)


def population_stability_index(baseline: Any, current: Any, bins: int = PSI_BINS) -> float:
    """PSI of ``current`` against ``baseline`` (numbers), over the baseline's quantile bins:
    ``sum((c - b) * ln(c / b))`` with bin shares ``b`` and ``c`` (an empty bin counts as
    ``PSI_EPSILON``). No library computes it; < 0.1 reads stable, > 0.25 significant.

    Example::

        >>> round(population_stability_index([1, 2, 3, 4] * 25, [1, 2, 3, 4] * 25), 6)
        0.0
    """
    import numpy as np

    base, cur = np.asarray(baseline, dtype="float64"), np.asarray(current, dtype="float64")
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant baseline: one bin, the values equal to it
        b = np.array([1.0])
        c = np.array([np.mean(cur == edges[0]) if len(cur) else 0.0])
        b, c = np.append(b, 0.0), np.append(c, 1.0 - c[0])
    else:
        inner = edges[1:-1]  # open-ended first and last bins: values beyond the baseline's range count
        b = np.bincount(np.searchsorted(inner, base, side="right"), minlength=len(edges) - 1) / len(base)
        c = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1) / max(len(cur), 1)
    b, c = np.clip(b, PSI_EPSILON, None), np.clip(c, PSI_EPSILON, None)
    return float(np.sum((c - b) * np.log(c / b)))


def _numeric_shares(base: Any, cur: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Shares of both samples over the baseline's decile bins (labels like ``"4.3–5.1"``), for plots."""
    import numpy as np

    edges = np.unique(np.quantile(base, np.linspace(0, 1, PSI_BINS + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    lo, hi = min(edges[0], cur.min() if len(cur) else edges[0]), max(edges[-1], cur.max() if len(cur) else edges[-1])
    full = np.concatenate([[lo], edges[1:-1], [hi]])
    labels = [f"{full[i]:.4g}–{full[i + 1]:.4g}" for i in range(len(full) - 1)]

    def shares(x: Any) -> dict[str, float]:
        counts = np.bincount(np.searchsorted(full[1:-1], x, side="right"), minlength=len(labels))
        return {k: float(v) / max(len(x), 1) for k, v in zip(labels, counts, strict=True)}

    return shares(base), shares(cur)


def _category_shares(base: pd.Series, cur: pd.Series) -> tuple[list[str], Any, Any]:
    import numpy as np

    cats = sorted(set(base.unique()) | set(cur.unique()))
    b = base.value_counts().reindex(cats, fill_value=0).to_numpy(dtype="float64")
    c = cur.value_counts().reindex(cats, fill_value=0).to_numpy(dtype="float64")
    return cats, np.asarray(b), np.asarray(c)


def _shown(cats: list[str], counts: Any) -> dict[str, float]:
    total = float(counts.sum()) or 1.0
    pairs = sorted(zip(cats, counts, strict=True), key=lambda p: -p[1])
    out = {str(k): float(v) / total for k, v in pairs[:MAX_SHOWN_CATEGORIES]}
    if len(pairs) > MAX_SHOWN_CATEGORIES:
        out["other"] = float(sum(v for _, v in pairs[MAX_SHOWN_CATEGORIES:])) / total
    return out


def _finite(x: float) -> float:
    return x if math.isfinite(x) else float("nan")


def drift(name: str, baseline: pd.Series, current: pd.Series, *, kind: str | None = None,
          rule: DriftRule | None = None) -> FeatureDrift:
    """One feature's drift statistics (scipy) and verdict under ``rule`` (nulls left out: they
    are data quality's concern).

    Example::

        >>> import pandas as pd
        >>> d = drift("x", pd.Series(range(100)), pd.Series(range(50, 150)))
        >>> d.statistic, d.drifted
        ('ks_test', True)
    """
    import numpy as np
    from scipy import spatial, stats

    rule = rule or DriftRule()
    kind = kind or feature_kind(baseline)
    out: dict[str, Any] = {"column_name": name, "kind": kind}
    if kind == "numeric":
        base, cur = _numbers(baseline), _numbers(current)
        out.update(baseline_count=len(base), count=len(cur))
        if len(base) and len(cur):
            ks = stats.ks_2samp(base, cur)
            w = float(stats.wasserstein_distance(base, cur))
            spread = float(np.std(base)) or 0.001  # Evidently's guard for a constant baseline
            out.update(ks_test=TestResult(statistic=float(ks.statistic), pvalue=float(ks.pvalue)),
                       wasserstein_distance=w, wasserstein_distance_normed=w / spread,
                       population_stability_index=population_stability_index(base, cur))
        if len(base):
            out["baseline_shares"], out["shares"] = _numeric_shares(base, cur)
        few_values = len(np.unique(base)) <= FEW_VALUES
    else:
        few_values = True
    if kind == "categorical" or few_values:
        b_lab, c_lab = _labels(baseline), _labels(current)
        out.update(baseline_count=len(b_lab), count=len(c_lab))
        if len(b_lab) and len(c_lab):
            cats, b, c = _category_shares(b_lab, c_lab)
            if len(cats) > 1:
                chi = stats.chi2_contingency(np.vstack([b, c]))
                out["chi_squared_test"] = TestResult(statistic=float(chi.statistic), pvalue=_finite(float(chi.pvalue)))
            else:  # one category in both: identical distributions
                out["chi_squared_test"] = TestResult(statistic=0.0, pvalue=1.0)
            p, q = b / b.sum(), c / c.sum()
            out["js_distance"] = float(spatial.distance.jensenshannon(p, q, base=2))
            out["tv_distance"] = float(0.5 * np.abs(p - q).sum())
            if kind == "categorical":
                out["baseline_shares"], out["shares"] = _shown(cats, b), _shown(cats, c)
    return FeatureDrift(**out, **_verdict(out, kind, few_values, rule))


def _verdict(stats_: dict[str, Any], kind: str, few_values: bool, rule: DriftRule) -> dict[str, Any]:
    """Which statistic decides, its value and threshold, and whether it says drifted."""
    n_base, n_cur = stats_.get("baseline_count", 0), stats_.get("count", 0)
    if n_cur < rule.min_rows or n_base == 0:
        return {}

    def value_of(method: str) -> float | None:
        v = stats_.get(method)
        return v.pvalue if isinstance(v, TestResult) else v

    method = rule.method
    if method == "auto":
        small = n_base <= rule.small_sample
        if kind == "numeric" and not few_values:
            method = "ks_test" if small else "wasserstein_distance"
        else:
            method = "chi_squared_test" if small else "js_distance"
    value = stats_.get("wasserstein_distance_normed") if method == "wasserstein_distance" else value_of(method)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"statistic": method}
    if method in ("ks_test", "chi_squared_test"):
        threshold = rule.threshold if rule.threshold is not None and rule.method != "auto" else rule.pvalue
        drifted = value < threshold
    elif method == "population_stability_index":
        threshold = rule.threshold if rule.threshold is not None else rule.psi
        drifted = value > threshold
    else:
        threshold = rule.threshold if rule.threshold is not None and rule.method != "auto" else rule.distance
        drifted = value >= threshold
    psi = stats_.get("population_stability_index")
    if (rule.method == "auto" and not drifted and psi is not None and kind == "numeric"
            and min(n_base, n_cur) >= rule.small_sample and psi > rule.psi):
        return {"statistic": "population_stability_index", "value": psi, "threshold": rule.psi, "drifted": True}
    return {"statistic": method, "value": float(value), "threshold": float(threshold), "drifted": bool(drifted)}


def _type_ok(value: Any, declared: str | None) -> bool:
    if declared is None:
        return True
    if declared in NUMERIC_TYPES:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if declared == "boolean":
        return isinstance(value, bool)
    if declared == "string":
        return isinstance(value, str)
    return True


def data_quality(name: str, current: pd.Series, baseline: pd.Series | None = None, *, kind: str | None = None,
                 declared: str | None = None, rule: DataQualityRule | None = None) -> DataQuality:
    """Null share, values outside the baseline's range or the signature's type, unseen categories.

    Example::

        >>> import pandas as pd
        >>> data_quality("x", pd.Series([1.0, None, 3.0, None]), pd.Series([1.0, 2.0, 3.0])).problems
        ['50% nulls (baseline 0%)']
    """
    import pandas as pd

    rule = rule or DataQualityRule()
    kind = kind or feature_kind(baseline if baseline is not None else current, declared)
    n = len(current)
    present = current.dropna()
    null_share = 1.0 - len(present) / n if n else 0.0
    out: dict[str, Any] = {"column_name": name, "count": n, "null_share": null_share}
    problems = []
    if n and declared is not None:
        wrong = sum(not _type_ok(v, declared) for v in present.tolist())
        out["wrong_type_share"] = wrong / n
        if wrong:
            problems.append(f"{wrong} value(s) not of the signature's type {declared}")
    base_null = None
    if baseline is not None and len(baseline):
        base_null = float(baseline.isna().mean())
        out["baseline_null_share"] = base_null
        if kind == "numeric":
            base_num, cur_num = _numbers(baseline), pd.to_numeric(present, errors="coerce").dropna()
            if len(base_num) and n:
                outside = int(((cur_num < base_num.min()) | (cur_num > base_num.max())).sum())
                out["out_of_range_share"] = outside / n
                if outside / n > rule.out_of_range:
                    problems.append(f"{outside / n:.0%} outside the baseline's range "
                                    f"[{base_num.min():.4g}, {base_num.max():.4g}]")
        else:
            seen = set(_labels(baseline))
            cur_lab = _labels(present)
            unseen = cur_lab[~cur_lab.isin(seen)]
            out["unseen_share"] = len(unseen) / n if n else 0.0
            out["unseen_categories"] = sorted(unseen.unique().tolist())[:MAX_SHOWN_CATEGORIES]
            if n and len(unseen) / n > rule.unseen:
                problems.append(f"{len(unseen) / n:.0%} in categories the baseline never had")
    if null_share > (base_null or 0.0) + rule.null_share:
        problems.insert(0, f"{null_share:.0%} nulls (baseline {base_null or 0.0:.0%})")
    return DataQuality(**out, problems=problems)


def latency_percentiles(ms: pd.Series) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 of latencies in milliseconds (``None`` for none)."""
    import numpy as np

    values = ms.dropna().to_numpy(dtype="float64")
    if not len(values):
        return None, None, None
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def _requests(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per request (a call of several records is one request), keeping its first record."""
    return frame.drop_duplicates("databricks_request_id") if "databricks_request_id" in frame else frame


def _utc(when: Any) -> pd.Timestamp:
    import pandas as pd

    t = pd.Timestamp(when)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")


def health_windows(records: pd.DataFrame, freq: str, since: datetime, until: datetime) -> list[HealthWindow]:
    """Requests, errors, latency percentiles and thumbs-up rate per window of ``freq`` (a pandas
    offset such as ``"1h"``) from ``since`` to ``until``; windows without requests included (zero)."""
    import pandas as pd

    reqs = _requests(records)
    start = _utc(since).floor(freq)
    edges = pd.date_range(start, _utc(until), freq=freq, inclusive="left").as_unit("ns")
    if not len(edges):
        edges = pd.DatetimeIndex([start]).as_unit("ns")
    step = pd.tseries.frequencies.to_offset(freq)
    times = pd.to_datetime(reqs["request_time"], utc=True).dt.as_unit("ns")
    position = edges.searchsorted(times, side="right") - 1
    out = []
    for i, lo in enumerate(edges):
        part = reqs[position == i]
        errors = int((part["status_code"] != 200).sum())
        p50, p95, p99 = latency_percentiles(part["execution_duration_ms"])
        votes = part["thumbs_up"].dropna() if "thumbs_up" in part else pd.Series([], dtype=object)
        out.append(HealthWindow(
            start=lo.to_pydatetime(), end=(lo + step).to_pydatetime(), requests=len(part), errors=errors,
            error_rate=errors / len(part) if len(part) else None, latency_p50_ms=p50, latency_p95_ms=p95,
            latency_p99_ms=p99, thumbs_up_rate=float(votes.astype(bool).mean()) if len(votes) else None))
    return out


def label_quality(records: pd.DataFrame, kind: str | None = None) -> LabelQuality:
    """Accuracy and macro F1 (classifier) or RMSE and MAE (regressor) where a ``label`` is known,
    and the thumbs-up rate of the requests users voted on (scikit-learn's metrics)."""
    out: dict[str, Any] = {}
    if "thumbs_up" in records:
        votes = _requests(records)["thumbs_up"].dropna().astype(bool)
        out.update(votes=len(votes), thumbs_up=int(votes.sum()),
                   thumbs_up_rate=float(votes.mean()) if len(votes) else None)
    if "label" in records and "prediction" in records:
        both = records[["label", "prediction"]].dropna()
        out["labelled"] = len(both)
        if len(both):
            from sklearn import metrics

            kind = kind or feature_kind(both["prediction"])
            if kind == "numeric":
                import pandas as pd

                y, p = pd.to_numeric(both["label"], errors="coerce"), pd.to_numeric(both["prediction"], errors="coerce")
                ok = y.notna() & p.notna()
                if ok.any():
                    out["rmse"] = float(metrics.root_mean_squared_error(y[ok], p[ok]))
                    out["mae"] = float(metrics.mean_absolute_error(y[ok], p[ok]))
            else:
                y, p = both["label"].map(str), both["prediction"].map(str)
                out["accuracy"] = float(metrics.accuracy_score(y, p))
                out["f1_macro"] = float(metrics.f1_score(y, p, average="macro", zero_division=0))
    return LabelQuality(**out)
