"""The pooled async HTTP client and the one request method: retries (tenacity), credentials
(httpx's auth flow), timeouts. Predictions, chat answers and streams, and endpoint lookups all
go through :meth:`Transport.request`.

A lone sync ``predict`` goes through :meth:`Transport.request_sync` instead: the same retry
policy, credentials and error translation (the functions below, shared), over a pooled
``httpx.Client`` in the caller's thread. Why: with nobody to batch with, handing the call to the
event loop's thread and httpx's async stack cost ~2 ms a call that the plain SDKs do not pay.

Transport errors are translated to our exception tree here, and only here. (A stream's body is
read after its request succeeded: a break there is the stream's to report, with how much arrived;
see ``client/_chat/_stream.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from .._constants import DEFAULT_CONNECTION_LIMITS, USER_AGENT
from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    PredictorClosedError,
)
from . import policy as _policy
from .auth import Auth, auth_flow
from .sync import PerLoop
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
    """One ``httpx.AsyncClient`` per event loop, shared by every call of a Predictor, and the one
    request method every call goes through: predictions, chat (whole or streamed) and lookups.

    A client is bound to the loop it first ran on, and the sync API runs on a loop of its
    own, so a Predictor used both ways keeps one pool per loop.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        sync_sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.timeout = timeout
        self._transport = transport
        self._sleep = sleep
        # The sync path's wait between retries: time.sleep, unless the async one was replaced (a
        # test's clock) and no sync one given: then every call takes the async path.
        self._sync_sleep = sync_sleep if sync_sleep is not None else time.sleep if sleep is asyncio.sleep else None
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop()
        self._sync_client: httpx.Client | None = None
        self._sync_lock = threading.Lock()
        self._closed = False

    @property
    def sends_sync(self) -> bool:
        """Can :meth:`request_sync` be used: no transport given, or one that answers sync calls too
        (an ``httpx.MockTransport`` whose handler is not a coroutine)?"""
        t = self._transport
        if self._sync_sleep is None:
            return False
        if t is None:
            return True
        return isinstance(t, httpx.BaseTransport) and not inspect.iscoroutinefunction(getattr(t, "handler", None))

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise _closed_error()

    def client(self) -> httpx.AsyncClient:
        """This loop's pool; ``PredictorClosedError`` once closed (never a new pool after close)."""
        return self._clients.get(self._new_client)

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout,
            limits=DEFAULT_CONNECTION_LIMITS,
            transport=self._transport,
            http2=self._transport is None,
            headers={"User-Agent": USER_AGENT},
        )

    def sync_client(self) -> httpx.Client:
        """The pool of the sync path, shared by every thread; ``PredictorClosedError`` once closed."""
        with self._sync_lock:
            self.check_open()
            if self._sync_client is None:
                sync_transport = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
                self._sync_client = httpx.Client(
                    timeout=self.timeout,
                    limits=DEFAULT_CONNECTION_LIMITS,
                    transport=sync_transport,
                    http2=self._transport is None,
                    headers={"User-Agent": USER_AGENT},
                )
            return self._sync_client

    async def aclose(self) -> None:
        """Close every loop's pool. Calls in flight finish or fail; none is resent (no new pool)."""
        self._closed = True
        with self._sync_lock:
            sync_client, self._sync_client = self._sync_client, None
        if sync_client is not None:
            sync_client.close()
        clients = self._clients.close(_closed_error)
        here = asyncio.get_running_loop()
        for loop, http in clients.items():
            if loop is here:
                await http.aclose()
            elif loop.is_running():
                # Not awaited: that loop may be blocked waiting on this one (sync close in a notebook).
                asyncio.run_coroutine_threadsafe(http.aclose(), loop)
            # a loop that is closed took its connections with it

    async def request(
        self,
        method: str,
        url: str,
        *,
        auth: Auth,
        budget: Budget,
        timeout: httpx.Timeout,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> tuple[httpx.Response, int]:
        """Send with retries (tenacity, the shared policy); return the 2xx response and how many
        retries it took. Any other answer, and any transport failure, is raised as our typed error.

        Credentials come from ``auth`` through httpx's auth flow (a 401 refreshes and resends once).
        Each attempt has ``timeout`` and what is left of ``budget`` (the call's), whichever is
        shorter; a retry is made only while the budget has retries and time for the wait.
        With ``stream=True`` the 2xx body is left unread for the caller, who must close it: retries
        happen only before a response's headers arrive, so a stream is never resent once it began.
        """
        self.check_open()  # a closed Predictor never opens a new pool
        flow = auth_flow(auth)
        retrying = AsyncRetrying(sleep=self._sleep, **_retry_policy(budget))
        try:
            async for attempt in retrying:
                with attempt:
                    _check_time_left(budget)
                    response = await budget.bound(
                        self._attempt(method, url, content, headers or {}, flow, timeout, stream)
                    )
        finally:
            retries = retrying.statistics.get("attempt_number", 1) - 1
            budget.spend(retries)
        return response, retries

    def request_sync(
        self,
        method: str,
        url: str,
        *,
        auth: Auth,
        budget: Budget,
        timeout: httpx.Timeout,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, int]:
        """:meth:`request` in the caller's thread, over the sync pool (see :attr:`sends_sync`): the
        same retry policy, credentials and errors. The deadline cannot cancel a sync request, so
        each attempt's timeouts are cut to what is left of the budget instead."""
        self.check_open()
        assert self._sync_sleep is not None, "check sends_sync first"
        flow = auth_flow(auth)
        retrying = Retrying(sleep=self._sync_sleep, **_retry_policy(budget))
        try:
            for attempt in retrying:
                with attempt:
                    _check_time_left(budget)
                    http = self.sync_client()
                    request = http.build_request(method, url, content=content, headers=headers or {},
                                                 timeout=_within(timeout, budget))
                    with _translated(request, budget):
                        response = http.send(request, auth=flow)
                    response = _checked(response)
        finally:
            retries = retrying.statistics.get("attempt_number", 1) - 1
            budget.spend(retries)
        return response, retries

    def post_json_sync(
        self, url: str, body: bytes, *, auth: Auth, budget: Budget, timeout: httpx.Timeout
    ) -> tuple[httpx.Response, int]:
        """POST an encoded JSON ``body`` from sync code (see :meth:`request_sync`)."""
        return self.request_sync("POST", url, content=body, headers=JSON_HEADERS, auth=auth, budget=budget,
                                 timeout=timeout)

    async def post_json(
        self, url: str, body: bytes, *, auth: Auth, budget: Budget, timeout: httpx.Timeout
    ) -> tuple[httpx.Response, int]:
        """POST an encoded JSON ``body`` (see :meth:`request`)."""
        return await self.request("POST", url, content=body, headers=JSON_HEADERS, auth=auth, budget=budget,
                                  timeout=timeout)

    async def get_json(self, url: str, *, auth: Auth, budget: Budget, timeout: httpx.Timeout) -> dict[str, Any]:
        """GET a JSON object (a workspace REST resource; see :meth:`request`)."""
        response, _ = await self.request("GET", url, headers={"Accept": "application/json"}, auth=auth,
                                         budget=budget, timeout=timeout)
        try:
            data = response.json()
        except ValueError as err:
            raise APIResponseValidationError(f"{url} answered with a body that is not JSON",
                                             request=response.request) from err
        if not isinstance(data, dict):
            raise APIResponseValidationError(f"expected a JSON object from {url}", request=response.request)
        return data

    async def _attempt(
        self, method: str, url: str, content: bytes | None, headers: Mapping[str, str], flow: httpx.Auth,
        timeout: httpx.Timeout, stream: bool,
    ) -> httpx.Response:
        http = self.client()
        request = http.build_request(method, url, content=content, headers=headers, timeout=timeout)
        with _translated(request):
            response = await http.send(request, auth=flow, stream=stream)
        if stream and not response.is_success:  # the error's body, for its message; then the connection goes back
            try:
                await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
        return _checked(response)


@dataclass(frozen=True)
class WorkspaceApi:
    """GETs of a workspace's REST API (``/api/2.0/...``) through a :class:`Transport`, with one
    host, one credential and one retry setting: the endpoint lookups a Predictor makes."""

    transport: Transport
    host: str
    auth: Auth
    retry: RetryConfig
    timeout: httpx.Timeout

    async def get_json(self, path: str) -> dict[str, Any]:
        """The JSON object at ``path`` (e.g. ``/api/2.0/serving-endpoints/iris``)."""
        return await self.transport.get_json(f"{self.host.rstrip('/')}{path}", auth=self.auth,
                                             budget=self.retry.start(), timeout=self.timeout)


# -- what both paths share: one policy, one translation of errors -------------------------


def _retry_policy(budget: Budget) -> dict[str, Any]:
    """tenacity's settings for one call (``AsyncRetrying`` and ``Retrying`` alike)."""
    return {"stop": _stop(budget), "wait": _wait, "retry": retry_if_exception(_policy.is_retryable),
            "before_sleep": _log_retry, "reraise": True}


def _check_time_left(budget: Budget) -> None:
    remaining = budget.remaining()
    if remaining is not None and remaining <= 0:
        raise budget.timeout_error()  # spent waiting (for a batch, a slot, an earlier attempt)


@contextlib.contextmanager
def _translated(request: httpx.Request, budget: Budget | None = None) -> Iterator[None]:
    """httpx's transport errors as ours: the one place they are translated."""
    try:
        yield
    except httpx.TimeoutException as err:
        if budget is not None and (left := budget.remaining()) is not None and left <= 0:
            raise budget.timeout_error(request) from err  # the sync path's cut timeout: the call's budget
        raise APITimeoutError(request=request) from err
    except httpx.TransportError as err:  # refused, reset, DNS, TLS, truncated body
        raise APIConnectionError(f"Connection error: {type(err).__name__}", request=request) from err


def _checked(response: httpx.Response) -> httpx.Response:
    """A 2xx ``response`` as is; any other as our typed error."""
    log.debug("%s %s -> %s", response.request.method, response.request.url, response.status_code)
    if response.is_success:
        return response
    raise _policy.status_error(response)


def _within(timeout: httpx.Timeout, budget: Budget) -> httpx.Timeout:
    """``timeout`` with each phase cut to what is left of ``budget`` (the sync path's deadline)."""
    left = budget.remaining()
    if left is None:
        return timeout
    left = max(left, 0.001)

    def cut(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(connect=cut(timeout.connect), read=cut(timeout.read), write=cut(timeout.write),
                         pool=cut(timeout.pool))


def _closed_error() -> PredictorClosedError:
    return PredictorClosedError("this Predictor is closed; make a new one")


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
