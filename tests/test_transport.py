"""The retry loop and error translation, over httpx.MockTransport with sleep patched."""

from __future__ import annotations

import logging

import httpx
import pytest

from client import APIConnectionError, AuthenticationError, BadRequestError, InternalServerError, RateLimitError
from client._transport import RetryConfig, Transport

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
            URL, b"{}", auth=auth or CountingAuth(), retry=RetryConfig(retries, total), timeout=httpx.Timeout(5.0)
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
