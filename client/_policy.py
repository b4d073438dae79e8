"""Retry policy and error mapping: every decision about a request that does no I/O.

Pure functions, tested with the clock patched. ``_transport`` applies them.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

import httpx

from ._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY, RETRYABLE_STATUS_CODES
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from ._wire import error_fields

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped.

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


def status_error(response: httpx.Response) -> APIStatusError:
    """Map an error answer to the typed error for its status."""
    message, code = error_fields(response)
    status = response.status_code
    cls = _STATUS_ERRORS.get(status)
    if cls is None:  # other 4xx (413, 415, 422, ...) are the caller's to fix; 3xx is unexpected here
        cls = InternalServerError if status >= 500 else BadRequestError if status >= 400 else APIStatusError
    return cls(
        message,
        status_code=status,
        error_code=code,
        request_id=response.headers.get("x-request-id"),
        request=response.request,
        response=response,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
