"""Request headers for Databricks: a static token, nothing, or a databricks-sdk ``Config``.

``databricks.sdk`` is imported lazily, inside functions, so that direct mode never pays for it.
The SDK has no async API and ``Config.authenticate()`` may block on a token refresh, so it
always runs in ``asyncio.to_thread``. Secrets never appear in ``repr``/``str`` here.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import math
import os
import time
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError

__all__ = ["Auth", "NoAuth", "TokenAuth", "WorkspaceAuth", "check_secure_url", "workspace_auth"]


@runtime_checkable
class Auth(Protocol):
    """Where request headers come from."""

    async def headers(self) -> dict[str, str]:
        """Fresh auth headers. Never blocks the event loop."""
        ...

    async def refresh(self) -> bool:
        """After an HTTP 401: force a new token if this auth can; ``True`` if it did."""
        ...


class NoAuth:
    """No credentials (a local scoring server)."""

    async def headers(self) -> dict[str, str]:
        return {}

    async def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuth()"


class TokenAuth:
    """A static bearer token (a PAT, or a user's forwarded token). It cannot be refreshed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigurationError("TokenAuth needs a non-empty token")
        self._token = token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    __str__ = __repr__


class WorkspaceAuth:
    """Headers from a databricks-sdk ``Config`` (PAT, OAuth M2M, profile, App service principal).

    The ``Config`` is built once and reused. ``refresh()`` forces a new OAuth token, single-flight:
    concurrent callers after one 401 share one refresh. ``refresh_count`` counts forced refreshes.
    """

    def __init__(self, config: Any) -> None:
        self._config = config
        self.host: str = (config.host or "").rstrip("/")
        self.auth_type: str | None = getattr(config, "auth_type", None)
        self._lock = asyncio.Lock()
        self._generation = 0
        self.refresh_count = 0
        self._headers_lock = asyncio.Lock()
        self._cached: dict[str, str] | None = None
        self._cached_until = 0.0

    @property
    def config(self) -> Any:
        """The underlying ``databricks.sdk.core.Config``."""
        return self._config

    async def headers(self) -> dict[str, str]:
        # Why a cache of our own: ``Config.authenticate()`` blocks, so each call costs a thread
        # hop, and the SDK counts a token as expired 40 s early, so one that lives less than
        # that would be fetched again for every request. Half the token's remaining life is safe.
        if self._cached is not None and time.monotonic() < self._cached_until:
            return dict(self._cached)
        # Single-flight: callers that find the cache stale together share one fetch.
        async with self._headers_lock:
            if self._cached is not None and time.monotonic() < self._cached_until:
                return dict(self._cached)
            headers = dict(await asyncio.to_thread(self._config.authenticate))
            lifetime = _remaining_lifetime(self._config)
            if lifetime is not None and lifetime > 0:
                self._cached, self._cached_until = headers, time.monotonic() + lifetime / 2
            return dict(headers)

    async def headers_with_generation(self) -> tuple[dict[str, str], int]:
        """Headers plus the refresh generation they belong to; pass it to ``refresh(seen_generation=)``
        so a caller whose 401 came from a token already replaced does not refresh again."""
        gen = self._generation
        return await self.headers(), gen

    async def refresh(self, *, seen_generation: int | None = None) -> bool:
        """Force a new token if the credentials are OAuth; static tokens return ``False``.

        Callers that arrive while a refresh is running wait for it and share its result
        rather than starting another one.
        """
        gen = self._generation if seen_generation is None else seen_generation
        async with self._lock:
            if self._generation != gen:
                return True  # someone refreshed while we waited
            self._cached = None
            done = await asyncio.to_thread(_force_refresh, self._config)
            if done:
                self._generation += 1
                self.refresh_count += 1
            return done

    def __repr__(self) -> str:
        return f"WorkspaceAuth(host={self.host!r}, auth_type={self.auth_type!r})"

    __str__ = __repr__


def _force_refresh(config: Any) -> bool:
    """Fetch a new OAuth token now, replacing the SDK's cached one.

    Returns ``False`` for static credentials (PAT), which cannot be refreshed.
    """
    if (config.auth_type or "") in ("pat", "basic", ""):
        return False
    token_source = _find_token_source(getattr(config, "_header_factory", None))
    if token_source is None:
        return False
    # databricks-sdk ``Refreshable``: ``_update_token`` under its lock is what ``token()`` does.
    with token_source._lock:
        token_source._update_token(token_source.refresh())
    return True


def _remaining_lifetime(config: Any) -> float | None:
    """Seconds the current credential stays valid: ``inf`` for a PAT, ``None`` if unknown."""
    if (config.auth_type or "") == "pat":
        return math.inf
    source = _find_token_source(getattr(config, "_header_factory", None))
    expiry = getattr(getattr(source, "_token", None), "expiry", None)
    if expiry is None:
        return None
    return (expiry - datetime.datetime.now(tz=expiry.tzinfo)).total_seconds()


def _find_token_source(provider: Any) -> Any | None:
    """Find the SDK's ``Refreshable`` token source behind a header factory (closures/wrappers)."""
    from databricks.sdk.oauth import Refreshable

    if provider is None:
        return None
    seen: set[int] = set()
    stack = [provider]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Refreshable):
            return obj
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                stack.append(cell.cell_contents)
            except ValueError:
                continue
        if not callable(obj):
            continue
        for value in (getattr(obj, "__dict__", None) or {}).values():
            if callable(value) or isinstance(value, Refreshable):
                stack.append(value)
    return None


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
