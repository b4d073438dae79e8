"""Secrets: sentinel credentials never show up in logs, reprs, error texts or CLI output.

Every logger runs at DEBUG (ours, httpx, httpcore, databricks.sdk, urllib3, and the root),
``DATABRICKS_DEBUG_HEADERS`` is on, and a representative set of operations runs: predictions
that succeed, that fail with 401/403/500, that are retried, that refresh an OAuth token;
signature fetches; the CLI's ``predict`` and ``schema``. Then the sentinels (a PAT, a client
secret, a user token, and every OAuth token the stand-in issued) are searched for in every
log record, every repr/str, every exception text along its ``__cause__``/``__context__``
chain, and the CLI's stdout/stderr.

Also: a credential is never sent over plain http to a non-loopback host unless allowed, and
error texts never relay the input rows the scoring server quotes back.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from workspace_standin import Endpoint, WorkspaceStandin, workspace  # noqa: F401  (fixture)

from client import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    PermissionDeniedError,
    Predictor,
)

ROOT = Path(__file__).resolve().parent.parent
IRIS = "models:/main.default.iris@champion"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
SENTINEL_TOKEN = "dapiTOKENSENTINEL7f3a9c2e"
SENTINEL_SECRET = "doseSECRETSENTINEL51b8d0aa"
SENTINEL_USER = "eyUSERSENTINEL0c9e44d1"
LOGGERS = ["", "client", "httpx", "httpcore", "hpack", "h2", "databricks", "databricks.sdk", "urllib3", "frontends"]


class Capture(logging.Handler):
    """Every record, formatted with its args and any exception text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@pytest.fixture
def debug_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Capture]:
    for k in list(os.environ):
        if k.startswith(("DATABRICKS_", "ARM_", "AZURE_")):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / ".databrickscfg"))
    monkeypatch.setenv("DATABRICKS_DEBUG_HEADERS", "true")
    capture = Capture()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(capture)
    yield capture
    for logger, level, disabled in saved:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.disabled = disabled


def texts_of(error: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    out: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), *[str(a) for a in e.args]]
        stack += [e.__cause__, e.__context__]
    return out


def leaks(texts: list[str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(s, t[:200]) for t in texts for s in secrets if s and s in t]


# --------------------------------------------------------------------------- URL mode, static token


def test_static_token_through_ok_401_403_500_and_retries(debug_logs: Capture) -> None:
    script = iter([
        httpx.Response(200, json={"predictions": [0]}),
        httpx.Response(401, json={"error_code": "UNAUTHENTICATED", "message": "invalid token"}),
        httpx.Response(403, json={"error_code": "PERMISSION_DENIED", "message": "no CAN_QUERY"}),
        *[httpx.Response(500, json={"error_code": "INTERNAL_ERROR", "message": "model crashed"})] * 2,
        httpx.Response(503, text="busy"), httpx.Response(200, json={"predictions": [1]}),
    ])
    auth_headers: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth_headers.append(request.headers.get("authorization", ""))
        return next(script)

    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", token=SENTINEL_TOKEN, max_retries=1,
                                http_transport=httpx.MockTransport(handler), batching=False)
    texts = [repr(p), str(p), repr(p._sender.auth), str(p._sender.auth)]
    texts.append(p.predict([{"x": 1}]).model_dump_json())
    for expected in (AuthenticationError, PermissionDeniedError, InternalServerError):
        with pytest.raises(expected) as info:
            p.predict([{"x": 1}])
        texts += texts_of(info.value)
    result = p.predict([{"x": 1}])  # 503, then an answer
    assert result.retries == 1 and result.predictions == [1]
    texts += [repr(result), result.model_dump_json()]
    p.close()
    assert auth_headers == [f"Bearer {SENTINEL_TOKEN}"] * 7  # the token was really in use
    assert any("httpx" in t or "httpcore" in t for t in debug_logs.texts)  # DEBUG logging was really on
    assert leaks(texts + debug_logs.texts, [SENTINEL_TOKEN]) == []


# --------------------------------------------------------------------------- workspace: OAuth M2M, PAT, user token


@pytest.fixture
def ws(workspace, scoring_server, monkeypatch) -> WorkspaceStandin:  # noqa: F811
    ws = workspace(client_secret=SENTINEL_SECRET, token_lifetime=3600)
    ws.add_endpoint(Endpoint(name="iris", entity_name="main.default.iris", entity_version="1",
                             upstream=scoring_server, served_model_name="iris-1"))
    ws.add_endpoint(Endpoint(name="nosig", openapi=None))
    ws.add_pat(SENTINEL_TOKEN)
    ws.add_pat(SENTINEL_USER)
    return ws


def m2m_env(monkeypatch: pytest.MonkeyPatch, ws: WorkspaceStandin) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SENTINEL_SECRET)


@pytest.mark.slow
def test_workspace_operations_at_debug_keep_every_secret_out(debug_logs, ws, registry_uri, monkeypatch) -> None:
    m2m_env(monkeypatch, ws)
    texts: list[str] = []
    # OAuth M2M: signature from the registry, a prediction, a server-side expiry and refresh.
    p = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)
    texts += [repr(p), str(p), repr(p._sender.auth), str(p.get_signature())]
    texts.append(p.predict([ROW]).model_dump_json())
    ws.expire_all()
    texts.append(p.predict([ROW]).model_dump_json())
    assert ws.tokens_issued == 2 and ws.rejected == 1  # a refresh really happened
    # Signature from the endpoint itself, which has none to give.
    q = Predictor.from_endpoint("nosig")
    try:
        texts.append(str(q.get_signature()))
    except Exception as exc:
        texts += texts_of(exc)
    # A user token that works, then one the workspace refuses; a PAT.
    u = p.with_user_token(SENTINEL_USER)
    texts += [repr(u), u.predict([ROW]).model_dump_json()]
    ws.revoked.add(SENTINEL_USER)
    with pytest.raises(AuthenticationError) as info:
        u.predict([ROW])
    texts += texts_of(info.value)
    monkeypatch.delenv("DATABRICKS_CLIENT_ID")
    monkeypatch.delenv("DATABRICKS_CLIENT_SECRET")
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_TOKEN)
    pat = Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri)
    texts += [repr(pat), pat.predict([ROW]).model_dump_json()]
    with pytest.raises(APIStatusError) as info:
        Predictor.from_endpoint("missing", model_uri=IRIS, registry_uri=registry_uri).predict([ROW])
    texts += texts_of(info.value)
    # A wrong client secret: the SDK's error must not carry it.
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SENTINEL_SECRET + "-wrong")
    with pytest.raises(Exception) as info:  # whatever it is, its text is checked
        Predictor.from_endpoint("iris", model_uri=IRIS, registry_uri=registry_uri).predict([ROW])
    texts += texts_of(info.value)
    for pred in (p, q, u, pat):
        pred.close()

    issued = [t for t, exp in ws.tokens.items() if exp != float("inf")]
    assert len(issued) >= 2
    secrets = [SENTINEL_TOKEN, SENTINEL_SECRET, SENTINEL_USER, *issued]
    assert any(t.startswith("databricks") for t in debug_logs.texts)  # the SDK's DEBUG logs were captured
    assert leaks(texts, secrets) == []
    assert leaks(debug_logs.texts, secrets) == []


@pytest.mark.slow
def test_cli_predict_and_schema_output_keeps_secrets_out(ws, registry_uri, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "ARM_", "AZURE_"))}
    env.update({
        "HOME": str(tmp_path), "DATABRICKS_CONFIG_FILE": str(tmp_path / ".databrickscfg"),
        "DATABRICKS_HOST": ws.url, "DATABRICKS_CLIENT_ID": ws.client_id, "DATABRICKS_CLIENT_SECRET": SENTINEL_SECRET,
        "DATABRICKS_DEBUG_HEADERS": "true", "PYTHONPATH": str(ROOT),
    })
    # Every logger at DEBUG in the CLI process too.
    boot = ("import logging, sys; logging.basicConfig(level=logging.DEBUG); "
            "from client.local.cli import main; sys.exit(main())")

    def cli(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", boot, *args], env={**env, **(extra_env or {})}, cwd=str(ROOT),
                              capture_output=True, text=True, timeout=120)

    row = json.dumps([ROW])
    predict = ("predict", "--endpoint", "iris", "--model-uri", IRIS, "--registry-uri", registry_uri, "--json", row)
    invocations: list[tuple[tuple[str, ...], dict[str, str] | None]] = [
        (predict, None),
        (predict, {"DATABRICKS_CLIENT_SECRET": SENTINEL_SECRET + "-wrong"}),
        (("predict", "--endpoint", "missing", *predict[3:]), None),
        (predict, {"DATABRICKS_CLIENT_ID": "", "DATABRICKS_CLIENT_SECRET": "", "DATABRICKS_TOKEN": SENTINEL_TOKEN}),
        (("schema", IRIS, "--registry-uri", registry_uri), None),
    ]
    with ThreadPoolExecutor(len(invocations)) as pool:  # independent processes: run them side by side
        runs = list(pool.map(lambda inv: cli(*inv[0], extra_env=inv[1]), invocations))
    ok, wrong_secret, missing, pat, schema = runs
    assert ok.returncode == 0 and '"predictions"' in ok.stdout, ok.stderr[-2000:]
    assert wrong_secret.returncode != 0 and missing.returncode == 1
    assert pat.returncode == 0, pat.stderr[-2000:]
    assert schema.returncode == 0 and "sepal length (cm)" in schema.stdout
    assert "DEBUG" in ok.stderr  # the CLI really logged at DEBUG
    issued = [t for t, exp in ws.tokens.items() if exp != float("inf")]
    assert issued
    output = [r.stdout for r in runs] + [r.stderr for r in runs]
    assert leaks(output, [SENTINEL_TOKEN, SENTINEL_SECRET, *issued]) == []


# --------------------------------------------------------------------------- plain http


class Counting:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"predictions": [0]})


@pytest.mark.parametrize("url", ["http://example.com/invocations", "http://10.0.0.7:8080/invocations",
                                 "http://[2001:db8::1]/invocations", "http://127.0.0.1.example.com/invocations"])
@pytest.mark.parametrize("credential", ["token", "user_token"])
def test_no_credential_over_plain_http_to_another_host(url: str, credential: str) -> None:
    sent = Counting()
    with pytest.raises(ConfigurationError) as info:
        Predictor.from_endpoint(url=url, http_transport=httpx.MockTransport(sent), **{credential: SENTINEL_TOKEN})
    host = httpx.URL(url).host
    assert host in str(info.value)
    assert SENTINEL_TOKEN not in str(info.value)
    assert sent.requests == []
    # Explicitly allowed: then it is sent.
    p = Predictor.from_endpoint(url=url, http_transport=httpx.MockTransport(sent), allow_insecure_http=True,
                                validate=False, **{credential: SENTINEL_TOKEN})
    p.predict([{"x": 1}])
    p.close()
    assert [r.headers["authorization"] for r in sent.requests] == [f"Bearer {SENTINEL_TOKEN}"]


def test_plain_http_is_fine_to_loopback_or_without_a_credential_and_https_always() -> None:
    for url, kwargs in [
        ("http://127.0.0.1:5000/invocations", {"token": SENTINEL_TOKEN}),
        ("http://localhost:5000/invocations", {"token": SENTINEL_TOKEN}),
        ("http://[::1]:5000/invocations", {"token": SENTINEL_TOKEN}),
        ("http://example.com/invocations", {}),
        ("https://example.com/invocations", {"token": SENTINEL_TOKEN}),
    ]:
        sent = Counting()
        p = Predictor.from_endpoint(url=url, http_transport=httpx.MockTransport(sent), validate=False, **kwargs)
        p.predict([{"x": 1}])
        p.close()
        assert len(sent.requests) == 1, url


def test_switching_to_a_user_token_on_a_plain_http_host_is_refused() -> None:
    sent = Counting()
    p = Predictor.from_endpoint(url="http://example.com/invocations", http_transport=httpx.MockTransport(sent))
    with pytest.raises(ConfigurationError) as info:
        p.with_user_token(SENTINEL_USER)
    assert "example.com" in str(info.value) and SENTINEL_USER not in str(info.value)
    assert sent.requests == []


@pytest.mark.timeout(20)  # without the check first, the SDK would try the host for minutes
@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_plain_http_workspace_host_is_refused_before_anything_is_sent(where: str, monkeypatch) -> None:
    host = "http://10.255.255.1"  # not routable: any attempt to reach it would hang, not fail
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_TOKEN)
    kwargs = {"host": host} if where == "argument" else {}
    if where == "environment":
        monkeypatch.setenv("DATABRICKS_HOST", host)
    with pytest.raises(ConfigurationError, match=r"10\.255\.255\.1") as info:
        Predictor.from_endpoint("iris", **kwargs)
    assert SENTINEL_TOKEN not in str(info.value)


# --------------------------------------------------------------------------- input rows in error texts

ROW_SENTINEL = "ROWSENTINEL-private-note-93d1"


@pytest.mark.slow
def test_server_errors_do_not_relay_the_input_rows(mixed_server: str, debug_logs: Capture) -> None:
    """MLflow's scoring server quotes the whole input in its error; our error text leaves it out."""
    p = Predictor.from_endpoint(url=f"{mixed_server}/invocations", validate=False, batching=False)
    # No "x": the server's parse lets it through, the model's own schema check refuses it, and the
    # server wraps that in "Failed to predict data '<the whole DataFrame>'".
    row: dict[str, Any] = {"f": 1.0, "n": 1, "s": ROW_SENTINEL, "b": True,
                           "t": "2024-01-02T00:00:00", "note": ROW_SENTINEL}
    with pytest.raises(BadRequestError) as info:
        p.predict([row] * 3)
    p.close()
    raw = info.value.response.text if info.value.response is not None else ""
    assert ROW_SENTINEL in raw  # the server did quote the input...
    texts = [str(info.value), repr(info.value), info.value.message]
    assert leaks(texts + debug_logs.texts, [ROW_SENTINEL]) == []  # ...and we did not relay it
    assert "Error" in info.value.message and len(info.value.message) <= 300
