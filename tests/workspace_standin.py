"""A small local stand-in for the Databricks workspace routes the client uses.

Routes (wire format as in /work/shared/reference/wire-formats.md and databricks-sdk 0.162):

- ``GET /.well-known/databricks-config``: ``{"oidc_endpoint": "{host}/oidc", "workspace_id": ...}``
- ``GET /oidc/.well-known/oauth-authorization-server``: ``token_endpoint`` etc.
- ``POST /oidc/v1/token``: client-credentials grant with HTTP Basic; counts tokens issued
- ``GET /api/2.0/serving-endpoints/{name}`` and ``.../{name}/openapi``
- ``POST /serving-endpoints/{name}/invocations``: checks the bearer token, then proxies to
  ``upstream`` (e.g. a real MLflow scoring server) or returns a canned answer

Use the ``workspace`` fixture (a factory)::

    from tests.workspace_standin import workspace  # noqa: F401  (fixture)

    def test_x(workspace):
        ws = workspace(token_lifetime=2)
        ws.url, ws.client_id, ws.client_secret, ws.tokens_issued
"""

from __future__ import annotations

import base64
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

__all__ = ["Endpoint", "WorkspaceStandin", "workspace"]


@dataclass
class Endpoint:
    """One serving endpoint the stand-in knows."""

    name: str
    entity_name: str = "main.default.tiny"
    entity_version: str = "1"
    #: The ``/openapi`` document, or ``None`` for a 404.
    openapi: dict[str, Any] | None = None
    #: Proxy invocations to ``{upstream}/invocations``; else answer ``canned``.
    upstream: str | None = None
    canned: Any = field(default_factory=lambda: {"predictions": [0]})
    served_model_name: str | None = None
    state: dict[str, str] = field(default_factory=lambda: {"ready": "READY", "config_update": "NOT_UPDATING"})


class WorkspaceStandin:
    """The server's state; tests read and change it while the server runs."""

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        client_id: str = "sp-client-id",
        client_secret: str | None = None,
        workspace_id: str = "1234567890",
    ) -> None:
        self.token_lifetime = token_lifetime
        self.client_id = client_id
        self.client_secret = client_secret or "sp-secret-" + secrets.token_hex(8)
        self.workspace_id = workspace_id
        #: token -> expiry (monotonic seconds); PATs are added with ``add_pat``.
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.token_requests = 0
        self.bad_credentials = 0
        self.invocations = 0
        self.rejected = 0
        #: Tokens the next invocation should refuse with 401 even if valid (forced expiry).
        self.revoked: set[str] = set()
        self.endpoints: dict[str, Endpoint] = {}
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._lock = threading.Lock()

    def add_pat(self, token: str) -> None:
        self.tokens[token] = float("inf")

    def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        self.endpoints[endpoint.name] = endpoint
        return endpoint

    def expire_all(self) -> None:
        """Make every OAuth token issued so far answer 401."""
        with self._lock:
            for t, exp in list(self.tokens.items()):
                if exp != float("inf"):
                    self.tokens[t] = 0.0

    def token_valid(self, token: str) -> bool:
        exp = self.tokens.get(token)
        return exp is not None and exp > time.monotonic() and token not in self.revoked

    # --- the app ------------------------------------------------------------------------

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def err(status: int, code: str, message: str) -> JSONResponse:
            return JSONResponse({"error_code": code, "message": message}, status_code=status)

        def bearer(request: Request) -> str | None:
            h = request.headers.get("authorization", "")
            return h[7:] if h.lower().startswith("bearer ") else None

        def check(request: Request) -> Response | None:
            tok = bearer(request)
            if tok is None:
                return err(401, "UNAUTHENTICATED", "missing bearer token")
            if not self.token_valid(tok):
                self.rejected += 1
                return err(401, "UNAUTHENTICATED", "invalid or expired access token")
            return None

        async def record(request: Request) -> None:
            self.requests.append((request.method, request.url.path))

        async def databricks_config(request: Request) -> Response:
            await record(request)
            return JSONResponse({"oidc_endpoint": f"{self.url}/oidc", "workspace_id": self.workspace_id})

        async def oauth_server(request: Request) -> Response:
            await record(request)
            return JSONResponse(
                {
                    "issuer": f"{self.url}/oidc",
                    "authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                    "token_endpoint": f"{self.url}/oidc/v1/token",
                    "jwks_uri": f"{self.url}/oidc/jwks.json",
                    "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
                    "scopes_supported": ["all-apis", "offline_access"],
                }
            )

        async def token(request: Request) -> Response:
            await record(request)
            self.token_requests += 1
            form = await request.form()
            cid, csecret = None, None
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    cid, _, csecret = base64.b64decode(auth[6:]).decode().partition(":")
                except Exception:
                    cid = None
            else:
                cid, csecret = form.get("client_id"), form.get("client_secret")
            if form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if cid != self.client_id or csecret != self.client_secret:
                self.bad_credentials += 1
                return JSONResponse(
                    {"error": "invalid_client", "error_description": "Client authentication failed"}, status_code=401
                )
            if "all-apis" not in str(form.get("scope", "")).split():
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            access = "standin-oauth-" + secrets.token_hex(12)
            with self._lock:
                self.tokens[access] = time.monotonic() + self.token_lifetime
                self.tokens_issued += 1
            return JSONResponse(
                {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime, "scope": "all-apis"}
            )

        async def get_endpoint(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            ep = self.endpoints.get(request.path_params["name"])
            if ep is None:
                return err(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Serving endpoint {request.path_params['name']!r} does not exist"
                )
            served_name = ep.served_model_name or f"{ep.entity_name.split('.')[-1]}-{ep.entity_version}"
            return JSONResponse(
                {
                    "name": ep.name,
                    "id": "standin-" + ep.name,
                    "state": ep.state,
                    "config": {
                        "served_entities": [
                            {
                                "name": served_name,
                                "entity_name": ep.entity_name,
                                "entity_version": ep.entity_version,
                                "workload_size": "Small",
                                "scale_to_zero_enabled": True,
                            }
                        ],
                        "traffic_config": {"routes": [{"served_model_name": served_name, "traffic_percentage": 100}]},
                    },
                }
            )

        async def get_openapi(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            ep = self.endpoints.get(request.path_params["name"])
            if ep is None or ep.openapi is None:
                return err(404, "RESOURCE_DOES_NOT_EXIST", "no openapi document for this endpoint")
            return JSONResponse(ep.openapi)

        async def invocations(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            ep = self.endpoints.get(request.path_params["name"])
            if ep is None:
                return err(404, "RESOURCE_DOES_NOT_EXIST", "endpoint does not exist")
            self.invocations += 1
            served = ep.served_model_name or f"{ep.entity_name.split('.')[-1]}-{ep.entity_version}"
            headers = {"served-model-name": served, "x-request-id": secrets.token_hex(8)}
            if ep.upstream:
                async with httpx.AsyncClient(timeout=60) as client:
                    up = await client.post(
                        f"{ep.upstream.rstrip('/')}/invocations",
                        content=await request.body(),
                        headers={"content-type": request.headers.get("content-type", "application/json")},
                    )
                return Response(
                    up.content, status_code=up.status_code, media_type=up.headers.get("content-type"), headers=headers
                )
            return JSONResponse(ep.canned, headers=headers)

        return Starlette(
            routes=[
                Route("/.well-known/databricks-config", databricks_config),
                Route("/oidc/.well-known/oauth-authorization-server", oauth_server),
                Route("/oidc/v1/token", token, methods=["POST"]),
                Route("/api/2.0/serving-endpoints/{name}", get_endpoint),
                Route("/api/2.0/serving-endpoints/{name}/openapi", get_openapi),
                Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
            ]
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, standin: WorkspaceStandin) -> None:
        import uvicorn

        self.port = _free_port()
        standin.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(standin.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="workspace-standin")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("workspace stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture
def workspace() -> Iterator[Any]:
    """Factory: ``workspace(token_lifetime=..., ...)`` starts a stand-in and returns its state."""
    servers: list[_Server] = []

    def start(**kwargs: Any) -> WorkspaceStandin:
        standin = WorkspaceStandin(**kwargs)
        server = _Server(standin)
        server.start()
        servers.append(server)
        return standin

    yield start
    for s in servers:
        s.stop()
