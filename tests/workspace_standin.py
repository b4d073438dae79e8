"""A small local stand-in for the Databricks workspace routes the client uses.

Routes (wire format as in /work/shared/reference/wire-formats.md and databricks-sdk 0.162):

- ``GET /.well-known/databricks-config``: ``{"oidc_endpoint": "{host}/oidc", "workspace_id": ...}``
- ``GET /oidc/.well-known/oauth-authorization-server``: ``token_endpoint`` etc.
- ``POST /oidc/v1/token``: client-credentials grant with HTTP Basic; counts tokens issued
- ``GET /api/2.0/serving-endpoints/{name}`` and ``.../{name}/openapi`` (the document as given, e.g.
  tests/data/openapi_endpoint_schema.json, written to the documented example's shape)
- serving-endpoint management: ``GET``/``POST /api/2.0/serving-endpoints`` (list, create),
  ``PUT .../{name}/config``, ``PATCH .../{name}/tags``, ``PUT .../{name}/ai-gateway`` (the whole AI
  Gateway config; an enabled inference table needs ``catalog_name`` and ``schema_name``, and must be
  disabled before its catalog, schema or prefix change; the legacy ``auto_capture_config`` is
  refused, as it is since 2026-03-20). An endpoint with an enabled inference table gets one row of
  its documented payload columns per relayed invocation (``payload``, ``served_entities``). A create or
  config update leaves ``config_update`` at ``IN_PROGRESS`` (the new config under
  ``pending_config``) for ``update_polls`` GETs, then settles to ``NOT_UPDATING`` (pending becomes
  ``config``, ``ready`` READY) or, if a served version is in ``broken``, to ``UPDATE_FAILED`` with the
  reason in the pending served entity's ``state.deployment_state_message``. A second update while
  one is in progress gets 409 ``RESOURCE_CONFLICT``.
- ``POST /serving-endpoints/{name}/invocations``: checks the bearer token, picks a served entity by
  the traffic routes (smooth weighted round robin, so 90/10 is exactly 9 of every 10 calls), then
  proxies to its upstream (``upstreams["model/version"]``, ``upstreams["model"]`` or the
  endpoint's ``upstream``; e.g. a real MLflow scoring server) or returns a canned answer. Chat
  endpoints (``task`` set, e.g. ``agent/v1/responses``, upstream MLflow's agent server): a body
  with ``"stream": true`` is relayed as it streams; the ids come back in Model Serving's shape,
  ``databricks_output`` (``databricks_request_id``, and ``trace.info.trace_id`` when the body asked
  ``databricks_options.return_trace``), translated from the agent server's ``metadata.trace_id``
  answer field and ``{"trace_id"}`` stream event.
- AI Gateway inference tables: when an endpoint's ``ai_gateway.inference_table_config`` is
  enabled, every invocation, classic or chat, appends one row to
  ``<catalog>.<schema>.<prefix>_payload`` with the documented columns (:data:`PAYLOAD_COLUMNS`;
  ``request``/``response`` the raw bodies: a chat answer as its client got it, ``databricks_output``
  included; a streamed one, which the documentation says is logged as "the response of all of the
  returned chunks" aggregated without giving the shape, as the JSON array of its ``data:`` events as
  relayed (``[DONE]`` left out), logged when the stream ends; NULL with ``MAX_REQUEST_SIZE_EXCEEDED`` /
  ``MAX_RESPONSE_SIZE_EXCEEDED`` in ``logging_error_codes`` over ``payload_limit`` bytes), and a
  served entity seen for the first time gets its row in ``system.serving.served_entities``.
  Tables live under ``data_dir``: ``a.b.c`` is the directory ``data_dir/a/b/c/`` of JSON-lines
  files, appended to, never rewritten; a local Spark reads one with
  ``spark.read.schema(client.spark.PAYLOAD_SCHEMA).json(str(ws.table_path(name)))``
  (:meth:`WorkspaceStandin.table_path`).
- Unity Catalog lookups: ``GET /api/2.1/unity-catalog/tables/{full_name}`` (``table_id``) and
  ``.../schemas/{full_name}`` (``schema_id``) for the tables and schemas that exist under
  ``data_dir`` (a schema is its directory: :meth:`WorkspaceStandin.create_schema`).
- Data profiling monitors (``/api/data-quality/v1/monitors``: ``POST``; ``GET``, ``PATCH`` with
  ``update_mask``, ``DELETE`` on ``.../{object_type}/{object_id}``): table monitors only, one per
  table, on an existing table, with an existing output schema and a complete ``inference_log``.

- Databricks Apps (agents deployed as Apps): ``GET /api/2.0/apps/{name}`` (``name``, ``url``,
  ``app_status``, ``compute_status``) for an app added with ``add_app(name, upstream)``; its ``url``
  is ``{host}/app/{name}``, standing in for the App's own domain: a bearer OAuth token from
  ``/oidc/v1/token`` is required there (Apps refuse personal access tokens), then the request is
  relayed, streaming, to ``{upstream}/{path}`` (e.g. MLflow's agent server and its ``/responses``).

Run it in its own process (a benchmark's workspace, away from its driver's GIL); it serves until
SIGTERM or Ctrl-C and prints nothing but warnings. The service principal's secret comes from the
environment (``WORKSPACE_STANDIN_CLIENT_SECRET``), never argv, where ``ps`` would show it::

    WORKSPACE_STANDIN_CLIENT_SECRET=... python tests/workspace_standin.py --port 8123 \
        --client-id app-sp --endpoint iris=http://127.0.0.1:5000 \
        [--entity iris=main.default.iris/1] [--openapi iris=openapi.json]

Or use the ``workspace`` fixture (a factory)::

    from tests.workspace_standin import workspace  # noqa: F401  (fixture)

    def test_x(workspace):
        ws = workspace(token_lifetime=2)
        ws.url, ws.client_id, ws.client_secret, ws.tokens_issued
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _ports import free_port

__all__ = ["PAYLOAD_COLUMNS", "Endpoint", "WorkspaceStandin", "workspace"]

#: The AI Gateway payload table's columns in order, as documented (wire-formats.md).
PAYLOAD_COLUMNS = (
    "databricks_request_id", "request_date", "client_request_id", "request_time", "status_code",
    "sampling_fraction", "execution_duration_ms", "request", "response", "logging_error_codes",
    "served_entity_id", "requester",
)


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
    #: ``llm/v1/chat``, ``agent/v1/chat``, ``agent/v2/chat``, ``agent/v1/responses``; classic models: none.
    task: str | None = None
    state: dict[str, str] = field(default_factory=lambda: {"ready": "READY", "config_update": "NOT_UPDATING"})
    #: Set for endpoints created through the API: then ``config``/``pending_config`` are the wire
    #: configs (``served_entities``, ``traffic_config``) and the single entity above is unused.
    managed: bool = False
    config: dict[str, Any] | None = None
    pending_config: dict[str, Any] | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    ai_gateway: dict[str, Any] | None = None
    polls_left: int = 0
    config_version: int = 0
    wrr: dict[str, int] = field(default_factory=dict)

    def active_config(self) -> dict[str, Any] | None:
        if self.managed:
            return self.config
        served = self.served_model_name or f"{self.entity_name.split('.')[-1]}-{self.entity_version}"
        entity = {"name": served, "entity_name": self.entity_name, "entity_version": self.entity_version,
                  "workload_size": "Small", "scale_to_zero_enabled": True}
        return {"served_entities": [entity],
                "traffic_config": {"routes": [{"served_model_name": served, "traffic_percentage": 100}]}}

    def pick(self) -> dict[str, Any] | None:
        """The served entity that answers the next call (smooth weighted round robin)."""
        config = self.active_config() or {}
        entities = {e["name"]: e for e in config.get("served_entities", [])}
        routes = [(_route_name(r), int(r.get("traffic_percentage", 0)))
                  for r in (config.get("traffic_config") or {}).get("routes", [])]
        routes = [(n, w) for n, w in routes if w > 0 and n in entities]
        if not routes:
            return next(iter(entities.values()), None)
        for n, w in routes:
            self.wrr[n] = self.wrr.get(n, 0) + w
        best = max(routes, key=lambda r: self.wrr[r[0]])[0]
        self.wrr[best] -= sum(w for _, w in routes)
        return entities[best]


def _route_name(route: dict[str, Any]) -> str:
    return str(route.get("served_entity_name") or route.get("served_model_name") or "")


def _config_problem(config: Any) -> str | None:
    """Why the workspace would refuse this config (400), or None."""
    if not isinstance(config, dict):
        return "config must be an object"
    entities = config.get("served_entities")
    if not isinstance(entities, list) or not entities:
        return "served_entities must be a non-empty list"
    names = []
    for e in entities:
        if not e.get("entity_name") or not str(e.get("entity_version", "")).isdigit():
            return "each served entity needs entity_name and a numeric entity_version"
        if e.get("workload_size") not in (None, "Small", "Medium", "Large"):
            return f"invalid workload_size {e.get('workload_size')!r}"
        e.setdefault("name", f"{e['entity_name'].split('.')[-1]}-{e['entity_version']}")
        names.append(e["name"])
    if len(set(names)) != len(names):
        return "served entity names must be unique"
    if config.get("auto_capture_config") is not None:
        return "legacy inference tables (auto_capture_config) are no longer supported; use AI Gateway inference tables"
    routes = (config.get("traffic_config") or {}).get("routes")
    if routes is None:
        if len(names) > 1:
            return "traffic_config is required with more than one served entity"
        config["traffic_config"] = {"routes": [{"served_model_name": names[0], "traffic_percentage": 100}]}
        return None
    if any(_route_name(r) not in names for r in routes):
        return "a traffic route names no served entity of this config"
    if sum(int(r.get("traffic_percentage", 0)) for r in routes) != 100:
        return "traffic percentages must sum to 100"
    return None


def _gateway_problem(old: dict[str, Any] | None, new: Any) -> str | None:
    """Why ``PUT .../ai-gateway`` (or a create's ``ai_gateway``) would be refused (400), or None."""
    if not isinstance(new, dict):
        return "ai_gateway must be an object"
    table = new.get("inference_table_config") or {}
    if table.get("enabled") and not (table.get("catalog_name") and table.get("schema_name")):
        return "catalog_name and schema_name are required when enabling inference tables"
    before = (old or {}).get("inference_table_config") or {}
    where = ("catalog_name", "schema_name", "table_name_prefix")
    if before.get("enabled") and table.get("enabled") and any(before.get(k) != table.get(k) for k in where):
        return "disable the inference table first to change its catalog, schema or table prefix"
    return None


class WorkspaceStandin:
    """The server's state; tests read and change it while the server runs."""

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        client_id: str = "sp-client-id",
        client_secret: str | None = None,
        workspace_id: str = "1234567890",
        data_dir: str | Path | None = None,
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
        #: Databricks Apps: name -> the URL its server listens at.
        self.apps: dict[str, str] = {}
        #: GETs that still see ``IN_PROGRESS`` after a create/update.
        self.update_polls = 2
        #: ``"catalog.schema.model/version"`` -> the reason its deployment fails.
        self.broken: dict[str, str] = {}
        #: ``"catalog.schema.model/version"`` or ``"catalog.schema.model"`` -> scoring server URL.
        self.upstreams: dict[str, str] = {}
        #: ``(method, path, body)`` of every management write (POST/PUT/PATCH).
        self.writes: list[tuple[str, str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._lock = threading.Lock()
        #: Where Unity Catalog tables live (see :meth:`table_path`); a temporary directory by default.
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="standin-uc-"))
        #: Seconds since the epoch: the ``request_time`` of logged invocations (tests may set the clock).
        self.clock: Callable[[], float] = time.time
        #: Over this many bytes a request or response is not logged (NULL, with an error code).
        self.payload_limit = 1024 * 1024
        #: token -> who it belongs to (the inference table's ``requester``).
        self.principals: dict[str, str] = {}
        self._served_entity_ids: set[str] = set()
        #: table_id -> the data profiling monitor's JSON (``/api/data-quality/v1/monitors``).
        self.monitors: dict[str, dict[str, Any]] = {}

    def add_pat(self, token: str, principal: str = "user@example.com") -> None:
        self.tokens[token] = float("inf")
        self.principals[token] = principal

    # --- Unity Catalog tables ----------------------------------------------------------------

    def table_path(self, full_name: str) -> Path:
        """The directory holding table ``catalog.schema.table`` (JSON-lines files)."""
        parts = full_name.split(".")
        if len(parts) != 3 or not all(parts) or any(p in (".", "..") or "/" in p for p in parts):
            raise ValueError(f"not a catalog.schema.table name: {full_name!r}")
        return self.data_dir.joinpath(*parts)

    def create_schema(self, full_name: str) -> None:
        """A Unity Catalog schema ``catalog.schema`` (its directory under ``data_dir``)."""
        self.table_path(f"{full_name}._").parent.mkdir(parents=True, exist_ok=True)

    def uc_object(self, kind: str, full_name: str) -> dict[str, Any] | None:
        """What ``GET .../unity-catalog/{tables|schemas}/{full_name}`` answers, or None (404)."""
        parts = full_name.split(".")
        if kind not in ("tables", "schemas"):
            return None
        try:
            path = self.table_path(full_name if kind == "tables" else f"{full_name}._")
        except ValueError:
            return None
        path = path if kind == "tables" else path.parent
        if len(parts) != (3 if kind == "tables" else 2) or not path.is_dir():
            return None
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"uc/{kind}/{full_name}"))
        if kind == "schemas":
            return {"full_name": full_name, "catalog_name": parts[0], "name": parts[1], "schema_id": uid}
        return {"full_name": full_name, "catalog_name": parts[0], "schema_name": parts[1], "name": parts[2],
                "table_type": "MANAGED", "table_id": uid}

    def append_rows(self, full_name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append ``rows`` to a table (created on first write); nothing already there changes."""
        path = self.table_path(full_name)
        text = "".join(json.dumps(r) + "\n" for r in rows)
        with self._lock:
            path.mkdir(parents=True, exist_ok=True)
            with open(path / "part-00000.json", "a", encoding="utf-8") as f:
                f.write(text)

    def read_rows(self, full_name: str) -> list[dict[str, Any]]:
        """A table's rows as written (for tests; Spark reads the same files)."""
        path = self.table_path(full_name)
        # a row being appended meanwhile has no newline yet: whole lines only
        return [json.loads(line) for f in sorted(path.glob("*.json")) for line in f.read_text().split("\n")[:-1]
                if line]

    def log_invocation(self, ep: Endpoint, entity: dict[str, Any], token: str, *, request_id: str, started: float,
                       duration: float, status: int, request: bytes, response: bytes) -> None:
        """One row of the endpoint's inference table, if it has one enabled."""
        table = (ep.ai_gateway or {}).get("inference_table_config") or {}
        if not table.get("enabled"):
            return
        entity_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ep.name}/{entity['name']}/{entity['entity_name']}/"
                                                       f"{entity['entity_version']}"))
        when = datetime.fromtimestamp(started, UTC)
        codes = []

        def text(body: bytes, code: str) -> str | None:
            if len(body) > self.payload_limit:
                codes.append(code)
                return None
            return body.decode("utf-8", errors="replace")

        try:
            client_request_id = json.loads(request).get("client_request_id")
        except (ValueError, AttributeError):
            client_request_id = None
        row = {
            "databricks_request_id": request_id,
            "request_date": when.date().isoformat(),
            "client_request_id": client_request_id if isinstance(client_request_id, str) else None,
            "request_time": when.isoformat().replace("+00:00", "Z"),
            "status_code": status,
            "sampling_fraction": 1.0,
            "execution_duration_ms": round(duration * 1000),
            "request": text(request, "MAX_REQUEST_SIZE_EXCEEDED"),
            "response": text(response, "MAX_RESPONSE_SIZE_EXCEEDED"),
            "logging_error_codes": codes,
            "served_entity_id": entity_id,
            "requester": self.principals.get(token, self.client_id),
        }
        prefix = f"{table['catalog_name']}.{table['schema_name']}.{table.get('table_name_prefix') or ep.name}"
        if entity_id not in self._served_entity_ids:
            self._served_entity_ids.add(entity_id)
            self.append_rows("system.serving.served_entities", [{
                "served_entity_id": entity_id, "endpoint_name": ep.name, "served_entity_name": entity["name"],
                "entity_type": "CUSTOM_MODEL", "entity_name": entity["entity_name"],
                "entity_version": str(entity["entity_version"]), "endpoint_config_version": ep.config_version,
                "change_time": when.isoformat().replace("+00:00", "Z"),
            }])
        self.append_rows(f"{prefix}_payload", [row])

    def add_app(self, name: str, upstream: str) -> None:
        """An App named ``name`` whose server (e.g. MLflow's agent server) listens at ``upstream``."""
        self.apps[name] = upstream

    def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        self.endpoints[endpoint.name] = endpoint
        return endpoint

    def settle(self, ep: Endpoint) -> None:
        """One GET's worth of progress on an in-progress update."""
        if ep.state.get("config_update") != "IN_PROGRESS" or ep.pending_config is None:
            return
        ep.polls_left -= 1
        if ep.polls_left > 0:
            return
        entities = ep.pending_config["served_entities"]
        keys = [f"{e['entity_name']}/{e['entity_version']}" for e in entities]
        failed = [(e, self.broken[k]) for e, k in zip(entities, keys, strict=True) if k in self.broken]
        if failed:
            for e in entities:
                e["state"] = {"deployment": "DEPLOYMENT_ABORTED", "deployment_state_message": "update aborted"}
            for e, reason in failed:
                e["state"] = {"deployment": "DEPLOYMENT_FAILED", "deployment_state_message": reason}
            ep.state = {"ready": "READY" if ep.config else "NOT_READY", "config_update": "UPDATE_FAILED"}
            return
        for e in entities:
            e["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
        ep.config_version += 1
        ep.config = {**ep.pending_config, "config_version": ep.config_version}
        ep.pending_config = None
        ep.wrr.clear()
        ep.state = {"ready": "READY", "config_update": "NOT_UPDATING"}

    def start_update(self, ep: Endpoint, config: dict[str, Any]) -> None:
        for e in config["served_entities"]:
            e["state"] = {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "Creating"}
        ep.pending_config = {**config, "start_time": int(time.time() * 1000)}
        ep.polls_left = self.update_polls
        ep.state = {**ep.state, "config_update": "IN_PROGRESS"}

    def detail(self, ep: Endpoint) -> dict[str, Any]:
        body: dict[str, Any] = {"name": ep.name, "id": "standin-" + ep.name, "state": ep.state, "creator": "standin"}
        if ep.task:
            body["task"] = ep.task
        if (config := ep.active_config()) is not None:
            body["config"] = config
        if ep.pending_config is not None:
            body["pending_config"] = ep.pending_config
        if ep.tags:
            body["tags"] = ep.tags
        if ep.ai_gateway:
            body["ai_gateway"] = ep.ai_gateway
        return body

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
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        # One client relays every classic invocation: a new httpx client per call loads the CA
        # bundle (~20 ms of CPU), a per-call cost a workspace does not have.
        relay_client = httpx.AsyncClient(timeout=60)

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
                self.principals[access] = self.client_id
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
            self.settle(ep)
            return JSONResponse(self.detail(ep))

        async def list_or_create(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            if request.method == "GET":
                return JSONResponse({"endpoints": [self.detail(e) for e in self.endpoints.values()]})
            body = await request.json()
            self.writes.append(("POST", request.url.path, copy.deepcopy(body)))
            name = body.get("name")
            if not name:
                return err(400, "INVALID_PARAMETER_VALUE", "name is required")
            if name in self.endpoints:
                return err(409, "RESOURCE_ALREADY_EXISTS", f"Endpoint with name '{name}' already exists")
            if (problem := _config_problem(body.get("config"))) is not None:
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            if body.get("ai_gateway") is not None and (problem := _gateway_problem(None, body["ai_gateway"])):
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            ep = self.add_endpoint(Endpoint(name=name, managed=True, tags=body.get("tags") or [],
                                            ai_gateway=body.get("ai_gateway"),
                                            state={"ready": "NOT_READY", "config_update": "NOT_UPDATING"}))
            self.start_update(ep, body["config"])
            return JSONResponse(self.detail(ep))

        async def begin_write(request: Request) -> tuple[Any, Endpoint] | Response:
            """Record a management write; the body and the endpoint it names, or an error answer."""
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            body = await request.json()
            self.writes.append((request.method, request.url.path, copy.deepcopy(body)))
            ep = self.endpoints.get(request.path_params["name"])
            if ep is None:
                return err(404, "RESOURCE_DOES_NOT_EXIST", f"endpoint {request.path_params['name']} does not exist")
            return body, ep

        async def put_config(request: Request) -> Response:
            got = await begin_write(request)
            if isinstance(got, Response):
                return got
            body, ep = got
            if ep.state.get("config_update") == "IN_PROGRESS":
                return err(409, "RESOURCE_CONFLICT", f"Endpoint {ep.name} is currently being updated")
            if (problem := _config_problem(body)) is not None:
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            if not ep.managed:  # a hand-added endpoint becomes an API-managed one
                ep.config, ep.managed = ep.active_config(), True
            self.start_update(ep, body)
            return JSONResponse(self.detail(ep))

        async def patch_tags(request: Request) -> Response:
            got = await begin_write(request)
            if isinstance(got, Response):
                return got
            body, ep = got
            drop = set(body.get("delete_tags") or []) | {t["key"] for t in body.get("add_tags") or []}
            ep.tags = [t for t in ep.tags if t["key"] not in drop] + list(body.get("add_tags") or [])
            return JSONResponse({"tags": ep.tags})

        async def put_ai_gateway(request: Request) -> Response:
            got = await begin_write(request)
            if isinstance(got, Response):
                return got
            body, ep = got
            if (problem := _gateway_problem(ep.ai_gateway, body)) is not None:
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            ep.ai_gateway = body or None  # the PUT replaces the whole AI Gateway config
            return JSONResponse(body)

        async def uc_get(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            kind, name = request.path_params["kind"], request.path_params["name"]
            found = self.uc_object(kind, name)
            if found is None:
                what = "Table" if kind == "tables" else "Schema"
                return err(404, f"{what.upper()}_DOES_NOT_EXIST", f"{what} '{name}' does not exist.")
            return JSONResponse(found)

        def monitor_problem(body: Any) -> str | None:
            cfg = body.get("data_profiling_config") if isinstance(body, dict) else None
            if not isinstance(cfg, dict):
                return "data_profiling_config is required"
            log = cfg.get("inference_log") or {}
            need = ("problem_type", "timestamp_column", "granularities", "prediction_column", "model_id_column")
            if missing := [k for k in need if not log.get(k)]:
                return f"inference_log lacks {', '.join(missing)}"
            if not any((self.uc_object("schemas", f"{d.parent.name}.{d.name}") or {}).get("schema_id")
                       == cfg.get("output_schema_id") for d in self.data_dir.glob("*/*") if d.is_dir()):
                return f"output schema {cfg.get('output_schema_id')} does not exist"
            return None

        def table_of(table_id: str) -> str | None:
            for d in self.data_dir.glob("*/*/*"):
                name = ".".join(d.relative_to(self.data_dir).parts)
                if d.is_dir() and (self.uc_object("tables", name) or {}).get("table_id") == table_id:
                    return name
            return None

        async def create_monitor(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            body = await request.json()
            self.writes.append(("POST", request.url.path, copy.deepcopy(body)))
            if body.get("object_type") != "table":
                return err(400, "INVALID_PARAMETER_VALUE", "only table monitors are supported here")
            table = table_of(str(body.get("object_id")))
            if table is None:
                return err(404, "NOT_FOUND", f"table {body.get('object_id')} does not exist")
            if body["object_id"] in self.monitors:
                return err(409, "RESOURCE_ALREADY_EXISTS", f"a monitor already exists on {table}")
            if (problem := monitor_problem(body)) is not None:
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            cfg = body["data_profiling_config"]
            cfg.update(status="DATA_PROFILING_STATUS_ACTIVE", monitored_table_name=table, monitor_version=1,
                       profile_metrics_table_name=f"{table}_profile_metrics",
                       drift_metrics_table_name=f"{table}_drift_metrics")
            self.monitors[body["object_id"]] = body
            return JSONResponse(body)

        async def one_monitor(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            kind, oid = request.path_params["kind"], request.path_params["oid"]
            monitor = self.monitors.get(oid) if kind == "table" else None
            if monitor is None:
                return err(404, "NOT_FOUND", f"no monitor on {kind} {oid}")
            if request.method == "GET":
                return JSONResponse(monitor)
            if request.method == "DELETE":
                self.writes.append(("DELETE", request.url.path, None))
                del self.monitors[oid]
                return JSONResponse({})
            body = await request.json()
            self.writes.append(("PATCH", request.url.path, copy.deepcopy(body)))
            mask = [m for m in request.query_params.get("update_mask", "").split(",") if m]
            if not mask:
                return err(400, "INVALID_PARAMETER_VALUE", "update_mask is required")
            updated = copy.deepcopy(monitor)
            for path in mask:  # each masked field takes the body's value (absent: cleared)
                *parents, leaf = path.split(".")
                src, dst = body, updated
                for key in parents:
                    src, dst = (src or {}).get(key), dst.setdefault(key, {})
                if isinstance(src, dict) and leaf in src:
                    dst[leaf] = src[leaf]
                else:
                    dst.pop(leaf, None)
            if (problem := monitor_problem(updated)) is not None:
                return err(400, "INVALID_PARAMETER_VALUE", problem)
            updated["data_profiling_config"]["monitor_version"] += 1
            self.monitors[oid] = updated
            return JSONResponse(updated)

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
            entity = ep.pick()
            if entity is None:
                return err(503, "TEMPORARILY_UNAVAILABLE", f"endpoint {ep.name} is not ready")
            self.invocations += 1
            served = entity["name"]
            headers = {"served-model-name": served, "x-request-id": str(uuid.uuid4())}
            upstream = (
                self.upstreams.get(f"{entity['entity_name']}/{entity['entity_version']}")
                or self.upstreams.get(entity["entity_name"])
                or ep.upstream
            )
            if upstream and ep.task:
                return await relay_chat(request, ep, entity, upstream, headers)
            started, t0 = self.clock(), time.perf_counter()
            body = await request.body()
            if upstream:
                up = await relay_client.post(
                    f"{upstream.rstrip('/')}/invocations",
                    content=body,
                    headers={"content-type": request.headers.get("content-type", "application/json")},
                )
                answer = Response(
                    up.content, status_code=up.status_code, media_type=up.headers.get("content-type"), headers=headers
                )
            else:
                answer = JSONResponse(ep.canned, headers=headers)
            self.log_invocation(ep, entity, bearer(request) or "", request_id=headers["x-request-id"], started=started,
                                duration=time.perf_counter() - t0, status=answer.status_code, request=body,
                                response=bytes(answer.body))
            return answer

        async def relay_chat(request: Request, ep: Endpoint, entity: dict[str, Any], upstream: str,
                             headers: dict[str, str]) -> Response:
            started, t0 = self.clock(), time.perf_counter()
            body = await request.body()
            asked = json.loads(body or b"{}")
            want_trace = bool((asked.get("databricks_options") or {}).get("return_trace"))
            request_id = headers["x-request-id"]
            token = bearer(request) or ""

            def log(status: int, response: bytes) -> None:
                self.log_invocation(ep, entity, token, request_id=request_id, started=started,
                                    duration=time.perf_counter() - t0, status=status, request=body, response=response)

            def ids(trace_id: str | None) -> dict[str, Any]:
                out: dict[str, Any] = {"databricks_request_id": request_id}
                if trace_id and want_trace:
                    out["trace"] = {"info": {"trace_id": trace_id}}
                return out

            client = httpx.AsyncClient(timeout=60)
            up = await client.send(client.build_request(
                "POST", f"{upstream.rstrip('/')}/invocations", content=body,
                headers={"content-type": "application/json", "x-mlflow-return-trace-id": str(want_trace).lower()},
            ), stream=True)
            if not asked.get("stream") or up.status_code != 200:
                content = await up.aread()
                await up.aclose()
                await client.aclose()
                if up.status_code != 200:
                    log(up.status_code, content)
                    return Response(content, status_code=up.status_code, media_type=up.headers.get("content-type"))
                answer = json.loads(content)
                answer["databricks_output"] = ids((answer.pop("metadata", None) or {}).get("trace_id"))
                whole = JSONResponse(answer, headers=headers)
                log(200, bytes(whole.body))
                return whole

            async def relay() -> Any:
                events: list[Any] = []  # what the inference table logs of a stream: its events, as relayed
                try:
                    async for line in up.aiter_lines():
                        data = line.removeprefix("data: ")
                        if line.startswith("data: ") and data.startswith("{") and '"trace_id"' in data:
                            event = json.loads(data)
                            if set(event) == {"trace_id"}:  # the agent server's, in Model Serving's shape
                                line = "data: " + json.dumps({"databricks_output": ids(event["trace_id"])})
                        if line.startswith("data: ") and line != "data: [DONE]":
                            try:
                                events.append(json.loads(line.removeprefix("data: ")))
                            except ValueError:
                                events.append(line.removeprefix("data: "))
                        yield line + "\n"
                finally:
                    log(200, json.dumps(events).encode())  # first: the awaits below may be cancelled
                    await up.aclose()
                    await client.aclose()

            return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)

        async def get_app(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            name = request.path_params["name"]
            if name not in self.apps:
                return err(404, "RESOURCE_DOES_NOT_EXIST", f"App with name {name} does not exist.")
            return JSONResponse({"name": name, "url": f"{self.url}/app/{name}", "app_status": {"state": "RUNNING"},
                                 "compute_status": {"state": "ACTIVE"}})

        async def app_request(request: Request) -> Response:
            await record(request)
            if (bad := check(request)) is not None:
                return bad
            if self.tokens.get(bearer(request) or "") == float("inf"):  # a PAT: Apps take OAuth tokens only
                self.rejected += 1
                return err(401, "UNAUTHENTICATED", "Databricks Apps accept OAuth tokens only")
            upstream = self.apps.get(request.path_params["name"])
            if upstream is None:
                return Response("app not found", status_code=404)
            client = httpx.AsyncClient(timeout=60)
            up = await client.send(client.build_request(
                request.method, f"{upstream.rstrip('/')}/{request.path_params['path']}", content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")
                         or k.lower().startswith("x-mlflow-")}), stream=True)

            async def relay() -> Any:
                try:
                    async for chunk in up.aiter_raw():
                        yield chunk
                finally:
                    await up.aclose()
                    await client.aclose()

            return StreamingResponse(relay(), status_code=up.status_code, media_type=up.headers.get("content-type"))

        return Starlette(
            routes=[
                Route("/.well-known/databricks-config", databricks_config),
                Route("/oidc/.well-known/oauth-authorization-server", oauth_server),
                Route("/oidc/v1/token", token, methods=["POST"]),
                Route("/api/2.0/serving-endpoints", list_or_create, methods=["GET", "POST"]),
                Route("/api/2.0/serving-endpoints/{name}", get_endpoint),
                Route("/api/2.0/serving-endpoints/{name}/config", put_config, methods=["PUT"]),
                Route("/api/2.0/serving-endpoints/{name}/tags", patch_tags, methods=["PATCH"]),
                Route("/api/2.0/serving-endpoints/{name}/ai-gateway", put_ai_gateway, methods=["PUT"]),
                Route("/api/2.0/serving-endpoints/{name}/openapi", get_openapi),
                Route("/api/2.1/unity-catalog/{kind:str}/{name}", uc_get),
                Route("/api/data-quality/v1/monitors", create_monitor, methods=["POST"]),
                Route("/api/data-quality/v1/monitors/{kind}/{oid}", one_monitor, methods=["GET", "PATCH", "DELETE"]),
                Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
                Route("/api/2.0/apps/{name}", get_app),
                Route("/app/{name}/{path:path}", app_request, methods=["GET", "POST"]),
            ]
        )


class _Server:
    def __init__(self, standin: WorkspaceStandin) -> None:
        import uvicorn

        self.port = free_port()
        standin.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(standin.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="workspace-standin")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60  # a thread in this process: seconds, but a loaded machine's
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("workspace stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Factory: ``workspace(token_lifetime=..., ...)`` starts a stand-in and returns its state."""
    servers: list[_Server] = []

    def start(**kwargs: Any) -> WorkspaceStandin:
        kwargs.setdefault("data_dir", tmp_path_factory.mktemp("standin-uc"))
        standin = WorkspaceStandin(**kwargs)
        server = _Server(standin)
        server.start()
        servers.append(server)
        return standin

    yield start
    for s in servers:
        s.stop()


#: Where ``main`` reads the service principal's secret (not argv: ``ps`` shows every argument).
SECRET_ENV = "WORKSPACE_STANDIN_CLIENT_SECRET"


def _by_name(ap: argparse.ArgumentParser, option: str, specs: Sequence[str]) -> dict[str, str]:
    """``["iris=value", ...]`` -> ``{"iris": "value"}``; a spec without ``=`` is a usage error."""
    out = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        if not (name and eq and value):
            ap.error(f"{option} {spec!r}: expected NAME=VALUE")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a stand-in on ``127.0.0.1:--port`` until SIGTERM/SIGINT (then exit 0)."""
    import uvicorn

    ap = argparse.ArgumentParser(description="The workspace stand-in in its own process (until SIGTERM).")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", default="sp-client-id", help="the service principal's OAuth client id")
    ap.add_argument("--endpoint", action="append", default=[], metavar="NAME=UPSTREAM",
                    help="a serving endpoint relaying invocations to UPSTREAM/invocations (repeatable)")
    ap.add_argument("--entity", action="append", default=[], metavar="NAME=CATALOG.SCHEMA.MODEL/VERSION",
                    help="the model version an endpoint serves")
    ap.add_argument("--openapi", action="append", default=[], metavar="NAME=FILE",
                    help="an endpoint's /openapi document (JSON file); else that route answers 404")
    args = ap.parse_args(argv)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        ap.error(f"set {SECRET_ENV} to the service principal's client secret")
    upstreams = _by_name(ap, "--endpoint", args.endpoint)
    entities = _by_name(ap, "--entity", args.entity)
    openapis = _by_name(ap, "--openapi", args.openapi)
    if unknown := (set(entities) | set(openapis)) - set(upstreams):
        ap.error(f"--entity/--openapi name no --endpoint: {sorted(unknown)}")
    ws = WorkspaceStandin(client_id=args.client_id, client_secret=secret)
    ws.url = f"http://127.0.0.1:{args.port}"
    for name, upstream in upstreams.items():
        entity, _, version = entities.get(name, "main.default.tiny/1").partition("/")
        openapi = json.loads(Path(openapis[name]).read_text()) if name in openapis else None
        ws.add_endpoint(Endpoint(name, entity_name=entity, entity_version=version or "1", openapi=openapi,
                                 upstream=upstream))
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found: make that
    # one a plain exit, so a terminated stand-in ends with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(ws.app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
