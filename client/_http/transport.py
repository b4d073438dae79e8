"""The pooled async HTTP client and the retry loop (tenacity) around one POST.

Transport errors are translated to our exception tree here, and only here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from .._constants import DEFAULT_CONNECTION_LIMITS, USER_AGENT
from .._exceptions import APIConnectionError, APIStatusError, APITimeoutError, PredictorClosedError
from . import policy as _policy
from .auth import Auth
from .wire import JSON_HEADERS

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryConfig:
    """A Predictor's (or a call's) retry settings; :meth:`start` turns them into one call's budget."""

    max_retries: int
    total_timeout: float | None

    def start(self, clock: Callable[[], float] = time.monotonic) -> Budget:
        """The budget of a call starting now."""
        deadline = None if self.total_timeout is None else clock() + self.total_timeout
        return Budget(self.max_retries, deadline, self.total_timeout, clock)


@dataclass(eq=False)  # a ledger: each call's own, compared by identity
class Budget:
    """What is left of one call's budget: retries, and a deadline on the ``clock``.

    It travels with the call, from its start, through every request made for it: a batch it
    shared, its resend alone after the batch failed, its chunks. So ``total_timeout`` bounds
    the whole call, waits included, and a resend never starts with a fresh allowance.
    """

    retries_left: int
    deadline: float | None
    total_timeout: float | None = None
    clock: Callable[[], float] = time.monotonic
    retries_used: int = 0

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative); ``None`` without one."""
        return None if self.deadline is None else self.deadline - self.clock()

    def spend(self, retries: int) -> None:
        self.retries_used += retries
        self.retries_left = max(self.retries_left - retries, 0)

    def fork(self) -> Budget:
        """A budget for one part of the call (a chunk): the same deadline, the retries left now."""
        return Budget(self.retries_left, self.deadline, self.total_timeout, self.clock)

    @staticmethod
    def shared(budgets: list[Budget]) -> Budget:
        """The budget of one request made for several calls: it may run as long as the latest
        deadline (each caller stops waiting at its own) and retry as often as the poorest may."""
        deadlines = [b.deadline for b in budgets]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        first = budgets[0]
        return Budget(min(b.retries_left for b in budgets), deadline, first.total_timeout, first.clock)

    def timeout_error(self, request: httpx.Request | None = None) -> APITimeoutError:
        return APITimeoutError(f"Request timed out: total_timeout={self.total_timeout}s spent.", request=request)

    async def bound(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` until the deadline at most; then ``APITimeoutError``."""
        remaining = self.remaining()
        if remaining is None:
            return await awaitable
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await awaitable
        except TimeoutError as err:
            raise self.timeout_error() from err


class Transport:
    """One ``httpx.AsyncClient`` per event loop, shared by every call of a Predictor.

    A client is bound to the loop it first ran on, and the sync API runs on a loop of its
    own, so a Predictor used both ways keeps one pool per loop.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.timeout = timeout
        self._transport = transport
        self._sleep = sleep
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._lock = threading.Lock()  # loops live on several threads (the sync portal's, the caller's)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise PredictorClosedError("this Predictor is closed; make a new one")

    def client(self) -> httpx.AsyncClient:
        """This loop's pool; ``PredictorClosedError`` once closed (never a new pool after close)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self.check_open()
            http = self._clients.get(loop)
            if http is None:
                for old in [lp for lp in self._clients if lp.is_closed()]:
                    del self._clients[old]
                http = httpx.AsyncClient(
                    timeout=self.timeout,
                    limits=DEFAULT_CONNECTION_LIMITS,
                    transport=self._transport,
                    http2=self._transport is None,
                    headers={"User-Agent": USER_AGENT},
                )
                self._clients[loop] = http
        return http

    async def aclose(self) -> None:
        """Close every loop's pool. Calls in flight finish or fail; none is resent (no new pool)."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, {}
        here = asyncio.get_running_loop()
        for loop, http in clients.items():
            if loop is here:
                await http.aclose()
            elif loop.is_running():
                # Not awaited: that loop may be blocked waiting on this one (sync close in a notebook).
                asyncio.run_coroutine_threadsafe(http.aclose(), loop)
            # a loop that is closed took its connections with it

    async def post_json(
        self,
        url: str,
        body: bytes,
        *,
        auth: Auth,
        budget: Budget,
        timeout: httpx.Timeout,
    ) -> tuple[httpx.Response, int]:
        """POST ``body`` with retries; return the 2xx response and how many retries it took.

        Each attempt has ``timeout`` and what is left of ``budget`` (the call's), whichever is
        shorter; a retry is made only while the budget has retries and time for the wait.
        """
        retrying = AsyncRetrying(
            stop=_stop(budget),
            wait=_wait,
            retry=retry_if_exception(_policy.is_retryable),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._attempt_in_budget(url, body, auth=auth, budget=budget, timeout=timeout)
        finally:
            retries = retrying.statistics.get("attempt_number", 1) - 1
            budget.spend(retries)
        return response, retries

    async def _attempt_in_budget(
        self, url: str, body: bytes, *, auth: Auth, budget: Budget, timeout: httpx.Timeout
    ) -> httpx.Response:
        remaining = budget.remaining()
        if remaining is not None and remaining <= 0:
            raise budget.timeout_error()  # spent waiting (for a batch, a slot, an earlier attempt)
        return await budget.bound(self._attempt(url, body, auth=auth, timeout=timeout))

    async def _attempt(self, url: str, body: bytes, *, auth: Auth, timeout: httpx.Timeout) -> httpx.Response:
        response = await self._send(url, body, await auth.headers(), timeout)
        # A 401 may only mean the token aged out between our check and the server's:
        # refresh once, resend once; a second 401 is the answer.
        if response.status_code == 401 and await auth.refresh():
            log.debug("401 from %s; credentials refreshed, sending once more", url)
            response = await self._send(url, body, await auth.headers(), timeout)
        if response.is_success:
            return response
        raise _policy.status_error(response)

    async def _send(self, url: str, body: bytes, headers: dict[str, str], timeout: httpx.Timeout) -> httpx.Response:
        http = self.client()
        request = http.build_request("POST", url, content=body, headers={**JSON_HEADERS, **headers}, timeout=timeout)
        try:
            response = await http.send(request)
            await response.aread()
        except httpx.TimeoutException as err:
            raise APITimeoutError(request=request) from err
        except httpx.TransportError as err:  # refused, reset, DNS, TLS, truncated body
            raise APIConnectionError(f"Connection error: {type(err).__name__}", request=request) from err
        log.debug("POST %s -> %s (%d bytes)", url, response.status_code, len(response.content))
        return response


class _stop_at_deadline(stop_base):  # lower case, like tenacity's own stops
    """Stop when the wait before the next attempt would end past the call's deadline."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        remaining = self.budget.remaining()
        return remaining is not None and remaining <= retry_state.upcoming_sleep


def _stop(budget: Budget) -> stop_base:
    stop: stop_base = stop_after_attempt(max(budget.retries_left, 0) + 1)
    if budget.deadline is not None:
        stop = stop | _stop_at_deadline(budget)
    return stop


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    retry_after = error.retry_after if isinstance(error, APIStatusError) else None
    return _policy.next_wait(state.attempt_number, retry_after)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retry %d after %s; waiting %.2fs", state.attempt_number, type(error).__name__, wait)
