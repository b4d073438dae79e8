"""Retry policy and status mapping, as pure functions (clock and randomness patched)."""

from __future__ import annotations

import email.utils
import json

import httpx
import pytest

from client import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from client._constants import MAX_RETRY_AFTER, MAX_RETRY_DELAY
from client._http.policy import (
    MAX_SERVER_MESSAGE,
    backoff_delay,
    is_retryable,
    next_wait,
    parse_retry_after,
    server_message,
    status_error,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("10000", MAX_RETRY_AFTER),
        ("soon", None),
        (email.utils.formatdate(NOW + 7, usegmt=True), 7.0),
        (email.utils.formatdate(NOW - 60, usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=lambda: NOW) == expected


@pytest.fixture(params=["America/New_York", "Asia/Tokyo", "UTC"])
def local_zone(request, monkeypatch):
    """The machine's local time zone set to ``request.param`` (HTTP dates must not care)."""
    import time

    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_retry_after_dates_in_all_three_forms_are_gmt_whatever_the_local_zone(local_zone):
    """RFC 9110 §5.6.7: IMF-fixdate, RFC 850 and asctime dates are all GMT (asctime says no zone)."""
    now = 784_111_770.0  # 1994-11-06 08:49:30 GMT: seven seconds before the dates below
    for header in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert parse_retry_after(header, now=lambda: now) == 7.0, (header, local_zone)


def test_backoff_grows_is_jittered_and_capped():
    lows = [backoff_delay(n, rand=lambda: 0.0) for n in range(1, 8)]
    highs = [backoff_delay(n, rand=lambda: 1.0) for n in range(1, 8)]
    assert lows[0] < lows[1] < lows[2]
    assert all(lo < hi for lo, hi in zip(lows, highs, strict=True))
    assert max(highs) == MAX_RETRY_DELAY


def test_retry_after_wins_over_backoff():
    assert next_wait(1, 2.5, rand=lambda: 1.0) == 2.5
    assert next_wait(1, None, rand=lambda: 1.0) == backoff_delay(1, rand=lambda: 1.0)


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1/invocations")
    return httpx.Response(status, content=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (415, BadRequestError, False),
        (429, RateLimitError, True),
        (500, InternalServerError, True),
        (502, InternalServerError, True),
        (503, InternalServerError, True),
        (504, InternalServerError, True),
        (501, InternalServerError, False),
    ],
)
def test_status_maps_to_typed_error(status, cls, retryable):
    body = b'{"error_code": "SOME_CODE", "message": "the server says why"}'
    error = status_error(_response(status, body, {"x-request-id": "req-1", "retry-after": "2"}))
    assert type(error) is cls
    assert error.status_code == status
    assert error.error_code == "SOME_CODE"
    assert error.message == "the server says why"
    assert error.request_id == "req-1"
    assert error.retry_after == 2.0
    assert "the server says why" in str(error) and str(status) in str(error)
    assert is_retryable(error) is retryable


def test_plain_text_error_body_and_long_messages_are_truncated():
    error = status_error(_response(504, b"Timeout " + b"x" * 5000))
    assert error.message.startswith("Timeout")
    assert len(error.message) <= 500
    assert error.error_code is None


def test_connection_errors_are_retryable():
    assert is_retryable(APIConnectionError())
    assert is_retryable(APITimeoutError())
    assert not is_retryable(ValueError("no"))


ROW_SENTINEL = "ROW-SENTINEL-4c1f"


@pytest.mark.parametrize(
    "message",
    [
        # What MLflow's scoring server answers for input its schema enforcement refuses.
        f"Failed to predict data '   x  s\n0  a  {ROW_SENTINEL}'. \nError: Failed to enforce schema of data "
        f"'   x  s\n0  a  {ROW_SENTINEL}' with schema '['x': double (required)]'. Error: Incompatible input types "
        "for column x. Can not safely convert object to float64.",
        f"Failed to enforce schema of data '{ROW_SENTINEL}' with schema '['s': string]'. Error: boom",
        f"Failed to predict data '{{'s': '{ROW_SENTINEL}', 'q': \"it's\"}}'. \nError: the model raised",
    ],
)
def test_server_errors_quoting_the_input_are_relayed_without_it(message):
    body = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
    error = status_error(_response(400, body))
    assert ROW_SENTINEL not in str(error) and ROW_SENTINEL not in error.message
    assert "<input omitted>" in error.message
    assert "Error:" in error.message  # the reason stays


def test_server_message_is_cut_to_a_few_hundred_characters():
    rows = ", ".join(f"{{'s': '{ROW_SENTINEL}-{i}'}}" for i in range(200))
    error = status_error(_response(500, json.dumps({"message": f"model failed on {rows}"}).encode()))
    assert len(error.message) <= MAX_SERVER_MESSAGE
    assert f"{ROW_SENTINEL}-199" not in str(error)
    assert len(str(error)) < MAX_SERVER_MESSAGE + 100
    error = status_error(_response(502, b"x" * 10_000, {"x-request-id": "r" * 1000}))
    assert len(str(error)) < MAX_SERVER_MESSAGE + 200


def test_server_message_keeps_short_messages_whole():
    assert server_message("  endpoint is scaling up \n") == "endpoint is scaling up"
    assert server_message("") == ""
    assert status_error(_response(503, b"")).message == "Service Unavailable"
