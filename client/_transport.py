"""The pooled async HTTP client and the retry loop (tenacity) around one POST.

Transport errors are translated to our exception tree here, and only here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base

from . import _policy
from ._auth import Auth
from ._constants import DEFAULT_CONNECTION_LIMITS, USER_AGENT
from ._exceptions import APIConnectionError, APIStatusError, APITimeoutError
from ._wire import JSON_HEADERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryConfig:
    max_retries: int
    total_timeout: float | None


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

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
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
        loop = asyncio.get_running_loop()
        http = self._clients.pop(loop, None)
        if http is not None:
            await http.aclose()

    async def post_json(
        self,
        url: str,
        body: bytes,
        *,
        auth: Auth,
        retry: RetryConfig,
        timeout: httpx.Timeout,
    ) -> tuple[httpx.Response, int]:
        """POST ``body`` with retries; return the 2xx response and how many retries it took."""
        retrying = AsyncRetrying(
            stop=_stop(retry),
            wait=_wait,
            retry=retry_if_exception(_policy.is_retryable),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._attempt(url, body, auth=auth, timeout=timeout)
        return response, retrying.statistics.get("attempt_number", 1) - 1

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


def _stop(retry: RetryConfig) -> stop_base:
    stop: stop_base = stop_after_attempt(max(retry.max_retries, 0) + 1)
    if retry.total_timeout is not None:
        stop = stop | stop_before_delay(retry.total_timeout)
    return stop


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    retry_after = error.retry_after if isinstance(error, APIStatusError) else None
    return _policy.next_wait(state.attempt_number, retry_after)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retry %d after %s; waiting %.2fs", state.attempt_number, type(error).__name__, wait)
