"""The monitoring report over traced predictions: how long from the tracking store to a report.

Writes N traces (default 10,000) into a local sqlite store once, as ``Tracer.record`` shapes them
(one iris row per call, two versions, the second with 5 % errors and a drifted feature in its
second half), straight through the store's ``start_trace`` (MLflow's async exporter writes ~10
traces/s here). Then, on the same store, in the same run, medians of 5 (old and new alternating):

* ``records_from_traces`` (the search, previews parsed into a records frame),
* ``report`` on that frame against the iris training set (health, drift, data/label quality),
* the two together, against the Feedback tab's ``summarize`` on the same traces (the bar to beat),
  each with the old read (pages of 1,000, the garbage collector running) and the new one (one
  request from a database, the collector paused: ``client._mlflow.search_trace_infos``,
  ``bulk_read``) side by side,
* and the whole read at 1,000, 3,000 and 10,000 traces (``max_traces``): how it grows.

    .venv/bin/python benchmarks/monitoring.py [--store sqlite:///PATH] [--traces 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import uuid


def write_traces(store: str, experiment: str, n: int) -> str:
    import mlflow
    import numpy as np
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from sklearn.datasets import load_iris

    mlflow.set_tracking_uri(store)
    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment)
    have = len(mlflow.MlflowClient().search_traces(locations=[exp_id], max_results=n, include_spans=False))
    if have >= n:
        print(f"{have:,} traces already in {experiment}")
        return exp_id
    store_ = mlflow.tracking._tracking_service.utils._get_store()
    rows = load_iris(as_frame=True).data.sample(n, replace=True, random_state=0).to_dict("records")
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for i in range(have, n):
        v2 = i % 2 == 1
        row = dict(rows[i])
        if v2 and i > n // 2:
            row["sepal width (cm)"] += 1.0
        failed = v2 and rng.random() < 0.05
        tags = {"predictor.model_name": "main.default.iris", "predictor.model_version": "2" if v2 else "1",
                "predictor.served_model_name": "challenger" if v2 else "champion", "predictor.mode": "endpoint",
                "predictor.status_code": "503" if failed else "200", "predictor.tracer": "bench",
                "predictor.trace_seq": str(i + 1), "mlflow.traceName": "Predictor.predict"}
        if failed:
            tags["predictor.error"] = "InternalServerError"
        outputs = None if failed else json.dumps({"predictions": [{"prediction": "setosa", "probability_setosa": 0.9,
                                                                   "probability_versicolor": 0.08,
                                                                   "probability_virginica": 0.02}],
                                                  "n_predictions": 1})
        store_.start_trace(TraceInfo(
            trace_id=f"tr-{uuid.uuid4().hex}", trace_location=TraceLocation.from_experiment_id(exp_id),
            request_time=now - (n - i) * 30, execution_duration=int(rng.gamma(4, 3 if not v2 else 9)),
            state=TraceState.ERROR if failed else TraceState.OK,
            request_preview=json.dumps({"n_rows": 1, "records": [row]}), response_preview=outputs,
            client_request_id=str(uuid.uuid4()), trace_metadata={}, tags=tags))
        if i % 2000 == 1999:
            print(f"  {i + 1:,} traces written, {time.perf_counter() - started:.0f} s", flush=True)
    print(f"wrote {n - have:,} traces in {time.perf_counter() - started:.0f} s")
    return exp_id


ROUNDS = 5


def median_time(fn, rounds: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


@contextlib.contextmanager
def old_read():
    """The read as it was before: ``search_traces`` pages of 1,000 whatever the store, the garbage
    collector running."""
    import client._mlflow as m

    page_size, bulk = m.trace_page_size, m.bulk_read
    m.trace_page_size, m.bulk_read = (lambda uri: 1_000), contextlib.nullcontext
    try:
        yield
    finally:
        m.trace_page_size, m.bulk_read = page_size, bulk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=None, help="sqlite:///PATH (default: a new temporary store)")
    parser.add_argument("--traces", type=int, default=10_000)
    args = parser.parse_args()
    store = args.store or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    import os

    os.environ["MLFLOW_TRACKING_URI"] = store
    from sklearn.datasets import load_iris

    from client.feedback import summarize
    from client.monitoring import records_from_traces, report

    experiment = "/bench-monitoring"
    exp_id = write_traces(store, experiment, args.traces)
    baseline = load_iris(as_frame=True).data

    def read(n: int = args.traces):
        return records_from_traces("main.default.iris", experiments=[experiment], max_traces=n)

    # the first call pays the imports (scipy.stats, sklearn.metrics): not what a warm app pays
    frame, meta = read()
    report(frame, baseline, meta=meta)

    # old and new alternate round by round, so that a load that comes and goes weighs on both
    measures = {
        "read": lambda: read(),
        "report": lambda: report(frame, baseline, meta=meta, by="served_entity"),
        "both": lambda: report(read()[0], baseline, meta=meta),
        "feedback": lambda: summarize("main.default.iris", [exp_id], max_traces=args.traces),
    }
    times: dict[str, dict[str, float]] = {"old": {}, "new": {}}
    for key, fn in measures.items():
        seen: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(ROUNDS):
            for label, ctx in (("old", old_read), ("new", contextlib.nullcontext)):
                with ctx():
                    seen[label].append(median_time(fn, rounds=1)[0])
        for label in seen:
            times[label][key] = statistics.median(seen[label])
    r = report(frame, baseline, meta=meta, by="served_entity")
    old, new = times["old"], times["new"]
    print(f"\n{meta.traces:,} traces, {meta.predictions:,} predictions, {len(r.groups)} groups "
          f"({', '.join(f'{g.group}: {len(g.broken)} broken' for g in r.groups)}); medians of {ROUNDS}, "
          f"old and new alternating; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'':40} {'old':>7} {'new':>7} {'old/new':>8}")
    for key, what in (("read", "records_from_traces (search + parse)"), ("report", "report (health, drift, quality)"),
                      ("both", "records + report"), ("feedback", "feedback summarize, same traces")):
        print(f"{what:40} {old[key]:6.2f}s {new[key]:6.2f}s {old[key] / new[key]:7.2f}x")
    print(f"monitoring (new) / feedback (old): {new['both'] / old['feedback']:.2f} x; "
          f"monitoring (new) / feedback (new): {new['both'] / new['feedback']:.2f} x")
    print(f"the issue's bar, the Feedback tab's 0.95 s: records + report {new['both']:.2f} s, "
          f"{'met' if new['both'] < 0.95 else 'NOT met'}")
    print("\ngrowth (records + report, new read, median of 3):")
    for n in (1_000, 3_000, args.traces):
        s, _ = median_time(lambda n=n: report(read(n)[0], baseline))
        print(f"  {n:>6,} traces: {s:.2f} s ({s / n * 1e6:.0f} us per trace)")


if __name__ == "__main__":
    main()
