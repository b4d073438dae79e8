"""Auth: PAT, OAuth M2M against the workspace stand-in, user tokens, secrets kept out of logs."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from workspace_standin import WorkspaceStandin, workspace  # noqa: F401  (fixture)

from client._exceptions import ConfigurationError
from client._http.auth import NoAuth, TokenAuth, WorkspaceAuth, workspace_auth

SENTINEL_PAT = "dapiSENTINEL0123456789abcdef"
SENTINEL_USER = "eyUSERSENTINEL9876543210"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ambient Databricks credentials; an empty home so ~/.databrickscfg is ours."""
    import os

    for k in list(os.environ):
        if k.startswith("DATABRICKS_") or k.startswith("ARM_") or k.startswith("AZURE_"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / ".databrickscfg"))
    return tmp_path


def issued_since(ws: WorkspaceStandin, headers: dict[str, str], since: float) -> bool:
    """The stand-in issued this bearer token at or after ``since`` (monotonic) and has not revoked it:
    a fresh token, told from its recorded expiry rather than the clock when the test gets to ask."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return ws.tokens.get(token, 0.0) >= since + ws.token_lifetime and token not in ws.revoked


def m2m_env(monkeypatch: pytest.MonkeyPatch, ws: WorkspaceStandin) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", ws.client_secret)


async def test_no_auth_and_token_auth() -> None:
    assert await NoAuth().headers() == {}
    assert await NoAuth().refresh() is False
    t = TokenAuth(SENTINEL_PAT)
    assert await t.headers() == {"Authorization": f"Bearer {SENTINEL_PAT}"}
    assert await t.refresh() is False
    assert SENTINEL_PAT not in repr(t) and SENTINEL_PAT not in str(t)
    with pytest.raises(ConfigurationError):
        TokenAuth("")


async def test_pat_from_env(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace()
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_PAT)
    auth = workspace_auth()
    assert isinstance(auth, WorkspaceAuth)
    assert auth.host == ws.url
    assert auth.config.auth_type == "pat"
    assert await auth.headers() == {"Authorization": f"Bearer {SENTINEL_PAT}"}
    assert await auth.refresh() is False
    assert auth.refresh_count == 0
    assert SENTINEL_PAT not in repr(auth) and SENTINEL_PAT not in str(auth)


async def test_profile_from_databrickscfg(clean_env: Path, workspace) -> None:  # noqa: F811
    ws = workspace()
    (clean_env / ".databrickscfg").write_text(f"[dev]\nhost = {ws.url}\ntoken = {SENTINEL_PAT}\n")
    auth = workspace_auth(profile="dev")
    assert auth.host == ws.url
    assert await auth.headers() == {"Authorization": f"Bearer {SENTINEL_PAT}"}


def test_no_host_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        workspace_auth(user_token=SENTINEL_USER)
    with pytest.raises(ConfigurationError) as info:
        workspace_auth(token=SENTINEL_PAT)
    assert SENTINEL_PAT not in str(info.value)


async def test_oauth_m2m_token_then_refresh_before_expiry(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    # Headers are reused for half the token's remaining life, then the SDK fetches a new token
    # (it counts any token within 40 s of expiry as expired): an 8 s token is renewed after ~4 s,
    # leaving the old one ~4 s of life (a margin a loaded CI machine needs; 3 s tokens flaked).
    ws = workspace(token_lifetime=8)
    m2m_env(monkeypatch, ws)
    auth = workspace_auth()
    assert auth.config.auth_type == "oauth-m2m"
    # Discovery reads the OIDC document (databricks-sdk >= 0.16x reads /.well-known/databricks-config first).
    paths = [p for _, p in ws.requests]
    assert "/oidc/.well-known/oauth-authorization-server" in paths
    assert set(paths) <= {"/.well-known/databricks-config", "/oidc/.well-known/oauth-authorization-server"}
    assert ws.tokens_issued == 0  # no token until asked

    h1 = await auth.headers()
    assert ws.tokens_issued == 1
    tok1 = h1["Authorization"].removeprefix("Bearer ")
    assert ws.token_valid(tok1)
    assert await auth.headers() == h1  # cached
    assert ws.tokens_issued == 1

    async with httpx.AsyncClient() as http:  # the token works against the stand-in
        r = await http.get(f"{ws.url}/api/2.0/serving-endpoints/nope", headers=h1)
        assert r.status_code == 404

    await asyncio.sleep(4.3)
    h2 = await auth.headers()
    assert h2 != h1
    assert ws.tokens_issued == 2
    tok2 = h2["Authorization"].removeprefix("Bearer ")
    # Refreshed before the old one expired, read from the stand-in's issue times (not the clock at
    # this line, which a loaded machine may reach after the 8 s token's end).
    assert ws.tokens[tok2] - ws.token_lifetime < ws.tokens[tok1]
    assert ws.token_valid(h2["Authorization"].removeprefix("Bearer "))
    assert auth.refresh_count == 0  # the SDK's own refresh, not a forced one


async def test_oauth_m2m_two_second_tokens(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace(token_lifetime=2)
    m2m_env(monkeypatch, ws)
    auth = workspace_auth()
    h1 = await auth.headers()
    await asyncio.sleep(2.2)
    assert not ws.token_valid(h1["Authorization"].removeprefix("Bearer "))  # expired on the server
    asked = time.monotonic()
    h2 = await auth.headers()
    assert h2 != h1 and issued_since(ws, h2, asked)
    # A 2 s token is inside the SDK's 40 s safety margin, so it is never reused.
    assert ws.tokens_issued == 2


async def test_refresh_after_401_is_single_flight(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace(token_lifetime=3600)
    m2m_env(monkeypatch, ws)
    auth = workspace_auth()
    h1 = await auth.headers()
    assert ws.tokens_issued == 1
    ws.expire_all()  # the server now refuses the cached (not yet expired locally) token

    async with httpx.AsyncClient() as http:
        r = await http.get(f"{ws.url}/api/2.0/serving-endpoints/x", headers=h1)
        assert r.status_code == 401

    results = await asyncio.gather(*(auth.refresh() for _ in range(20)))
    assert all(results)
    assert ws.tokens_issued == 2  # one refresh for twenty callers
    assert auth.refresh_count == 1
    h2 = await auth.headers()
    assert h2 != h1 and ws.token_valid(h2["Authorization"].removeprefix("Bearer "))

    # A caller whose 401 came from the token already replaced shares that refresh.
    assert await auth.refresh(seen_generation=0) is True
    assert ws.tokens_issued == 2 and auth.refresh_count == 1
    _, gen = await auth.headers_with_generation()
    assert gen == 1

    # A later 401 gets a later refresh.
    assert await auth.refresh() is True
    assert ws.tokens_issued == 3 and auth.refresh_count == 2


async def test_headers_do_not_block_event_loop(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace()
    m2m_env(monkeypatch, ws)
    auth = workspace_auth()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(auth.headers() for _ in range(5)))
    task.cancel()
    assert ticks > 0
    assert ws.tokens_issued == 1


def test_bad_client_secret_is_refused(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace()
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "wrong-secret-SENTINEL")
    auth = workspace_auth()
    with pytest.raises(Exception) as info:
        asyncio.run(auth.headers())
    assert "wrong-secret-SENTINEL" not in str(info.value)
    assert ws.bad_credentials >= 1 and ws.tokens_issued == 0


async def test_user_token_wins_over_service_principal(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace()
    m2m_env(monkeypatch, ws)  # as inside a Databricks App
    auth = workspace_auth(user_token=SENTINEL_USER)
    assert auth.config.auth_type == "pat"
    assert auth.host == ws.url
    assert await auth.headers() == {"Authorization": f"Bearer {SENTINEL_USER}"}
    assert await auth.refresh() is False
    assert ws.tokens_issued == 0  # the service principal was never used
    assert SENTINEL_USER not in repr(auth)
    # Both a token and id/secret without auth_type is the SDK's error; we never hit it.
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_PAT)
    auth2 = workspace_auth(user_token=SENTINEL_USER)
    assert await auth2.headers() == {"Authorization": f"Bearer {SENTINEL_USER}"}


async def test_secrets_absent_from_repr_and_debug_logs(
    monkeypatch: pytest.MonkeyPatch,
    workspace,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    ws = workspace(token_lifetime=2)
    m2m_env(monkeypatch, ws)
    monkeypatch.setenv("DATABRICKS_DEBUG_HEADERS", "true")  # would make the SDK log headers
    caplog.set_level(logging.DEBUG)
    logging.getLogger("databricks").setLevel(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)

    auth = workspace_auth()
    h1 = await auth.headers()
    await asyncio.sleep(2.1)
    h2 = await auth.headers()
    await auth.refresh()
    user = workspace_auth(user_token=SENTINEL_USER)
    await user.headers()
    pat = workspace_auth(host=ws.url, token=SENTINEL_PAT)
    await pat.headers()
    async with httpx.AsyncClient() as http:  # and a real SDK round trip, logged at DEBUG
        await http.get(f"{ws.url}/api/2.0/serving-endpoints/x", headers=h2)
    from databricks.sdk import WorkspaceClient

    ws.add_pat(SENTINEL_PAT)
    from workspace_standin import Endpoint

    ws.add_endpoint(Endpoint("x"))
    WorkspaceClient(config=pat.config).serving_endpoints.get("x")
    assert any("serving-endpoints/x" in r.getMessage() for r in caplog.records)

    secrets = [ws.client_secret, SENTINEL_USER, SENTINEL_PAT]
    secrets += [h["Authorization"].removeprefix("Bearer ") for h in (h1, h2)]
    secrets += [t for t in ws.tokens]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "expected some DEBUG logging from the SDK"
    for s in secrets:
        assert s not in text
        for obj in (auth, user, pat, TokenAuth(SENTINEL_PAT)):
            assert s not in repr(obj) and s not in str(obj)


def test_config_built_once(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    ws = workspace()
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_PAT)
    auth = workspace_auth()
    before = len(ws.requests)  # what building the Config asked (databricks-sdk >= 0.16x: databricks-config)
    for _ in range(3):
        asyncio.run(auth.headers())
    time.sleep(0.05)
    assert len(ws.requests) == before  # no second Config, no second discovery


async def test_standin_invocations_check_the_token(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    from workspace_standin import Endpoint

    ws = workspace()
    m2m_env(monkeypatch, ws)
    ws.add_endpoint(Endpoint("tiny", canned={"predictions": [42]}))
    auth = workspace_auth()
    url = f"{ws.url}/serving-endpoints/tiny/invocations"
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json=body, headers=await auth.headers())
        assert r.status_code == 200 and r.json() == {"predictions": [42]}
        assert r.headers["served-model-name"] == "tiny-1"
        ws.expire_all()
        r = await http.post(url, json=body, headers=await auth.headers())
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        assert await auth.refresh() is True
        r = await http.post(url, json=body, headers=await auth.headers())
        assert r.status_code == 200
        r = await http.post(url, json=body)
        assert r.status_code == 401
    assert ws.invocations == 2 and ws.tokens_issued == 2


def test_one_workspace_auth_serves_several_event_loops(monkeypatch: pytest.MonkeyPatch, workspace) -> None:  # noqa: F811
    """2-second tokens, ``asyncio.run`` twice (and the refresh from both): each loop's concurrent
    callers share one fetch, and no loop finds a lock bound to another."""
    ws = workspace(token_lifetime=2)
    m2m_env(monkeypatch, ws)
    auth = workspace_auth()

    async def burst() -> list[dict[str, str]]:
        return await asyncio.wait_for(asyncio.gather(*(auth.headers() for _ in range(8))), 20)

    async def refreshes() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(auth.refresh() for _ in range(4))), 20)

    for loop_number in range(2):
        asked = time.monotonic()
        headers = asyncio.run(burst())
        assert len({h["Authorization"] for h in headers}) == 1, loop_number  # one fetch for eight callers
        assert issued_since(ws, headers[0], asked)
        assert asyncio.run(refreshes()) == [True] * 4
        time.sleep(1.1)  # past the cached half of the token's life: the next loop fetches anew
    assert auth.refresh_count == 2
    assert ws.tokens_issued == 4
