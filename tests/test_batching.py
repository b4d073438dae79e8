"""Micro-batching and large-input chunking: the scheduler on fakes, the Predictor over
httpx.MockTransport, and both modes against MLflow's real scoring server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from _iris import iris_labels

from client import BadRequestError, Batching, ConfigurationError, Predictor, SchemaValidationError
from client._exceptions import APITimeoutError, InternalServerError, ModelError, RateLimitError
from client._http.batching import Batcher, NotRowAligned, expect_rows, should_isolate, split_rows

URL = "http://127.0.0.1:9/invocations"


# -- pure parts ------------------------------------------------------------------------


def test_split_rows_cuts_in_order_and_refuses_what_does_not_line_up():
    assert split_rows([1, 2, 3], [1, 2]) == [[1], [2, 3]]
    assert split_rows({"any": "shape"}, [5]) == [{"any": "shape"}]  # alone: nothing to cut
    with pytest.raises(NotRowAligned):
        split_rows([1, 2], [1, 2])
    with pytest.raises(NotRowAligned):
        split_rows({"a": [1, 2, 3]}, [1, 2])
    assert expect_rows([0, 1], 2) == [0, 1]
    with pytest.raises(NotRowAligned):
        expect_rows([0], 2)


def test_should_isolate_only_what_one_row_could_have_caused():
    def status(code: int) -> Exception:
        cls = {400: BadRequestError, 429: RateLimitError}.get(code, InternalServerError)
        return cls("x", status_code=code, request=None)

    assert should_isolate(status(400)) and should_isolate(status(500)) and should_isolate(ModelError("boom"))
    assert should_isolate(SchemaValidationError([]))
    assert not should_isolate(status(429)) and not should_isolate(status(503))
    assert not should_isolate(APITimeoutError())


def test_batching_settings_are_checked():
    with pytest.raises(ConfigurationError):
        Batching(max_rows=0)
    with pytest.raises(ConfigurationError):
        Batching(max_wait=-1)


# -- the scheduler, with a fake run ----------------------------------------------------


class FakeRun:
    """Answers each item ``n`` with ``n * 10``; items named in ``bad`` make the batch fail. With a
    ``gate``, every batch waits for it to be set: a test decides when batches end, not the clock."""

    def __init__(self, bad: tuple[int, ...] = (), error: type[Exception] = BadRequestError, delay: float = 0.0,
                 gate: asyncio.Event | None = None):
        self.batches: list[list[int]] = []
        self.bad, self.error, self.delay, self.gate = bad, error, delay, gate
        self.running = self.max_running = 0

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay)
            if any(i in self.bad for i in items):
                raise self.error("bad row", status_code=400 if self.error is BadRequestError else 503, request=None)
            return [i * 10 for i in items]
        finally:
            self.running -= 1


async def test_callers_started_together_share_one_batch_and_get_their_own_answer():
    run = FakeRun()
    batcher = Batcher(run, Batching(max_rows=64))
    results = await asyncio.gather(*(batcher.submit("k", i, 1) for i in range(32)))
    assert results == [i * 10 for i in range(32)]
    assert run.batches == [list(range(32))]


async def test_a_lone_caller_does_not_wait_for_company():
    run = FakeRun()
    batcher = Batcher(run, Batching(max_wait=3600))  # if a lone caller paid max_wait, this would hang
    for i in range(3):  # a caller calling again as soon as it is answered is alone too
        assert await asyncio.wait_for(batcher.submit("k", i, 1), timeout=5) == i * 10
    assert run.batches == [[0], [1], [2]]


async def test_batches_respect_max_rows_max_concurrency_and_keys():
    run = FakeRun(delay=0.01)
    batcher = Batcher(run, Batching(max_rows=8, max_concurrency=2))
    calls = [batcher.submit("a" if i % 2 else "b", i, 1) for i in range(40)]
    assert await asyncio.gather(*calls) == [i * 10 for i in range(40)]
    assert all(len(b) <= 8 for b in run.batches)
    assert all(len({i % 2 for i in b}) == 1 for b in run.batches), "keys never mix"
    assert run.max_running <= 2
    assert sorted(i for b in run.batches for i in b) == list(range(40)), "each call sent exactly once"


async def test_a_bad_row_fails_only_its_own_caller():
    run = FakeRun(bad=(3,))
    batcher = Batcher(run, Batching())
    results = await asyncio.gather(*(batcher.submit("k", i, 1) for i in range(6)), return_exceptions=True)
    assert isinstance(results[3], BadRequestError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 10, 20, 40, 50]
    assert run.batches[0] == list(range(6)) and [3] in run.batches


async def test_an_error_of_the_whole_exchange_reaches_every_caller_without_resending():
    run = FakeRun(bad=(0,), error=InternalServerError)  # 503: not something one row causes
    batcher = Batcher(run, Batching())
    results = await asyncio.gather(*(batcher.submit("k", i, 1) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, InternalServerError) for r in results)
    assert run.batches == [[0, 1, 2, 3]]


async def test_a_caller_cancelled_while_waiting_is_not_sent():
    gate = asyncio.Event()  # batch [1] stays in flight until the cancel is done (a 50 ms sleep raced it)
    run = FakeRun(gate=gate)
    batcher = Batcher(run, Batching(max_concurrency=1))
    first = asyncio.ensure_future(batcher.submit("k", 1, 1))
    while run.running == 0:
        await asyncio.sleep(0)
    waiting = asyncio.ensure_future(batcher.submit("k", 2, 1))  # waits for the slot
    kept = asyncio.ensure_future(batcher.submit("k", 3, 1))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    assert await first == 10 and await kept == 30
    assert [2] not in run.batches and all(2 not in b for b in run.batches)


# -- the Predictor over MockTransport ----------------------------------------------------


class Recorder:
    """A Model Serving stand-in answering one prediction per row: the row's ``x`` times 10."""

    def __init__(self, aligned: bool = True, reject_x: float | None = None) -> None:
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.aligned, self.reject_x = aligned, reject_x

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.auth.append(request.headers.get("Authorization"))
        xs = [row[0] for row in body["dataframe_split"]["data"]]
        if self.reject_x in xs:
            return httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": "x out of range"})
        scale = (body.get("params") or {}).get("scale", 10)
        predictions = [x * scale for x in xs] if self.aligned else {"x": xs}
        return httpx.Response(200, json={"predictions": predictions})

    def rows_per_request(self) -> list[int]:
        return [len(b["dataframe_split"]["data"]) for b in self.bodies]


def predictor(server: Recorder, **kwargs) -> Predictor:
    return Predictor.from_endpoint(url=URL, http_transport=httpx.MockTransport(server), validate=False, **kwargs)


async def test_concurrent_calls_become_one_request_split_back_in_order():
    server = Recorder()
    p = predictor(server)
    results = await asyncio.gather(*(p.apredict([{"x": float(i)}]) for i in range(20)))
    assert [r.predictions for r in results] == [[i * 10.0] for i in range(20)]
    assert server.rows_per_request() == [20]
    assert {r.batch_size for r in results} == {20}


async def test_different_params_are_never_mixed_and_batching_can_be_turned_off():
    server = Recorder()
    p = predictor(server)
    results = await asyncio.gather(*(p.apredict([{"x": 1.0}], params={"scale": 1 + i % 2}) for i in range(6)))
    assert [r.predictions for r in results] == [[1.0 + i % 2] for i in range(6)]
    assert sorted(server.rows_per_request()) == [3, 3]

    server = Recorder()
    off = predictor(server, batching=False)
    await asyncio.gather(*(off.apredict([{"x": 1.0}]) for _ in range(5)))
    assert server.rows_per_request() == [1] * 5


async def test_a_rejected_batch_is_resent_per_call_so_only_the_bad_caller_fails():
    server = Recorder(reject_x=3.0)
    p = predictor(server)
    results = await asyncio.gather(*(p.apredict([{"x": float(i)}]) for i in range(5)), return_exceptions=True)
    assert isinstance(results[3], BadRequestError)
    assert [r.predictions for i, r in enumerate(results) if i != 3] == [[0.0], [10.0], [20.0], [40.0]]
    assert server.rows_per_request() == [5, 1, 1, 1, 1, 1]


async def test_answers_that_do_not_line_up_turn_batching_off_and_nobody_gets_a_wrong_share():
    server = Recorder(aligned=False)
    p = predictor(server)
    results = await asyncio.gather(*(p.apredict([{"x": float(i)}]) for i in range(4)))
    assert [r.predictions for r in results] == [{"x": [float(i)]} for i in range(4)]
    await asyncio.gather(*(p.apredict([{"x": 1.0}]) for _ in range(3)))
    assert server.rows_per_request() == [4, 1, 1, 1, 1, 1, 1, 1]


async def test_two_users_calls_never_share_a_request():
    server = Recorder()
    base = predictor(server, token="app-token")
    alice, bob = base.with_user_token("alice-token"), base.with_user_token("bob-token")
    calls = [(alice if i % 2 else bob).apredict([{"x": float(i)}]) for i in range(10)]
    await asyncio.gather(*calls)
    for body, auth in zip(server.bodies, server.auth, strict=True):
        odd = {int(row[0]) % 2 for row in body["dataframe_split"]["data"]}
        assert odd == ({1} if auth == "Bearer alice-token" else {0}), (auth, body)


async def test_a_large_table_goes_in_chunks_in_order_with_progress():
    server = Recorder()
    p = predictor(server)
    seen: list[tuple[int, int]] = []
    result = await p.apredict({"x": [float(i) for i in range(12_001)]}, on_progress=lambda d, t: seen.append((d, t)))
    assert result.predictions == [i * 10.0 for i in range(12_001)]
    assert sorted(server.rows_per_request()) == [2_001, 5_000, 5_000]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (12_001, 12_001)
    assert {t for _, t in seen} == {12_001}


async def test_progress_hears_of_each_chunk_exactly_once():
    server = Recorder()
    p = predictor(server)
    seen: list[tuple[int, int]] = []
    await p.apredict({"x": [float(i) for i in range(12_000)]}, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(5_000, 12_000), (10_000, 12_000), (12_000, 12_000)]
    seen.clear()
    await p.apredict({"x": [1.0, 2.0, 3.0]}, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 3)]


async def test_column_shaped_answers_of_chunks_are_joined_column_wise():
    """MLflow writes a dict-of-arrays output as ``{"predictions": {"x": [...]}}``: one list per column."""
    server = Recorder(aligned=False)  # answers {"x": [one value per row]}
    p = predictor(server, batching=False)
    result = await p.apredict({"x": [float(i) for i in range(5_001)]})
    assert result.predictions == {"x": [float(i) for i in range(5_001)]}
    assert sorted(server.rows_per_request()) == [1, 5_000]


async def test_a_call_under_5000_rows_but_over_the_payload_limit_is_split_by_size():
    server = Recorder()
    p = predictor(server)
    pad = "p" * 5_000  # 4,000 rows x 5 kB: ~20 MB in one body, over the 16 MB limit
    seen: list[tuple[int, int]] = []
    result = await p.apredict({"x": [float(i) for i in range(4_000)], "pad": [pad] * 4_000},
                              on_progress=lambda d, t: seen.append((d, t)))
    assert result.predictions == [i * 10.0 for i in range(4_000)]
    assert sorted(server.rows_per_request()) == [2_000, 2_000]
    assert seen[-1] == (4_000, 4_000) and len(seen) == 2


async def test_a_chunk_over_the_payload_limit_is_halved_until_it_fits():
    server = Recorder()
    p = predictor(server)
    pad = "p" * 4_000  # 6,000 rows x 4 kB: a 5,000-row chunk would be ~20 MB, over the 16 MB limit
    result = await p.apredict({"x": [float(i) for i in range(6_000)], "pad": [pad] * 6_000})
    assert result.predictions == [i * 10.0 for i in range(6_000)]
    assert sorted(server.rows_per_request()) == [1_000, 2_500, 2_500]


async def test_a_single_row_over_the_payload_limit_is_refused_before_sending():
    server = Recorder()
    with pytest.raises(SchemaValidationError, match="16,777,216"):
        await predictor(server).apredict([{"x": 1.0, "pad": "p" * (17 * 1024 * 1024)}])
    assert server.bodies == []


# -- real parts ------------------------------------------------------------------------

IRIS = "models:/main.default.iris@champion"
ROWS = [
    {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2},
    {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3},
    {"sepal length (cm)": 5.9, "sepal width (cm)": 2.8, "petal length (cm)": 4.1, "petal width (cm)": 1.3},
]


@pytest.mark.slow
async def test_batched_calls_match_calls_sent_alone_on_the_real_server_and_in_direct_mode(registry_uri, scoring_server):
    url = f"{scoring_server}/serving-endpoints/iris/invocations"
    alone = Predictor.from_endpoint(url=url, model_uri=IRIS, batching=False)
    expected = [(await alone.apredict([row])).predictions for row in ROWS]
    assert [iris_labels(e) for e in expected] == [["setosa"], ["virginica"], ["versicolor"]]
    for p in (Predictor.from_endpoint(url=url, model_uri=IRIS), Predictor.from_model(IRIS)):
        results = await asyncio.gather(*(p.apredict([ROWS[i % 3]]) for i in range(48)))
        assert [r.predictions for r in results] == [expected[i % 3] for i in range(48)], p.mode
        assert max(r.batch_size for r in results) > 1, p.mode
        await p.aclose()
