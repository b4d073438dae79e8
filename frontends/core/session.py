"""What both frontends share: configuration from the environment, the Predictor, the caller.

Environment (first match wins):

* ``PREDICTOR_ENDPOINT``: a serving endpoint name on the workspace (a Databricks App gets it
  through ``valueFrom: serving-endpoint``);
* ``PREDICTOR_ENDPOINT_URL``: a full invocations URL (any MLflow scoring server);
* ``PREDICTOR_AGENT_APP``: an agent deployed as a Databricks App, by name (``Predictor.from_app``);
* ``PREDICTOR_MODEL_URI`` alone: load that model in process;
* nothing: the local demo model, registered on first start if missing.

``PREDICTOR_MODEL_URI`` with an endpoint gives the signature's source; ``PREDICTOR_REGISTRY_URI``
the registry. ``PREDICTOR_CHAT_MODEL_URI`` (a registered chat model or agent, loaded in process)
adds a Chat tab beside a tabular model's form in the Streamlit app; ``make demo`` sets it to the
demo agent (``main.default.assistant@champion``), registered on first use if missing.
``PREDICTOR_ON_BEHALF_OF_USER=1`` makes each call authenticate as the signed-in user
(``X-Forwarded-Access-Token``) instead of the app's service principal; a request without that
header is then refused (:class:`SignInRequired`), never served as the app. The apps trace every
prediction into MLflow (see ``client/feedback.py``) unless ``PREDICTOR_TRACING=0``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    PredictionResult,
    Predictor,
    PredictorError,
    RateLimitError,
    SchemaValidationError,
    Signature,
)
from client.local.demo import DEMO_AGENT_URI, DEMO_MODEL_URI  # the apps register the demos on a laptop
from client.registry import parse_model_uri
from frontends.core.proba import prediction_label, single_prediction

__all__ = [
    "AppConfig",
    "ModelInfo",
    "PredictionCache",
    "SignInRequired",
    "build_predictor",
    "caller_identity",
    "chat_model_info",
    "describe_error",
    "format_prediction",
    "load_chat_predictor",
    "load_predictor",
    "missing_scopes",
    "model_info",
    "prediction_distribution",
    "prediction_rows",
    "predictor_for",
    "result_caption",
    "user_token_from_headers",
]

log = logging.getLogger(__name__)

USER_TOKEN_HEADER = "X-Forwarded-Access-Token"
#: What a signed-in user sees when their forwarded token is refused (it expired in a long session).
SESSION_EXPIRED = "**Your sign-in has expired.** Reload the page to continue."
#: What a visitor sees when the app acts as the signed-in user but the request carried no user token.
SIGN_IN_REQUIRED = (
    "**Sign in to use this app.** It calls the model as the signed-in user, and this request carried no "
    "user token. Open the app through its Databricks Apps URL; if you did, the app lacks user "
    "authorization: its owner adds `user_api_scopes: [serving.serving-endpoints]` to the app in "
    "`databricks.yml` and redeploys."
)
#: Databricks' refusal of a token without a scope: "Provided OAuth token does not have required scopes: sql".
_MISSING_SCOPES = re.compile(r"does not have (?:the )?required scopes?:?\s*(?P<scopes>[\w.:\-, ]+)", re.IGNORECASE)
_TRUTHY = {"1", "true", "yes", "on"}
#: How long an app's start-up waits for its first page to be drawn before it imports MLflow for
#: tracing (seconds of CPU that would otherwise compete with drawing the form on a small machine).
FIRST_PAGE_GRACE_S = 5.0


@dataclass(frozen=True)
class AppConfig:
    endpoint: str | None = None
    endpoint_url: str | None = None
    agent_app: str | None = None
    model_uri: str | None = None
    registry_uri: str | None = None
    on_behalf_of_user: bool = False
    title: str = "Model predictions"
    #: One MLflow trace per prediction (on in the apps unless ``PREDICTOR_TRACING=0``).
    tracing: bool = True
    #: A chat model shown in a Chat tab beside the form (``PREDICTOR_CHAT_MODEL_URI``; Streamlit).
    chat_model_uri: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppConfig:
        env = os.environ if env is None else env

        def get(key: str) -> str | None:
            value = env.get(key, "").strip()
            return value or None

        return cls(
            endpoint=get("PREDICTOR_ENDPOINT"),
            endpoint_url=get("PREDICTOR_ENDPOINT_URL"),
            agent_app=get("PREDICTOR_AGENT_APP"),
            model_uri=get("PREDICTOR_MODEL_URI"),
            registry_uri=get("PREDICTOR_REGISTRY_URI"),
            on_behalf_of_user=(get("PREDICTOR_ON_BEHALF_OF_USER") or "").lower() in _TRUTHY,
            title=get("PREDICTOR_APP_TITLE") or "Model predictions",
            tracing=(get("PREDICTOR_TRACING") or "1").lower() in _TRUTHY,
            chat_model_uri=get("PREDICTOR_CHAT_MODEL_URI"),
        )

    @property
    def uses_demo(self) -> bool:
        return not (self.endpoint or self.endpoint_url or self.agent_app or self.model_uri)

    @property
    def registry_model_uri(self) -> str | None:
        """The ``models:/`` URI the app reads from the registry: the configured one, or the demo's."""
        return self.model_uri or (DEMO_MODEL_URI if self.uses_demo else None)

    @property
    def source(self) -> str:
        if self.endpoint:
            return f"endpoint {self.endpoint}"
        if self.endpoint_url:
            return f"endpoint {self.endpoint_url}"
        if self.agent_app:
            return f"agent app {self.agent_app}"
        return f"model {self.model_uri or DEMO_MODEL_URI + ' (demo)'}"


class PredictionCache:
    """Answers by (caller, model version, input), shared by every session of an app process: the
    same input from the same caller is not sent twice. Bounded (the least recently used answer
    goes first) and thread-safe. Callers must not mutate what :meth:`get` returns.

    A dict rather than ``st.cache_data``, which pickles and hashes every answer (milliseconds
    per click). Both apps use it.

    Example::

        cache = PredictionCache()
        key = cache.key("app", "3", records)
        answer = cache.get(key) or cache.put(key, predictor.predict(records).model_dump(mode="json"))
    """

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str | None, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(identity: str, model_version: str | None, records: Any) -> tuple[str, str | None, str]:
        return identity, model_version, json.dumps(records, sort_keys=True, default=str)

    def get(self, key: tuple[str, str | None, str]) -> dict[str, Any] | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, key: tuple[str, str | None, str], answer: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return answer

    def __len__(self) -> int:
        return len(self._entries)


def build_predictor(config: AppConfig) -> Predictor:
    """The app-wide Predictor (not yet connected; nothing is fetched here)."""
    if config.endpoint:
        return Predictor.from_endpoint(config.endpoint, model_uri=config.model_uri, registry_uri=config.registry_uri,
                                       tracing=config.tracing)
    if config.agent_app:
        return Predictor.from_app(config.agent_app, tracing=config.tracing)
    if config.endpoint_url:
        return Predictor.from_endpoint(
            url=config.endpoint_url, model_uri=config.model_uri, registry_uri=config.registry_uri,
            tracing=config.tracing,
        )
    return Predictor.from_model(config.model_uri or DEMO_MODEL_URI, registry_uri=config.registry_uri,
                                tracing=config.tracing)


def _register_demo(config: AppConfig) -> None:
    from client.local.demo import register_demo_model

    log.info("registering the demo model in the local registry")
    register_demo_model(config.registry_uri)


def load_predictor(config: AppConfig | None = None) -> tuple[Predictor, Signature | None]:
    """Build the Predictor and fetch its signature (sync; for app start-up).

    With the demo model, a missing registration is made on the spot, once.
    """
    config = config or AppConfig.from_env()
    predictor = build_predictor(config)
    try:
        return predictor, predictor.get_signature()
    except Exception:  # the demo model not registered yet: MLflow's own errors may surface too
        if not config.uses_demo:
            raise
    _register_demo(config)
    predictor = build_predictor(config)
    return predictor, predictor.get_signature()


def load_chat_predictor(config: AppConfig) -> Predictor | None:
    """The chat model of the Chat tab beside the form (``PREDICTOR_CHAT_MODEL_URI``), loaded in
    process, or ``None`` when none is configured. The demo agent is registered on the spot if missing.

    Raises :class:`~client.ConfigurationError` when the model is not a chat model (the tab shows it).

    Example::

        chat = load_chat_predictor(AppConfig(chat_model_uri="models:/main.default.assistant@champion"))
        chat.chat("which iris is 5.1 3.5 1.4 0.2?").text
    """
    if not config.chat_model_uri:
        return None
    uri: str = config.chat_model_uri

    def build() -> Predictor:
        return Predictor.from_model(uri, registry_uri=config.registry_uri, tracing=config.tracing)

    predictor = build()
    try:
        kind = predictor.kind
    except Exception:  # the demo agent not registered yet: MLflow's own errors may surface too
        if uri != DEMO_AGENT_URI:
            raise
        from client.local.demo import register_demo_agent

        log.info("registering the demo agent in the local registry")
        register_demo_agent(config.registry_uri)
        predictor = build()
        kind = predictor.kind
    if kind != "chat":
        raise ConfigurationError(f"PREDICTOR_CHAT_MODEL_URI={uri!r} is not a chat model or agent (it is {kind}); "
                                 "the Chat tab needs one")
    return predictor


def chat_model_info(predictor: Predictor, config: AppConfig) -> ModelInfo:
    """The Chat tab's model card: the chat model's name, version and alias (not the form's model)."""
    uri = config.chat_model_uri or ""
    return ModelInfo(name=predictor.model_name, version=predictor.model_version, mode=str(predictor.mode),
                     source=f"model {uri}", alias=parse_model_uri(uri)[2] if uri else None,
                     run_id=predictor.model_run_id)


async def aload_predictor(config: AppConfig | None = None) -> tuple[Predictor, Signature | None]:
    """:func:`load_predictor` for an event loop."""
    import asyncio

    config = config or AppConfig.from_env()
    predictor = build_predictor(config)
    try:
        return predictor, await predictor.aget_signature()
    except Exception:
        if not config.uses_demo:
            raise
    await asyncio.to_thread(_register_demo, config)
    predictor = build_predictor(config)
    return predictor, await predictor.aget_signature()


def user_token_from_headers(headers: Mapping[str, str] | None, config: AppConfig) -> str | None:
    """The signed-in user's token, when the app acts on behalf of users and one was forwarded."""
    if not config.on_behalf_of_user or not headers:
        return None
    wanted = USER_TOKEN_HEADER.lower()
    for key, value in headers.items():
        if key.lower() == wanted and value:
            return str(value)
    return None


class SignInRequired(PredictorError):
    """The app acts as the signed-in user, and the request carried no user token: nothing is sent."""

    def __init__(self) -> None:
        super().__init__("no X-Forwarded-Access-Token on a request to an app that acts as the signed-in user")


def predictor_for(base: Predictor, headers: Mapping[str, str] | None, config: AppConfig) -> Predictor:
    """The Predictor to use for this caller: the app's, or the same pool as the signed-in user.

    Acting on behalf of users, a request without a user token raises :class:`SignInRequired`:
    falling back to the app's own identity would serve anyone with the app's rights.
    """
    token = user_token_from_headers(headers, config)
    if token:
        return base.with_user_token(token)
    if config.on_behalf_of_user:
        raise SignInRequired()
    return base


def caller_identity(headers: Mapping[str, str] | None, config: AppConfig) -> str:
    """A cache key part naming who calls: ``"app"`` or a hash of the user's token (never the token)."""
    token = user_token_from_headers(headers, config)
    if not token:
        return "app"
    return "user:" + hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelInfo:
    name: str | None
    version: str | None
    mode: str
    source: str
    #: The registry alias the model URI names (``champion`` in ``models:/m@champion``), if any.
    alias: str | None = None
    #: The MLflow run that logged this version, when the registry said.
    run_id: str | None = None
    #: A serving endpoint's state (``{"ready": ..., "config_update": ...}``), when there is one.
    endpoint_state: Mapping[str, str] | None = None

    def card(self) -> str:
        """The model card's text (markdown), the same in both frontends."""
        version = self.version or "unknown"
        if self.alias:
            version += f" (alias @{self.alias})"
        lines = [f"**Name:** {self.name or 'unknown'}", f"**Version:** {version}", f"**Mode:** {self.mode}",
                 f"**Source:** {self.source}"]
        if self.endpoint_state:
            lines.append("**Endpoint state:** " + ", ".join(f"{k} {v}" for k, v in sorted(self.endpoint_state.items())))
        if self.run_id:
            lines.append(f"**Run:** `{self.run_id}`")
        return "  \n".join(lines)


def model_info(
    predictor: Predictor,
    config: AppConfig,
    result: PredictionResult | None = None,
    endpoint_state: Mapping[str, str] | None = None,
) -> ModelInfo:
    """Name, version and mode of the model, from the last result or what the Predictor knows."""
    name = (result.model_name if result else None) or predictor.model_name
    version = (result.model_version if result else None) or predictor.model_version
    mode = result.mode if result else str(getattr(predictor, "mode", "endpoint"))
    uri = config.registry_model_uri
    alias = parse_model_uri(uri)[2] if uri else None
    return ModelInfo(name=name, version=version, mode=mode, source=config.source, alias=alias,
                     run_id=predictor.model_run_id, endpoint_state=endpoint_state)


def format_prediction(predictions: Any) -> str:
    """A short human text for one record's prediction (its label, or the most probable class)."""
    value = prediction_label(single_prediction(predictions))
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (str, int, bool)):
        return str(value)
    return json.dumps(value, default=str)


def prediction_distribution(table: Any) -> Any:
    """Counts per predicted value (the ``prediction`` or ``label`` column; numbers binned when there
    are many): a DataFrame with columns ``prediction`` and ``count``, or ``None`` when nothing to plot."""
    import pandas as pd

    name = next((c for c in ("prediction", "label", "predicted_label", "class") if c in table.columns), None)
    if name is None or table[name].isna().all():
        return None
    col = table[name]
    if pd.api.types.is_float_dtype(col) and col.nunique() > 10:
        counts = pd.cut(col, bins=10).value_counts(sort=False)
    else:
        counts = col.astype(str).value_counts().sort_index()
    return pd.DataFrame({"prediction": counts.index.astype(str), "count": counts.to_numpy()})


def prediction_rows(records: list[dict[str, Any]], predictions: Any) -> list[dict[str, Any]]:
    """Input records side by side with their predictions (batch results table)."""
    preds = predictions
    if isinstance(preds, dict) and "predictions" in preds:
        preds = preds["predictions"]
    if not isinstance(preds, list) or len(preds) != len(records):
        return [dict(r, prediction=json.dumps(preds, default=str) if i == 0 else None) for i, r in enumerate(records)]
    rows: list[dict[str, Any]] = []
    for record, pred in zip(records, preds, strict=True):
        row = dict(record)
        if isinstance(pred, dict):
            row.update({f"prediction.{k}" if k in row else k: v for k, v in pred.items()})
        elif isinstance(pred, list):
            row["prediction"] = json.dumps(pred, default=str)
        else:
            row["prediction"] = pred
        rows.append(row)
    return rows


def result_caption(result: Mapping[str, Any]) -> str:
    """Which model answered, how, and whether the endpoint was busy (a result's ``model_dump``)."""
    text = (f"model {result.get('model_name') or '?'} version {result.get('model_version') or '?'}, "
            f"{result.get('mode')}")
    if result.get("served_model_name"):
        text += f", served by {result['served_model_name']}"
    retries = int(result.get("retries") or 0)
    if retries:
        text += f"; the endpoint was busy or failing: answered after {retries} retr{'y' if retries == 1 else 'ies'}"
    return text


def missing_scopes(err: BaseException) -> tuple[str, ...]:
    """The OAuth scopes a 403 says the token lacks (``()`` for any other error).

    >>> missing_scopes(PermissionDeniedError("Provided OAuth token does not have required scopes: sql, files",
    ...                                      status_code=403))
    ('sql', 'files')
    """
    if not isinstance(err, PermissionDeniedError):
        return ()
    found = _MISSING_SCOPES.search(err.message or "")
    if not found:
        return ()
    return tuple(s.strip(".") for s in re.split(r"[,\s]+", found["scopes"]) if s.strip("."))


def describe_error(err: BaseException, *, as_user: bool = False) -> str:
    """Markdown for an error on a page: what went wrong, never a traceback or a token.

    ``as_user``: the call ran with the signed-in user's forwarded token, so a 401 means that
    token expired (Streamlit keeps the first request's headers for the whole session).
    """
    if isinstance(err, SignInRequired):
        return SIGN_IN_REQUIRED
    if isinstance(err, SchemaValidationError):
        return "**The input does not match the model's signature:**\n\n" + "\n".join(f"- {p}" for p in err.problems)
    if isinstance(err, AuthenticationError):
        if as_user:
            return SESSION_EXPIRED
        return "**The app's credentials were refused by the endpoint (HTTP 401).** Ask the app's owner to check them."
    scopes = missing_scopes(err) if as_user else ()
    if scopes:  # the user's token was issued without a scope the app needs: the app's config, not the user
        listed = ", ".join(f"`{s}`" for s in scopes)
        return (f"**The app lacks user authorization:** your sign-in does not carry the scope(s) {listed} "
                f"(HTTP 403). The app's owner adds them to the app's `user_api_scopes` in `databricks.yml` "
                f"(`user_api_scopes: [{', '.join(scopes)}]`) and redeploys; then reload the page.")
    if isinstance(err, PermissionDeniedError):
        who = "You are" if as_user else "The app is"
        return f"**{who} not allowed to query this endpoint (HTTP 403).**"
    if isinstance(err, RateLimitError):
        return ("**The endpoint is busy** (HTTP 429): still throttled after the retries allowed. "
                "Try again in a moment.")
    if isinstance(err, PredictorError):
        return f"**Prediction failed:** {err}"
    log.error("unexpected error: %s", type(err).__name__, exc_info=err)
    return f"**Unexpected error** ({type(err).__name__}); see the app logs."
