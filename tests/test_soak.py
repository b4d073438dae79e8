"""Soak: 10,000 calls through the Streamlit app's code path, 16 at a time, against the local
scoring server. Memory stays flat, and no thread or connection is left behind.

The path is the app's own, minus Streamlit: ``AppConfig.from_env`` -> ``load_predictor`` ->
``build_fields`` / ``form_to_record`` (the form) -> ``predictor_for`` / ``caller_identity`` ->
``predict`` + ``model_dump(mode="json")`` (what ``_cached_predict`` does; its cache would only
hide calls) -> ``format_prediction``. Streamlit runs each session's script on a thread of its
own, so the 16 callers are threads calling the sync API.
"""

from __future__ import annotations

import gc
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _iris import iris_labels

from client import Predictor
from frontends.core.form import build_fields, form_to_record
from frontends.core.session import AppConfig, caller_identity, format_prediction, load_predictor, predictor_for

IRIS = "models:/main.default.iris@champion"
COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
CALLS = 10_000
WARMUP = 500
CONCURRENCY = 16
MAX_RSS_GROWTH_MB = 50

pytestmark = pytest.mark.slow


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            continue  # closed while we looked
    return n


def app_call(base: Predictor, config: AppConfig, fields: list, form_values: dict[str, str]) -> tuple[Any, str]:
    """One Predict click on the Streamlit page, without Streamlit."""
    headers: dict[str, str] = {}
    predictor = predictor_for(base, headers, config)
    caller_identity(headers, config)
    records = [form_to_record(fields, form_values)]
    payload = json.dumps(records, sort_keys=True, default=str)
    result = predictor.predict(json.loads(payload)).model_dump(mode="json")
    return result["predictions"], format_prediction(result["predictions"])


def test_10000_app_calls_keep_memory_threads_and_connections_flat(scoring_server, registry_uri):
    config = AppConfig.from_env({
        "PREDICTOR_ENDPOINT_URL": f"{scoring_server}/invocations",
        "PREDICTOR_MODEL_URI": IRIS,
        "PREDICTOR_REGISTRY_URI": registry_uri,
    })
    base, signature = load_predictor(config)
    fields = build_fields(signature)
    assert [f.name for f in fields] == list(COLUMNS)

    rng = random.Random(5)
    forms = [{c: f"{rng.uniform(0.1, 7.9):.2f}" for c in COLUMNS} for _ in range(200)]  # what the widgets hold
    expected = Predictor.from_model(IRIS, registry_uri=registry_uri).predict(
        [form_to_record(fields, f) for f in forms]).predictions
    assert len(set(iris_labels(expected))) >= 2  # class names with probabilities, not all one class

    def run(n: int) -> list[str]:
        wrong: list[str] = []
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="session") as pool:
            outcomes = pool.map(lambda i: (i, app_call(base, config, fields, forms[i % len(forms)])), range(n))
            for i, (predictions, text) in outcomes:
                want = expected[i % len(forms)]
                if predictions != [want] or text != want["prediction"]:
                    wrong.append(f"call {i}: {predictions} / {text!r}")
        return wrong

    assert run(WARMUP) == []
    gc.collect()
    rss_start, threads_start, sockets_start = rss_mb(), threading.active_count(), open_sockets()
    started = time.perf_counter()
    wrong = run(CALLS)
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_end, threads_end, sockets_end = rss_mb(), threading.active_count(), open_sockets()
    print(f"\nsoak: {CALLS} app calls at concurrency {CONCURRENCY} in {elapsed:.1f}s, wrong={len(wrong)}, "
          f"RSS {rss_start:.1f} -> {rss_end:.1f} MB, threads {threads_start} -> {threads_end}, "
          f"sockets {sockets_start} -> {sockets_end}")
    base.close()
    assert wrong == [], wrong[:5]
    assert rss_end - rss_start < MAX_RSS_GROWTH_MB
    assert threads_end <= threads_start  # the sessions' threads are gone, nothing else was started
    assert sockets_end <= sockets_start + 2  # the pool reuses its connections
