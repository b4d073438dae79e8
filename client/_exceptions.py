"""The one exception tree of the package.

::

    PredictorError
    ├── ConfigurationError (also ValueError)   bad model URI, no workspace host, ...
    ├── SchemaValidationError (also ValueError) input does not match the signature; nothing was sent
    ├── ModelError                              direct mode: the model's own code raised
    ├── PredictorClosedError (also RuntimeError) used after close(); or in flight at close, not resent
    └── APIError                                anything that went wrong talking to an endpoint
        ├── APIConnectionError                  no answer: refused, reset, DNS, TLS, truncated body
        │   └── APITimeoutError                 no answer in time
        ├── APIResponseValidationError          an answer that is not Model Serving JSON
        ├── StreamError                         a streamed answer that began and did not finish
        │   ├── StreamInterruptedError          the connection broke or went quiet between chunks
        │   └── StreamEventError                the model sent an error event in the stream
        └── APIStatusError                      an answer with a 4xx/5xx status
            ├── BadRequestError                 400 (and other 4xx not listed here)
            ├── AuthenticationError             401, after one token refresh
            ├── PermissionDeniedError           403
            ├── NotFoundError                   404
            ├── RateLimitError                  429, after the retries the budget allowed
            └── InternalServerError             5xx, after the retries the budget allowed

``client.monitoring`` adds, under ``PredictorError``: ``MonitoringError`` with ``BaselineError``
(also a ``ConfigurationError``: a baseline unreadable or without the signature's columns) and
``NoDataError`` (``NoTracesError``: nothing traced; ``EmptyWindowError``: no records in the range).

Messages carry what is wrong and where, never a token, a client secret or whole rows of
user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only in annotations: the error tree imports without httpx
    import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InternalServerError",
    "ModelError",
    "NotFoundError",
    "PermissionDeniedError",
    "PredictorClosedError",
    "PredictorError",
    "RateLimitError",
    "SchemaProblem",
    "SchemaValidationError",
    "StreamError",
    "StreamEventError",
    "StreamInterruptedError",
]

#: Longest server message we relay; the scoring server embeds input data in its errors.
_MAX_SERVER_MESSAGE = 500
#: Problems listed in the text of a SchemaValidationError; all of them stay in ``.problems``.
_MAX_LISTED_PROBLEMS = 20


def _truncate(text: str, limit: int = _MAX_SERVER_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PredictorError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(PredictorError, ValueError):
    """The Predictor cannot be set up as asked (bad model URI, missing host, ...)."""


@dataclass(frozen=True)
class SchemaProblem:
    """One thing wrong with the input: where (``row``, ``column``) and what."""

    message: str
    column: str | None = None
    row: int | None = None  # 0-based, as in the caller's input

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class SchemaValidationError(PredictorError, ValueError):
    """The input does not match the model's signature. Nothing was sent.

    ``problems`` lists every problem found, each with its row and column.
    """

    def __init__(self, problems: list[SchemaProblem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        lines = [str(p) for p in self.problems[:_MAX_LISTED_PROBLEMS]]
        if n > _MAX_LISTED_PROBLEMS:
            lines.append(f"... and {n - _MAX_LISTED_PROBLEMS} more")
        head = f"{n} problem{'s' if n != 1 else ''} with the input"
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class ModelError(PredictorError):
    """Direct mode: the model's own ``predict`` raised."""


class PredictorClosedError(PredictorError, RuntimeError):
    """The Predictor was closed: it takes no new call, and a call in flight at ``close()`` fails
    with this rather than be resent on a new connection pool (as a closed ``httpx`` client does)."""


class APIError(PredictorError):
    """Something went wrong talking to an endpoint."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The endpoint could not be reached, or the connection broke before an answer."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """The endpoint answered 2xx with a body that is not Model Serving JSON."""


class APIStatusError(APIError):
    """The endpoint answered with an error status.

    ``status_code``, ``error_code`` (e.g. ``"BAD_REQUEST"``), ``message`` (the server's,
    truncated) and ``request_id`` (from ``x-request-id``) tell what and where.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_code: str | None = None,
        request_id: str | None = None,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = _truncate(message)
        parts = [f"HTTP {status_code}"]
        if error_code:
            parts.append(error_code)
        text = f"{' '.join(parts)}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text, request=request)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.request_id = request_id
        self.response = response
        #: Seconds the server asked us to wait (``Retry-After``), capped; ``None`` if not given.
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400: the endpoint rejected the input."""


class AuthenticationError(APIStatusError):
    """401: the credentials were refused, even after one refresh."""


class PermissionDeniedError(APIStatusError):
    """403: the identity may not query this endpoint."""


class NotFoundError(APIStatusError):
    """404: no such endpoint (or model)."""


class RateLimitError(APIStatusError):
    """429: the endpoint stayed busy through every retry."""


class InternalServerError(APIStatusError):
    """5xx: the endpoint failed through every retry."""


class StreamError(APIError):
    """A streamed answer began and did not finish. Nothing is retried once the first byte arrived.

    ``events_received`` and ``text_received`` (characters of answer text) say how much arrived.
    """

    def __init__(
        self, message: str, *, events_received: int = 0, text_received: int = 0, request: httpx.Request | None = None
    ) -> None:
        text = f"{_truncate(message)} (after {events_received} events, {text_received} characters of text)"
        super().__init__(text, request=request)
        self.events_received = events_received
        self.text_received = text_received


class StreamInterruptedError(StreamError):
    """The connection broke, timed out between chunks (``timed_out``), or ended before ``[DONE]``."""

    def __init__(self, message: str, *, timed_out: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.timed_out = timed_out


class StreamEventError(StreamError):
    """The model reported an error inside the stream; ``error_code`` as the server named it."""

    def __init__(self, message: str, *, error_code: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.error_code = error_code
