"""Retry policy and error mapping: every decision about a request that does no I/O.

Pure functions, tested with the clock patched. ``_transport`` applies them.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import re
import time
from collections.abc import Callable

import httpx

from .._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY, RETRYABLE_STATUS_CODES
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    _truncate,
)
from .wire import error_fields

#: Longest server message an error relays. The scoring server quotes the input in its errors
#: (``Failed to predict data '<the DataFrame>'``); we drop those quotes and cut the rest here.
MAX_SERVER_MESSAGE = 300
_MAX_ERROR_CODE = 64
#: MLflow's scoring server: ``Failed to predict data '<df>'. \nError: ...`` and
#: ``Failed to enforce schema of data '<df>' with schema '<schema>'``.
_ECHOED_INPUT = (
    re.compile(r"(Failed to predict data )'.*?'(?=\. ?\n?Error:)", re.DOTALL),
    re.compile(r"(Failed to enforce schema of data )'.*?'(?= with schema ')", re.DOTALL),
)
_OMITTED = "<input omitted>"

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date, GMT), capped.

    ``None`` when absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # asctime carries no zone; RFC 9110 §5.6.7: every HTTP date is GMT
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(retry_number: int, *, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter for the ``retry_number``-th retry (1-based)."""
    ceiling = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2 ** (retry_number - 1))
    return ceiling * (0.5 + rand() / 2)  # half fixed, half jitter: spread without collapsing to 0


def next_wait(retry_number: int, retry_after: float | None, *, rand: Callable[[], float] = random.random) -> float:
    """The wait before a retry: the server's ``Retry-After`` when given, else our backoff."""
    if retry_after is not None:
        return retry_after
    return backoff_delay(retry_number, rand=rand)


def is_retryable(error: BaseException) -> bool:
    """Connection errors and timeouts (POST to invocations is a pure read), 429 and 5xx gateways."""
    if isinstance(error, APIStatusError):
        return error.status_code in RETRYABLE_STATUS_CODES
    return isinstance(error, APIConnectionError)


def server_message(text: str, limit: int = MAX_SERVER_MESSAGE) -> str:
    """A server's error text fit to relay: input data it quotes left out, at most ``limit`` chars."""
    for pattern in _ECHOED_INPUT:
        text = pattern.sub(lambda m: m.group(1) + _OMITTED, text)
    return _truncate(text.strip(), limit)


def status_error(response: httpx.Response) -> APIStatusError:
    """Map an error answer to the typed error for its status.

    The message is the server's, minus any input it quotes and cut to ``MAX_SERVER_MESSAGE``:
    error texts end up in logs and on app pages, and must not carry whole rows of user data.
    """
    message, code = error_fields(response)
    message = server_message(message) or response.reason_phrase or f"HTTP {response.status_code}"
    if code is not None:
        code = code[:_MAX_ERROR_CODE]
    request_id = response.headers.get("x-request-id")
    status = response.status_code
    cls = _STATUS_ERRORS.get(status)
    if cls is None:  # other 4xx (413, 415, 422, ...) are the caller's to fix; 3xx is unexpected here
        cls = InternalServerError if status >= 500 else BadRequestError if status >= 400 else APIStatusError
    return cls(
        message,
        status_code=status,
        error_code=code,
        request_id=request_id[:_MAX_ERROR_CODE] if request_id else None,
        request=response.request,
        response=response,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
