"""A Predictor pickles as its settings: what another process (a Spark executor) needs to build
its own, never an open connection, a lock, a loaded model or a databricks-sdk ``Config``.

Credentials: an endpoint Predictor's bearer token travels inside the pickled form, in memory,
wrapped in :class:`Secret` (its repr is ``***``). A workspace credential ships as the bearer
token it currently yields (a PAT as is; for OAuth, the short-lived access token minted on the
driver, never the client secret). This module never writes the pickle anywhere; the caller
decides where the bytes go (Spark keeps a small task closure in memory).

It is handed what it ships (``client._predictor.portable`` builds a :class:`Portable` from a
Predictor's settings, credential and loaded identity; ``restore`` builds a Predictor from one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._http.batching import Batching
    from ._settings import Identity, Settings

__all__ = ["Portable", "Secret"]


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
class Portable:
    """A Predictor as it travels: its settings (the one definition, ``client._settings.Settings``),
    its bearer token, and what it has learned of its model."""

    settings: Settings
    token: Secret | None
    #: Endpoint mode: the signature, once fetched, travels too, so the new Predictor does not
    #: ask the registry again (an executor may not even reach it); with the version it came from.
    identity: Identity | None = None

    def with_settings(self, **changes: Any) -> Portable:
        return replace(self, settings=replace(self.settings, **changes))

    def with_batching(self, batching: Batching | None) -> Portable:
        return self.with_settings(batching=batching)
