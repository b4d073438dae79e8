"""Token lifecycle: short-lived OAuth M2M tokens under concurrent load, and rejected user tokens.

A workspace stand-in issues the tokens and proxies invocations to the real MLflow scoring
server. Over a fixed 10-second run at concurrency 16 no call may fail, tokens must be
renewed as they age out, and the number issued must follow the clock (about one per token
lifetime), not the number of calls.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from pathlib import Path

import pytest
from workspace_standin import Endpoint, WorkspaceStandin, workspace  # noqa: F401  (fixture)

from client import AuthenticationError, PredictionResult, Predictor

IRIS = "models:/main.default.iris@champion"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
RUN_SECONDS = 10.0
LIFETIME = 2
CONCURRENCY = 16

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith(("DATABRICKS_", "ARM_", "AZURE_")):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / ".databrickscfg"))


def _standin(workspace, scoring_server: str, monkeypatch: pytest.MonkeyPatch, lifetime: int) -> WorkspaceStandin:  # noqa: F811
    ws = workspace(token_lifetime=lifetime)
    ws.add_endpoint(Endpoint(name="iris", entity_name="main.default.iris", entity_version="1",
                             upstream=scoring_server, served_model_name="iris-1"))
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", ws.client_secret)
    return ws


async def _load(p: Predictor, seconds: float, concurrency: int) -> tuple[int, list[BaseException], float]:
    """Call ``p`` from ``concurrency`` workers until ``seconds`` have passed; (calls, failures, elapsed)."""
    expected = (await p.apredict([ROW])).predictions
    calls = 0
    failures: list[BaseException] = []
    started = time.monotonic()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal calls
        while time.monotonic() < deadline:
            try:
                result = await p.apredict([ROW])
            except Exception as exc:
                failures.append(exc)
            else:
                assert isinstance(result, PredictionResult)
                if result.predictions != expected:
                    failures.append(AssertionError(f"wrong prediction {result.predictions}"))
            calls += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls, failures, time.monotonic() - started


def _report(kind: str, ws: WorkspaceStandin, p: Predictor, calls: int, failures: list, elapsed: float) -> None:
    refreshes = getattr(p._sender.auth, "refresh_count", None)
    print(f"\ntoken lifecycle ({kind}): {elapsed:.1f}s at concurrency {CONCURRENCY}, calls={calls} "
          f"failed={len(failures)} tokens_issued={ws.tokens_issued} token_requests={ws.token_requests} "
          f"invocations={ws.invocations} 401s={ws.rejected} forced_refreshes={refreshes}")


def _bound(elapsed: float) -> int:
    """Tokens a well-behaved client needs: one per lifetime, plus the first and a little slack."""
    return math.ceil(elapsed / LIFETIME) * 2 + 3


async def test_tokens_that_expire_on_the_server_every_2s(workspace, scoring_server, registry_uri,  # noqa: F811
                                                         monkeypatch):
    """The server drops every token every 2 s (the client was told they last an hour): every
    401 costs one shared refresh and a resend, never a failed call or a refresh per call."""
    ws = _standin(workspace, scoring_server, monkeypatch, lifetime=3600)
    stop = threading.Event()

    def expire_every_lifetime() -> None:
        while not stop.wait(LIFETIME):
            ws.expire_all()

    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)
    expirer = threading.Thread(target=expire_every_lifetime, daemon=True)
    expirer.start()
    try:
        calls, failures, elapsed = await _load(p, RUN_SECONDS, CONCURRENCY)
    finally:
        stop.set()
        expirer.join()
        await p.aclose()
    _report("server-side expiry", ws, p, calls, failures, elapsed)
    assert failures == []
    assert ws.rejected > 0  # the tokens really did expire under the load
    assert ws.tokens_issued >= RUN_SECONDS // LIFETIME - 1  # renewed as they aged out
    assert ws.tokens_issued <= _bound(elapsed) < calls / 5  # no refresh per call (no thundering herd)


async def test_2s_tokens_as_advertised_by_the_token_endpoint(workspace, scoring_server, registry_uri,  # noqa: F811
                                                              monkeypatch):
    """The token endpoint itself says ``expires_in: 2``."""
    ws = _standin(workspace, scoring_server, monkeypatch, lifetime=LIFETIME)
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)
    try:
        calls, failures, elapsed = await _load(p, RUN_SECONDS, CONCURRENCY)
    finally:
        await p.aclose()
    _report("expires_in=2", ws, p, calls, failures, elapsed)
    assert failures == []
    assert ws.tokens_issued >= int(RUN_SECONDS // LIFETIME)
    assert ws.tokens_issued <= _bound(elapsed)


async def test_rejected_user_token_is_a_clear_authentication_error(workspace, scoring_server,  # noqa: F811
                                                                   registry_uri, monkeypatch):
    ws = _standin(workspace, scoring_server, monkeypatch, lifetime=3600)
    user_token = "user-token-" + "e" * 24
    ws.add_pat(user_token)
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri, user_token=user_token)
    assert (await p.apredict([ROW])).predictions
    ws.revoked.add(user_token)  # the user's session ended: the workspace now refuses the token
    tokens_before = ws.tokens_issued
    with pytest.raises(AuthenticationError) as info:
        await p.apredict([ROW])
    err = info.value
    assert err.status_code == 401 and err.error_code == "UNAUTHENTICATED"
    assert "expired" in str(err) and "401" in str(err)
    assert user_token not in str(err) and user_token not in repr(err)
    assert ws.tokens_issued == tokens_before == 0  # never fell back to the app's own identity
    await p.aclose()
