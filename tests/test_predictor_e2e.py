"""The Predictor against real parts: a sqlite MLflow registry and MLflow's own scoring server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from client import BadRequestError, Predictor, SchemaValidationError

IRIS = "models:/main.default.iris@champion"
MIXED = "models:/main.default.mixed@champion"
IRIS_ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
MIXED_ROWS = [
    {"x": 1.5, "f": 2.25, "n": 3, "s": "abc", "b": True, "t": "2024-05-17T10:00:00"},
    {"x": -2, "f": 1, "n": 10, "s": "", "b": False, "t": dt.datetime(2023, 1, 2), "note": "optional"},
]

pytestmark = pytest.mark.slow


def test_endpoint_by_url_path_and_direct_mode_agree_on_iris(registry_uri, scoring_server):
    with Predictor.from_endpoint(url=f"{scoring_server}/serving-endpoints/iris/invocations", model_uri=IRIS) as ep:
        by_endpoint = ep.predict([IRIS_ROW, {**IRIS_ROW, "petal length (cm)": 5.5, "petal width (cm)": 2.1}])
    direct = Predictor.from_model(IRIS).predict(
        {k: [v, {"petal length (cm)": 5.5, "petal width (cm)": 2.1}.get(k, v)] for k, v in IRIS_ROW.items()}
    )
    assert by_endpoint.mode == "endpoint" and direct.mode == "direct"
    assert by_endpoint.predictions == direct.predictions
    assert len(direct.predictions) == 2 and direct.predictions[0] != direct.predictions[1]
    assert direct.model_name == "main.default.iris" and direct.model_version == "1"
    assert by_endpoint.model_version == "1"


def test_both_modes_agree_on_mixed_column_types(registry_uri, mixed_server):
    endpoint = Predictor.from_endpoint(url=f"{mixed_server}/invocations", model_uri=MIXED)
    direct = Predictor.from_model(MIXED)
    for params in (None, {"threshold": 2}):
        a = endpoint.predict(MIXED_ROWS, params=params).predictions
        b = direct.predict(MIXED_ROWS, params=params).predictions
        assert json.dumps(a) == json.dumps(b), (params, a, b)
    assert endpoint.predict(MIXED_ROWS).predictions != endpoint.predict(MIXED_ROWS, {"threshold": 2}).predictions


def test_bad_input_lists_every_problem_and_sends_nothing(registry_uri, mixed_server):
    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", model_uri=MIXED)  # nothing listens there
    bad = [{"x": "not a number", "f": 1.0, "n": 1.5, "s": "a", "b": True, "t": "2024-01-01"}, {"x": 1.0}]
    with pytest.raises(SchemaValidationError) as info:
        p.predict(bad)
    problems = {(pr.row, pr.column) for pr in info.value.problems}
    assert (0, "x") in problems and (0, "n") in problems
    assert any(pr.row == 1 and pr.column == "f" for pr in info.value.problems), str(info.value)


def test_server_rejection_is_a_bad_request_with_the_server_message(registry_uri, scoring_server):
    # No model_uri: nothing to validate against, so the scoring server is the one to refuse.
    p = Predictor.from_endpoint(url=f"{scoring_server}/invocations")
    with pytest.raises(BadRequestError) as info:
        p.predict([{"not a column": 1}])
    assert info.value.status_code == 400
    assert info.value.message


async def test_async_concurrent_calls_share_one_pool(registry_uri, scoring_server):
    async with Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS) as p:
        results = await asyncio.gather(*(p.apredict([IRIS_ROW]) for _ in range(8)))
    assert {json.dumps(r.predictions) for r in results} == {json.dumps(results[0].predictions)}


async def test_sync_api_works_inside_a_running_loop(registry_uri, scoring_server):
    p = Predictor.from_endpoint(url=f"{scoring_server}/invocations", model_uri=IRIS)
    assert p.predict([IRIS_ROW]).predictions == (await p.apredict([IRIS_ROW])).predictions
