"""Run the async core from sync code, also where an event loop is already running.

One daemon thread owns one event loop for the whole process; ``run`` hands it a coroutine
and blocks for the result. Because that loop is never the caller's, this works inside
Jupyter and Gradio handlers, where ``asyncio.run`` would refuse.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _portal() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="client-sync-portal", daemon=True).start()
            _loop = loop
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for its result (exceptions propagate)."""
    loop = _portal()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # called from a coroutine on the portal itself: would deadlock
        coro.close()
        raise RuntimeError("use the async API (apredict) from inside a coroutine on the client's loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class _Abandoned(Exception):
    """The caller running a shared flight was cancelled: whoever waited on it runs it again."""


class SingleFlight(Generic[T]):
    """Callers that arrive while ``run(fn)`` is running share that one run, on any event loop.

    Why not ``asyncio.Lock``: one belongs to the first loop that waits on it, and a Predictor is
    used from several (the sync portal's, each ``asyncio.run``). Here a thread lock guards only
    who runs; the others await a ``concurrent.futures.Future`` wrapped for their own loop, which
    never blocks it. A run that fails hands its error to those waiting, and the next caller runs
    anew; one cancelled (its loop closed) lets a waiter run instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flight: concurrent.futures.Future[T] | None = None

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        while True:
            with self._lock:
                flight = self._flight
                if flight is None:
                    flight = self._flight = concurrent.futures.Future()
                    owner = True
                else:
                    owner = False
            if owner:
                return await self._fly(flight, fn)
            try:
                # shield: one waiter cancelled must not cancel the flight for the others
                return await asyncio.shield(asyncio.wrap_future(flight))
            except _Abandoned:
                continue

    async def _fly(self, flight: concurrent.futures.Future[T], fn: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await fn()
        except Exception as err:
            self._land(flight, err)
            raise
        except BaseException:
            self._land(flight, _Abandoned())
            raise
        self._land(flight, None, result)
        return result

    def _land(self, flight: concurrent.futures.Future[T], error: BaseException | None, result: Any = None) -> None:
        with self._lock:
            self._flight = None
        if error is not None:
            flight.set_exception(error)
        else:
            flight.set_result(result)


class PerLoop(Generic[V]):
    """One value per event loop: what belongs to the loop it first ran on (an ``httpx.AsyncClient``,
    a batcher and its futures), for an object used from several loops (the sync portal's, each
    ``asyncio.run``). Values of closed loops are dropped when the next one is made.
    """

    def __init__(self) -> None:
        self._values: dict[asyncio.AbstractEventLoop, V] = {}
        self._lock = threading.Lock()  # loops live on several threads
        self._refusal: Callable[[], BaseException] | None = None

    def get(self, make: Callable[[], V]) -> V:
        """This loop's value, made by ``make`` the first time; after :meth:`close`, its refusal."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._refusal is not None:
                raise self._refusal()
            value = self._values.get(loop)
            if value is None:
                for old in [lp for lp in self._values if lp.is_closed()]:
                    del self._values[old]
                value = self._values[loop] = make()
        return value

    def close(self, refusal: Callable[[], BaseException]) -> dict[asyncio.AbstractEventLoop, V]:
        """Every loop's value, handed over once; from now on :meth:`get` raises ``refusal()``."""
        with self._lock:
            self._refusal = refusal
            values, self._values = self._values, {}
        return values
