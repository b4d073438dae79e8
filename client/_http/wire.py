"""Model Serving JSON, in and out: the request body's bytes and the answer's predictions.

Pure functions, no I/O. The body itself (``dataframe_split`` / ``inputs`` / ``params``) is
built by ``ValidatedInput.to_wire()``; this module turns it into bytes and reads answers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import httpx

from .._constants import MAX_PAYLOAD_BYTES
from .._exceptions import APIResponseValidationError, SchemaProblem, SchemaValidationError

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class PayloadTooLarge(SchemaValidationError):
    """The body is over Model Serving's size limit (callers with many rows split and resend)."""


def encode_body(body: dict[str, Any], *, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Serialise a request body; refuse what Model Serving would refuse, before sending."""
    try:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as err:  # NaN/inf: not JSON, and serving would reject it anyway
        raise SchemaValidationError([SchemaProblem("NaN or infinite numbers cannot be sent as JSON")]) from err
    except TypeError as err:  # e.g. bytes or an arbitrary object in an 'any' column
        raise SchemaValidationError([SchemaProblem(f"a value cannot be sent as JSON: {err}")]) from err
    except RecursionError as err:
        raise SchemaValidationError([SchemaProblem("a value is nested too deeply to send as JSON")]) from err
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            [SchemaProblem(f"request body is {len(data):,} bytes; Model Serving accepts at most {max_bytes:,}")]
        )
    return data


@dataclass(frozen=True)
class Answer:
    predictions: Any
    served_model_name: str | None
    request_id: str | None


def _reject_constant(name: str) -> float:
    # The scoring server writes NaN/Infinity as bare tokens (non-standard JSON); keep them as floats.
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def decode_answer(response: httpx.Response) -> Answer:
    """Read ``{"predictions": ...}`` and the ``served-model-name`` header from a 2xx answer."""
    try:
        payload = json.loads(response.content, parse_constant=_reject_constant)
    except ValueError as err:
        raise APIResponseValidationError(
            f"endpoint answered {response.status_code} with a body that is not JSON", request=response.request
        ) from err
    if not isinstance(payload, dict) or "predictions" not in payload:
        raise APIResponseValidationError(
            "endpoint answered without a 'predictions' field", request=response.request
        )
    return Answer(
        predictions=payload["predictions"],
        served_model_name=response.headers.get("served-model-name"),
        request_id=response.headers.get("x-request-id"),
    )


def error_fields(response: httpx.Response) -> tuple[str, str | None]:
    """``(message, error_code)`` from an error answer: Databricks JSON, or plain text."""
    try:
        payload = json.loads(response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("error") or ""
        code = payload.get("error_code")
        return str(message) or response.reason_phrase, str(code) if code else None
    text = response.text.strip()
    return text or response.reason_phrase or f"HTTP {response.status_code}", None
