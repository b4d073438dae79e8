"""client.monitoring's statistics, pure: known distributions, the drift rule's thresholds, data and
label quality, health per window, records from trace infos, and bad input as typed errors."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from client.monitoring import (
    BaselineError,
    DriftRule,
    EmptyWindowError,
    HealthRule,
    data_quality,
    drift,
    feature_drift,
    format_report,
    health,
    label_quality,
    population_stability_index,
    records_from_trace_infos,
    report,
)

T0 = pd.Timestamp("2026-12-01T10:00Z")


def frame(n: int, rng: np.random.Generator, **columns) -> pd.DataFrame:
    """A records frame of ``n`` successful single-record requests over two hours from T0."""
    out = pd.DataFrame({
        "request_time": T0 + pd.to_timedelta(np.sort(rng.uniform(0, 7200, n)), unit="s"),
        "databricks_request_id": [f"r{i}" for i in range(n)], "served_entity": "champion", "model_version": "1",
        "status_code": 200, "error": None, "execution_duration_ms": rng.gamma(4, 5, n),
    })
    return out.assign(**columns)


# --- drift statistics on known distributions ------------------------------------------------------


def test_numeric_statistics_match_known_distributions():
    rng = np.random.default_rng(7)
    base, same, shifted = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    d_same = feature_drift("x", pd.Series(base), pd.Series(same))
    d_shift = feature_drift("x", pd.Series(base), pd.Series(shifted))
    # the Wasserstein distance between N(0,1) and N(1,1) is the shift, 1; normed by the baseline's sd
    assert d_shift.wasserstein_distance == pytest.approx(1.0, abs=0.08)
    assert d_shift.wasserstein_distance_normed == pytest.approx(d_shift.wasserstein_distance / np.std(base))
    assert d_same.wasserstein_distance < 0.08
    assert d_shift.ks_test.pvalue < 1e-6 < d_same.ks_test.pvalue
    # the KS statistic of a unit shift of a normal is 2*Phi(0.5) - 1 = 0.383
    assert d_shift.ks_test.statistic == pytest.approx(0.3829, abs=0.03)
    assert d_same.population_stability_index < 0.1 < 0.25 < d_shift.population_stability_index
    assert (d_same.drifted, d_shift.drifted) == (False, True)
    assert d_shift.statistic == "wasserstein_distance"  # a baseline over 1,000 rows: Evidently's large-sample rule


def test_psi_by_its_formula():
    base = np.arange(1000) / 1000  # deciles: 10 bins of 0.1
    current = np.full(100, 0.05)  # everything in the first bin
    eps = 1e-4
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert population_stability_index(base, current) == pytest.approx(expected)
    assert population_stability_index(base, base) == pytest.approx(0.0, abs=1e-12)


def test_categorical_statistics_by_their_formulas():
    base = pd.Series(["a", "b"] * 50)
    cur = pd.Series(["a"] * 100)
    d = feature_drift("c", base, cur)
    assert d.kind == "categorical"
    assert d.tv_distance == pytest.approx(0.5)
    m = np.array([0.75, 0.25])
    js = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * (1.0 * math.log2(1 / 0.75))
    assert d.js_distance == pytest.approx(math.sqrt(js))
    assert m.sum() == 1
    assert d.chi_squared_test.pvalue < 0.05 and d.drifted is True and d.statistic == "chi_squared_test"
    assert d.baseline_shares == {"a": 0.5, "b": 0.5} and d.shares == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize(("shift", "drifted"), [(0.05, False), (0.2, True)])
def test_the_large_sample_rule_is_a_normed_distance_of_0_1(shift, drifted):
    rng = np.random.default_rng(3)
    base = pd.Series(rng.normal(10, 2, 3000))
    d = feature_drift("x", base, base + shift * 2)  # a shift of `shift` baseline sds
    assert d.wasserstein_distance_normed == pytest.approx(shift, rel=0.05)
    assert (d.statistic, d.threshold, d.drifted) == ("wasserstein_distance", 0.1, drifted)


def test_the_small_sample_rule_is_a_pvalue_and_rules_are_overridable():
    rng = np.random.default_rng(5)
    base, cur = pd.Series(rng.normal(0, 1, 200)), pd.Series(rng.normal(0.5, 1, 200))
    auto = feature_drift("x", base, cur)
    assert auto.statistic == "ks_test" and auto.value == auto.ks_test.pvalue and auto.value < 0.05 and auto.drifted
    strict = feature_drift("x", base, cur, rule=DriftRule(method="ks_test", threshold=auto.value / 2))
    assert strict.drifted is False
    by_psi = feature_drift("x", base, cur, rule=DriftRule(method="population_stability_index", threshold=10))
    assert by_psi.statistic == "population_stability_index" and by_psi.drifted is False
    few = feature_drift("x", base, cur.head(10))
    assert few.drifted is None and few.ks_test is not None  # statistics, but no verdict on 10 rows


def test_drift_of_a_frame_names_every_feature_and_the_prediction():
    rng = np.random.default_rng(11)
    base = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.choice(["x", "y"], 300),
                         "prediction": rng.choice(["p", "q"], 300)})
    cur = frame(300, rng, a=rng.normal(3, 1, 300), b=rng.choice(["x", "y"], 300),
                prediction=rng.choice(["p", "q"], 300))
    out = {d.column_name: d.drifted for d in drift(cur, base)}
    assert out == {"a": True, "b": False, "prediction": False}


# --- data and label quality -------------------------------------------------------------------------


def test_data_quality_nulls_range_types_and_unseen_categories():
    base = pd.Series([1.0, 2.0, 3.0, 4.0])
    q = data_quality("x", pd.Series([1.0, None, 9.0, 2.0, "oops"]), base, kind="numeric", declared="double")
    assert q.null_share == pytest.approx(0.2) and q.out_of_range_share == pytest.approx(0.2)
    assert q.wrong_type_share == pytest.approx(0.2)
    assert len(q.problems) == 3 and q.problems[0].startswith("20% nulls")
    ok = data_quality("x", pd.Series([1.0, 2.0, 4.0]), base, kind="numeric", declared="double")
    assert ok.problems == [] and ok.null_share == 0.0
    cats = data_quality("c", pd.Series(["a", "b", "z", "z"]), pd.Series(["a", "b"]), kind="categorical")
    assert cats.unseen_share == 0.5 and cats.unseen_categories == ["z"] and cats.problems


def test_label_quality_for_classifiers_and_regressors():
    cls = pd.DataFrame({"prediction": ["a", "a", "b", "b"], "label": ["a", "b", "b", "b"],
                        "databricks_request_id": list("wxyz"), "thumbs_up": [True, False, True, None]})
    q = label_quality(cls)
    assert q.labelled == 4 and q.accuracy == 0.75
    assert q.f1_macro == pytest.approx((2 / 3 + 0.8) / 2)  # F1(a) = 2/3, F1(b) = 4/5
    assert (q.votes, q.thumbs_up, q.thumbs_up_rate) == (3, 2, pytest.approx(2 / 3))
    reg = label_quality(pd.DataFrame({"prediction": [1.0, 2.0], "label": [2.0, 4.0]}), kind="numeric")
    assert reg.rmse == pytest.approx(math.sqrt(2.5)) and reg.mae == pytest.approx(1.5) and reg.accuracy is None


# --- health -------------------------------------------------------------------------------------------


def test_health_per_window_and_group():
    rng = np.random.default_rng(2)
    records = frame(400, rng)
    records.loc[records.index % 2 == 1, "served_entity"] = "challenger"
    slow = records["served_entity"] == "challenger"
    records.loc[slow, "execution_duration_ms"] *= 3
    fail = slow & (rng.random(400) < 0.2)
    records.loc[fail, "status_code"] = 500
    by_entity = health(records, by="served_entity", windows="1h")
    assert sorted(by_entity) == ["challenger", "champion"]
    windows = by_entity["challenger"]
    assert [w.start for w in windows] == [T0, T0 + pd.Timedelta("1h")]
    assert sum(w.requests for w in windows) == int(slow.sum()) and sum(w.errors for w in windows) == int(fail.sum())
    first = records[slow & (records["request_time"] < T0 + pd.Timedelta("1h"))]
    assert windows[0].latency_p95_ms == pytest.approx(np.percentile(first["execution_duration_ms"], 95))
    r = report(records, None, by="served_entity", signature={})
    flagged = {g.group: sorted(b.message.split()[0] for b in g.broken) for g in r.groups}
    assert flagged == {"challenger": ["error", "latency"], "champion": []}
    assert not r.ok and "BROKEN health" in format_report(r)
    relaxed = report(records, None, by="served_entity", signature={},
                     health_rule=HealthRule(max_error_rate=0.5, max_latency_ratio=5))
    assert relaxed.ok


def test_naive_request_times_are_read_as_utc():
    """A records frame from Spark (``unpack_payload(...).records.toPandas()``) has naive times: the
    report read them as UTC instead of failing on a naive-to-aware comparison."""
    rng = np.random.default_rng(3)
    aware = frame(60, rng)
    naive = aware.assign(request_time=aware["request_time"].dt.tz_localize(None))
    for records in (naive, aware):
        r = report(records, None, signature={})
        assert (r.since, r.until) == (T0, T0 + pd.Timedelta("2h"))
        assert [w.requests for w in r.groups[0].windows] == [w.requests for w in health(aware)["1"]]
    assert report(naive, None, signature={}) == report(aware, None, signature={})


def test_windows_without_requests_count_zero():
    rng = np.random.default_rng(1)
    records = frame(50, rng)
    records["request_time"] = T0 + pd.to_timedelta(rng.uniform(0, 600, 50), unit="s")
    windows = health(records, windows="15min", since=T0, until=T0 + pd.Timedelta("1h"))["1"]
    assert [w.requests for w in windows] == [50, 0, 0, 0] and windows[1].error_rate is None


# --- reports: baselines and consecutive windows ---------------------------------------------------


def test_report_flags_the_shifted_and_the_null_feature_only():
    rng = np.random.default_rng(4)
    base = pd.DataFrame({f: rng.normal(5, 1, 150) for f in "abcd"})
    cur = frame(150, rng, **{f: rng.normal(5, 1, 150) for f in "abcd"})
    cur["b"] += 1.5
    cur.loc[cur.index % 5 == 0, "c"] = None
    r = report(cur, base, signature=dict.fromkeys("abcd", "double"), baseline_source="test")
    (g,) = r.groups
    assert sorted({b.column for b in g.broken}) == ["b", "c"]
    assert r.drift_type == "BASELINE" and r.baseline_rows == 150


def test_consecutive_drift_compares_the_last_window_with_the_one_before():
    rng = np.random.default_rng(9)
    cur = frame(300, rng, a=rng.normal(0, 1, 300))
    late = cur["request_time"] >= T0 + pd.Timedelta("1h")
    cur.loc[late, "a"] += 2
    r = report(cur, None)
    assert r.drift_type == "CONSECUTIVE" and [(d.column_name, d.drifted) for d in r.groups[0].drift] == [("a", True)]


def test_bad_input_is_a_typed_error_naming_what():
    rng = np.random.default_rng(0)
    cur = frame(40, rng, a=rng.normal(0, 1, 40))
    with pytest.raises(BaselineError) as err:
        report(cur, pd.DataFrame({"z": [1.0]}), signature={"a": "double"}, baseline_source="train.csv")
    assert err.value.missing == ["a"] and "train.csv" in str(err.value) and "'a'" in str(err.value)
    with pytest.raises(EmptyWindowError):
        report(cur, None, since=T0 - pd.Timedelta("2D"), until=T0 - pd.Timedelta("1D"))
    with pytest.raises(EmptyWindowError):
        report(cur.head(0), None)
    with pytest.raises(ValueError, match="window"):
        report(cur, None, window="soon")


def test_a_table_baseline_without_pyspark_is_a_baseline_error_naming_the_table(
    tmp_path, monkeypatch: pytest.MonkeyPatch,
):
    """Issue 22: ``catalog.schema.table`` is read through Spark; with no pyspark, a BaselineError
    naming the table. A name that is an existing path, or ends in .csv/.parquet, is a file."""
    import sys

    from client.monitoring import read_baseline
    from client.monitoring._baseline import is_table_name

    for module in ("pyspark", "pyspark.errors", "pyspark.sql"):
        monkeypatch.setitem(sys.modules, module, None)  # import pyspark: ImportError
    with pytest.raises(BaselineError, match=r"main\.ml\.iris_train") as err:
        read_baseline("main.ml.iris_train")
    assert "pyspark is not installed" in str(err.value)

    assert is_table_name("main.ml.iris_train") and not is_table_name("main.ml.iris.parquet")
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(tmp_path / "run.v2.data", index=False)
    assert not is_table_name("run.v2.data")  # an existing path is a file, whatever its name
    pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / "b.csv", index=False)
    assert list(read_baseline("b.csv")["a"]) == [1.0]  # a file baseline needs no pyspark


# --- records from trace infos -------------------------------------------------------------------


def info(i: int, records, predictions, *, seq: int | None = None, state="OK", tags=None, assessments=(), cut=False):
    request = json.dumps({"records": records, "n_rows": len(records) + (5 if cut else 0)})
    return SimpleNamespace(
        trace_id=f"tr-{i}", request_time=int(T0.timestamp() * 1000) + i * 1000, execution_duration=10 + i,
        state=state, request_preview=request if not cut else request[:30] + "...",
        response_preview=None if predictions is None else json.dumps({"predictions": predictions}),
        assessments=list(assessments),
        tags={"predictor.model_version": "2", "predictor.served_model_name": "iris-2",
              **({"predictor.tracer": "t1", "predictor.trace_seq": str(seq)} if seq else {}), **(tags or {})})


def vote(name, value, t=1):
    return SimpleNamespace(name=name, value=value, valid=None, last_update_time_ms=t, create_time_ms=t,
                           assessment_id=f"a{t}")


def test_records_from_trace_infos():
    infos = [
        info(0, [{"x": 1.0}], [{"prediction": "setosa", "probability_setosa": 0.9}], seq=1,
             assessments=[vote("user_feedback", False, 1), vote("user_feedback", True, 2),
                          vote("expected_prediction", "versicolor")]),
        info(1, [{"x": 2.0}, {"x": 3.0}], [0.5, 0.7], seq=2),
        info(2, [{"x": 4.0}], None, seq=5, state="ERROR",
             tags={"predictor.status_code": "503", "predictor.error": "InternalServerError"}),
        info(3, [{"x": 5.0}], [1.0], cut=True),  # preview cut: read from the spans
        SimpleNamespace(**{**vars(info(4, [], [])), "request_preview": "not json"}),
    ]
    spans = {"tr-3": ({"records": [{"x": 5.0}], "n_rows": 6}, {"predictions": [1.0]})}

    def read_spans(trace_id):
        return spans[trace_id]

    records, meta = records_from_trace_infos(infos, read_spans=read_spans)
    assert (meta.traces, meta.predictions, meta.dropped_traces, meta.unreadable_traces, meta.untraced_rows) == (
        5, 5, 2, 1, 5)
    assert records["x"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert records["prediction"].tolist()[:3] == ["setosa", 0.5, 0.7]
    assert records["label"].tolist()[0] == "versicolor" and records["thumbs_up"].tolist()[0] is True
    assert records["status_code"].tolist() == [200, 200, 200, 503, 200]
    assert records["error"].tolist()[3] == "InternalServerError"
    assert isinstance(records["request_time"].dtype, pd.DatetimeTZDtype) and str(records["request_time"].dt.tz) == "UTC"
    assert set(records["model_version"]) == {"2"} and set(records["served_entity"]) == {"iris-2"}


def test_error_traces_carry_status_and_served_entity():
    from client._tracing import error_tags

    response = SimpleNamespace(headers={"served-model-name": "challenger"})
    err = SimpleNamespace(status_code=503, response=response, request_id="rq-1")
    tags = error_tags(type("InternalServerError", (Exception,), vars(err))())
    assert tags == {"predictor.status_code": "503", "predictor.error": "InternalServerError",
                    "predictor.served_model_name": "challenger", "predictor.request_id": "rq-1"}
    assert error_tags(ValueError("x"))["predictor.status_code"] == "500"


# --- the apps' Monitoring tab content (frontends.core.monitoring) -----------------------------------


def test_the_monitoring_tab_is_for_reviewers_and_shows_rows_of_the_report():
    from frontends.core.feedback import FeedbackAccess
    from frontends.core.monitoring import (
        MONITOR_REVIEWERS_ONLY,
        default_feature,
        monitoring_view,
        overlay_rows,
        view_of,
    )

    # a visitor who is not a reviewer gets the note, and nothing is read (no experiment, no store)
    assert monitoring_view("m", "1", FeedbackAccess(reviewer=False, user="bob")).note == MONITOR_REVIEWERS_ONLY
    rng = np.random.default_rng(4)
    base = pd.DataFrame({"a": rng.normal(5, 1, 150), "b": rng.normal(5, 1, 150)})
    cur = frame(100, rng, a=rng.normal(7, 1, 100), b=base["b"].to_numpy()[:100])  # b: the baseline's own values
    view = view_of(report(cur, base, signature={"a": "double", "b": "double"}, baseline_source="t"))
    assert view.versions == ["v1 champion"]
    rows = {r["feature"]: r["verdict"] for r in view.drift["v1 champion"]}
    assert rows == {"a": "DRIFTED", "b": "ok"}
    assert default_feature(view.drift["v1 champion"][::-1]) == "a"  # the drifted one first, wherever it is
    assert [p["feature"] for p in view.problems if p["kind"] == "drift"] == ["a"]
    assert sum(r["requests"] for r in view.lines["requests"]) == 100
    overlay = overlay_rows(view, "v1 champion", "a")
    for sample in ("baseline", "current"):
        assert sum(r["share"] for r in overlay if r["sample"] == sample) == pytest.approx(1.0)
