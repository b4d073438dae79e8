"""Request headers for Databricks: a static token, nothing, or a databricks-sdk ``Config``.

``databricks.sdk`` is imported lazily, inside functions, so that direct mode never pays for it.
The SDK has no async API and ``Config.authenticate()`` may block on a token refresh, so it
always runs in ``asyncio.to_thread``. Secrets never appear in ``repr``/``str`` here.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import math
import os
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from .._exceptions import ConfigurationError
from .sync import SingleFlight, run

__all__ = [
    "Auth", "AuthFlow", "NoAuth", "TokenAuth", "WorkspaceAuth", "auth_flow", "bearer_token", "check_secure_url",
    "workspace_auth",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Auth(Protocol):
    """Where request headers come from."""

    async def headers(self) -> dict[str, str]:
        """Fresh auth headers. Never blocks the event loop."""
        ...

    async def refresh(self) -> bool:
        """After an HTTP 401: force a new token if this auth can; ``True`` if it did."""
        ...


class AuthFlow(httpx.Auth):
    """httpx's auth flow over our credentials: their headers on each request; after a 401, one
    refresh and one resend (the token may have aged out between our check and the server's), and a
    second 401 is the answer. Every request of the transport goes through it.

    Subclasses give ``headers()`` and ``refresh()``; :func:`auth_flow` wraps any other :class:`Auth`.
    """

    async def headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def refresh(self) -> bool:
        raise NotImplementedError

    def headers_sync(self) -> dict[str, str]:
        """:meth:`headers` from sync code (the lone sync call's path): through the client's event
        loop, unless a subclass has them at hand."""
        return run(self.headers())

    def refresh_sync(self) -> bool:
        """:meth:`refresh` from sync code, through the client's event loop."""
        return run(self.refresh())

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers.update(await self.headers())
        response = yield request
        if response.status_code == 401 and await self.refresh():
            yield _resend(request, await self.headers())

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # The same flow as async_auth_flow, for httpx.Client (the lone sync call's pool).
        request.headers.update(self.headers_sync())
        response = yield request
        if response.status_code == 401 and self.refresh_sync():
            yield _resend(request, self.headers_sync())


def _resend(request: httpx.Request, headers: dict[str, str]) -> httpx.Request:
    """After a 401 and a refresh: the request again, with the new credentials."""
    log.debug("401 from %s; credentials refreshed, sending once more", request.url)
    # A request of its own, not the first one changed: that one was sent as it was.
    resend = httpx.Request(request.method, request.url, headers=request.headers, content=request.content,
                           extensions=request.extensions)
    resend.headers.update(headers)
    return resend


class _Wrapped(AuthFlow):
    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def headers(self) -> dict[str, str]:
        return await self._auth.headers()

    async def refresh(self) -> bool:
        return await self._auth.refresh()


def auth_flow(auth: Auth) -> AuthFlow:
    """``auth`` as an httpx auth flow (our own classes are one already)."""
    return auth if isinstance(auth, AuthFlow) else _Wrapped(auth)


class NoAuth(AuthFlow):
    """No credentials (a local scoring server)."""

    async def headers(self) -> dict[str, str]:
        return {}

    def headers_sync(self) -> dict[str, str]:
        return {}

    async def refresh(self) -> bool:
        return False

    def refresh_sync(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuth()"


class TokenAuth(AuthFlow):
    """A static bearer token (a PAT, or a user's forwarded token). It cannot be refreshed."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigurationError("TokenAuth needs a non-empty token")
        self._token = token

    async def headers(self) -> dict[str, str]:
        return self.headers_sync()

    def headers_sync(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> bool:
        return False

    def refresh_sync(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    __str__ = __repr__


class WorkspaceAuth(AuthFlow):
    """Headers from a databricks-sdk ``Config`` (PAT, OAuth M2M, profile, App service principal).

    The ``Config`` is built once and reused. ``refresh()`` forces a new OAuth token, single-flight:
    concurrent callers after one 401 share one refresh. ``refresh_count`` counts forced refreshes.
    One instance serves every event loop (the sync portal's, each ``asyncio.run``): its
    single-flights are loop-safe, never ``asyncio.Lock``.
    Only databricks-sdk's public surface is used: ``authenticate()``, ``oauth_token()``,
    ``auth_type`` and ``as_dict()`` of ``Config``.
    """

    def __init__(self, config: Any) -> None:
        self._config = config
        self.host: str = (config.host or "").rstrip("/")
        self.auth_type: str | None = getattr(config, "auth_type", None)
        self._generation = 0
        self.refresh_count = 0
        self._refreshing: SingleFlight[bool] = SingleFlight()
        self._fetching: SingleFlight[dict[str, str]] = SingleFlight()
        self._cached: dict[str, str] | None = None
        self._cached_until = 0.0

    @property
    def config(self) -> Any:
        """The underlying ``databricks.sdk.core.Config`` (a new one after each forced refresh)."""
        return self._config

    def _fresh(self) -> dict[str, str] | None:
        cached = self._cached
        return dict(cached) if cached is not None and time.monotonic() < self._cached_until else None

    async def headers(self) -> dict[str, str]:
        # Why a cache of our own: ``Config.authenticate()`` blocks, so each call costs a thread
        # hop, and the SDK counts a token as expired 40 s early, so one that lives less than
        # that would be fetched again for every request. Half the token's remaining life is safe.
        if (headers := self._fresh()) is not None:
            return headers
        # Single-flight: callers that find the cache stale together share one fetch.
        return dict(await self._fetching.run(self._fetch))

    def headers_sync(self) -> dict[str, str]:
        # The cached token at hand; a fetch goes through the event loop, single-flight as above.
        return self._fresh() or run(self.headers())

    async def _fetch(self) -> dict[str, str]:
        if (cached := self._fresh()) is not None:
            return cached
        headers, lifetime = await asyncio.to_thread(_authenticate, self._config)
        self._keep(headers, lifetime)
        return headers

    def _keep(self, headers: dict[str, str], lifetime: float | None) -> None:
        if lifetime is not None and lifetime > 0:
            self._cached, self._cached_until = dict(headers), time.monotonic() + lifetime / 2

    async def headers_with_generation(self) -> tuple[dict[str, str], int]:
        """Headers plus the refresh generation they belong to; pass it to ``refresh(seen_generation=)``
        so a caller whose 401 came from a token already replaced does not refresh again."""
        gen = self._generation
        return await self.headers(), gen

    async def refresh(self, *, seen_generation: int | None = None) -> bool:
        """Force a new token if the credentials are OAuth; static tokens return ``False``.

        Callers that arrive while a refresh is running share its result rather than starting
        another one.
        """
        gen = self._generation if seen_generation is None else seen_generation
        if self._generation != gen:
            return True  # someone refreshed since this caller's token was issued
        return await self._refreshing.run(self._refresh_now)

    async def _refresh_now(self) -> bool:
        self._cached = None
        fresh = await asyncio.to_thread(_fresh_login, self._config)
        if fresh is None:
            return False
        self._config, headers, lifetime = fresh
        self._keep(headers, lifetime)
        self._generation += 1
        self.refresh_count += 1
        return True

    def __repr__(self) -> str:
        return f"WorkspaceAuth(host={self.host!r}, auth_type={self.auth_type!r})"

    __str__ = __repr__


def bearer_token(auth: Auth) -> str | None:
    """The bearer token ``auth`` sends now, to ship to another process (a pickled Predictor):
    a static token as is, a workspace credential's current access token (never an OAuth client
    secret); ``None`` without credentials. Other credentials cannot travel: ``ConfigurationError``."""
    if isinstance(auth, NoAuth):
        return None
    if isinstance(auth, TokenAuth):
        return auth._token
    if isinstance(auth, WorkspaceAuth):
        header = run(auth.headers()).get("Authorization", "")
        return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
    raise ConfigurationError(f"a Predictor with {type(auth).__name__} credentials cannot be pickled")


#: Credentials that are what they are: a refresh cannot change them.
_STATIC_AUTH_TYPES = ("pat", "basic", "")


#: OAuth credential types whose headers are exactly ``Authorization: <type> <token>`` for the
#: token ``Config.oauth_token()`` returns (databricks-sdk builds them so). For these one SDK call
#: gives the header and its expiry: asking ``authenticate()`` too would fetch a second token when
#: the token lives under the SDK's 40 s margin.
_TOKEN_ONLY_AUTH_TYPES = frozenset({"oauth-m2m", "runtime-oauth", "databricks-cli"})


def _authenticate(config: Any) -> tuple[dict[str, str], float | None]:
    """Headers from ``config`` and how long they stay valid (blocking: run it in a thread)."""
    auth_type = config.auth_type or ""
    if auth_type in _TOKEN_ONLY_AUTH_TYPES:
        try:
            token = config.oauth_token()
        except (ValueError, AttributeError):  # a release whose provider does not expose it
            pass
        else:
            return {"Authorization": f"{token.token_type} {token.access_token}"}, _expires_in(token)
    headers = dict(config.authenticate())
    if auth_type == "pat":
        return headers, math.inf
    try:
        token = config.oauth_token()  # OAuth credentials only; ValueError for the others
    except (ValueError, AttributeError):
        return headers, None
    if headers.get("Authorization") != f"{token.token_type} {token.access_token}":
        return headers, None  # renewed between the two calls: not the token we hold
    return headers, _expires_in(token)


def _expires_in(token: Any) -> float | None:
    """Seconds until a databricks-sdk ``Token`` expires; ``None`` if it does not say."""
    expiry = token.expiry
    if expiry is None:
        return None
    return (expiry - datetime.datetime.now(tz=expiry.tzinfo)).total_seconds()


def _fresh_login(config: Any) -> tuple[Any, dict[str, str], float | None] | None:
    """After a 401: a new ``Config`` from the same settings, logged in anew; ``None`` for a PAT.

    databricks-sdk has no public call that forces a new token (its token source's refresh
    is private and changed between releases). A ``Config`` built from the same settings
    (``as_dict()``: host, auth type, client id, profile, ...) has a token source of its own
    with no token yet, so its first ``authenticate()`` fetches a new one: public API only.
    """
    if (config.auth_type or "") in _STATIC_AUTH_TYPES:
        return None
    fresh = type(config)(**config.as_dict())
    return (fresh, *_authenticate(fresh))


def workspace_auth(
    *,
    host: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    user_token: str | None = None,
) -> WorkspaceAuth:
    """Resolve workspace credentials with databricks-sdk's unified auth.

    ``user_token`` (an App's ``X-Forwarded-Access-Token``) wins over everything else, even when
    the App's service-principal id/secret are in the environment.
    """
    from databricks.sdk.core import Config

    try:
        if user_token:
            resolved_host = host or os.environ.get("DATABRICKS_HOST")
            if not resolved_host:
                raise ConfigurationError("a user token needs a workspace host (host= or DATABRICKS_HOST)")
            config = Config(host=resolved_host, token=user_token, auth_type="pat", debug_headers=False)
        else:
            # Never let DATABRICKS_DEBUG_HEADERS make the SDK log Authorization headers.
            kwargs: dict[str, Any] = {"debug_headers": False}
            if host:
                kwargs["host"] = host
            if token:
                kwargs["token"] = token
                kwargs["auth_type"] = "pat"
            if profile:
                kwargs["profile"] = profile
            config = Config(**kwargs)
    except ConfigurationError:
        raise
    except Exception as exc:  # the SDK raises ValueError with a long, secret-free message
        text = _scrub(str(exc), token, user_token)
        raise ConfigurationError(f"cannot resolve Databricks credentials: {text}") from exc
    if not config.host:
        raise ConfigurationError("no Databricks workspace host: set DATABRICKS_HOST or pass host=")
    return WorkspaceAuth(config)


def check_secure_url(url: str) -> None:
    """Refuse to send a credential over plain http, except to this machine (a local server).

    >>> check_secure_url("http://127.0.0.1:5000/invocations")   # loopback: fine
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":  # https, or a bare host name that the SDK makes https
        return
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    if not loopback:
        raise ConfigurationError(
            f"refusing to send a credential to {parts.scheme}://{host} unencrypted; "
            "use https, or pass allow_insecure_http=True"
        )


def _scrub(text: str, *secrets: str | None) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
