"""One Predictor used from several event loops at once: the sync portal's loop and any
``asyncio.run``. Nothing shared between them may belong to one loop (no ``asyncio.Lock``)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from client import ConfigurationError, PredictionResult, Predictor
from client._schema import signatures as _signatures
from client._types import ColumnSpec, Signature

URL = "http://127.0.0.1:9/invocations"
SIG = Signature(columns=(ColumnSpec(name="x", type="double"),))
#: Long enough for both loops' callers to queue behind the first load; the test does not
#: depend on it (with no overlap it passes trivially, never flakes).
LOAD_SECONDS = 0.3
HANG_GUARD = 20.0


def answer_ten_times_x(request: httpx.Request) -> httpx.Response:
    xs = [row[0] for row in json.loads(request.content)["dataframe_split"]["data"]]
    return httpx.Response(200, json={"predictions": [x * 10 for x in xs]})


class SlowRegistry:
    """Stands in for the registry's signature lookup: slow, counted, failing while ``down``."""

    def __init__(self) -> None:
        self.loads = 0
        self.down = False

    async def __call__(self, model_uri: str, registry_uri: str | None = None) -> tuple[Signature, None]:
        self.loads += 1
        await asyncio.sleep(LOAD_SECONDS)
        if self.down:
            raise ConfigurationError(f"cannot load {model_uri}: registry unavailable")
        return SIG, None


def predictor() -> Predictor:
    return Predictor.from_endpoint(url=URL, model_uri="models:/main.default.m/1",
                                   http_transport=httpx.MockTransport(answer_ten_times_x))


def outcomes_in_a_new_loop(p: Predictor, n: int, first: int = 0) -> list[Any]:
    async def main() -> list[Any]:
        calls = (p.apredict([{"x": float(first + i)}]) for i in range(n))
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG_GUARD)

    return asyncio.run(main())


def test_sync_threads_and_asyncio_run_share_a_fresh_predictor(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 ``predict`` threads (the portal's loop) and 8 ``apredict`` tasks in ``asyncio.run``, at once,
    on a Predictor whose signature is not loaded yet: all right, and the signature loaded once."""
    registry = SlowRegistry()
    monkeypatch.setattr(_signatures, "from_registry", registry)
    p = predictor()

    def sync_call(i: int) -> Any:
        try:
            return p.predict([{"x": float(i)}])
        except Exception as err:
            return err

    with ThreadPoolExecutor(8) as pool:
        sync_side = [pool.submit(sync_call, i) for i in range(8)]
        async_side = outcomes_in_a_new_loop(p, 8, first=100)
        sync_outcomes = [f.result(timeout=HANG_GUARD) for f in sync_side]
    assert [r.predictions if isinstance(r, PredictionResult) else r for r in sync_outcomes] == [
        [i * 10.0] for i in range(8)
    ]
    assert [r.predictions if isinstance(r, PredictionResult) else r for r in async_side] == [
        [(100 + i) * 10.0] for i in range(8)
    ]
    assert registry.loads == 1  # one load, shared by both loops' callers
    p.close()


def test_a_failed_first_load_leaves_the_next_loop_free_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first signature load fails while callers wait: they get its typed error, and calls from
    the next ``asyncio.run`` load again and succeed (never a RuntimeError about another loop)."""
    registry = SlowRegistry()
    monkeypatch.setattr(_signatures, "from_registry", registry)
    p = predictor()
    registry.down = True
    first = outcomes_in_a_new_loop(p, 4)
    assert all(isinstance(r, ConfigurationError) for r in first), first
    registry.down = False
    second = outcomes_in_a_new_loop(p, 4)
    assert [r.predictions if isinstance(r, PredictionResult) else r for r in second] == [
        [i * 10.0] for i in range(4)
    ]
    assert registry.loads == 2  # one per loop: the callers waiting shared the failed load's error
