"""Turn whatever the caller passed into one columnar form (``Table``) or a tensor (``TensorInput``).

Accepted: a list of record dicts, a dict of columns (lists, or scalars meaning one row), a
pandas DataFrame, a numpy array or a dict of numpy arrays. pandas and numpy are never
imported here: a DataFrame/ndarray is recognised by its type's module and name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._exceptions import SchemaProblem, SchemaValidationError

__all__ = ["Table", "TensorInput", "to_table"]


@dataclass(frozen=True)
class Table:
    """Columnar form of any accepted input: ``columns`` maps name -> one value per row."""

    columns: dict[str, list[Any]]
    n_rows: int


@dataclass(frozen=True)
class TensorInput:
    """A numpy array, or a dict name -> numpy array, passed for a tensor model."""

    data: Any


def _type_is(obj: Any, module_prefix: str, name: str) -> bool:
    t = type(obj)
    return t.__name__ == name and (t.__module__ or "").startswith(module_prefix)


def _is_ndarray(obj: Any) -> bool:
    return _type_is(obj, "numpy", "ndarray")


def _is_dataframe(obj: Any) -> bool:
    # Subclasses of DataFrame count too.
    return any(c.__name__ == "DataFrame" and (c.__module__ or "").startswith("pandas") for c in type(obj).__mro__)


def _fail(message: str) -> SchemaValidationError:
    return SchemaValidationError([SchemaProblem(message)])


def to_table(inputs: Any) -> Table | TensorInput:
    """Convert ``inputs`` to a ``Table`` (or ``TensorInput`` for numpy data).

    Raises ``SchemaValidationError`` for empty or unsupported input.
    """
    if _is_ndarray(inputs):
        if inputs.size == 0:
            raise _fail("the input array is empty")
        return TensorInput(inputs)
    if _is_dataframe(inputs):
        return _from_dataframe(inputs)
    if isinstance(inputs, dict):
        if not inputs:
            raise _fail("the input dict is empty")
        if all(_is_ndarray(v) for v in inputs.values()):
            return TensorInput(dict(inputs))
        return _from_column_dict(inputs)
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise _fail("the input list is empty")
        return _from_records(inputs)
    raise _fail(
        f"unsupported input type {type(inputs).__name__}: pass a list of record dicts, a dict of "
        "columns, a pandas DataFrame, or a numpy array"
    )


def _from_records(records: list[Any] | tuple[Any, ...]) -> Table:
    problems = [
        SchemaProblem(f"expected a record dict, got {type(r).__name__}", row=i)
        for i, r in enumerate(records)
        if not isinstance(r, dict)
    ]
    if problems:
        raise SchemaValidationError(problems)
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            if k not in names:
                names[k] = None
    bad = [k for k in names if not isinstance(k, str)]
    if bad:
        raise SchemaValidationError(
            [SchemaProblem(f"column names must be strings, got {type(k).__name__}") for k in bad]
        )
    # Why None for a key a record lacks: pandas (and so the scoring server) fills it with NaN.
    columns = {k: [r.get(k) for r in records] for k in names}
    return Table(columns=columns, n_rows=len(records))


def _from_column_dict(data: dict[Any, Any]) -> Table:
    problems = [
        SchemaProblem(f"column names must be strings, got {type(k).__name__}") for k in data if not isinstance(k, str)
    ]
    if problems:
        raise SchemaValidationError(problems)
    is_seq = {k: isinstance(v, (list, tuple)) or _is_ndarray(v) for k, v in data.items()}
    if not any(is_seq.values()):
        # All scalars: one row.
        return Table(columns={k: [_py(v)] for k, v in data.items()}, n_rows=1)
    if not all(is_seq.values()):
        scal = [k for k, s in is_seq.items() if not s]
        raise SchemaValidationError(
            [SchemaProblem("mix of list and scalar column values; give every column as a list", column=k) for k in scal]
        )
    columns = {k: [_py(x) for x in (v.tolist() if _is_ndarray(v) else v)] for k, v in data.items()}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise _fail(f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        raise _fail("the input has no rows")
    return Table(columns=columns, n_rows=n)


def _from_dataframe(df: Any) -> Table:
    if len(df.index) == 0 or len(df.columns) == 0:
        raise _fail("the input DataFrame is empty")
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise SchemaValidationError(
            [SchemaProblem(f"column names must be strings, got {type(c).__name__}") for c in bad]
        )
    columns: dict[str, list[Any]] = {}
    for name in df.columns:
        series = df[name]
        columns[name] = [_py(v) for v in series.tolist()]
    return Table(columns=columns, n_rows=len(df.index))


def _py(v: Any) -> Any:
    """numpy/pandas scalar -> plain python; NaN/NaT/pd.NA -> None."""
    if v is None or isinstance(v, (str, bytes, bool)):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, int):
        return v
    t = type(v)
    mod = t.__module__ or ""
    if mod.startswith("pandas"):
        name = t.__name__
        if name in ("NaTType", "NAType"):
            return None
        if name == "Timestamp":
            return v.to_pydatetime()
        if name == "Timedelta":
            return v.to_pytimedelta()
    if mod.startswith("numpy"):
        if _is_ndarray(v):
            return [_py(x) for x in v.tolist()]
        if t.__name__ == "datetime64":
            if v != v:  # NaT
                return None
            return _dt64_to_datetime(v)
        item = v.item()
        if isinstance(item, float) and math.isnan(item):
            return None
        return item
    return v


def _dt64_to_datetime(v: Any) -> Any:
    # .item() of a datetime64[ns] is an int; going via microseconds gives a datetime.
    return v.astype("datetime64[us]").item()
