"""Typed, async predictions from Unity Catalog models on Databricks Model Serving.

Example::

    from client import Predictor

    p = Predictor.from_model("models:/main.default.iris@champion")
    p.predict([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                "petal length (cm)": 1.4, "petal width (cm)": 0.2}]).predictions

The whole public API is below. Names load on first use, so ``import client`` costs almost
nothing; httpx, pydantic and asyncio arrive with the Predictor, MLflow and pandas only on
the code paths that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._chat import AsyncChatStream, ChatDelta, ChatMessage, ChatResult, ChatStream, ToolCall
    from ._exceptions import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        InternalServerError,
        ModelError,
        NotFoundError,
        PermissionDeniedError,
        PredictorClosedError,
        PredictorError,
        RateLimitError,
        SchemaProblem,
        SchemaValidationError,
        StreamError,
        StreamEventError,
        StreamInterruptedError,
    )
    from ._http.batching import Batching
    from ._predictor import NOT_GIVEN, Predictor
    from ._types import ColumnSpec, ParamSpec, PredictionResult, Signature, TensorSpec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncChatStream",
    "AuthenticationError",
    "BadRequestError",
    "Batching",
    "ChatDelta",
    "ChatMessage",
    "ChatResult",
    "ChatStream",
    "ColumnSpec",
    "ConfigurationError",
    "InternalServerError",
    "ModelError",
    "NOT_GIVEN",
    "NotFoundError",
    "ParamSpec",
    "PermissionDeniedError",
    "PredictionResult",
    "Predictor",
    "PredictorClosedError",
    "PredictorError",
    "RateLimitError",
    "SchemaProblem",
    "SchemaValidationError",
    "Signature",
    "StreamError",
    "StreamEventError",
    "StreamInterruptedError",
    "TensorSpec",
    "ToolCall",
]

#: The private module each public name lives in; names not listed come from ``_exceptions``.
_MODULE_OF = {
    "AsyncChatStream": "_chat",
    "Batching": "_http.batching",
    "ChatDelta": "_chat",
    "ChatMessage": "_chat",
    "ChatResult": "_chat",
    "ChatStream": "_chat",
    "ToolCall": "_chat",
    "NOT_GIVEN": "_predictor",
    "Predictor": "_predictor",
    "ColumnSpec": "_types",
    "ParamSpec": "_types",
    "PredictionResult": "_types",
    "Signature": "_types",
    "TensorSpec": "_types",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF.get(name, '_exceptions')}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
