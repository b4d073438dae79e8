"""Endpoint by name on a (stand-in) workspace: OAuth M2M, refresh on 401, user token, and a
real MLflow scoring server behind the invocations route."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from workspace_standin import Endpoint, workspace  # noqa: F401  (fixture)

from client import AuthenticationError, PredictionResult, Predictor

IRIS = "models:/main.default.iris@champion"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}

pytestmark = pytest.mark.slow


@pytest.fixture
def ws(workspace, scoring_server, monkeypatch):  # noqa: F811
    ws = workspace(token_lifetime=3600)
    ws.add_endpoint(Endpoint(name="iris", entity_name="main.default.iris", entity_version="1",
                             upstream=scoring_server, served_model_name="iris-1"))
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", ws.client_secret)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    return ws


def test_oauth_m2m_by_endpoint_name_matches_direct_mode(ws, registry_uri, caplog):
    caplog.set_level(logging.DEBUG)
    with Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri) as p:
        result = p.predict([ROW])
        state = p.endpoint_state()
    direct = Predictor.from_model(IRIS)
    assert result.predictions == direct.predict([ROW]).predictions
    assert state == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert p.model_run_id is not None and p.model_run_id == direct.model_run_id  # the run that logged version 1
    assert result.endpoint == "iris" and result.served_model_name == "iris-1"
    assert result.model_version == "1"
    assert ws.tokens_issued == 1 and ws.invocations == 1
    assert ws.client_secret not in caplog.text
    assert ws.client_secret not in repr(p)


def test_server_side_expiry_costs_one_refresh_and_no_failed_call(ws, registry_uri):
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)
    p.predict([ROW])
    ws.expire_all()  # the server refuses the token the client still thinks is fresh
    assert p.predict([ROW]).predictions
    assert ws.tokens_issued == 2
    assert ws.rejected == 1


def test_user_token_wins_over_the_app_service_principal(ws, registry_uri, monkeypatch):
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "wrong-secret")  # M2M would fail if it were used
    ws.add_pat("user-token-abc")
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri, user_token="user-token-abc")
    assert p.predict([ROW]).predictions
    assert ws.tokens_issued == 0
    with pytest.raises(AuthenticationError) as info:
        p.with_user_token("someone-else-expired").predict([ROW])
    assert "someone-else-expired" not in str(info.value)


def test_by_name_the_signature_comes_from_the_endpoints_openapi_document(ws, monkeypatch):
    """No model URI and no registry: the documented /openapi document is the signature, so a bad
    row is refused before anything is sent and the defaults of its params are known."""
    import json
    from pathlib import Path

    from client import SchemaValidationError

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////nonexistent/registry.db")  # any registry read would fail
    ws.endpoints["iris"].openapi = json.loads((Path(__file__).parent / "data" / "openapi_endpoint_schema.json")
                                              .read_text())
    with Predictor.from_endpoint("iris") as p:
        sig = p.get_signature()
        assert sig is not None and [c.type for c in sig.columns] == ["double"] * 4
        assert [(s.name, s.default) for s in sig.params] == [("threshold", 0.5)]
        with pytest.raises(SchemaValidationError) as info:
            p.predict([{**ROW, "petal width (cm)": "wide"}])
        assert "petal width (cm)" in str(info.value)
        assert ws.invocations == 0
        assert p.predict([ROW]).predictions and ws.invocations == 1
    assert ("GET", "/api/2.0/serving-endpoints/iris/openapi") in ws.requests


def test_one_predictor_by_name_from_sync_threads_and_two_asyncio_runs(workspace, scoring_server,  # noqa: F811
                                                                       registry_uri, monkeypatch):
    """OAuth M2M with 2-second tokens; the sync API from 8 threads and 8 ``apredict`` tasks in an
    ``asyncio.run``, at once, twice: every call answered (no lock of one loop met by another)."""
    ws = workspace(token_lifetime=2)
    ws.add_endpoint(Endpoint(name="iris", entity_name="main.default.iris", entity_version="1",
                             upstream=scoring_server, served_model_name="iris-1"))
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", ws.client_secret)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)

    async def eight() -> list:
        return await asyncio.wait_for(asyncio.gather(*(p.apredict([ROW]) for _ in range(8)),
                                                     return_exceptions=True), 60)

    outcomes: list = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(2):
            sync_side = [pool.submit(p.predict, [ROW]) for _ in range(8)]
            outcomes += asyncio.run(eight())
            outcomes += [f.exception(timeout=60) or f.result() for f in sync_side]
            time.sleep(1.1)  # the cached token is past half its life: the next round fetches anew
    p.close()
    assert all(isinstance(r, PredictionResult) for r in outcomes), [r for r in outcomes if isinstance(r, Exception)]
    assert len({str(r.predictions) for r in outcomes}) == 1 and len(outcomes) == 32
