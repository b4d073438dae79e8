"""Validate input against a model signature, the way MLflow's scoring server would.

The server parses the JSON body into a DataFrame, ``astype``-casts each column to the schema
type (``cast_df_types_according_to_schema``), then runs ``mlflow.models.utils._enforce_schema``.
We accept what that path accepts, except where it silently changes the value (e.g. ``1.5``
truncated to ``1`` for an integer column, ``"false"`` cast to ``True`` for a boolean): there we
reject, so the caller hears about it before anything is sent. Each rule below says why.

This module imports neither pandas nor numpy nor mlflow at import time; columns are checked
with plain python loops.
"""

from __future__ import annotations

import base64
import datetime
import logging
import math
import reprlib
from dataclasses import dataclass, replace
from typing import Any, cast

from .._exceptions import SchemaProblem, SchemaValidationError
from .._types import ColumnSpec, ParamSpec, Signature, TensorSpec
from .inputs import Table, TensorInput, to_table

__all__ = ["ValidatedInput", "validate"]

logger = logging.getLogger(__name__)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_MAX_REPR = 30


class _Bad(Exception):
    """One value does not fit; the message says why."""


class _Missing(Exception):
    """A value spelled as missing (the text "nan"): checked as a missing value is."""


def _short(v: Any) -> str:
    r = reprlib.repr(v)  # bounded in depth and length: a hostile value cannot blow the stack
    return r if len(r) <= _MAX_REPR else r[: _MAX_REPR - 1] + "…"


# --------------------------------------------------------------------------- scalar converters
# Each takes a non-None value and returns the canonical python value, or raises _Bad.


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    # Why 0/1: the server's astype(bool) maps them exactly; any other number or string would be
    # silently cast (``"false"`` -> True), which MLflow accepts but we reject as a likely bug.
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, float) and v in (0.0, 1.0):
        return bool(v)
    raise _Bad(f"expected a boolean, got {type(v).__name__} {_short(v)}")


def _to_int(v: Any, lo: int, hi: int, kind: str) -> int:
    if isinstance(v, bool):
        # Why accepted: JSON true/false reach the server as a bool column and astype(int) gives 1/0.
        return int(v)
    if isinstance(v, int):
        out = v
    elif isinstance(v, float):
        # Why integral floats only: astype(int) truncates 1.5 to 1 (MLflow accepts, we refuse to
        # lose data); 2.0 survives exactly. NaN/inf cannot be an integer.
        if not math.isfinite(v) or v != int(v):
            raise _Bad(f"expected an integer, got float {_short(v)}")
        out = int(v)
    elif isinstance(v, str):
        # Why digit strings: the server's object->int64 astype parses "1" (but not "1.5").
        try:
            out = int(v.strip())
        except ValueError:
            raise _Bad(f"expected an integer, got string {_short(v)}") from None
    else:
        raise _Bad(f"expected an integer, got {type(v).__name__} {_short(v)}")
    # Why a range check: astype(int32) wraps out-of-range values silently, and a JSON integer
    # above 2**63-1 makes a uint64 column that astype(int64) wraps to a negative number.
    if not lo <= out <= hi:
        raise _Bad(f"{_short(v)} does not fit in a {kind}")
    return out


def _to_float(v: Any) -> float:
    if isinstance(v, (bool, int, float)):
        # Why ints and bools: the server's astype(float64) converts them exactly (MLflow rule
        # "int -> double"), and JSON has no separate float type.
        return float(v)
    if isinstance(v, str):
        # Why numeric strings: object->float64 astype parses "1.5"; "abc" fails on the server too.
        try:
            f = float(v)
        except ValueError:
            raise _Bad(f"expected a number, got string {_short(v)}") from None
        if math.isnan(f):
            raise _Missing  # "nan" spells a missing value, as float("nan") does
        return f
    raise _Bad(f"expected a number, got {type(v).__name__} {_short(v)}")


def _finite(f: float) -> float:
    # Why: JSON has no inf, so endpoint mode could never send it; direct mode refuses it alike.
    if math.isinf(f):
        raise _Bad(f"{f} is not a finite number")
    return f


_FLOAT32_MAX = 3.4028234663852886e38


def _to_float32(f: float) -> float:
    # Why: astype(float32) turns a finite 1e300 into inf, silently; MLflow accepts, we refuse.
    if math.isfinite(f) and abs(f) > _FLOAT32_MAX:
        raise _Bad(f"{_short(f)} does not fit in a 32-bit float")
    return f


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    # Why reject non-strings: MLflow passes them through unconverted, so the model would get an
    # int/list in a string column; almost always a caller bug.
    raise _Bad(f"expected a string, got {type(v).__name__} {_short(v)}")


def _to_bytes(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    # Why reject str: ambiguous (raw text or already base64?); the wire needs base64 of bytes.
    raise _Bad(f"expected bytes, got {type(v).__name__} {_short(v)}")


def _to_datetime(v: Any) -> datetime.datetime:
    if isinstance(v, datetime.datetime):
        out = v
    elif isinstance(v, datetime.date):
        out = datetime.datetime(v.year, v.month, v.day)
    elif isinstance(v, str):
        # Why ISO strings only: the server runs pd.to_datetime on the column, which also guesses
        # at "01/02/2024" or "Jan 2 2024" (day/month order is ambiguous); we take ISO 8601 and
        # always send the canonical isoformat(). Epoch numbers (read by pandas as nanoseconds)
        # are refused.
        try:
            out = datetime.datetime.fromisoformat(v.strip())
        except ValueError:
            raise _Bad(f"expected an ISO 8601 datetime, got string {_short(v)}") from None
    else:
        raise _Bad(f"expected a datetime, got {type(v).__name__} {_short(v)}")
    # Why naive only: MLflow's datetime column is datetime64[ns] without a timezone and the
    # server rejects offsets.
    if out.tzinfo is not None:
        raise _Bad(f"expected a timezone-naive datetime, got {_short(v)}")
    if not _DATETIME64_MIN <= out <= _DATETIME64_MAX:
        raise _Bad(f"datetime {_short(v)} is outside what the server's datetime64[ns] holds (years 1677 to 2262)")
    return out


# The range of pandas' datetime64[ns] (pd.Timestamp.min/max, to the microsecond inside it).
_DATETIME64_MIN = datetime.datetime(1677, 9, 21, 0, 12, 43, 145225)
_DATETIME64_MAX = datetime.datetime(2262, 4, 11, 23, 47, 16, 854775)


_CONVERT = {
    "boolean": _to_bool,
    "integer": lambda v: _to_int(v, *_INT32, "32-bit integer"),
    "long": lambda v: _to_int(v, *_INT64, "64-bit integer"),
    "float": lambda v: _finite(_to_float32(_to_float(v))),
    "double": lambda v: _finite(_to_float(v)),
    "string": _to_str,
    "binary": _to_bytes,
    "datetime": _to_datetime,
}

# Why: in an optional column the server gives None a NaN/None/NaT slot in these types and
# _enforce_schema lets it through. Integer columns cannot hold a missing value (NaN makes the
# column float and the cast fails), and a None in a binary column fails base64 decoding.
_NULLABLE = {"boolean", "float", "double", "string", "datetime"}


def _check_value(v: Any, spec_type: str, detail: dict[str, Any] | None, required: bool) -> Any:
    if v is None or (isinstance(v, float) and v != v and spec_type != "any"):
        # NaN is pandas' missing value, so it is missing here too, as it is in a DataFrame.
        if spec_type == "any":
            return None
        if required:
            # Deliberately stricter than the server, whose scalar path lets NaN through a required
            # double/string/... column: MLflow documents required=False as "may be missing or
            # None", so a required column needs a value in every row.
            raise _Bad("missing value in a required column")
        if spec_type in _NULLABLE or spec_type in ("array", "object", "map"):
            return None
        if spec_type in ("integer", "long"):
            raise _Bad("missing value in an integer column (declare it double to allow missing values)")
        raise _Bad("missing value")
    conv = _CONVERT.get(spec_type)
    if conv is not None:
        try:
            return conv(v)
        except _Missing:
            return _check_value(None, spec_type, detail, required)
    if spec_type == "any":
        return v
    if spec_type == "array":
        if not isinstance(v, (list, tuple)):
            raise _Bad(f"expected an array, got {type(v).__name__} {_short(v)}")
        items = (detail or {}).get("items") or {}
        t = items.get("type")
        if t in _CONVERT or t in ("array", "object", "map", "any"):
            return [_check_value(x, t, items, True) for x in v]
        return list(v)
    if spec_type in ("object", "map"):
        if not isinstance(v, dict):
            raise _Bad(f"expected an {spec_type}, got {type(v).__name__} {_short(v)}")
        return v
    return v


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ValidatedInput:
    """Validated input, ready to send (``to_wire``) or to predict on in-process (``to_model_input``)."""

    signature: Signature | None
    table: Table | None
    tensor: Any | None
    params: dict[str, Any] | None
    n_rows: int

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready Model Serving request body."""
        try:
            return self._to_wire()
        except RecursionError as err:  # an 'any' column or unvalidated input nested without end
            raise SchemaValidationError([SchemaProblem("a value is nested too deeply to send as JSON")]) from err

    def _to_wire(self) -> dict[str, Any]:
        body: dict[str, Any]
        if self.table is not None:
            names = list(self.table.columns)
            types = {c.name: c.type for c in self.signature.columns} if self.signature else {}
            cols = [_wire_column(self.table.columns[n], types.get(n)) for n in names]
            data = [list(row) for row in zip(*cols, strict=True)] if cols else [[] for _ in range(self.n_rows)]
            body = {"dataframe_split": {"columns": names, "data": data}}
        else:
            t = self.tensor
            if isinstance(t, dict):
                body = {"inputs": {k: _wire_value(a.tolist()) for k, a in t.items()}}
            else:
                body = {"inputs": _wire_value(t.tolist() if t is not None and hasattr(t, "tolist") else t)}
        if self.params:
            body["params"] = {k: _wire_value(v) for k, v in self.params.items()}
        return body

    @staticmethod
    def concat(items: list[ValidatedInput]) -> ValidatedInput:
        """Rows of several validated tables with the same columns, one after another."""
        first = items[0]
        if len(items) == 1:
            return first
        columns: dict[str, list[Any]] = {}
        for item in items:
            assert item.table is not None, "only tables are concatenated"
            for name, values in item.table.columns.items():
                columns.setdefault(name, []).extend(values)
        n_rows = sum(item.n_rows for item in items)
        return replace(first, table=Table(columns, n_rows), n_rows=n_rows)

    def rows(self, start: int, stop: int) -> ValidatedInput:
        """Rows ``start:stop`` of a validated table."""
        assert self.table is not None, "only tables are sliced"
        columns = {name: values[start:stop] for name, values in self.table.columns.items()}
        n_rows = len(range(start, min(stop, self.n_rows)))
        return replace(self, table=Table(columns, n_rows), n_rows=n_rows)

    def to_model_input(self) -> Any:
        """Direct mode: a DataFrame typed exactly as the signature says, or the numpy tensor."""
        if self.table is None:
            return self.tensor
        import numpy as np
        import pandas as pd

        sig_cols = self.signature.columns if self.signature else ()
        specs: dict[str | None, ColumnSpec]
        if sig_cols and all(c.name is None for c in sig_cols):
            # Unnamed specs were matched to the input columns by position in validate().
            specs = dict(zip(self.table.columns, sig_cols, strict=False))
        else:
            specs = {c.name: c for c in sig_cols}
        data: dict[str, Any] = {}
        for name, values in self.table.columns.items():
            spec = specs.get(name)
            t = spec.type if spec else None
            if t in _PANDAS_DTYPES:
                dtype = _PANDAS_DTYPES[t]
                if t in ("float", "double"):
                    arr = [np.nan if x is None else x for x in values]
                    data[name] = pd.Series(arr, dtype=dtype)
                elif t == "boolean" and any(x is None for x in values):
                    data[name] = pd.Series(values, dtype=object)
                else:
                    data[name] = pd.Series(values, dtype=dtype)
            elif t == "datetime":
                data[name] = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")
            elif t is None:
                # No spec: let pandas infer, as it would for the caller's own DataFrame.
                data[name] = pd.Series(values)
            else:
                # string, binary, composite: python objects, as MLflow hands them over.
                data[name] = pd.Series(values, dtype=object)
        return pd.DataFrame(data, index=range(self.n_rows))


_PANDAS_DTYPES = {"float": "float32", "double": "float64", "integer": "int32", "long": "int64", "boolean": "bool"}


_PLAIN = frozenset({str, int, bool, type(None)})


def _wire_column(values: list[Any], spec_type: str | None = None) -> list[Any]:
    # Validated columns of these types hold only JSON-ready values (and None).
    if spec_type in ("string", "boolean", "integer", "long"):
        return values
    if spec_type in ("float", "double"):
        return [x if x == x else None for x in values]  # NaN -> None: JSON has no NaN
    if any(isinstance(x, datetime.datetime) and x.microsecond for x in values):
        # Why one timespec per column: the server's pd.to_datetime infers the format from the
        # first value, so "…T03:04:05" followed by "…T03:04:05.250000" would fail to parse.
        return [x.isoformat(timespec="microseconds") if isinstance(x, datetime.datetime) else x for x in values]
    return [_wire_value(x) for x in values]


def _wire_value(v: Any) -> Any:
    if type(v) in _PLAIN:
        return v
    if isinstance(v, list):
        return [_wire_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _wire_value(x) for k, x in v.items()}
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, float) and not math.isfinite(v):
        # JSON has no NaN; None reaches the server as a missing value.
        return None if math.isnan(v) else v
    return v


# --------------------------------------------------------------------------- validate


def validate(signature: Signature | None, inputs: Any, params: dict[str, Any] | None = None) -> ValidatedInput:
    """Check ``inputs`` (and ``params``) against ``signature``; raise one ``SchemaValidationError``
    listing every problem, or return a ``ValidatedInput``."""
    problems: list[SchemaProblem] = []
    if (
        signature is not None
        and signature.is_tensor
        and isinstance(inputs, (list, tuple))
        and inputs
        and not any(isinstance(r, dict) for r in inputs)
    ):
        # A tensor model given nested lists: that is the array itself, not records.
        converted: Table | TensorInput = TensorInput(list(inputs))
    else:
        converted = to_table(inputs)
    checked_params = _check_params(signature, params, problems)

    if signature is None or not signature.has_inputs:
        if isinstance(converted, TensorInput):
            n = _tensor_rows(converted.data)
            if problems:
                raise SchemaValidationError(problems)
            return ValidatedInput(signature, None, converted.data, checked_params, n)
        if problems:
            raise SchemaValidationError(problems)
        return ValidatedInput(signature, converted, None, checked_params, converted.n_rows)

    if signature.is_tensor:
        tensor = _check_tensors(signature.tensors, converted, problems)
        if problems:
            raise SchemaValidationError(problems)
        return ValidatedInput(signature, None, tensor, checked_params, _tensor_rows(tensor))

    if isinstance(converted, TensorInput):
        as_table = _tensor_to_table(converted, problems)
        if as_table is None:
            raise SchemaValidationError(problems)
        converted = as_table
    table = _check_columns(signature.columns, converted, problems)
    if problems:
        raise SchemaValidationError(problems)
    return ValidatedInput(signature, table, None, checked_params, table.n_rows)


def _tensor_to_table(t: TensorInput, problems: list[SchemaProblem]) -> Table | None:
    # A dict of 1-D arrays is a dict of columns.
    if isinstance(t.data, dict) and all(getattr(a, "ndim", 0) == 1 for a in t.data.values()):
        # A dict of lists always converts to a Table.
        return cast(Table, to_table({k: a.tolist() for k, a in t.data.items()}))
    problems.append(
        SchemaProblem("the model takes columns; got a numpy array (pass a DataFrame, records or a dict of columns)")
    )
    return None


# Types whose python values are already canonical and always valid (ints need a range check,
# datetimes a timezone check, so they take the slow path).
_FAST_TYPE: dict[str, type] = {"double": float, "float": float, "string": str, "boolean": bool, "binary": bytes}


def _check_columns(specs: tuple[ColumnSpec, ...], table: Table, problems: list[SchemaProblem]) -> Table:
    cols = table.columns
    if all(s.name is None for s in specs):
        # Why positional: MLflow matches unnamed column specs to the input columns by position.
        names = list(cols)
        specs = tuple(s.model_copy(update={"name": names[i]}) for i, s in enumerate(specs) if i < len(names))
    out: dict[str, list[Any]] = {}
    for spec in specs:
        name = spec.name
        assert name is not None
        if name not in cols:
            if spec.required:
                problems.append(SchemaProblem("required column is missing", column=name))
            continue
        values = cols[name]
        new: list[Any] = []
        # Fast path: a value already of the canonical python type needs no conversion.
        fast = _FAST_TYPE.get(spec.type)
        for i, v in enumerate(values):
            # NaN (!= itself) is a missing value and inf is refused: both take the checked path.
            if type(v) is fast and (not isinstance(v, float) or -math.inf < v < math.inf):
                new.append(v)
                continue
            try:
                new.append(_check_value(v, spec.type, spec.detail, spec.required))
            except _Bad as e:
                problems.append(SchemaProblem(str(e), column=name, row=i))
                new.append(None)
        out[name] = new
    # Extra columns are dropped, as _enforce_schema does.
    dropped = [n for n in cols if n not in out and all(s.name != n for s in specs)]
    if dropped:
        logger.debug("dropping %d column(s) not in the signature", len(dropped))
    return Table(columns=out, n_rows=table.n_rows)


# --------------------------------------------------------------------------- params

_PARAM_ORDER = {"integer": 0, "long": 1, "float": 2, "double": 3}


def _param_scalar(v: Any, t: str) -> Any:
    if t in ("integer", "long"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected {t}, got {type(v).__name__} {_short(v)}")
        # Why no range check: MLflow hands params to the model as python ints, which never wrap.
        return v
    if t in ("float", "double"):
        # Why: MLflow converts int->long/float/double, long->float/double, float->double.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"expected {t}, got {type(v).__name__} {_short(v)}")
        return float(v)
    if t == "boolean":
        if not isinstance(v, bool):
            raise _Bad(f"expected boolean, got {type(v).__name__} {_short(v)}")
        return v
    if t == "string":
        if not isinstance(v, str):
            raise _Bad(f"expected string, got {type(v).__name__} {_short(v)}")
        return v
    if t == "binary":
        return _to_bytes(v)
    if t == "datetime":
        # Why ISO only: MLflow's np.datetime64(value) also reads "1" as the year 1.
        return _to_datetime(v)
    return v


def _check_params(
    signature: Signature | None, params: dict[str, Any] | None, problems: list[SchemaProblem]
) -> dict[str, Any] | None:
    specs: tuple[ParamSpec, ...] = signature.params if signature else ()
    if params is not None and not isinstance(params, dict):
        problems.append(SchemaProblem(f"params must be a dict, got {type(params).__name__}"))
        return None
    if signature is None or not (signature.has_inputs or signature.params):
        # No signature to check against (validation off, or none known): pass through as given.
        return dict(params) if params else None
    if not specs:
        if params:
            # Why: MLflow ignores params when the model declares none, with a warning.
            logger.warning("the model declares no params; ignoring %s", sorted(map(str, params)))
        return None
    params = params or {}
    known = {p.name for p in specs}
    unknown = [k for k in params if k not in known]
    if unknown:
        # Why ignore: MLflow's _enforce_params_schema drops unknown params with a warning.
        logger.warning("ignoring params not in the model signature: %s", sorted(map(str, unknown)))
    out: dict[str, Any] = {}
    for p in specs:
        if p.name not in params:
            if p.default is not None:
                out[p.name] = p.default
            continue
        v = params[p.name]
        where = f"param {p.name!r}"
        try:
            if v is None:
                out[p.name] = p.default
            elif p.shape is None:
                out[p.name] = _param_scalar(v, p.type)
            else:
                if not isinstance(v, (list, tuple)):
                    raise _Bad(f"expected a list of {p.type}, got {type(v).__name__} {_short(v)}")
                # Why None items pass: MLflow's _enforce_param_datatype returns None for None.
                out[p.name] = [None if x is None else _param_scalar(x, p.type) for x in v]
        except _Bad as e:
            problems.append(SchemaProblem(f"{where}: {e}"))
    return out


# --------------------------------------------------------------------------- tensors


def _tensor_rows(t: Any) -> int:
    if isinstance(t, dict):
        for a in t.values():
            return int(a.shape[0]) if getattr(a, "ndim", 0) else 1
        return 0
    return int(t.shape[0]) if getattr(t, "ndim", 0) else 1


def _check_one_tensor(spec: TensorSpec, arr: Any, problems: list[SchemaProblem], label: str | None) -> Any:
    import numpy as np

    try:
        if not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        want = np.dtype(spec.dtype)
    except Exception as e:  # ragged lists, unknown dtype names
        problems.append(SchemaProblem(f"not a valid tensor: {_short(str(e))}", column=label))
        return None
    if arr.dtype == object:
        problems.append(SchemaProblem("not a numeric tensor (ragged or mixed values)", column=label))
        return None
    shape_ok = len(arr.shape) == len(spec.shape) and all(
        s == -1 or s == a for s, a in zip(spec.shape, arr.shape, strict=False)
    )
    if not shape_ok:
        problems.append(SchemaProblem(f"shape {tuple(arr.shape)} does not match {tuple(spec.shape)}", column=label))
    if arr.dtype != want and not _tensor_cast_ok(arr, want):
        problems.append(SchemaProblem(f"dtype {arr.dtype} cannot be cast to {want} without loss", column=label))
        return None
    return arr.astype(want, copy=False)


def _tensor_cast_ok(arr: Any, want: Any) -> bool:
    """The server builds the tensor with np.array(json, dtype=spec), a lenient cast. We allow the
    casts that keep values: safe ones; float -> narrower float and int -> float (JSON carries no
    precision, so the server does exactly this); int -> narrower int when every value fits.
    Why not float -> int: the server would truncate 1.5 to 1."""
    import numpy as np

    have = arr.dtype
    if np.can_cast(have, want, casting="safe"):
        return True
    if want.kind == "f" and have.kind in "fiub":
        if want.itemsize < have.itemsize and arr.size and have.kind == "f":
            # Why: a finite value beyond the narrower float's range would become inf.
            finite = arr[np.isfinite(arr)]
            return not finite.size or bool(np.abs(finite).max() <= np.finfo(want).max)
        return True
    if want.kind in "iu" and have.kind in "iub":
        if arr.size == 0:
            return True
        info = np.iinfo(want)
        return bool(info.min <= arr.min() and arr.max() <= info.max)
    return False


def _check_tensors(specs: tuple[TensorSpec, ...], converted: Any, problems: list[SchemaProblem]) -> Any:
    if isinstance(converted, TensorInput):
        data = converted.data
    else:
        data = {k: v for k, v in converted.columns.items()}
        if len(specs) == 1 and specs[0].name is None and len(data) == 1:
            data = next(iter(data.values()))
    if isinstance(data, dict):
        out = {}
        for spec in specs:
            if spec.name is None or spec.name not in data:
                problems.append(SchemaProblem("tensor input is missing", column=spec.name))
                continue
            out[spec.name] = _check_one_tensor(spec, data[spec.name], problems, spec.name)
        return out
    if len(specs) != 1:
        problems.append(SchemaProblem(f"the model takes {len(specs)} named tensors; pass a dict of arrays"))
        return None
    return _check_one_tensor(specs[0], data, problems, specs[0].name)
