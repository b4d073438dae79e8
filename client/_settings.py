"""The Predictor's settings, written once, and what its parts are handed instead of the Predictor.

:class:`Settings` is the one list of what a Predictor is built with: the constructor, the
factories (``from_endpoint``, ``from_model``) and pickling (``_pickling``) all use it, so a
setting added here travels everywhere. :class:`ModelHandle` is what the chat code gets: the
settings, the transport, the credentials, the model loaded in process, and how to learn the
model's identity; never the Predictor to rummage in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT
from ._exceptions import ConfigurationError
from ._http.batching import Batching
from ._http.transport import RetryConfig, WorkspaceApi

if TYPE_CHECKING:
    from ._direct import DirectModel
    from ._http.auth import Auth
    from ._http.transport import Transport
    from ._types import Signature

__all__ = ["NOT_GIVEN", "Identity", "Learned", "ModelHandle", "Settings", "as_batching", "as_timeout"]


class _NotGiven:
    """Sentinel for "not given", so that ``None`` can mean "off" (no timeout, no budget)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()


def as_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    """A timeout argument as an ``httpx.Timeout``: ``None`` means off; a number caps the connect phase
    at the default's."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:  # None means off
        return httpx.Timeout(None)
    return httpx.Timeout(timeout, connect=min(timeout, DEFAULT_TIMEOUT.connect or timeout))


def as_batching(batching: Batching | bool | None) -> Batching | None:
    """A batching argument as settings: ``True`` the defaults, ``False``/``None`` off."""
    if isinstance(batching, Batching):
        return batching
    return Batching() if batching else None


@dataclass(frozen=True)
class Settings:
    """Everything a Predictor is, minus what belongs to one process (a pool, a loaded model, a
    credential). Frozen: a Predictor's settings never change under a call.

    ``timeout`` and ``batching`` also take the loose forms the factories accept (a number or
    ``None``; ``True``/``False``) and keep them normalised.
    """

    endpoint: str | None = None
    url: str | None = None
    model_uri: str | None = None
    registry_uri: str | None = None
    host: str | None = None
    #: The model is loaded in this process (``from_model``) rather than called over HTTP.
    direct: bool = False
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    max_retries: int = DEFAULT_MAX_RETRIES
    total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT
    validate: bool = True
    batching: Batching | None = field(default_factory=Batching)
    allow_insecure_http: bool = False
    tracing: bool | None = None
    #: An agent deployed as a Databricks App (``from_app``): ``url`` is its Responses API route.
    app: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout", as_timeout(self.timeout))
        object.__setattr__(self, "batching", as_batching(self.batching))
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.direct and self.model_uri is None:
            raise ConfigurationError("a model loaded in process needs its model_uri")

    @property
    def mode(self) -> Literal["endpoint", "direct"]:
        return "direct" if self.direct else "endpoint"

    @property
    def retry(self) -> RetryConfig:
        return RetryConfig(max_retries=self.max_retries, total_timeout=self.total_timeout)

    def for_call(self, timeout: Any = NOT_GIVEN, max_retries: Any = NOT_GIVEN) -> tuple[RetryConfig, httpx.Timeout]:
        """One call's retry settings and timeout: these settings', unless the call gives its own."""
        retry = self.retry if max_retries is NOT_GIVEN else RetryConfig(max_retries, self.total_timeout)
        return retry, (self.timeout if timeout is NOT_GIVEN else as_timeout(timeout))

    @property
    def target(self) -> str:
        """What the Predictor calls, for messages: the model URI in process, else the endpoint or URL."""
        if self.app is not None:
            return f"apps/{self.app}"
        return str(self.model_uri if self.direct else (self.endpoint or self.model_uri or self.url))


@dataclass(frozen=True)
class Identity:
    """What a Predictor learns of its model once: the signature, and the registered version."""

    signature: Signature | None = None
    name: str | None = None
    version: str | None = None
    #: The MLflow run that logged the model version, when known.
    run_id: str | None = None


@dataclass
class Learned:
    """Facts about the model found once and kept; the chat code writes ``chat_kind``."""

    #: ``(kind, chat format)`` as ``client._chat._messages.detect`` found them.
    chat_kind: tuple[str, str | None] | None = None


@dataclass(frozen=True)
class ModelHandle:
    """What the chat code is handed: a Predictor's parts, not the Predictor."""

    settings: Settings
    transport: Transport
    auth: Auth
    #: The model loaded in process (``DirectModel``); ``None`` over HTTP.
    direct: DirectModel | None
    #: The model's signature and version, loaded once (the Predictor's own single flight).
    identity: Callable[[], Awaitable[Identity]]
    #: What is known of the identity now, without loading (empty before the first load).
    known: Callable[[], Identity]
    learned: Learned

    def workspace_api(self) -> WorkspaceApi | None:
        """The workspace's REST API for endpoint lookups; ``None`` without an endpoint on a host."""
        s = self.settings
        if s.endpoint is None or s.host is None:
            return None
        return WorkspaceApi(self.transport, s.host, self.auth, s.retry, s.timeout)
