"""The retry loop and error translation, over httpx.MockTransport with sleep patched."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from workspace_standin import workspace  # noqa: F401  (fixture)

from client import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    Predictor,
    PredictorClosedError,
    RateLimitError,
)
from client._http.transport import RetryConfig, Transport

URL = "http://127.0.0.1:9/serving-endpoints/iris/invocations"
OK = b'{"predictions": [1]}'


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class CountingAuth:
    def __init__(self, refreshes_allowed: bool = True) -> None:
        self.token = "tok-1"
        self.refreshes = 0
        self.refreshes_allowed = refreshes_allowed

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def refresh(self) -> bool:
        if not self.refreshes_allowed:
            return False
        self.refreshes += 1
        self.token = f"tok-{self.refreshes + 1}"
        return True


def scripted(*answers):
    """A MockTransport answering each request with the next scripted answer (Response or exception)."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


async def post(mock, *, retries=3, total=None, auth=None, sleeps=None):
    transport = Transport(timeout=httpx.Timeout(5.0), transport=mock, sleep=sleeps or Sleeps())
    try:
        return await transport.post_json(
            URL, b"{}", auth=auth or CountingAuth(), budget=RetryConfig(retries, total).start(),
            timeout=httpx.Timeout(5.0)
        )
    finally:
        await transport.aclose()


async def test_429_and_503_honour_retry_after_then_succeed():
    sleeps = Sleeps()
    mock, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error_code": "REQUEST_LIMIT_EXCEEDED"}),
        httpx.Response(503, headers={"Retry-After": "1"}, text="busy"),
        httpx.Response(200, content=OK),
    )
    response, retries = await post(mock, sleeps=sleeps)
    assert response.json() == {"predictions": [1]}
    assert retries == 2
    assert sleeps.waits == [2.0, 1.0]
    assert len(seen) == 3


async def test_400_is_never_retried():
    mock, seen = scripted(httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": "bad column"}))
    with pytest.raises(BadRequestError, match="bad column"):
        await post(mock)
    assert len(seen) == 1


async def test_reset_connection_is_retried_and_translated_when_budget_runs_out():
    reset = httpx.ReadError("connection reset by peer")
    mock, seen = scripted(reset, httpx.Response(200, content=OK))
    _, retries = await post(mock)
    assert retries == 1
    mock, seen = scripted(reset, reset, reset)
    with pytest.raises(APIConnectionError) as info:
        await post(mock, retries=2)
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert len(seen) == 3


async def test_max_retries_zero_disables_retrying():
    mock, seen = scripted(httpx.Response(503, text="busy"))
    with pytest.raises(InternalServerError):
        await post(mock, retries=0)
    assert len(seen) == 1


async def test_rate_limit_error_after_budget():
    mock, seen = scripted(*[httpx.Response(429, json={"message": "slow down"}) for _ in range(3)])
    with pytest.raises(RateLimitError, match="slow down"):
        await post(mock, retries=2)
    assert len(seen) == 3


async def test_401_refreshes_once_and_resends_with_the_new_token():
    auth = CountingAuth()
    mock, seen = scripted(httpx.Response(401, json={"message": "expired"}), httpx.Response(200, content=OK))
    await post(mock, auth=auth)
    assert auth.refreshes == 1
    assert [r.headers["Authorization"] for r in seen] == ["Bearer tok-1", "Bearer tok-2"]


async def test_second_401_is_the_answer():
    auth = CountingAuth()
    mock, seen = scripted(httpx.Response(401, json={"message": "no"}), httpx.Response(401, json={"message": "no"}))
    with pytest.raises(AuthenticationError):
        await post(mock, auth=auth)
    assert auth.refreshes == 1 and len(seen) == 2


async def test_static_token_401_is_not_resent():
    mock, seen = scripted(httpx.Response(401, json={"message": "no"}))
    with pytest.raises(AuthenticationError):
        await post(mock, auth=CountingAuth(refreshes_allowed=False))
    assert len(seen) == 1


async def test_token_never_in_debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    auth = CountingAuth()
    auth.token = "SENTINEL-SECRET-123"
    mock, _ = scripted(httpx.Response(503, text="x"), httpx.Response(200, content=OK))
    await post(mock, auth=auth)
    assert caplog.records, "expected debug logging from the transport"
    assert "SENTINEL-SECRET-123" not in caplog.text


# -- total_timeout: one budget for the whole call ----------------------------------------


class FakeClock:
    """A monotonic clock that only the patched sleep moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_no_retry_whose_wait_would_end_past_the_deadline():
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    mock, seen = scripted(*[httpx.Response(503, headers={"Retry-After": "4"}, text="busy") for _ in range(5)])
    transport = Transport(timeout=httpx.Timeout(5.0), transport=mock, sleep=sleep)
    budget = RetryConfig(max_retries=10, total_timeout=10.0).start(clock)
    with pytest.raises(InternalServerError):
        await transport.post_json(URL, b"{}", auth=CountingAuth(), budget=budget, timeout=httpx.Timeout(5.0))
    assert len(seen) == 3 and clock.now == 8.0  # attempts at 0, 4 and 8 s; a wait to 12 s would pass 10 s
    assert budget.retries_used == 2 and budget.retries_left == 8


def slow_server(seconds: float, status: int = 200):
    """A MockTransport whose every answer takes ``seconds``; returns it and the requests seen."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await asyncio.sleep(seconds)
        return httpx.Response(status, json={"predictions": [1]} if status == 200 else {"message": "boom"})

    return httpx.MockTransport(handler), seen


async def test_total_timeout_bounds_a_call_whose_one_attempt_is_slower():
    """``total_timeout=1, timeout=60`` against a server answering in 30 s: a timeout near 1 s."""
    mock, seen = slow_server(30.0)  # far from 1 s either way, so a loaded machine's lag cannot decide it
    p = Predictor.from_endpoint(url=URL, http_transport=mock, validate=False, total_timeout=1.0, timeout=60.0)
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await p.apredict([{"x": 1.0}])
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 10, elapsed
    assert len(seen) == 1  # no time left for another attempt
    await p.aclose()


async def test_batched_callers_keep_their_own_deadline_through_batch_and_resend():
    """A 500 fails the batch, and each call is resent alone: still within its own total_timeout."""
    mock, _ = slow_server(0.3, status=500)
    p = Predictor.from_endpoint(url=URL, http_transport=mock, validate=False, total_timeout=1.0, max_retries=10)

    async def timed(i: int) -> float:
        started = time.monotonic()
        with pytest.raises((InternalServerError, APITimeoutError)):
            await p.apredict([{"x": float(i)}])
        return time.monotonic() - started

    waits = await asyncio.gather(*(timed(i) for i in range(8)))
    assert max(waits) < 4, waits  # the call's budget; each request's would be 10 retries of 0.3 s and backoff
    await p.aclose()


async def test_a_resend_after_a_failed_batch_spends_what_is_left_of_the_retries():
    """8 callers against a server that always answers 500, 2 retries each: the batch spends both,
    so each resend alone gets one attempt (3 + 8 requests, not 3 + 8 x 3)."""
    mock, seen = scripted(*[httpx.Response(500, json={"message": "boom"}) for _ in range(40)])
    sleeps = Sleeps()
    p = Predictor(url=URL, transport=Transport(timeout=httpx.Timeout(5.0), transport=mock, sleep=sleeps),
                  validate=False, max_retries=2, total_timeout=None)
    results = await asyncio.gather(*(p.apredict([{"x": float(i)}]) for i in range(8)), return_exceptions=True)
    assert all(isinstance(r, InternalServerError) for r in results), results
    rows = [len(json.loads(r.content)["dataframe_split"]["data"]) for r in seen]
    assert rows == [8, 8, 8] + [1] * 8
    await p.aclose()


# -- close: a closed Predictor refuses calls, and never opens a new pool ------------------


def test_a_call_after_close_is_a_typed_error_and_nothing_is_sent():
    mock, seen = scripted(httpx.Response(200, content=OK), httpx.Response(200, content=OK))
    p = Predictor.from_endpoint(url=URL, http_transport=mock, validate=False)
    assert p.predict([{"x": 1.0}]).predictions == [1]
    p.close()
    with pytest.raises(PredictorClosedError, match="closed"):
        p.predict([{"x": 1.0}])
    with pytest.raises(PredictorClosedError):
        asyncio.run(p.apredict([{"x": 1.0}]))  # closed for every event loop, not only the portal's
    assert len(seen) == 1


async def test_a_call_in_flight_at_close_fails_and_is_not_resent_on_a_new_pool():
    answers = [503, 200]
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0)
        if status == 503:
            await asyncio.sleep(0.2)  # in flight while the Predictor closes
        return httpx.Response(status, content=OK if status == 200 else b"busy")

    p = Predictor(url=URL, validate=False, max_retries=3,
                  transport=Transport(timeout=httpx.Timeout(5.0), transport=httpx.MockTransport(handler),
                                      sleep=Sleeps()))
    call = asyncio.create_task(p.apredict([{"x": 1.0}]))
    for _ in range(500):  # until the first attempt is in flight
        if seen:
            break
        await asyncio.sleep(0.01)
    await p.aclose()
    with pytest.raises(PredictorClosedError):
        await call
    assert len(seen) == 1  # the 503 was not retried on a pool opened after close


def test_an_endpoint_lookup_refused_is_a_typed_error_not_an_httpx_one(workspace):  # noqa: F811
    """``endpoint_state()`` on a 403 raised a bare ``httpx.HTTPStatusError``, outside the error tree."""
    from client import PermissionDeniedError

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(403, json={"error_code": "PERMISSION_DENIED", "message": "no access to iris"})

    ws = workspace()  # the stand-in answers databricks-sdk's own look-ups; ours go to the handler
    ws.add_pat("dapi-x")
    p = Predictor.from_endpoint("iris", host=ws.url, token="dapi-x", http_transport=httpx.MockTransport(handler))
    with pytest.raises(PermissionDeniedError, match="no access to iris") as info:
        p.endpoint_state()
    assert info.value.status_code == 403
    assert [r.url.path for r in seen] == ["/api/2.0/serving-endpoints/iris"]  # a 403 is not retried
    p.close()


async def test_an_endpoint_lookup_is_retried_like_a_prediction_and_refreshes_on_401():
    """Look-ups go through the one request method: a 503 is retried with the transport's sleep and a
    401 refreshes the credential once (the GET copy had no retries and a 401 handling of its own)."""
    auth = CountingAuth()
    mock, seen = scripted(
        httpx.Response(503, headers={"Retry-After": "3"}, text="busy"),
        httpx.Response(401, json={"message": "expired"}),
        httpx.Response(200, json={"name": "iris", "state": {"ready": "READY", "config_update": "NOT_UPDATING"}}),
    )
    sleeps = Sleeps()
    p = Predictor(endpoint="iris", url=URL, host="http://127.0.0.1:9", validate=False, auth=auth,
                  transport=Transport(timeout=httpx.Timeout(5.0), transport=mock, sleep=sleeps))
    assert await p.aendpoint_state() == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert sleeps.waits == [3.0] and auth.refreshes == 1
    assert [(r.method, r.url.path, r.headers["Authorization"]) for r in seen] == [
        ("GET", "/api/2.0/serving-endpoints/iris", "Bearer tok-1"),
        ("GET", "/api/2.0/serving-endpoints/iris", "Bearer tok-1"),
        ("GET", "/api/2.0/serving-endpoints/iris", "Bearer tok-2"),
    ]
    await p.aclose()


# -- the lone sync call: sent from the caller's thread, with the same policy ----------------


def sync_predictor(mock: httpx.MockTransport, *, auth=None, retries: int = 3) -> tuple[Predictor, list[float]]:
    """A Predictor over ``mock`` whose sync path records its waits instead of sleeping."""
    waits: list[float] = []
    transport = Transport(timeout=httpx.Timeout(5.0), transport=mock, sleep=Sleeps(), sync_sleep=waits.append)
    p = Predictor(url=URL, auth=auth, transport=transport, validate=False, max_retries=retries, total_timeout=None)
    return p, waits


def test_a_lone_sync_call_is_sent_from_the_callers_thread_with_the_same_retries():
    threads: list[str] = []
    answers = [httpx.Response(429, headers={"Retry-After": "2"}, json={"message": "slow down"}),
               httpx.Response(503, headers={"Retry-After": "1"}, text="busy"), httpx.Response(200, content=OK)]

    def handler(request: httpx.Request) -> httpx.Response:
        threads.append(threading.current_thread().name)
        return answers.pop(0)

    p, waits = sync_predictor(httpx.MockTransport(handler))
    result = p.predict([{"x": 1.0}])
    assert result.predictions == [1] and result.retries == 2
    assert waits == [2.0, 1.0]  # Retry-After honoured, through the sync sleep
    assert threads == [threading.current_thread().name] * 3  # no hand-off to the event loop's thread
    p.close()


def test_a_lone_sync_call_gets_the_typed_errors():
    reset = httpx.ReadError("connection reset by peer")
    p, waits = sync_predictor(scripted(reset, reset, reset)[0], retries=2)
    with pytest.raises(APIConnectionError) as info:
        p.predict([{"x": 1.0}])
    assert isinstance(info.value.__cause__, httpx.ReadError) and len(waits) == 2
    mock, seen = scripted(httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": "bad column"}))
    p, _ = sync_predictor(mock)
    with pytest.raises(BadRequestError, match="bad column"):
        p.predict([{"x": 1.0}])
    assert len(seen) == 1  # never retried


def test_a_lone_sync_call_refreshes_credentials_once_after_a_401():
    auth = CountingAuth()
    mock, seen = scripted(httpx.Response(401, json={"message": "expired"}), httpx.Response(200, content=OK))
    p, _ = sync_predictor(mock, auth=auth)
    assert p.predict([{"x": 1.0}]).predictions == [1]
    assert auth.refreshes == 1
    assert [r.headers["Authorization"] for r in seen] == ["Bearer tok-1", "Bearer tok-2"]
    mock, seen = scripted(httpx.Response(401, json={"message": "no"}))
    p, _ = sync_predictor(mock, auth=CountingAuth(refreshes_allowed=False))
    with pytest.raises(AuthenticationError):
        p.predict([{"x": 1.0}])
    assert len(seen) == 1


def test_a_lone_sync_call_keeps_to_its_total_timeout_against_a_server_that_never_answers():
    """A listening socket that never answers; ``total_timeout=0.5``, ``timeout=60``: a timeout near 0.5 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/invocations"
        p = Predictor.from_endpoint(url=url, validate=False, total_timeout=0.5, timeout=60.0)
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"total_timeout=0\.5s"):
            p.predict([{"x": 1.0}])
        assert 0.4 <= time.monotonic() - started < 10  # not the 60 s per-attempt timeout
        p.close()


def test_sync_calls_from_many_threads_are_still_batched():
    """The first call goes alone from its thread and is held until a second request arrives: that
    one came through the event loop (the first was in flight), and the loop was held by it while
    the other calls arrived, so they leave together."""
    arrived = threading.Condition()
    requests: list[httpx.Request] = []
    rows_sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        with arrived:
            requests.append(request)
            arrived.notify_all()
            arrived.wait_for(lambda: len(requests) >= 2, timeout=5)  # the first waits for the second
        n = len(json.loads(request.content)["dataframe_split"]["data"])
        rows_sent.append(n)
        return httpx.Response(200, json={"predictions": [1] * n})

    p, _ = sync_predictor(httpx.MockTransport(handler))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: p.predict([{"x": float(i)}]), range(16)))
    assert all(r.predictions == [1] for r in results)
    assert sum(rows_sent) == 16 and len(rows_sent) < 16  # the others shared requests
    assert max(r.batch_size for r in results) > 1
    p.close()


def test_sync_calls_count_as_alone_only_after_a_quiet_spell_without_overlap():
    """Threads back from a shared batch find nobody in flight, yet are not alone: they stay on the
    event loop (to be batched) until no two sync calls have overlapped for SYNC_COMPANY_WINDOW."""
    from client._constants import SYNC_COMPANY_WINDOW
    from client._http.auth import NoAuth
    from client._http.sending import Sender

    sender = Sender(url=URL, auth=NoAuth(), transport=Transport(timeout=httpx.Timeout(5.0)), direct=None,
                    batching=None)
    clock = FakeClock()
    sender.clock = clock
    with sender.sync_call() as first, sender.sync_call() as second:
        assert first and not second
    with sender.sync_call() as back:
        assert not back  # nobody in flight, but two overlapped just now
    clock.now += SYNC_COMPANY_WINDOW
    with sender.sync_call() as later, sender.sync_call() as beside:
        assert later and not beside
    clock.now += SYNC_COMPANY_WINDOW
    with sender.sync_call() as lone:
        assert lone
