"""Micro-batching: concurrent small calls with the same settings share one request.

Why: a Model Serving request of 32 rows costs about what a request of 1 row costs, so 32
callers waiting on 32 requests is the slow way to use an endpoint. Each caller validates
its own input before it gets here, so one caller's bad input never fails another's.

Scheduling, per event loop (futures belong to one loop):

- a call's rows join the pending batch for its key (columns, params, timeout, retries);
- with no batch in flight, the pending batch leaves on the next loop tick: a lone caller
  waits for nothing but that tick, and callers started together share it;
- while batches are in flight, pending rows wait up to ``max_wait`` for company, or until
  ``max_rows`` are pending, or until a slot frees (``max_concurrency`` batches at once).

A batch that fails with an error one row could have caused (a 4xx, a 500, a model error, an
answer that does not line up with the rows) is split and each call resent alone, so every
caller gets its own answer or its own error. Errors of the whole exchange (timeouts, a 503
after all retries, auth) go to every caller in the batch: alone, each would have met them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from .._constants import DEFAULT_BATCH_MAX_CONCURRENCY, DEFAULT_BATCH_MAX_ROWS, DEFAULT_BATCH_MAX_WAIT
from .._exceptions import APIResponseValidationError, APIStatusError, ModelError, SchemaValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
P = TypeVar("P")
S = TypeVar("S", bound=Sequence[Any])


@dataclass(frozen=True)
class Batching:
    """Micro-batching settings; pass ``batching=False`` to a constructor to turn it off.

    Example::

        Predictor.from_endpoint("iris", batching=Batching(max_rows=128, max_wait=0.005))
    """

    #: Rows in one coalesced request; a call with at least this many rows goes alone.
    max_rows: int = DEFAULT_BATCH_MAX_ROWS
    #: Seconds pending rows may wait for company while other batches are in flight.
    max_wait: float = DEFAULT_BATCH_MAX_WAIT
    #: Coalesced requests in flight at once, per Predictor and event loop.
    max_concurrency: int = DEFAULT_BATCH_MAX_CONCURRENCY

    def __post_init__(self) -> None:
        from .._exceptions import ConfigurationError

        if self.max_rows < 1 or self.max_concurrency < 1 or self.max_wait < 0:
            raise ConfigurationError(f"invalid {self!r}: max_rows and max_concurrency >= 1, max_wait >= 0")


class NotRowAligned(APIResponseValidationError):
    """A batch's answer does not have one prediction per row, so it cannot be split."""


def expect_rows(predictions: Any, rows: int) -> list[Any]:
    """``predictions`` if it is a list with one prediction per row, else ``NotRowAligned``."""
    if not isinstance(predictions, list) or len(predictions) != rows:
        got = f"{len(predictions)} predictions" if isinstance(predictions, list) else type(predictions).__name__
        raise NotRowAligned(f"{rows} rows were answered with {got}", request=None)
    return predictions


def expect_rows_or_columns(predictions: Any, rows: int) -> Any:
    """``predictions`` if it answers ``rows`` rows: a list with one prediction per row, or MLflow's
    column-shaped answer (a dict-of-arrays output: ``{"label": [...], ...}``, one list per column)."""
    if isinstance(predictions, dict) and predictions:
        if all(isinstance(col, list) and len(col) == rows for col in predictions.values()):
            return predictions
        raise NotRowAligned(f"{rows} rows were answered with columns of other lengths", request=None)
    return expect_rows(predictions, rows)


def join_rows(parts: list[Any]) -> Any:
    """Answers to consecutive row ranges, put back together in order: lists end to end, column-shaped
    answers column by column (``{"y": [1]}, {"y": [2, 3]} -> {"y": [1, 2, 3]}``)."""
    if all(isinstance(p, list) for p in parts):
        return [row for p in parts for row in p]
    if all(isinstance(p, dict) for p in parts) and len({tuple(p) for p in parts}) == 1:
        return {name: [v for p in parts for v in p[name]] for name in parts[0]}
    raise NotRowAligned("the chunks of one call were answered in different shapes", request=None)


def split_rows(predictions: Any, sizes: list[int]) -> list[Any]:
    """Cut one answer into each call's share, in order: ``[p0, p1, p2], [1, 2] -> [[p0], [p1, p2]]``."""
    if len(sizes) == 1:
        return [predictions]
    expect_rows(predictions, sum(sizes))
    out, start = [], 0
    for n in sizes:
        out.append(predictions[start : start + n])
        start += n
    return out


def should_isolate(err: BaseException) -> bool:
    """Could one row have caused ``err``? Then resending each call alone tells them apart."""
    if isinstance(err, APIStatusError):
        return err.status_code == 500 or (400 <= err.status_code < 500 and err.status_code not in (401, 403, 404, 429))
    return isinstance(err, ModelError | SchemaValidationError | APIResponseValidationError)


async def split_and_resend(
    piece: P,
    send: Callable[[P], Awaitable[R]],
    split: Callable[[P, Exception], Sequence[P]],
    *,
    keep: type[Exception] | tuple[type[Exception], ...] = (),
) -> list[tuple[P, R | Exception]]:
    """Send ``piece`` in one request; if that fails with an error ``split`` divides it for (a row
    could have caused it, or it is over the size limit), resend each part the same way, a few at a
    time as ``send`` allows. The one split-and-resend of the request path: the batcher resends each
    call of a failed batch alone, the chunked sender halves a chunk over the payload limit, the
    Spark worker halves a request until the bad row is found.

    Returns each piece that was answered with its answer, in order; an error that is not split
    and is a ``keep`` is that piece's answer, any other propagates (and cancels the parts in flight).
    """
    try:
        return [(piece, await send(piece))]
    except Exception as err:
        parts = split(piece, err)
        if not parts:
            if isinstance(err, keep):
                return [(piece, err)]
            raise
        log.debug("%s; resending in %d parts", type(err).__name__, len(parts))
    answered = await gather_or_cancel(split_and_resend(part, send, split, keep=keep) for part in parts)
    return [pair for part in answered for pair in part]


def halves(rows: S) -> list[S]:
    """``rows`` in two halves of its own type (``[]`` for a single row: nothing to split)."""
    middle = len(rows) // 2
    return [cast(S, rows[:middle]), cast(S, rows[middle:])] if len(rows) > 1 else []


async def gather_or_cancel(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Like ``gather``, but the first failure cancels the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()


@dataclass
class _Pending(Generic[T]):
    item: T
    rows: int
    future: asyncio.Future[Any]


@dataclass
class _Queue(Generic[T]):
    items: list[_Pending[T]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.Handle | None = None


class Batcher(Generic[T, R]):
    """Coalesces ``submit`` calls on one event loop; ``run(items)`` answers a batch, in order."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], options: Batching) -> None:
        self._run = run
        self._options = options
        self._queues: dict[Hashable, _Queue[T]] = {}
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, item: T, rows: int) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        queue = self._queues.setdefault(key, _Queue())
        queue.items.append(_Pending(item, rows, future))
        queue.rows += rows
        if queue.rows >= self._options.max_rows:
            self._flush(key)
        elif queue.timer is None:
            if self._in_flight == 0:
                queue.timer = loop.call_soon(self._flush, key)
            else:
                queue.timer = loop.call_later(self._options.max_wait, self._flush, key)
        return await future

    def _flush(self, key: Hashable) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        if self._in_flight >= self._options.max_concurrency:
            return  # a finishing batch flushes what is pending
        batch: list[_Pending[T]] = []
        rows = 0
        while queue.items and (not batch or rows + queue.items[0].rows <= self._options.max_rows):
            pending = queue.items.pop(0)
            queue.rows -= pending.rows
            if not pending.future.done():  # skip callers cancelled while waiting
                batch.append(pending)
                rows += pending.rows
        if not queue.items:
            del self._queues[key]
        else:
            queue.timer = asyncio.get_running_loop().call_soon(self._flush, key)
        if batch:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._answer(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: list[_Pending[T]]) -> None:
        try:
            outcomes = await self._outcomes([p.item for p in batch])
        except BaseException:  # cancelled (loop shutting down): nobody may wait forever
            for p in batch:
                p.future.cancel()
            raise
        finally:
            # Free the slot before waking the callers: one that calls again at once finds
            # nothing in flight and is sent on the next tick, not after max_wait.
            self._in_flight -= 1
            for key, queue in list(self._queues.items()):
                if queue.timer is None:
                    queue.timer = asyncio.get_running_loop().call_soon(self._flush, key)
        for p, outcome in zip(batch, outcomes, strict=True):
            if p.future.done():
                continue
            if isinstance(outcome, BaseException):
                p.future.set_exception(outcome)
            else:
                p.future.set_result(outcome)

    async def _outcomes(self, items: list[T]) -> list[R | BaseException]:
        def alone(batch: list[T], err: Exception) -> list[list[T]]:
            return [[item] for item in batch] if len(batch) > 1 and should_isolate(err) else []

        answered = await split_and_resend(items, self._run, alone, keep=Exception)
        outcomes: list[R | BaseException] = []
        for batch, answer in answered:
            outcomes += [answer] * len(batch) if isinstance(answer, Exception) else cast(list[R], answer)
        return outcomes
