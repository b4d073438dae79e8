"""Side-by-side benchmark of the request path, reported as ratios to raw httpx (one run, one machine).

Starts MLflow's scoring server for the demo model on loopback (``predictor serve``, the same
URL shape as a workspace), then measures in one run:

- raw httpx: sync sequential, and async at concurrency c;
- databricks-sdk ``serving_endpoints.query`` (sequential, and from 16 threads);
- ``mlflow.deployments`` ``predict`` (sequential);
- the Predictor: sequential (sync and async), concurrent at c = 1, 8, 32, 128 with and
  without micro-batching, and direct mode;
- validation + encoding of 10,000 rows against ``json.dumps`` of the same records;
- ``import client`` time (fresh processes) and peak RSS;
- tracing: traced over untraced calls (MLflow traces to the local sqlite store), and the
  feedback summary over 10,000 traces (``--only tracing`` runs this part alone).

Sequential figures are taken in interleaved rounds (raw, Predictor, raw, ...) and the ratio is
the median of the per-round ratios, because these machines are shared and noisy.

    .venv/bin/python benchmarks/bench.py [--n 400] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
URI = "models:/main.default.iris@champion"
BODY = json.dumps({"dataframe_records": [ROW]})
HEADERS = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(lat: list[float], q: float) -> float:
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


class Table:
    def __init__(self) -> None:
        self.base_rps: float | None = None
        print(f"{'what':<46} {'calls/s':>8} {'rows/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs raw':>7}")

    def row(self, name: str, calls: int, rows_per_call: int, wall: float, lat: list[float], note: str = "") -> float:
        rps = calls / wall
        if self.base_rps is None:
            self.base_rps = rps
        ratio = rps / self.base_rps
        print(f"{name:<46} {rps:8.0f} {rps * rows_per_call:8.0f} {pct(lat, .5):7.2f} {pct(lat, .99):7.2f} "
              f"{ratio:6.2f}x {note}")
        return rps


def sequential(fn: Callable[[], object], n: int) -> tuple[float, list[float]]:
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


async def concurrent(fn: Callable[[], Awaitable[object]], total: int, c: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return time.perf_counter() - start, lat


def threaded(fn: Callable[[], object], total: int, threads: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        t = time.perf_counter()
        fn()
        with lock:
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(total)))
    return time.perf_counter() - start, lat


def interleaved_ratio(a: Callable[[], object], b: Callable[[], object], n: int, rounds: int = 8) -> tuple:
    """Time per call of ``b`` over ``a``, median of per-round ratios; also all latencies."""
    ratios, lat_a, lat_b = [], [], []
    for _ in range(rounds):
        wa, la = sequential(a, n // rounds)
        wb, lb = sequential(b, n // rounds)
        ratios.append(wb / wa)
        lat_a += la
        lat_b += lb
    return statistics.median(ratios), lat_a, lat_b


def import_time(statement: str = "import client", runs: int = 7) -> tuple[float, list[str]]:
    code = (f"import sys, time; t = time.perf_counter(); {statement}; d = time.perf_counter() - t;"
            "heavy = [m for m in ('mlflow', 'pandas', 'gradio', 'streamlit', 'databricks.sdk') if m in sys.modules];"
            "print(d, ','.join(heavy))")
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
           for _ in range(runs)]
    return statistics.median(float(o[0]) for o in out), sorted({m for o in out for m in o[1:]})


def _import_cpu(statement: str) -> float:
    """CPU seconds one fresh process spends on ``statement`` (CPU, not wall: steady on a shared machine)."""
    code = f"import time; t = time.process_time(); {statement}; print(time.process_time() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def import_ratio(pairs: int = 15) -> tuple[float, float, float]:
    """``from client import Predictor`` against importing asyncio, httpx and pydantic themselves:
    fresh processes, alternated pair by pair; (median ratio, median client s, median baseline s)."""
    ours, base, ratios = [], [], []
    for _ in range(pairs):
        base.append(_import_cpu("import asyncio, httpx, pydantic"))
        ours.append(_import_cpu("from client import Predictor"))
        ratios.append(ours[-1] / base[-1])
    return statistics.median(ratios), statistics.median(ours), statistics.median(base)


def encoding_ratio() -> tuple[float, float, float]:
    import random

    from client import Predictor
    from client._http.wire import encode_body
    from client._schema.validate import validate

    sig = Predictor.from_model(URI).get_signature()
    rows = [{k: random.random() * 8 for k in ROW} for _ in range(10_000)]
    best = lambda f: min(sequential(f, 1)[0] for _ in range(15))  # noqa: E731
    dumps = best(lambda: json.dumps(rows))
    ours = best(lambda: encode_body(validate(sig, rows).to_wire()))
    return dumps, ours, ours / dumps


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "client.local", "serve", URI, "--name", "iris",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(900):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200:
                return server, port
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("scoring server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400, help="calls per sequential measurement")
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--only", choices=["path", "tracing", "feedback"], default=None, help="run one part alone")
    parser.add_argument("--feedback-store", default=None,
                        help="sqlite:/// store to read (and top up to 10,000 traces): writing them takes long")
    args = parser.parse_args()
    n = 80 if args.quick else args.n
    home = tempfile.mkdtemp(prefix="bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_"))}
    env["PREDICTOR_HOME"] = home
    env["MLFLOW_REGISTRY_URI"] = f"sqlite:///{home}/mlflow.db"  # the demo registry, even with DATABRICKS_HOST set
    os.environ.clear()
    os.environ.update(env)
    subprocess.run([sys.executable, "-m", "client.local", "demo"], check=True, env=env, capture_output=True)
    server, port = start_server(env)
    host = f"http://127.0.0.1:{port}"
    url = f"{host}/serving-endpoints/iris/invocations"
    # The SDK and mlflow.deployments find the "workspace" through the usual variables.
    os.environ.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN="bench-not-a-secret")
    try:
        if args.only in (None, "path"):
            run(url, n)
        if args.only in (None, "tracing"):
            tracing(url, n, f"sqlite:///{home}/mlflow.db")
        if args.only in (None, "feedback"):
            feedback_summary(args.feedback_store or f"sqlite:///{home}/mlflow.db")
    finally:
        server.terminate()
        server.wait(10)


def lone_sync_vs_peers(url: str, n: int, raw_post: Callable[[], object], predict: Callable[[], object],
                       rounds: int = 8) -> None:
    """A lone sync call beside the plain SDKs, in interleaved rounds (raw httpx, Predictor.predict,
    databricks-sdk ``serving_endpoints.query``, ``mlflow.deployments`` predict, each n/rounds calls per
    round, the order rotated every round); ratios are medians of the per-round ratios."""
    import logging

    from databricks.sdk import WorkspaceClient
    from mlflow.deployments import get_deploy_client

    logging.getLogger("databricks.sdk").setLevel(logging.ERROR)  # "no host metadata" on every call
    w = WorkspaceClient()
    deploy = get_deploy_client("databricks")
    peers: dict[str, Callable[[], object]] = {
        "raw httpx.Client": raw_post,
        "Predictor.predict": predict,
        "databricks-sdk serving_endpoints.query": lambda: w.serving_endpoints.query("iris", dataframe_records=[ROW]),
        "mlflow.deployments predict": lambda: deploy.predict(endpoint="iris", inputs={"dataframe_records": [ROW]}),
    }
    for fn in peers.values():
        sequential(fn, 10)
    walls: dict[str, list[float]] = {k: [] for k in peers}
    lats: dict[str, list[float]] = {k: [] for k in peers}
    names = list(peers)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, lat = sequential(peers[name], max(n // rounds, 5))
            walls[name].append(wall)
            lats[name] += lat
    print(f"lone sync call, {rounds} interleaved rounds of {max(n // rounds, 5)} calls each "
          f"(load average at the end: {os.getloadavg()[0]:.1f}):")
    sdk = walls["databricks-sdk serving_endpoints.query"]
    for name in names:
        vs_raw = statistics.median(a / b for a, b in zip(walls[name], walls["raw httpx.Client"], strict=True))
        vs_sdk = statistics.median(a / b for a, b in zip(walls[name], sdk, strict=True))
        print(f"  {name:<40} p50 {pct(lats[name], .5):6.2f} ms | {vs_raw:.3f}x raw httpx | {vs_sdk:.3f}x databricks-sdk"
              + (" (target <= 1.05x)" if name == "Predictor.predict" else ""))


def run(url: str, n: int) -> None:
    from client import Batching, Predictor

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}; server: MLflow scoring server (1 worker) on loopback; 1-row calls")
    raw = httpx.Client()
    raw_post = lambda: raw.post(url, content=BODY, headers=HEADERS).raise_for_status()  # noqa: E731
    ep = Predictor.from_endpoint(url=url, model_uri=URI)
    for fn in (raw_post, lambda: ep.predict([ROW])):
        sequential(fn, 30)

    print("\n-- lone request, sequential (interleaved rounds; ratio = time per call / raw httpx) --")
    ratio, lat_raw, lat_pred = interleaved_ratio(raw_post, lambda: ep.predict([ROW]), n)
    print(f"raw httpx.Client p50 {pct(lat_raw, .5):.2f} ms | Predictor.predict p50 {pct(lat_pred, .5):.2f} ms "
          f"| time ratio {ratio:.3f}x")
    lone_sync_vs_peers(url, n, raw_post, lambda: ep.predict([ROW]))

    async def async_ratio() -> tuple[list[float], list[float]]:
        """apredict against raw httpx.AsyncClient on the same loop (the same HTTP stack), and
        raw httpx.AsyncClient against raw httpx.Client (what the async stack itself costs)."""
        ratios, stack = [], []
        async with httpx.AsyncClient() as http:
            async def raw_async() -> None:
                (await http.post(url, content=BODY, headers=HEADERS)).raise_for_status()

            async def timed(fn: Callable[[], Awaitable[object]]) -> float:
                t = time.perf_counter()
                for _ in range(n // 8):
                    await fn()
                return time.perf_counter() - t

            await timed(raw_async)
            await timed(lambda: ep.apredict([ROW]))
            async def raw_sync() -> None:
                raw_post()

            for _ in range(8):
                ratios.append(await timed(lambda: ep.apredict([ROW])) / await timed(raw_async))
                stack.append(await timed(raw_async) / await timed(raw_sync))
        return ratios, stack

    ratios, stack = asyncio.run(async_ratio())
    print(f"Predictor.apredict vs raw httpx.AsyncClient (same loop, same HTTP stack): time ratio "
          f"{statistics.median(ratios):.3f}x")
    print(f"raw httpx.AsyncClient vs raw httpx.Client (the async stack itself): time ratio "
          f"{statistics.median(stack):.3f}x")

    print("\n-- throughput (vs raw = calls/s over raw httpx sync sequential) --")
    table = Table()
    wall, lat = sequential(raw_post, n)
    table.row("raw httpx.Client, sequential", n, 1, wall, lat)
    wall, lat = sequential(lambda: ep.predict([ROW]), n)
    table.row("Predictor.predict, sequential", n, 1, wall, lat)

    import logging

    from databricks.sdk import WorkspaceClient

    logging.getLogger("databricks.sdk").setLevel(logging.ERROR)  # "no host metadata" on every call

    w = WorkspaceClient()
    sdk_query = lambda: w.serving_endpoints.query("iris", dataframe_records=[ROW])  # noqa: E731
    sequential(sdk_query, 10)
    wall, lat = sequential(sdk_query, n)
    table.row("databricks-sdk serving_endpoints.query, seq", n, 1, wall, lat)
    wall, lat = threaded(sdk_query, n, 16)
    table.row("databricks-sdk query, 16 threads", n, 1, wall, lat)

    from mlflow.deployments import get_deploy_client

    deploy = get_deploy_client("databricks")
    mlflow_predict = lambda: deploy.predict(endpoint="iris", inputs={"dataframe_records": [ROW]})  # noqa: E731
    sequential(mlflow_predict, 10)
    wall, lat = sequential(mlflow_predict, n)
    table.row("mlflow.deployments predict, seq", n, 1, wall, lat)

    wall, lat = threaded(lambda: ep.predict([ROW]), n, 16)
    table.row("Predictor.predict, 16 threads (batching)", n, 1, wall, lat)
    wall, lat = threaded(sdk_query, n, 32)
    table.row("databricks-sdk query, 32 threads", n, 1, wall, lat)
    wall, lat = threaded(lambda: ep.predict([ROW]), max(n, 1280), 32)
    table.row("Predictor.predict, 32 threads (batching)", max(n, 1280), 1, wall, lat)

    async def concurrency_rows() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as http:
            batched = Predictor.from_endpoint(url=url, model_uri=URI)
            alone = Predictor.from_endpoint(url=url, model_uri=URI, batching=False)
            for p in (batched, alone):
                await p.apredict([ROW])
            for c in (1, 8, 32, 128):
                total = max(n, 8 * c)

                async def raw_async() -> None:
                    (await http.post(url, content=BODY, headers=HEADERS)).raise_for_status()

                wall, lat = await concurrent(raw_async, total, c)
                raw_rps = table.row(f"raw httpx.AsyncClient, c={c}", total, 1, wall, lat)
                raw_p99 = pct(lat, .99)
                for label, p, calls in (("no batching", alone, total), ("batching", batched, max(total, 40 * c))):
                    # Batched calls are fast: give them enough calls to get past the first batches.
                    wall, lat = await concurrent(lambda p=p: p.apredict([ROW]), calls, c)
                    table.row(f"Predictor.apredict, c={c}, {label}", calls, 1, wall, lat,
                              note=f"{calls / wall / raw_rps:5.1f}x raw@c, p99 {pct(lat, .99) / raw_p99:.2f}x raw@c")
            big = Predictor.from_endpoint(url=url, model_uri=URI, batching=Batching(max_rows=32))
            wall, lat = await concurrent(lambda: big.apredict([ROW] * 32), n // 4, 1)
            table.row("Predictor.apredict, 32-row calls, c=1", n // 4, 32, wall, lat)
            for p in (batched, alone, big):
                await p.aclose()

    asyncio.run(concurrency_rows())
    rss_endpoint = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    direct = Predictor.from_model(URI)
    sequential(lambda: direct.predict([ROW]), 20)
    wall, lat = sequential(lambda: direct.predict([ROW]), n)
    table.row("Predictor.from_model (direct), sequential", n, 1, wall, lat)
    wall, lat = threaded(lambda: direct.predict([ROW]), n, 32)
    table.row("Predictor.from_model (direct), 32 threads", n, 1, wall, lat)

    print("\n-- encoding, import, memory --")
    dumps, ours, enc = encoding_ratio()
    print(f"validate + encode 10,000 rows: {ours * 1000:.1f} ms; json.dumps(records): {dumps * 1000:.1f} ms; "
          f"ratio {enc:.2f}x (target <= 1.5x)")
    for statement in ("import client", "from client import Predictor"):
        imp, heavy = import_time(statement)
        print(f"{statement}: {imp:.3f} s, median of 7 fresh processes (target for import client <= 0.25 s); "
              f"heavy modules: {heavy or 'none'}")
    ratio, ours_s, base_s = import_ratio()
    print(f"from client import Predictor / import asyncio, httpx, pydantic: {ratio:.2f}x ({ours_s:.3f} s against "
          f"{base_s:.3f} s of CPU; median of 15 alternated pairs of fresh processes; target <= 1.3x)")
    print(f"peak RSS: {rss_endpoint:.0f} MB after the endpoint runs (this process also imported mlflow for the "
          f"signature and the SDK/mlflow baselines); {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB after direct mode")


def tracing(url: str, n: int, store: str) -> None:
    """What tracing costs a call: traced over untraced, interleaved, and the caller's own share."""
    import mlflow

    from client import PredictionResult, Predictor
    from client._schema.validate import validate
    from client._tracing import Tracer

    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("/bench-tracing")
    plain = Predictor.from_endpoint(url=url, model_uri=URI)
    traced = Predictor.from_endpoint(url=url, model_uri=URI, tracing=True)
    for fn in (lambda: plain.predict([ROW]), lambda: traced.predict([ROW])):
        sequential(fn, 30)
    print("\n-- tracing (MLflow 3 traces, async export to the local sqlite store) --")
    ratio, lat_plain, lat_traced = interleaved_ratio(lambda: plain.predict([ROW]), lambda: traced.predict([ROW]), n)
    mlflow.flush_trace_async_logging()
    print(f"untraced p50 {pct(lat_plain, .5):.2f} ms | traced p50 {pct(lat_traced, .5):.2f} ms "
          f"(+{pct(lat_traced, .5) - pct(lat_plain, .5):.2f} ms) | time ratio traced/untraced {ratio:.3f}x")
    tracer = Tracer()
    sample = validate(None, [ROW], None)
    t = time.perf_counter()
    for _ in range(200):
        tracer.record(PredictionResult(predictions=[0], mode="endpoint", model_name="x", model_version="1"),
                      sample, time.time_ns())
    print(f"Tracer.record alone: {(time.perf_counter() - t) / 200 * 1000:.3f} ms per trace (on the caller's thread)")
    mlflow.flush_trace_async_logging()

    # A tracking server that is down (nothing listens on the port): the exporter fails in the background.
    import logging

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    logging.getLogger("mlflow.tracing.export.mlflow_v3").setLevel(logging.ERROR)  # one warning per trace
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")
    ratio, lat_plain, lat_traced = interleaved_ratio(lambda: plain.predict([ROW]), lambda: traced.predict([ROW]), n)
    print(f"tracking store down: untraced p50 {pct(lat_plain, .5):.2f} ms | traced p50 {pct(lat_traced, .5):.2f} ms "
          f"| time ratio traced/untraced {ratio:.3f}x, 0 failed calls")
    mlflow.set_tracking_uri(store)


def feedback_summary(store: str) -> None:
    """The Feedback page's read: 10,000 traces (500 with feedback) in the local sqlite store."""
    import mlflow

    from client import PredictionResult
    from client._schema.validate import validate
    from client._tracing import Tracer
    from client.feedback import record_feedback, summarize

    mlflow.set_tracking_uri(store)
    tracer, sample = Tracer(), validate(None, [ROW], None)
    print("\n-- feedback summary (the Feedback page and `predictor feedback summary`) --", flush=True)
    exp = mlflow.set_experiment("/bench-feedback")
    total, t = 10_000, time.perf_counter()
    old = mlflow.search_traces(locations=[exp.experiment_id], max_results=total, include_spans=False,
                               return_type="list")
    ids = [tr.info.trace_id for tr in old]
    voted = sum(bool(tr.info.assessments) for tr in old)
    print(f"  {len(ids):,} traces already in the store ({voted} with feedback)", flush=True)
    for i in range(len(ids), total):
        result = PredictionResult(predictions=[i % 3], mode="endpoint", model_name="main.default.iris",
                                  model_version=str(1 + i % 2), served_model_name=("champion", "challenger")[i % 2])
        ids.append(tracer.record(result, sample, time.time_ns()))
        if i % 500 == 499:  # MLflow's export queue holds 1,000 traces; do not overrun it
            mlflow.flush_trace_async_logging()
            if i % 2500 == 2499:
                print(f"  {i + 1:,} traces written, {time.perf_counter() - t:.0f} s", flush=True)
    mlflow.flush_trace_async_logging()
    for i, trace_id in enumerate(ids[:: total // 500][voted:], start=voted):
        record_feedback(trace_id or "", f"user{i % 7}@example.com", thumbs_up=i % 3 != 0, comment=f"c{i}")
    print(f"topped up to {total:,} traces and 500 feedbacks in {time.perf_counter() - t:.0f} s "
          f"(MLflow's exporter into sqlite: the store's write rate, not the callers')", flush=True)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        summary = summarize("main.default.iris", [exp.experiment_id], max_traces=total)
        times.append(time.perf_counter() - t)
    counted = sum(s.predictions for s in summary)
    print(f"feedback summary over {counted:,} traces: {statistics.median(times):.2f} s (median of 3; "
          f"{len(summary)} version/entity groups, {sum(s.with_feedback for s in summary)} with feedback)", flush=True)


if __name__ == "__main__":
    main()
