"""Streamed chat answers: ``Predictor.astream`` against reading the same SSE stream with raw httpx.

Registers the demo agent in a temporary registry, serves it with MLflow's agent server
(``predictor serve``, one uvicorn worker, loopback), then for concurrency 1, 8 and 32 runs
rounds that alternate raw and SDK (raw then SDK, SDK then raw, ...). Each stream asks "hello": about
40 text chunks, not paced. Per stream: time to the first text chunk (TTFT) and total time;
reported as medians and as SDK/raw ratios (goal ≤ 1.05×). The raw reader is what a caller
would write by hand: httpx + httpx-sse, ``json.loads`` of each event, stop at ``[DONE]``.

    .venv/bin/python benchmarks/bench_chat.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from httpx_sse import EventSource

AGENT = "models:/main.default.assistant@champion"
QUESTION = "hello"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def raw_stream(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    body = {"input": [{"role": "user", "content": QUESTION}], "stream": True}
    async with http.stream("POST", url, json=body, headers={"x-mlflow-return-trace-id": "true"}) as response:
        response.raise_for_status()
        async for sse in EventSource(response).aiter_sse():
            if sse.data == "[DONE]":
                break
            event = json.loads(sse.data)
            if first is None and event.get("type") == "response.output_text.delta" and event.get("delta"):
                first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - started, end - started


async def sdk_stream(p, _url: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    first = None
    async for delta in p.astream(QUESTION):
        if first is None and delta.text:
            first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - started, end - started


async def measure(concurrency: int, rounds: int, url: str) -> dict[str, list[float]]:
    from client import Predictor

    out: dict[str, list[float]] = {"raw_ttft": [], "raw_total": [], "sdk_ttft": [], "sdk_total": []}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http, \
            Predictor.from_endpoint(url=url, model_uri=AGENT) as p:
        await raw_stream(http, url)  # warm both: connections, and the SDK's one-time kind detection
        await sdk_stream(p, url)
        order = [("raw", raw_stream, http), ("sdk", sdk_stream, p)]
        for i in range(rounds):
            # Who goes first alternates: the server is still writing the previous batch's traces.
            for name, one, target in (order if i % 2 == 0 else order[::-1]):
                results = await asyncio.gather(*(one(target, url) for _ in range(concurrency)))
                out[f"{name}_ttft"] += [r[0] for r in results]
                out[f"{name}_total"] += [r[1] for r in results]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench_chat_")
    registry = f"sqlite:///{home}/mlflow.db"
    env = {**os.environ, "PREDICTOR_HOME": home, "MLFLOW_TRACKING_URI": registry, "MLFLOW_REGISTRY_URI": registry}
    os.environ.update({k: env[k] for k in ("PREDICTOR_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")})
    subprocess.run([sys.executable, "-m", "client.local", "demo"], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "client.local", "serve", AGENT, "--name", "assistant",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("agent server did not start")
            time.sleep(0.3)
        url = base + "/serving-endpoints/assistant/invocations"
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
              f"python {platform.python_version()}; server: MLflow agent server (1 worker) on loopback; "
              f"'{QUESTION}' = ~40 text chunks per stream; rounds alternate raw/SDK and who goes first")
        print(f"{'streams':>7}  {'raw TTFT':>9} {'SDK TTFT':>9} {'ratio':>6}  "
              f"{'raw total':>9} {'SDK total':>9} {'ratio':>6}")
        for concurrency in (1, 8, 32):
            rounds = args.rounds if concurrency == 1 else max(2, args.rounds // 2)
            m = asyncio.run(measure(concurrency, rounds, url))
            med = {k: statistics.median(v) * 1000 for k, v in m.items()}
            print(f"{concurrency:>7}  {med['raw_ttft']:>7.1f}ms {med['sdk_ttft']:>7.1f}ms "
                  f"{med['sdk_ttft'] / med['raw_ttft']:>5.2f}x  {med['raw_total']:>7.1f}ms {med['sdk_total']:>7.1f}ms "
                  f"{med['sdk_total'] / med['raw_total']:>5.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
