"""``Predictor``: one typed client for a model, over a serving endpoint or loaded in process."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT
from ._exceptions import ConfigurationError
from ._http import sync as _sync
from ._http.auth import Auth, NoAuth, TokenAuth, check_secure_url
from ._http.batching import Batching
from ._http.sending import Call, ProgressCallback, Sender, Share
from ._http.transport import Budget, RetryConfig, Transport, WorkspaceApi
from ._settings import NOT_GIVEN, Identity, Learned, ModelHandle, Settings, as_batching, as_timeout
from ._tracing import make_tracer

if TYPE_CHECKING:  # pydantic's model machinery loads with the first result, not with the import
    from ._types import PredictionResult, Signature

if TYPE_CHECKING:
    from ._chat import AsyncChatStream, ChatResult, ChatStream
    from ._pickling import Portable

__all__ = ["NOT_GIVEN", "Predictor", "portable", "restore"]

log = logging.getLogger(__name__)

class Predictor:
    """Typed predictions from a Unity Catalog model, validated against its signature.

    Build one with :meth:`from_endpoint` (Model Serving, or any MLflow scoring server) or
    :meth:`from_model` (load in process), then call :meth:`predict` or :meth:`apredict`.

    Example::

        from client import Predictor

        with Predictor.from_endpoint("iris-classifier") as p:
            result = p.predict([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                                 "petal length (cm)": 1.4, "petal width (cm)": 0.2}])
            result.predictions   # [0]
    """

    def __init__(
        self, settings: Settings | None = None, *, auth: Auth | None = None, transport: Transport | None = None,
        **changes: Any,
    ) -> None:
        # Use the classmethods; this signature is not part of the contract. ``changes`` are
        # Settings fields (``Predictor(url=..., validate=False)``), applied over ``settings``.
        self._settings = replace(settings or Settings(), **changes) if changes else (settings or Settings())
        s = self._settings
        self._direct: Any = None
        if s.direct:
            from ._direct import DirectModel

            assert s.model_uri is not None
            self._direct = DirectModel(s.model_uri, s.registry_uri)
        self._transport = transport or Transport(timeout=s.timeout)
        # The credentials live in the Sender only: with_user_token swaps the Sender, and the
        # signature and endpoint-state lookups read them from there too.
        self._sender = Sender(url=s.url, auth=auth or NoAuth(), transport=self._transport, direct=self._direct,
                              batching=s.batching)
        self._identity: Identity | None = None  # the signature and version, once loaded
        self._identity_flight: _sync.SingleFlight[None] = _sync.SingleFlight()  # any loop may wait on it
        self._tracer = make_tracer(s.tracing)
        self._learned = Learned()  # what client/_chat finds once (the kind)

    @property
    def settings(self) -> Settings:
        """What this Predictor was built with (frozen; pickling ships exactly this)."""
        return self._settings

    @property
    def endpoint(self) -> str | None:
        return self._settings.endpoint

    @property
    def url(self) -> str | None:
        return self._settings.url

    @property
    def model_uri(self) -> str | None:
        return self._settings.model_uri

    @property
    def registry_uri(self) -> str | None:
        return self._settings.registry_uri

    @property
    def host(self) -> str | None:
        return self._settings.host

    @property
    def validate(self) -> bool:
        return self._settings.validate

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def from_endpoint(
        cls,
        name: str | None = None,
        *,
        url: str | None = None,
        model_uri: str | None = None,
        registry_uri: str | None = None,
        host: str | None = None,
        token: str | None = None,
        profile: str | None = None,
        user_token: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT,
        http_transport: httpx.AsyncBaseTransport | None = None,
        validate: bool = True,
        batching: Batching | bool = True,
        allow_insecure_http: bool = False,
        tracing: bool | None = None,
    ) -> Predictor:
        """A Predictor for a serving endpoint, by ``name`` on a workspace or by full ``url``.

        By name, the workspace and credentials come from databricks-sdk's ``Config``
        (``DATABRICKS_HOST`` + a PAT, OAuth M2M, a ``~/.databrickscfg`` profile, an App's
        service principal); ``user_token`` (an App's ``X-Forwarded-Access-Token``) wins over
        all of them. By URL, ``token``/``user_token`` are sent as a bearer token if given.
        The signature comes from ``model_uri`` in the registry, else from the endpoint (its
        ``/openapi`` document, or its served entity read from ``registry_uri``, by default
        ``databricks-uc``).
        Concurrent calls are micro-batched (see :class:`Batching`; ``batching=False`` turns it
        off). A credential is never sent over plain ``http://`` to a host other than loopback
        unless ``allow_insecure_http=True``.
        ``tracing=True`` (default: ``PREDICTOR_TRACING=1``, else off) records one MLflow trace
        per call in the active MLflow experiment; ``result.trace_id`` names it.

        Example::

            p = Predictor.from_endpoint(url="http://127.0.0.1:5000/invocations",
                                        model_uri="models:/main.default.iris@champion")
        """
        if (name is None) == (url is None):
            raise ConfigurationError("give exactly one of an endpoint name or a url")
        settings = Settings(endpoint=name, url=url, model_uri=model_uri, registry_uri=registry_uri, host=host,
                            timeout=as_timeout(timeout), max_retries=max_retries, total_timeout=total_timeout,
                            validate=validate, batching=as_batching(batching),
                            allow_insecure_http=allow_insecure_http, tracing=tracing)
        auth: Auth
        if name is not None:
            from ._http.auth import workspace_auth

            explicit_host = host or os.environ.get("DATABRICKS_HOST")
            if explicit_host and not allow_insecure_http:
                check_secure_url(explicit_host)  # before the SDK's first (metadata) request goes out
            wauth = workspace_auth(host=host, token=token, profile=profile, user_token=user_token)
            host = wauth.host.rstrip("/")
            url = f"{host}/serving-endpoints/{name}/invocations"
            auth = wauth
        elif token or user_token:
            auth = TokenAuth(user_token or token or "")
        else:
            auth = NoAuth()
        assert url is not None
        if not isinstance(auth, NoAuth) and not allow_insecure_http:
            check_secure_url(url)
        settings = replace(settings, url=url, host=host)
        return cls(settings, auth=auth, transport=Transport(timeout=settings.timeout, transport=http_transport))

    @classmethod
    def from_app(
        cls,
        name: str,
        *,
        host: str | None = None,
        profile: str | None = None,
        user_token: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT,
        http_transport: httpx.AsyncBaseTransport | None = None,
        allow_insecure_http: bool = False,
        tracing: bool | None = None,
    ) -> Predictor:
        """A Predictor for an agent deployed as a Databricks App (MLflow's agent server in an App),
        reached as Databricks' own client reaches ``model="apps/<name>"``: the App's URL is read once,
        here, from the workspace (``GET /api/2.0/apps/{name}``), then :meth:`chat` and :meth:`stream`
        speak the Responses API at ``{url}/responses``. Credentials as for :meth:`from_endpoint` by
        name, but Apps take OAuth tokens only (a service principal, ``databricks auth login``, a
        signed-in user's ``user_token``), not personal access tokens.

        Example::

            with Predictor.from_app("support-agent") as p:   # or "apps/support-agent"
                p.chat("Which iris is 5.1 3.5 1.4 0.2?").text
        """
        import re

        from ._http.auth import workspace_auth
        from ._http.transport import WorkspaceApi

        app = name.removeprefix("apps/")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", app):
            raise ConfigurationError(f"{name!r} is not a Databricks App name (lowercase letters, digits and hyphens)")
        explicit_host = host or os.environ.get("DATABRICKS_HOST")
        if explicit_host and not allow_insecure_http:
            check_secure_url(explicit_host)
        auth = workspace_auth(host=host, profile=profile, user_token=user_token)
        if auth.auth_type == "pat" and not user_token:
            raise ConfigurationError(
                f"Databricks Apps take OAuth tokens only, and the credentials found for app {app!r} are a personal "
                "access token: use a service principal (DATABRICKS_CLIENT_ID/SECRET) or `databricks auth login`")
        settings = Settings(host=auth.host, app=app, timeout=as_timeout(timeout), max_retries=max_retries,
                            total_timeout=total_timeout, batching=None, allow_insecure_http=allow_insecure_http,
                            tracing=tracing)
        transport = Transport(timeout=settings.timeout, transport=http_transport)
        api = WorkspaceApi(transport, auth.host, auth, settings.retry, settings.timeout)
        app_url = (_sync.run(api.get_json(f"/api/2.0/apps/{app}")).get("url") or "").rstrip("/")
        if not app_url:
            raise ConfigurationError(f"app {app!r} has no URL: is it deployed?")
        if not allow_insecure_http:
            check_secure_url(app_url)
        return cls(replace(settings, url=f"{app_url}/responses"), auth=auth, transport=transport)

    @classmethod
    def from_model(
        cls, model_uri: str, *, registry_uri: str | None = None, validate: bool = True,
        batching: Batching | bool = True, tracing: bool | None = None,
    ) -> Predictor:
        """A Predictor that loads ``models:/catalog.schema.model@alias`` (or ``/N``) in process.

        ``tracing`` as for :meth:`from_endpoint`.

        Example::

            p = Predictor.from_model("models:/main.default.iris@champion")
            p.predict({"sepal length (cm)": [5.1], ...}).model_version   # "1"
        """
        from ._schema.signatures import parse_model_uri

        parse_model_uri(model_uri)  # fail now, not at the first call
        # No total_timeout: nothing goes over a network, and a large model's first load may be slow.
        return cls(Settings(model_uri=model_uri, registry_uri=registry_uri, direct=True, validate=validate,
                            batching=as_batching(batching), total_timeout=None, tracing=tracing))

    def with_user_token(self, user_token: str) -> Predictor:
        """The same endpoint and connection pool, authenticating as a signed-in user."""
        if self._direct is not None:
            return self
        if self.endpoint is not None:
            from ._http.auth import workspace_auth

            auth: Auth = workspace_auth(host=self.host, user_token=user_token)
        else:
            auth = TokenAuth(user_token)
        if self.url is not None and not self._settings.allow_insecure_http:
            check_secure_url(self.url)
        clone = object.__new__(Predictor)
        clone.__dict__.update(self.__dict__)
        clone._sender = self._sender.with_auth(auth)  # never one batch for two users' calls
        return clone

    # -- signature ----------------------------------------------------------------------

    @property
    def model_name(self) -> str | None:
        """Registered model name, once the signature has been fetched (or the model loaded)."""
        return self._identity.name if self._identity is not None else None

    @property
    def model_version(self) -> str | None:
        """Registered model version, once the signature has been fetched (or the model loaded)."""
        return self._identity.version if self._identity is not None else None

    @property
    def model_run_id(self) -> str | None:
        """The MLflow run that logged the model version, once known (as for :attr:`model_name`)."""
        return self._identity.run_id if self._identity is not None else None

    async def aendpoint_state(self) -> dict[str, str] | None:
        """The serving endpoint's state as the workspace reports it, e.g.
        ``{"ready": "READY", "config_update": "NOT_UPDATING"}``; ``None`` for a URL or direct mode.

        Example::

            (await p.aendpoint_state())["ready"]   # "READY"
        """
        if self.endpoint is None or self.host is None:
            return None
        from ._schema.signatures import get_endpoint

        detail = await get_endpoint(self._workspace_api(), self.endpoint)
        state = detail.get("state")
        return {str(k): str(v) for k, v in state.items()} if isinstance(state, dict) else None

    def endpoint_state(self) -> dict[str, str] | None:
        """Sync :meth:`aendpoint_state`."""
        return _sync.run(self.aendpoint_state())

    def _handle(self) -> ModelHandle:
        """What the chat code is handed (see ``client._settings.ModelHandle``)."""
        return ModelHandle(self._settings, self._transport, self._sender.auth, self._direct, self._aget_identity,
                           lambda: self._identity or Identity(), self._learned)

    def _workspace_api(self) -> WorkspaceApi:
        api = self._handle().workspace_api()
        assert api is not None
        return api

    @property
    def mode(self) -> Literal["endpoint", "direct"]:
        return self._settings.mode

    async def aget_signature(self) -> Signature | None:
        """The model's signature (fetched once, then cached); ``None`` if it has none."""
        return (await self._aget_identity()).signature

    def get_signature(self) -> Signature | None:
        return _sync.run(self.aget_signature())

    async def _aget_identity(self) -> Identity:
        while self._identity is None:  # a clone may have shared a flight that loaded the original's
            await self._identity_flight.run(self._load_identity_once)
        return self._identity

    async def _load_identity_once(self) -> None:
        if self._identity is None:
            self._identity = await self._load_identity()

    async def _load_identity(self) -> Identity:
        if self._direct is not None:
            await self._direct.load()
            d = self._direct
            return Identity(d.signature, d.name, d.version, d.run_id)
        from ._schema import signatures as _signatures

        if self.model_uri is not None:
            sig, ref = await _signatures.from_registry(self.model_uri, self.registry_uri)
        elif self.endpoint is not None and self.host is not None:
            sig, ref = await _signatures.from_endpoint(self._workspace_api(), self.endpoint, self.registry_uri)
        else:
            log.warning("no model_uri for %s: predictions are sent unvalidated", self.url)
            return Identity()
        return Identity(sig) if ref is None else Identity(sig, ref.name, ref.version, ref.run_id)

    # -- prediction ---------------------------------------------------------------------

    async def apredict(
        self,
        inputs: Any,
        params: dict[str, Any] | None = None,
        *,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
        on_progress: ProgressCallback | None = None,
        client_request_id: str | None = None,
    ) -> PredictionResult:
        """Validate ``inputs`` (records, a dict of columns, a DataFrame, or an ndarray for
        tensor models) against the signature, then predict.

        Concurrent calls with the same params are coalesced into one request; a call with
        more than 5,000 rows, or a body over Model Serving's 16 MB limit, is sent in chunks
        under both limits, a few at a time, and ``on_progress(rows_done, rows_total)`` hears once
        of each (once of the whole call when it is not split).
        Raises ``SchemaValidationError`` (nothing sent) or an ``APIError``.
        Each request carries a ``client_request_id`` (a fresh UUID unless given here), which
        Model Serving records in its inference and usage tables; the result keeps it.

        Example::

            result = await p.apredict(df, params={"threshold": 0.7})
        """
        from ._chat._api import refuse_chat

        self._transport.check_open()  # a closed Predictor never opens a new pool
        clock = _Clock()
        retry, http_timeout = self._settings.for_call(timeout, max_retries)
        budget = retry.start()  # total_timeout counts from here: the signature's fetch included
        await budget.bound(refuse_chat(self._handle()))
        signature = await budget.bound(self.aget_signature()) if self.validate else None
        call = self._call(signature, inputs, params, retry, http_timeout, budget, client_request_id, clock)
        try:
            share = await self._sender.send(call, on_progress)
        except Exception as err:
            self._trace_error(err, call, clock)
            raise
        return self._result(call, share, clock)

    def _call(self, signature: Signature | None, inputs: Any, params: dict[str, Any] | None, retry: RetryConfig,
              timeout: httpx.Timeout, budget: Budget, client_request_id: str | None, clock: _Clock) -> Call:
        """One validated call, ready to send (``SchemaValidationError``: nothing will be)."""
        from ._schema.validate import validate

        try:
            validated = validate(signature, inputs, params)
        except Exception as err:  # refused before sending: traced too, so monitoring sees what callers send
            if self._tracer is not None:
                self._tracer.record_refused(err, inputs, clock.started_ns, {
                    "mode": self.mode, "model_name": self.model_name, "model_version": self.model_version,
                    "endpoint": self.endpoint})
            raise
        request_id = {} if client_request_id is None else {"client_request_id": _checked_request_id(client_request_id)}
        return Call(validated, retry, timeout, budget, **request_id)

    def _trace_error(self, err: Exception, call: Call, clock: _Clock) -> None:
        if self._tracer is not None:
            self._tracer.record_error(err, call.validated, clock.started_ns, {
                "mode": self.mode, "model_name": self.model_name, "model_version": self.model_version,
                "endpoint": self.endpoint, "client_request_id": call.client_request_id})

    def _result(self, call: Call, share: Share, clock: _Clock) -> PredictionResult:
        """The answer as a ``PredictionResult``, traced when tracing is on."""
        from ._types import PredictionResult

        result = PredictionResult(
            predictions=share.predictions,
            mode=self.mode,
            model_name=self.model_name,
            model_version=self.model_version,
            served_model_name=share.served_model_name,
            endpoint=self.endpoint,
            request_id=share.request_id,
            elapsed_ms=(time.perf_counter() - clock.started) * 1000,
            retries=share.retries,
            batch_size=share.batch_size,
            client_request_id=share.client_request_id,
        )
        if self._tracer is not None and (trace_id := self._tracer.record(result, call.validated, clock.started_ns)):
            result = result.model_copy(update={"trace_id": trace_id})
        return result

    def _predict_alone(
        self, inputs: Any, params: dict[str, Any] | None, timeout: Any, max_retries: Any,
        on_progress: ProgressCallback | None, client_request_id: str | None,
    ) -> PredictionResult | None:
        """A sync call with nobody to batch with, answered in the caller's thread when nothing
        needs the event loop (the signature and kind known, a transport with a sync side);
        ``None``: hand it to the async core. The steps are :meth:`apredict`'s, sync."""
        from ._chat._api import refuse_known_chat

        identity = self._identity
        if self.validate and (identity is None or self._learned.chat_kind is None):
            return None  # a lookup to make first: the async core makes it, once
        if not self._sender.transport.sends_sync or self._direct is not None:
            return None
        self._transport.check_open()
        clock = _Clock()
        retry, http_timeout = self._settings.for_call(timeout, max_retries)
        budget = retry.start()
        refuse_known_chat(self._handle())
        signature = identity.signature if self.validate and identity is not None else None
        call = self._call(signature, inputs, params, retry, http_timeout, budget, client_request_id, clock)
        try:
            share = self._sender.send_alone_sync(call)
        except Exception as err:
            self._trace_error(err, call, clock)
            raise
        if share is None:
            return None
        if on_progress is not None:
            on_progress(call.validated.n_rows, call.validated.n_rows)
        return self._result(call, share, clock)

    def predict(
        self,
        inputs: Any,
        params: dict[str, Any] | None = None,
        *,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
        on_progress: ProgressCallback | None = None,
        client_request_id: str | None = None,
    ) -> PredictionResult:
        """Sync :meth:`apredict`; works where an event loop is already running too.

        Calls from many threads share the client's loop, so they are micro-batched too; a call
        with none beside it is sent from the caller's thread, over a sync connection pool.
        """
        with self._sender.sync_call() as alone:
            if alone and (result := self._predict_alone(inputs, params, timeout, max_retries, on_progress,
                                                         client_request_id)) is not None:
                return result
            return _sync.run(
                self.apredict(inputs, params, timeout=timeout, max_retries=max_retries, on_progress=on_progress,
                              client_request_id=client_request_id)
            )

    # -- chat and agent models (client/_chat) ---------------------------------------------

    @property
    def kind(self) -> str:
        """``"chat"`` for chat/agent models, else ``"tabular"`` or ``"tensor"``; found once, from the
        endpoint's ``task``, the MLmodel's ``metadata.task``, then the signature's shape.

        Example::

            Predictor.from_model("models:/main.default.assistant@champion").kind   # "chat"
        """
        return _sync.run(self.aget_kind())

    async def aget_kind(self) -> str:
        """Async :attr:`kind`."""
        from ._chat._api import resolve

        return (await resolve(self._handle()))[0]

    async def achat(
        self,
        messages: Any,
        *,
        custom_inputs: dict[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
    ) -> ChatResult:
        """Ask a chat model: ``messages`` is a str (one user turn) or a list of ``{"role", "content"}``.

        Messages are checked before anything is sent (``SchemaValidationError``); the answer's
        ``trace_id`` and ``request_id`` are filled when the server gives them.

        Example::

            reply = await p.achat("How do I reset my password?")
            reply.text, reply.trace_id
        """
        from ._chat._api import achat

        return await achat(self._handle(), messages, custom_inputs=custom_inputs, timeout=timeout,
                           max_retries=max_retries)

    def chat(
        self,
        messages: Any,
        *,
        custom_inputs: dict[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
    ) -> ChatResult:
        """Sync :meth:`achat`."""
        return _sync.run(self.achat(messages, custom_inputs=custom_inputs, timeout=timeout, max_retries=max_retries))

    def astream(
        self,
        messages: Any,
        *,
        custom_inputs: dict[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
    ) -> AsyncChatStream:
        """Stream a chat model's answer as :class:`ChatDelta` objects (the messages are checked now).

        Example::

            async for delta in p.astream("Tell me about iris"):
                print(delta.text, end="")
        """
        from ._chat._api import astream

        return astream(self._handle(), messages, custom_inputs=custom_inputs, timeout=timeout, max_retries=max_retries)

    def stream(
        self,
        messages: Any,
        *,
        custom_inputs: dict[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
    ) -> ChatStream:
        """Sync :meth:`astream`: ``for delta in p.stream(messages): print(delta.text, end="")``."""
        from ._chat import ChatStream

        return ChatStream(self.astream(messages, custom_inputs=custom_inputs, timeout=timeout,
                                       max_retries=max_retries))

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pools (every event loop's). A call after this raises
        ``PredictorClosedError``; a call in flight finishes or fails, and is never resent."""
        await self._transport.aclose()

    def close(self) -> None:
        """Sync :meth:`aclose`."""
        _sync.run(self._transport.aclose())

    async def __aenter__(self) -> Predictor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as settings (see ``_pickling``): another process builds its own pool and model."""
        return (restore, (portable(self),))

    def __repr__(self) -> str:
        target = self.model_uri if self._direct is not None else (self.endpoint or self.url)
        return f"Predictor(mode={self.mode!r}, target={target!r})"


class _Clock:
    """When a call started: for its ``elapsed_ms`` (monotonic) and its trace's start (wall, ns)."""

    __slots__ = ("started", "started_ns")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.started_ns = time.time_ns()


def _checked_request_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"client_request_id must be a non-empty string, got {value!r}")
    return value


def portable(p: Predictor) -> Portable:
    """What ``p`` pickles as: its settings, its credential as a bearer token, and (endpoint mode)
    the signature it has loaded, so another process need not ask the registry again."""
    from ._http.auth import bearer_token
    from ._pickling import Portable, Secret

    token = bearer_token(p._sender.auth)
    # Direct mode reads the identity from the model it loads anyway.
    identity = p._identity if p.mode == "endpoint" else None
    return Portable(p._settings, None if token is None else Secret(token), identity)


def restore(shipped: Portable) -> Predictor:
    """A new Predictor from what :func:`portable` shipped: its own connection pool, its model
    loaded on first use."""
    auth: Auth = TokenAuth(shipped.token.get()) if shipped.token is not None else NoAuth()
    p = Predictor(shipped.settings, auth=auth)
    if shipped.identity is not None:
        p._identity = shipped.identity
    return p
