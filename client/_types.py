"""Public data types: a model's signature as we use it, and a prediction's result.

The signature types mirror MLflow's ``MLmodel`` signature JSON (``ColSpec``, ``TensorSpec``,
``ParamSpec``) without importing MLflow, so that validating and building forms stays cheap.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ColumnSpec",
    "ParamSpec",
    "PredictionResult",
    "Signature",
    "TensorSpec",
]

#: MLflow's scalar column types (``mlflow.types.DataType``).
ColumnType = Literal["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"]
SCALAR_COLUMN_TYPES: tuple[str, ...] = ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ColumnSpec(_Frozen):
    """One input column: MLflow's ``ColSpec``.

    ``type`` is a scalar type name, or ``"array"``, ``"object"``, ``"map"``, ``"any"`` for
    MLflow's composite types, whose full spec is kept in ``detail``.
    """

    name: str | None = None
    type: str
    required: bool = True
    detail: dict[str, Any] | None = None


class TensorSpec(_Frozen):
    """One input tensor: MLflow's ``TensorSpec``. ``-1`` in ``shape`` means any size."""

    name: str | None = None
    dtype: str
    shape: tuple[int, ...]


class ParamSpec(_Frozen):
    """One inference parameter: MLflow's ``ParamSpec``."""

    name: str
    type: str
    default: Any = None
    shape: tuple[int, ...] | None = None


class Signature(_Frozen):
    """A model's signature: column inputs or tensor inputs, outputs, and params.

    Example::

        sig = Signature.from_mlflow(mlflow_signature.to_dict())
        [c.name for c in sig.columns]
    """

    columns: tuple[ColumnSpec, ...] = ()
    tensors: tuple[TensorSpec, ...] = ()
    outputs: tuple[ColumnSpec | TensorSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()

    @property
    def is_tensor(self) -> bool:
        return bool(self.tensors)

    @property
    def has_inputs(self) -> bool:
        return bool(self.columns or self.tensors)

    @classmethod
    def from_mlflow(cls, signature: dict[str, Any]) -> Signature:
        """Build from MLflow's signature dict (``ModelSignature.to_dict()`` / the ``MLmodel`` file).

        Each of ``inputs``, ``outputs``, ``params`` is a JSON string (as MLflow writes it) or
        an already-parsed list.
        """

        def load(key: str) -> list[dict[str, Any]]:
            raw = signature.get(key)
            if raw is None:
                return []
            return json.loads(raw) if isinstance(raw, str) else list(raw)

        columns: list[ColumnSpec] = []
        tensors: list[TensorSpec] = []
        for spec in load("inputs"):
            item = _spec_from_json(spec)
            if isinstance(item, TensorSpec):
                tensors.append(item)
            else:
                columns.append(item)
        outputs = tuple(_spec_from_json(s) for s in load("outputs"))
        params = tuple(
            ParamSpec(
                name=p["name"],
                type=p["type"],
                default=p.get("default"),
                shape=tuple(p["shape"]) if p.get("shape") is not None else None,
            )
            for p in load("params")
        )
        return cls(columns=tuple(columns), tensors=tuple(tensors), outputs=outputs, params=params)


def _spec_from_json(spec: dict[str, Any]) -> ColumnSpec | TensorSpec:
    if spec.get("type") == "tensor":
        ts = spec["tensor-spec"]
        return TensorSpec(name=spec.get("name"), dtype=ts["dtype"], shape=tuple(ts["shape"]))
    kind = spec["type"]
    detail = {k: v for k, v in spec.items() if k not in ("name", "type", "required")} or None
    return ColumnSpec(name=spec.get("name"), type=kind, required=spec.get("required", True), detail=detail)


class PredictionResult(BaseModel):
    """What one ``predict``/``apredict`` call returns.

    ``predictions`` is the model's output as Model Serving returns it (a list for most
    models; a list of row dicts for DataFrame outputs). The other fields say who answered.

    Example::

        result = predictor.predict([{"sepal length (cm)": 5.1, ...}])
        result.predictions        # [0]
        result.model_version      # "3"
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    predictions: Any
    mode: Literal["endpoint", "direct"]
    #: Registered model name (``catalog.schema.model``) when known.
    model_name: str | None = None
    #: Registered model version that answered, when known.
    model_version: str | None = None
    #: Endpoint mode: the ``served-model-name`` header (which served entity answered a traffic split).
    served_model_name: str | None = None
    #: Endpoint mode: the endpoint name, when the Predictor was built from one.
    endpoint: str | None = None
    #: Endpoint mode: the ``x-request-id`` response header, when the server sent one.
    request_id: str | None = None
    #: The ``client_request_id`` sent in the request body (Model Serving records it in the
    #: inference and usage tables). Calls micro-batched together share their request's id;
    #: a call sent in chunks sends ``<id>-<first row>`` per chunk.
    client_request_id: str | None = None
    #: The MLflow trace of this call, when tracing is on (``tracing=True``) and it was recorded.
    trace_id: str | None = None
    #: Wall time of the call, retries and waits included.
    elapsed_ms: float = 0.0
    #: Endpoint mode: how many retries the call needed.
    retries: int = 0
    #: How many calls shared the request that answered this one (micro-batching; 1 = alone).
    batch_size: int = 1
