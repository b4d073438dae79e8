"""How one validated call becomes predictions: alone, coalesced with others, or in chunks.

A :class:`Sender` belongs to one Predictor (and its credentials). It answers calls over the
transport, or from the model loaded in process in direct mode; the Predictor only validates
and wraps the answer in a ``PredictionResult``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import httpx

from .._constants import DEFAULT_CHUNK_CONCURRENCY, DEFAULT_CHUNK_ROWS, SYNC_COMPANY_WINDOW
from .auth import Auth
from .batching import (
    Batcher,
    Batching,
    NotRowAligned,
    expect_rows_or_columns,
    gather_or_cancel,
    halves,
    join_rows,
    split_and_resend,
    split_rows,
)
from .sync import PerLoop
from .transport import Budget, RetryConfig, Transport
from .wire import Answer, PayloadTooLarge, decode_answer, encode_body

if TYPE_CHECKING:
    from .._schema.validate import ValidatedInput

log = logging.getLogger(__name__)

#: ``on_progress(rows_done, rows_total)``, called on the event loop that runs the call.
ProgressCallback = Callable[[int, int], None]


def new_client_request_id() -> str:
    """A fresh ``client_request_id``: a random UUID, as its own string."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Call:
    """One validated call, the settings it is sent with, and what is left of its budget."""

    validated: ValidatedInput
    retry: RetryConfig
    timeout: httpx.Timeout
    budget: Budget
    #: Sent as the body's ``client_request_id`` when the call goes alone.
    client_request_id: str = field(default_factory=new_client_request_id)


@dataclass(frozen=True)
class Share:
    """One call's part of an answer, and who answered it."""

    predictions: Any
    served_model_name: str | None = None
    request_id: str | None = None
    retries: int = 0
    batch_size: int = 1
    client_request_id: str | None = None


class Sender:
    """Sends a Predictor's calls: to ``url`` through ``transport`` with ``auth``, or to ``direct``."""

    def __init__(
        self, *, url: str | None, auth: Auth, transport: Transport, direct: Any, batching: Batching | None
    ) -> None:
        self.url = url
        self.auth = auth
        self.transport = transport
        self.direct = direct
        self.batching = batching
        self._batchers: PerLoop[Batcher[Call, Share]] = PerLoop()
        self._sync_calls = 0  # sync calls in flight, on either path
        self._sync_lock = threading.Lock()
        self._company_until = 0.0  # monotonic time until which sync calls count as not alone
        self.clock: Callable[[], float] = time.monotonic

    def with_auth(self, auth: Auth) -> Sender:
        """The same target and pool with other credentials, and batchers of its own: a batch is
        sent with one token, so two users' calls never share a request."""
        return Sender(url=self.url, auth=auth, transport=self.transport, direct=self.direct, batching=self.batching)

    async def send(self, call: Call, on_progress: ProgressCallback | None = None) -> Share:
        """Answer one call: in chunks when it is large (by rows or by bytes), else coalesced with
        others when it may be. ``on_progress`` hears once of each part answered."""
        v = call.validated
        can_split = self.direct is None and v.table is not None and v.n_rows > 1
        if can_split and v.n_rows > DEFAULT_CHUNK_ROWS:
            return await self._answer_in_chunks(call, on_progress)
        try:
            if (key := self._batch_key(call)) is not None:
                # The batch may outlive this caller's deadline (others' are later): stop waiting at ours.
                share = await call.budget.bound(self._batcher().submit(key, call, v.n_rows))
            else:
                (share,) = await self._answer([call])
        except PayloadTooLarge:
            if not can_split:
                raise  # one row over the limit: nothing was sent, and nothing can be split
            # Under the row limit but over the byte limit (wide rows): split by size instead.
            return await self._answer_in_chunks(call, on_progress)
        if on_progress is not None:
            on_progress(v.n_rows, v.n_rows)
        return share

    @contextlib.contextmanager
    def sync_call(self) -> Iterator[bool]:
        """Count a sync call while it runs; says whether it is alone: no other sync call in flight, and
        none overlapped another for ``SYNC_COMPANY_WINDOW`` s. Why the window: threads that shared
        a batch come back one by one, and the first back would find nobody in flight and go alone,
        beside the batch the others make, on an endpoint that would rather take one request."""
        now = self.clock()
        with self._sync_lock:
            if self._sync_calls:
                self._company_until = now + SYNC_COMPANY_WINDOW
            alone = self._sync_calls == 0 and now >= self._company_until
            self._sync_calls += 1
        try:
            yield alone
        finally:
            with self._sync_lock:
                self._sync_calls -= 1

    def send_alone_sync(self, call: Call) -> Share | None:
        """Answer a call with nobody to batch with in the caller's thread, over the transport's sync
        path; ``None`` when it needs the async core (direct mode, a transport without a sync side,
        a call to send in chunks)."""
        v = call.validated
        if self.direct is not None or not self.transport.sends_sync or v.n_rows > DEFAULT_CHUNK_ROWS:
            return None
        assert self.url is not None
        try:
            body = _body(v, call.client_request_id)
        except PayloadTooLarge:
            return None  # the async core splits it by size, or refuses it
        response, retries = self.transport.post_json_sync(self.url, body, auth=self.auth, budget=call.budget,
                                                          timeout=call.timeout)
        (share,) = _shares(decode_answer(response), [v.n_rows], retries, 1, call.client_request_id)
        return share

    def _batch_key(self, call: Call) -> Hashable | None:
        """Calls with equal keys may share a request; ``None``: this one goes alone."""
        v = call.validated
        if self.batching is None or v.table is None or v.n_rows >= self.batching.max_rows:
            return None
        params = json.dumps(v.params, sort_keys=True, default=str) if v.params else ""
        timeout = tuple(sorted(call.timeout.as_dict().items()))
        return tuple(v.table.columns), params, call.retry, timeout

    def _batcher(self) -> Batcher[Call, Share]:
        """This loop's batcher (its futures belong to the loop)."""
        return self._batchers.get(self._new_batcher)

    def _new_batcher(self) -> Batcher[Call, Share]:
        assert self.batching is not None
        return Batcher(self._answer, self.batching)

    async def _answer(self, calls: list[Call]) -> list[Share]:
        """Predict for ``calls`` (one, or a batch with equal settings) in one request."""
        from .._schema.validate import ValidatedInput

        sizes = [c.validated.n_rows for c in calls]
        merged = ValidatedInput.concat([c.validated for c in calls])
        # One id per request: a call alone keeps its own, a batch gets a fresh one all its callers share.
        request_id = calls[0].client_request_id if len(calls) == 1 else new_client_request_id()
        try:
            if self.direct is not None:
                predictions = await self.direct.predict(merged.to_model_input(), merged.params)
                return [Share(p, batch_size=len(calls), client_request_id=request_id)
                        for p in split_rows(predictions, sizes)]
            assert self.url is not None
            budget = calls[0].budget if len(calls) == 1 else Budget.shared([c.budget for c in calls])
            body = _body(merged, request_id)
            try:
                response, retries = await self.transport.post_json(
                    self.url, body, auth=self.auth, budget=budget, timeout=calls[0].timeout
                )
            finally:
                if len(calls) > 1:  # every caller in the batch spent these retries
                    for c in calls:
                        c.budget.spend(budget.retries_used)
            return _shares(decode_answer(response), sizes, retries, len(calls), request_id)
        except NotRowAligned:
            # This model's answers cannot be cut by row: stop batching its calls.
            log.warning("the model's answers do not line up with rows; micro-batching turned off")
            self.batching = None
            raise

    async def _answer_in_chunks(self, call: Call, on_progress: ProgressCallback | None) -> Share:
        """A large table as requests of at most ``DEFAULT_CHUNK_ROWS`` rows (halved while over
        the payload limit), a few in flight, predictions put back in row order (lists end to
        end, column-shaped answers column by column)."""
        total = call.validated.n_rows
        slots = asyncio.Semaphore(DEFAULT_CHUNK_CONCURRENCY)
        done = 0

        async def chunk(rows: range) -> Share:
            nonlocal done
            part = replace(call, validated=call.validated.rows(rows.start, rows.stop), budget=call.budget.fork(),
                           client_request_id=f"{call.client_request_id}-{rows.start}")
            async with slots:
                (share,) = await self._answer([part])
            expect_rows_or_columns(share.predictions, len(rows))
            done += len(rows)
            if on_progress is not None:
                on_progress(done, total)
            return share

        def over_the_limit(rows: range, err: Exception) -> list[range]:
            return halves(rows) if isinstance(err, PayloadTooLarge) else []

        bounds = [range(a, min(a + DEFAULT_CHUNK_ROWS, total)) for a in range(0, total, DEFAULT_CHUNK_ROWS)]
        answered = await gather_or_cancel(split_and_resend(rows, chunk, over_the_limit) for rows in bounds)
        shares = [cast(Share, share) for part in answered for _, share in part]  # no error is kept: all answers
        served = {s.served_model_name for s in shares}
        return Share(
            predictions=join_rows([s.predictions for s in shares]),
            served_model_name=served.pop() if len(served) == 1 else None,
            request_id=shares[0].request_id,
            retries=sum(s.retries for s in shares),
            client_request_id=call.client_request_id,
        )


def _body(validated: ValidatedInput, request_id: str) -> bytes:
    """The request body of one call, or of a batch's calls merged (``PayloadTooLarge`` if over)."""
    return encode_body({**validated.to_wire(), "client_request_id": request_id})


def _shares(answer: Answer, sizes: list[int], retries: int, batch_size: int, request_id: str) -> list[Share]:
    """One answer cut into each call's share (``sizes``: the calls' rows, in order)."""
    return [Share(p, answer.served_model_name, answer.request_id, retries, batch_size, request_id)
            for p in split_rows(answer.predictions, sizes)]
