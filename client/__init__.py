"""Typed, async predictions from Unity Catalog models on Databricks Model Serving.

Example::

    from client import Predictor

    p = Predictor.from_model("models:/main.default.iris@champion")
    p.predict([{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                "petal length (cm)": 1.4, "petal width (cm)": 0.2}]).predictions
"""

from ._batching import Batching
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
    PredictorError,
    RateLimitError,
    SchemaProblem,
    SchemaValidationError,
)
from ._predictor import NOT_GIVEN, Predictor
from ._types import ColumnSpec, ParamSpec, PredictionResult, Signature, TensorSpec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Batching",
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
    "PredictorError",
    "RateLimitError",
    "SchemaProblem",
    "SchemaValidationError",
    "Signature",
    "TensorSpec",
]
