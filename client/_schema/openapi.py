"""A serving endpoint's ``/openapi`` document → :class:`Signature`. Pure: no I/O.

Databricks documents ``GET /api/2.0/serving-endpoints/{name}/openapi`` as OpenAPI 3.1 with one
relative path per served entity (``/served-models/<entity>-<version>/invocations``) whose JSON
request body is a ``oneOf`` of the input formats, each with ``params`` carrying defaults::

    dataframe_split:   columns.items.enum = column names; data.items.prefixItems = their types
    dataframe_records: items.properties = typed columns; items.required
    inputs/instances:  tensors (no published example: nested arrays, or an object of them)

Through databricks-sdk (``get_open_api(name).contents``) the document is a byte stream; the REST
reference also shows it wrapped as ``{"contents": "<document>"}``. :func:`load_openapi` takes all.

Example::

    doc = load_openapi(w.serving_endpoints.get_open_api("iris").contents)
    sig = signature_from_openapi(doc, served_entity="champion")
    [c.name for c in sig.columns]
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from .._types import ColumnSpec, ParamSpec, Signature, TensorSpec

__all__ = ["load_openapi", "signature_from_openapi"]

logger = logging.getLogger(__name__)


def load_openapi(contents: Any) -> dict[str, Any]:
    """The document from a byte stream (databricks-sdk), bytes, text, or parsed JSON; ``ValueError`` if none."""
    if hasattr(contents, "read"):
        contents = contents.read()
    if isinstance(contents, bytes | bytearray):
        contents = contents.decode("utf-8")
    doc = json.loads(contents) if isinstance(contents, str) else contents
    if isinstance(doc, dict) and set(doc) == {"contents"} and isinstance(doc["contents"], str):
        doc = json.loads(doc["contents"])  # the REST reference's wrapped form
    if not isinstance(doc, dict):
        raise ValueError("an OpenAPI document is a JSON object")
    return doc


def _column_type(schema: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """OpenAPI ``type``/``format`` → MLflow column type (and the composite's spec)."""
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "integer":
        return ("integer" if fmt == "int32" else "long"), None
    if kind == "number":
        return ("float" if fmt == "float" else "double"), None
    if kind == "string":
        if fmt in ("byte", "binary"):
            return "binary", None
        return ("datetime" if fmt in ("date-time", "date") else "string"), None
    if kind == "boolean":
        return "boolean", None
    if kind == "array":
        return "array", {"items": schema.get("items", {})}
    if kind == "object":
        return "object", {"properties": schema.get("properties", {})}
    return "any", None


_TENSOR_DTYPES = {"integer": "int64", "long": "int64", "float": "float32", "double": "float64",
                  "boolean": "bool", "string": "str", "binary": "bytes"}


class _Doc:
    """``$ref`` resolution within one document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def deref(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/") or depth > 10:
            return schema
        node: Any = self.doc
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return self.deref(node, depth + 1)


def _invocation_path(paths: dict[str, Any], served_entity: str | None) -> str | None:
    """The path of ``served_entity``; else the endpoint's own; else the only one (``None`` if ambiguous)."""
    posts = [p for p, ops in paths.items() if isinstance(ops, dict) and "post" in ops and p.endswith("/invocations")]
    if served_entity:
        mine = [p for p in posts if f"/served-models/{served_entity}/" in p]
        if mine:
            return mine[0]
    endpoint_level = [p for p in posts if "/served-models/" not in p]
    if endpoint_level:
        return endpoint_level[0]
    if len(posts) > 1:
        logger.debug("openapi: %d served models and none named %r; not guessing", len(posts), served_entity)
    return posts[0] if len(posts) == 1 else None


def _request_variants(d: _Doc, served_entity: str | None) -> list[dict[str, Any]]:
    paths = d.doc.get("paths")
    if not isinstance(paths, dict) or (path := _invocation_path(paths, served_entity)) is None:
        return []
    body = d.deref(d.deref(paths[path]["post"]).get("requestBody"))
    content = body.get("content")
    if not isinstance(content, dict) or not content:
        return []
    schema = d.deref(d.deref(content.get("application/json") or next(iter(content.values()))).get("schema"))
    return [schema, *(d.deref(v) for key in ("oneOf", "anyOf") for v in schema.get(key) or [])]


def _records_columns(d: _Doc, records: dict[str, Any]) -> tuple[ColumnSpec, ...]:
    row = d.deref(records.get("items"))
    props = row.get("properties")
    if not isinstance(props, dict):
        return ()
    required = row.get("required")
    needed = set(required) if isinstance(required, list) else set(props)
    return tuple(
        ColumnSpec(name=n, type=kind, required=n in needed, detail=detail)
        for n, s in props.items()
        for kind, detail in [_column_type(d.deref(s))]
    )


def _split_columns(d: _Doc, split: dict[str, Any]) -> tuple[ColumnSpec, ...]:
    props = split.get("properties") or {}
    columns = d.deref(props.get("columns"))
    names = d.deref(columns.get("items")).get("enum") or columns.get("enum")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return ()
    types = d.deref(d.deref(props.get("data")).get("items")).get("prefixItems")
    kinds = [_column_type(d.deref(t)) for t in types] if isinstance(types, list) else []
    if len(kinds) != len(names):
        kinds = [("any", None)] * len(names)
    return tuple(ColumnSpec(name=n, type=k, detail=detail) for n, (k, detail) in zip(names, kinds, strict=True))


def _tensor(name: str | None, schema: dict[str, Any], d: _Doc) -> TensorSpec | None:
    depth = 0
    while schema.get("type") == "array":
        schema, depth = d.deref(schema.get("items")), depth + 1
    kind, _ = _column_type(schema)
    if depth == 0 or kind not in _TENSOR_DTYPES:
        return None
    return TensorSpec(name=name, dtype=_TENSOR_DTYPES[kind], shape=(-1,) * depth)


def _tensors(d: _Doc, body: dict[str, Any]) -> tuple[TensorSpec, ...]:
    """Named tensors (an object of arrays) or one unnamed tensor (nested arrays)."""
    if body.get("type") == "object" and isinstance(body.get("properties"), dict):
        specs = [_tensor(n, d.deref(s), d) for n, s in body["properties"].items()]
    else:
        specs = [_tensor(None, body, d)]
    return tuple(s for s in specs if s is not None) if all(specs) else ()


def _param(name: str, schema: dict[str, Any]) -> ParamSpec:
    shape = None
    if schema.get("type") == "array":
        schema, shape = schema.get("items") or {}, (-1,)
    kind, _ = _column_type(schema)
    default = schema.get("default") if shape is None else None
    if isinstance(default, str) and kind in ("integer", "long", "float", "double", "boolean"):
        with contextlib.suppress(ValueError):  # a default written as text ("0.5") is read as its type
            default = json.loads(default.lower() if kind == "boolean" else default)
    return ParamSpec(name=name, type=kind, default=default, shape=shape)


def signature_from_openapi(doc: dict[str, Any], served_entity: str | None = None) -> Signature | None:
    """The request signature in ``doc``: columns from ``dataframe_records`` (names, types, required)
    or else ``dataframe_split`` (names and positional types), tensors from ``inputs``/``instances``,
    and ``params`` with their defaults. ``served_entity`` picks its path when there are several.

    ``None`` when the document describes no input shape we recognise.
    """
    d = _Doc(doc)
    columns: tuple[ColumnSpec, ...] = ()
    tensors: tuple[TensorSpec, ...] = ()
    params: dict[str, ParamSpec] = {}
    for variant in _request_variants(d, served_entity):
        props = variant.get("properties")
        if not isinstance(props, dict):
            continue
        if "dataframe_records" in props:
            columns = _records_columns(d, d.deref(props["dataframe_records"])) or columns
        elif "dataframe_split" in props and not columns:
            columns = _split_columns(d, d.deref(props["dataframe_split"]))
        for key in ("inputs", "instances"):
            if key in props and not tensors:
                tensors = _tensors(d, d.deref(props[key]))
        for name, schema in (d.deref(props.get("params")).get("properties") or {}).items():
            params.setdefault(name, _param(name, d.deref(schema)))
    if not columns and not tensors:
        return None
    return Signature(columns=columns, tensors=() if columns else tensors, params=tuple(params.values()))
