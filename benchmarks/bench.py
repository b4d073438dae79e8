"""Side-by-side request-path benchmark, reported as ratios to raw httpx (one run, one machine).

Starts MLflow's scoring server for the demo model on loopback, then times, in one run:
raw httpx (sync, sequential), the Predictor (sync and async, sequential), and direct mode.

    .venv/bin/python benchmarks/bench.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
URI = "models:/main.default.iris@champion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def report(name: str, lat: list[float], base: float) -> None:
    lat = sorted(lat)
    rps = len(lat) / sum(lat)
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
    ratio = base / rps
    print(f"{name:<38} {rps:7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  time vs raw httpx {ratio:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-")
    env = {**os.environ, "PREDICTOR_HOME": home}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.update(env)
    subprocess.run([sys.executable, "-m", "client", "demo"], check=True, env=env, capture_output=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "client", "serve", URI, "--name", "iris", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/serving-endpoints/iris/invocations"
    try:
        for _ in range(900):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = json.dumps({"dataframe_records": [ROW]})
        from client import Predictor

        raw = httpx.Client()
        ep = Predictor.from_endpoint(url=url, model_uri=URI)
        direct = Predictor.from_model(URI)
        for warm in (lambda: raw.post(url, content=body, headers={"Content-Type": "application/json"}),
                     lambda: ep.predict([ROW]), lambda: direct.predict([ROW])):
            for _ in range(20):
                warm()
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import client"], check=True)
        import_s = time.perf_counter() - t
        raw_lat = timed(lambda: raw.post(url, content=body, headers={"Content-Type": "application/json"}), args.n)
        pred_lat = timed(lambda: ep.predict([ROW]), args.n)

        async def async_seq() -> list[float]:
            out = []
            for _ in range(args.n):
                t = time.perf_counter()
                await ep.apredict([ROW])
                out.append(time.perf_counter() - t)
            return out

        apred_lat = asyncio.run(async_seq())
        direct_lat = timed(lambda: direct.predict([ROW]), args.n)
        base = args.n / sum(raw_lat)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, n={args.n} 1-row requests")
        report("raw httpx.Client, sequential", raw_lat, base)
        report("Predictor.predict (sync), sequential", pred_lat, base)
        report("Predictor.apredict, sequential", apred_lat, base)
        report("Predictor.from_model (direct)", direct_lat, base)
        print(f"python -c 'import client' (whole process): {import_s:.3f} s")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
