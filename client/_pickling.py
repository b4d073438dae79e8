"""A Predictor pickles as its settings: what another process (a Spark executor) needs to build
its own, never an open connection, a lock, a loaded model or a databricks-sdk ``Config``.

Credentials: an endpoint Predictor's bearer token travels inside the pickled settings, in
memory, wrapped in :class:`Secret` (its repr is ``***``). A workspace credential ships as the
bearer token it currently yields (a PAT as is; for OAuth, the short-lived access token minted
on the driver, never the client secret). This module never writes the pickle anywhere; the
caller decides where the bytes go (Spark keeps a small task closure in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._http.batching import Batching
    from ._predictor import Predictor
    from ._types import Signature

__all__ = ["PredictorSettings", "Secret", "rebuild", "settings_of"]


class Secret:
    """A string that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


@dataclass(frozen=True)
class PredictorSettings:
    """Everything a Predictor is, minus what belongs to one process."""

    mode: Literal["endpoint", "direct"]
    endpoint: str | None
    url: str | None
    model_uri: str | None
    registry_uri: str | None
    host: str | None
    token: Secret | None
    timeout: dict[str, float | None]
    max_retries: int
    total_timeout: float | None
    validate: bool
    batching: Batching | None
    allow_insecure_http: bool
    #: Endpoint mode: the signature, once fetched, travels too, so the new Predictor does not
    #: ask the registry again (an executor may not even reach it); with the version it came from.
    signature: Signature | None = None
    signature_loaded: bool = False
    model_name: str | None = None
    model_version: str | None = None

    def with_batching(self, batching: Batching | None) -> PredictorSettings:
        return replace(self, batching=batching)


def settings_of(p: Predictor) -> PredictorSettings:
    """The settings ``p`` was built with (a workspace credential resolved to its current token)."""
    from ._http.auth import NoAuth, TokenAuth, WorkspaceAuth

    token: Secret | None = None
    auth = p._sender.auth
    if isinstance(auth, TokenAuth):
        token = Secret(auth._token)
    elif isinstance(auth, WorkspaceAuth):
        from ._http import sync as _sync

        header = _sync.run(auth.headers()).get("Authorization", "")
        token = Secret(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
    elif not isinstance(auth, NoAuth):
        from ._exceptions import ConfigurationError

        raise ConfigurationError(f"a Predictor with {type(auth).__name__} credentials cannot be pickled")
    return PredictorSettings(
        mode=p.mode,
        endpoint=p.endpoint,
        url=p.url,
        model_uri=p.model_uri,
        registry_uri=p.registry_uri,
        host=p.host,
        token=token,
        timeout=p._timeout.as_dict(),
        max_retries=p._retry.max_retries,
        total_timeout=p._retry.total_timeout,
        validate=p.validate,
        batching=p._sender.batching,
        allow_insecure_http=p._allow_insecure_http,
        # Direct mode reads it from the model it loads anyway.
        signature=p._signature if p.mode == "endpoint" else None,
        signature_loaded=p._signature_loaded and p.mode == "endpoint",
        model_name=p.model_name,
        model_version=p.model_version,
    )


def rebuild(s: PredictorSettings) -> Predictor:
    """A new Predictor with settings ``s``: its own connection pool, its model loaded on first use."""
    import httpx

    from ._http.auth import Auth, NoAuth, TokenAuth
    from ._predictor import Predictor

    batching: Batching | bool = s.batching if s.batching is not None else False
    if s.mode == "direct":
        assert s.model_uri is not None
        return Predictor.from_model(s.model_uri, registry_uri=s.registry_uri, validate=s.validate, batching=batching)
    auth: Auth = TokenAuth(s.token.get()) if s.token is not None else NoAuth()
    p = Predictor(
        endpoint=s.endpoint,
        url=s.url,
        model_uri=s.model_uri,
        registry_uri=s.registry_uri,
        host=s.host,
        auth=auth,
        timeout=httpx.Timeout(**s.timeout),
        max_retries=s.max_retries,
        total_timeout=s.total_timeout,
        validate=s.validate,
        batching=batching,
        allow_insecure_http=s.allow_insecure_http,
    )
    if s.signature_loaded:
        p._signature, p._signature_loaded = s.signature, True
        p._model_name, p._model_version = s.model_name, s.model_version
    return p
