"""Faults: the client against a real MLflow scoring server behind a fault-injecting proxy.

Every call must either return the right prediction (the one direct mode gives for its row) or
raise the typed error that its retry budget implies for the faults it met; none may hang or
come back with another row's answer. The proxy logs which rows each request carried and what
it did with it, so the expected outcome of each call is known exactly.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import time
from typing import Any

import httpx
import pytest
from _iris import IRIS_CLASSES, iris_labels
from fault_proxy import FAULTS, FaultProxy

from client import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    InternalServerError,
    PredictionResult,
    Predictor,
    RateLimitError,
)

IRIS = "models:/main.default.iris@champion"
COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")

#: What a call whose last request met this fault must raise.
EXPECTED_ERROR: dict[str, type[Exception]] = {
    "429_retry_after": RateLimitError,
    "429": RateLimitError,
    "503": InternalServerError,
    "504": InternalServerError,
    "reset": APIConnectionError,
    "stall": APITimeoutError,
    "truncated": APIConnectionError,
    "non_json": APIResponseValidationError,
    "late": APITimeoutError,  # not injected: the scoring server itself answered after the read timeout
}
RETRYABLE = {"429_retry_after", "429", "503", "504", "reset", "stall", "truncated", "late"}
assert set(EXPECTED_ERROR) == {*FAULTS, "late"}


def _has_batching() -> bool:
    return "batching" in inspect.signature(Predictor.from_endpoint).parameters


def make_rows(n: int, seed: int = 7) -> list[dict[str, float]]:
    """``n`` distinct iris rows (distinct, so the proxy's log tells which request carried which call)."""
    rng = random.Random(seed)
    seen: set[tuple[float, ...]] = set()
    rows = []
    while len(rows) < n:
        values = (
            round(rng.uniform(4.3, 7.9), 3),
            round(rng.uniform(2.0, 4.4), 3),
            round(rng.uniform(1.0, 6.9), 3),
            round(rng.uniform(0.1, 2.5), 3),
        )
        if values not in seen:
            seen.add(values)
            rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def key(row: dict[str, float]) -> tuple[float, ...]:
    return tuple(row[c] for c in COLUMNS)


def judge(
    row: dict[str, float], outcome: PredictionResult | BaseException, expected: Any, proxy: FaultProxy,
    max_retries: int, read_timeout: float, unseen: list[int] | None = None,
) -> str | None:
    """Why this call's outcome is wrong, or ``None`` if it is what its faults imply.

    A non-retryable fault ends a call, except when it hit a request shared by several calls
    (micro-batching): then each call is resent alone, and what counts is that last attempt.
    An answer the scoring server itself was too slow to give (the proxy took at least half the
    read timeout to relay it) may have reached the client after it gave up: it counts as a
    ``"late"`` answer, i.e. a timeout, if the client did give up on it.
    With ``unseen``, attempts the proxy never read (a client may give up on a request before a
    starved proxy reads it: ``FaultProxy.unread``) are not an error here; each call's count of them
    is appended, for the caller to check against the proxy's.
    """
    seen = proxy.requests_for(key(row))
    if not seen:
        return "no request carried this row"
    outcomes = []
    for i, r in enumerate(seen):
        gave_up = i < len(seen) - 1 or not isinstance(outcome, PredictionResult)
        late = r.outcome == "ok" and r.seconds >= read_timeout / 2 and gave_up
        outcomes.append("late" if late else r.outcome)
    final: list[str] = []  # the attempts of the last send: a batch, or this call alone after isolation
    for r, o in zip(seen, outcomes, strict=True):
        final.append(o)
        if o not in RETRYABLE and o != "ok" and len(r.rows) > 1:
            final = []
    if not final:
        return f"a shared request met {outcomes[-1]!r} and the call was not resent alone ({outcomes})"
    last = final[-1]
    if any(o not in RETRYABLE for o in final[:-1]):
        return f"retried after a fault that is not retryable ({outcomes})"
    if isinstance(outcome, PredictionResult):
        if last != "ok":
            return f"returned a prediction though the last request met {last!r} ({outcomes})"
        if outcome.predictions != [expected]:
            return f"wrong prediction {outcome.predictions!r}, direct mode says {[expected]!r}"
        if outcome.retries > len(final) - 1 and unseen is not None:
            unseen.append(outcome.retries - (len(final) - 1))
        elif outcome.retries != len(final) - 1:
            return f"reported {outcome.retries} retries, the proxy saw {outcomes}"
        return None
    if last == "ok":
        return f"raised {type(outcome).__name__} though the last request was answered ({outcomes})"
    want = EXPECTED_ERROR[last]
    if type(outcome) is not want:
        return f"raised {type(outcome).__name__}: {outcome}; the last fault {last!r} implies {want.__name__}"
    if last in RETRYABLE and len(final) < max_retries + 1 and unseen is not None:
        unseen.append(max_retries + 1 - len(final))
    elif last in RETRYABLE and len(final) != max_retries + 1:
        return f"gave up on {last!r} after {len(final)} attempts, the budget is {max_retries + 1} ({outcomes})"
    return None


def predictor(url: str, registry_uri: str, *, timeout: float, max_retries: int, batching: bool) -> Predictor:
    kwargs: dict[str, Any] = {}
    if batching or _has_batching():
        kwargs["batching"] = batching
    return Predictor.from_endpoint(
        url=f"{url}/invocations",
        model_uri=IRIS,
        registry_uri=registry_uri,
        timeout=httpx.Timeout(timeout, connect=timeout),
        max_retries=max_retries,
        total_timeout=None,  # the budget is the retry count alone, so the expected outcome is exact
        **kwargs,
    )


async def run_calls(p: Predictor, rows: list[dict[str, float]], concurrency: int, hang_guard: float) -> tuple[
    list[PredictionResult | BaseException | None], int
]:
    """One single-row ``apredict`` per row; ``None`` for a call still running after ``hang_guard`` s."""
    sem = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, float]) -> PredictionResult:
        async with sem:
            return await p.apredict([row])

    tasks = [asyncio.create_task(one(r)) for r in rows]
    _, pending = await asyncio.wait(tasks, timeout=hang_guard)
    for t in pending:
        t.cancel()
    outcomes: list[PredictionResult | BaseException | None] = []
    for t in tasks:
        if t in pending:
            outcomes.append(None)
        elif t.exception() is not None:
            outcomes.append(t.exception())
        else:
            outcomes.append(t.result())
    return outcomes, len(pending)


@pytest.fixture(scope="module")
def direct_predictions(registry_uri: str) -> dict[tuple[float, ...], Any]:
    rows = make_rows(2000)
    preds = Predictor.from_model(IRIS, registry_uri=registry_uri).predict(rows).predictions
    # Class names and probabilities, all three classes among them; compared exactly below (the demo
    # model's probabilities do not depend on which rows share a request).
    assert set(iris_labels(preds)) == set(IRIS_CLASSES)
    return {key(r): p for r, p in zip(rows, preds, strict=True)}


# --------------------------------------------------------------------------- one fault at a time


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_gives_its_typed_error_after_the_budget(fault, scoring_server, registry_uri,
                                                                  direct_predictions):
    rows = make_rows(6)
    # The stall (30 s) far outlasts the per-attempt timeout (2 s), so that neither a late client (the
    # proxy's reset arriving first) nor a late proxy (the client giving up before the request is read)
    # can change the outcome on a loaded machine; every other fault gets 5 s, so that a loaded machine
    # cannot turn it into a timeout (with 0.5 s, a truncated body did, once, on the fresh clone with
    # three workers). The stall was 0.8 s against 0.5 s: 0.3 s of a loop's lag from a wrong error.
    timeout = 2.0 if fault == "stall" else 5.0
    with FaultProxy(scoring_server, fault_rate=1.0, faults=(fault,), stall_seconds=30, retry_after="0") as proxy:
        p = predictor(proxy.url, registry_uri, timeout=timeout, max_retries=2, batching=False)
        await p.aget_signature()
        outcomes, lost = await run_calls(p, rows, concurrency=3, hang_guard=60)
        await p.aclose()
    assert lost == 0
    for row, outcome in zip(rows, outcomes, strict=True):
        assert isinstance(outcome, EXPECTED_ERROR[fault]) and type(outcome) is EXPECTED_ERROR[fault], outcome
        assert judge(row, outcome, direct_predictions[key(row)], proxy, 2, timeout) is None
    per_call = 3 if fault in RETRYABLE else 1
    assert proxy.injected[fault] == per_call * len(rows) == proxy.requests
    assert proxy.forwarded == 0


@pytest.mark.slow
async def test_a_fault_then_an_answer_is_a_right_prediction(scoring_server, registry_uri, direct_predictions):
    rows = make_rows(24)
    with FaultProxy(scoring_server, fault_rate=0.3, faults=("503", "reset", "truncated"), seed=3) as proxy:
        p = predictor(proxy.url, registry_uri, timeout=5.0, max_retries=8, batching=False)
        outcomes, lost = await run_calls(p, rows, concurrency=12, hang_guard=120)
        await p.aclose()
    assert lost == 0
    assert all(isinstance(o, PredictionResult) for o in outcomes), outcomes
    problems = [judge(r, o, direct_predictions[key(r)], proxy, 8, 5.0)  # type: ignore[arg-type]
                for r, o in zip(rows, outcomes, strict=True)]
    assert [x for x in problems if x] == []
    assert sum(o.retries for o in outcomes) == proxy.requests - len(rows) > 0  # type: ignore[union-attr]


@pytest.mark.slow
async def test_a_failed_upstream_hop_is_judged_as_the_reset_the_client_saw(registry_uri, direct_predictions):
    # The proxy's own hop can fail (a keep-alive connection the scoring server closed): the
    # client then sees a dropped connection, and the log must say so, or the judge would call
    # the client's retry of a planned "ok" wrong.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    rows = make_rows(2)
    with FaultProxy(dead, fault_rate=0.0) as proxy:
        p = predictor(proxy.url, registry_uri, timeout=2.0, max_retries=1, batching=False)
        await p.aget_signature()
        outcomes, lost = await run_calls(p, rows, concurrency=2, hang_guard=30)
        await p.aclose()
    assert lost == 0
    assert [type(o) for o in outcomes] == [APIConnectionError, APIConnectionError]
    assert [r.outcome for r in proxy.log] == ["reset"] * 4 and proxy.upstream_failures == 4
    assert [judge(r, o, direct_predictions[key(r)], proxy, 1, 2.0)  # type: ignore[arg-type]
            for r, o in zip(rows, outcomes, strict=True)] == [None, None]


# --------------------------------------------------------------------------- 20 % faults, 2,000 calls

CALLS = 2000
CONCURRENCY = 32
FAULT_RATE = 0.2
MAX_RETRIES = 3
#: Well above what 32 unbatched callers queue for at a one-worker server on a loaded 2-core CI
#: machine (p99 ~1.7 s measured), so that a slow "ok" is rare; the judge still allows for it.
READ_TIMEOUT = 5.0


@pytest.mark.slow
@pytest.mark.timeout(900)  # above the hang guard: 600 s for what takes ~55 s here, 3-4x on a loaded CI
@pytest.mark.parametrize("batching", [False, True], ids=["batching-off", "batching-on"])
async def test_2000_calls_at_20_percent_faults(batching, scoring_server, registry_uri, direct_predictions):
    rows = make_rows(CALLS)
    started = time.perf_counter()
    with FaultProxy(scoring_server, fault_rate=FAULT_RATE, seed=11, stall_seconds=READ_TIMEOUT + 0.5,
                    retry_after="1") as proxy:
        p = predictor(proxy.url, registry_uri, timeout=READ_TIMEOUT, max_retries=MAX_RETRIES, batching=batching)
        await p.aget_signature()
        outcomes, lost = await run_calls(p, rows, concurrency=CONCURRENCY, hang_guard=600)
        await p.aclose()
    elapsed = time.perf_counter() - started

    wrong, unseen = [], []
    for row, outcome in zip(rows, outcomes, strict=True):
        if outcome is None:
            continue  # counted in lost
        why = judge(row, outcome, direct_predictions[key(row)], proxy, MAX_RETRIES, READ_TIMEOUT, unseen)
        if why:
            wrong.append(why)
    ok = sum(isinstance(o, PredictionResult) for o in outcomes)
    late = sum(r.outcome == "ok" and r.seconds >= READ_TIMEOUT / 2 for r in proxy.log)
    errors: dict[str, int] = {}
    for o in outcomes:
        if isinstance(o, BaseException):
            errors[type(o).__name__] = errors.get(type(o).__name__, 0) + 1
    injected = sum(proxy.injected.values())
    retries = sum(o.retries for o in outcomes if isinstance(o, PredictionResult))
    print(
        f"\nfaults batching={batching}: calls={CALLS} ok={ok} typed_errors={errors} "
        f"requests={proxy.requests} faults_injected={injected} {dict(sorted(proxy.injected.items()))} "
        f"retries={retries} upstream_failures={proxy.upstream_failures} "
        f"slow_upstream_answers={late} unread={proxy.unread} unseen={sum(unseen)} lost={lost} "
        f"wrong={len(wrong)} elapsed={elapsed:.1f}s"
    )
    assert lost == 0
    assert wrong == [], wrong[:10]
    # Attempts the calls counted that the proxy never read: no more than the connections it lost
    # before reading a request (2026-12-03, a loaded machine: one retry "unseen" failed the old judge).
    assert sum(unseen) <= proxy.unread, (unseen, proxy.unread)
    # Every kind of fault was met (batched, there are ~200 requests for ~40 faults: most kinds);
    # each kind alone is covered by test_each_fault_gives_its_typed_error_after_the_budget.
    assert len(proxy.injected) >= (len(FAULTS) if not batching else 5)
    sd = (FAULT_RATE * (1 - FAULT_RATE) / proxy.requests) ** 0.5
    assert abs(injected / proxy.requests - FAULT_RATE) < 4 * sd
    assert ok > 0.9 * CALLS  # with a budget of 4 attempts, almost every call gets through
