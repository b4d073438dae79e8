"""Tests for client._schema.validate: validation rules, wire/model forms, and a differential test
against MLflow's own scoring-server parse + _enforce_schema path."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client._exceptions import SchemaValidationError
from client._schema.validate import ValidatedInput, validate
from client._types import ColumnSpec, ParamSpec, Signature, TensorSpec

TYPES = ["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"]


def sig(*cols: ColumnSpec, params: tuple[ParamSpec, ...] = ()) -> Signature:
    return Signature(columns=cols, params=params)


def col(name: str, t: str, required: bool = True) -> ColumnSpec:
    return ColumnSpec(name=name, type=t, required=required)


def problems(s: Signature | None, inputs, params=None):
    with pytest.raises(SchemaValidationError) as ei:
        validate(s, inputs, params)
    return ei.value.problems


# --------------------------------------------------------------------------- differential vs MLflow

# Values as they would appear in a JSON body (plus bytes, which we send base64-encoded).
JSON_VALUES = [
    1, 0, 2, -1, 2**40, 2**31, 2**63, 1.5, 1.0, 0.0, -2.5, 1e300, True, False,
    "1", "1.5", "abc", "true", "false", "", " 7 ", "2024-01-02", "2024-01-02T03:04:05",
    "2024-01-02T03:04:05+00:00", "2024-01-02 03:04:05.25", "2024/01/02", "Jan 2 2024", "YWJj",
    None, [1], {"a": 1},
]  # fmt: skip


def deliberately_stricter(t: str, v, required: bool = False) -> bool:
    """(type, value) pairs MLflow's server accepts but we reject on purpose, because the server
    would silently change the value. Everything else must agree exactly."""
    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
    if v is None and required:
        # A required column needs a value in every row (the server's scalar path lets NaN through).
        return True
    if t == "boolean":
        # astype(bool) turns any non-empty string (even "false") and any number into True.
        return v is not None and not isinstance(v, bool) and not (is_num and v in (0, 1))
    if t in ("integer", "long"):
        # astype(int) truncates 1.5 -> 1; int32 wraps 2**40; 2**63 makes a uint64 column that wraps.
        limit = 2**31 if t == "integer" else 2**63
        return (isinstance(v, float) and v != int(v)) or v == 1e300 or (is_num and abs(v) >= limit)
    if t in ("float", "double") and _spelled_missing_or_infinite(v, required):
        # The server reads "nan" as NaN (even in a required column) and passes inf to the model;
        # JSON cannot carry inf, so we refuse it in both modes and treat "nan" as missing.
        return True
    if t == "float":
        # astype(float32) turns a finite 1e300 into inf.
        return v == 1e300
    if t == "string":
        # MLflow passes non-strings through unconverted to the model.
        return v is not None and not isinstance(v, str)
    if t == "binary":
        # A str is ambiguous (text or base64?); we take bytes and encode them ourselves.
        return isinstance(v, str)
    if t == "datetime":
        # pandas reads numbers as epoch nanoseconds, "" as NaT, and guesses non-ISO formats.
        return (is_num and not isinstance(v, bool)) or v in ("", "2024/01/02", "Jan 2 2024")
    return False


def _spelled_missing_or_infinite(v, required: bool) -> bool:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        return False
    try:
        f = float(v)
    except (ValueError, OverflowError):
        return False
    return math.isinf(f) or (math.isnan(f) and isinstance(v, str) and required)


def _mlflow_accepts_body(t: str, required: bool, body: dict) -> bool:
    from mlflow.models.utils import _enforce_schema
    from mlflow.types.schema import ColSpec, Schema
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    schema = Schema([ColSpec(t, "x", required=required)])
    body = json.loads(json.dumps(body))  # exactly what the server would parse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            df = dataframe_from_parsed_json(body, "split", schema)
            _enforce_schema(df, schema)
        except Exception:
            return False
    return True


def _ours_accepts(t: str, required: bool, value) -> ValidatedInput | None:
    try:
        return validate(sig(col("x", t, required)), [{"x": value}])
    except SchemaValidationError:
        return None


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize("t", TYPES)
def test_differential_against_mlflow(t: str, required: bool) -> None:
    pytest.importorskip("mlflow")
    values = list(JSON_VALUES)
    if t == "binary":
        values += [b"abc", b"", bytes(range(256))]
    disagreements = []
    for v in values:
        ours = _ours_accepts(t, required, v)
        if ours is not None:
            # No looser: whatever we accept, the server accepts in the form we send it.
            if not _mlflow_accepts_body(t, required, ours.to_wire()["dataframe_split"]):
                disagreements.append(("we accept, server rejects", v))
            continue
        if isinstance(v, bytes):
            disagreements.append(("we reject bytes", v))
            continue
        mlflow_ok = _mlflow_accepts_body(t, required, {"columns": ["x"], "data": [[v]]})
        if mlflow_ok and not deliberately_stricter(t, v, required):
            disagreements.append(("we reject, server accepts", v))
    assert disagreements == []


@pytest.mark.parametrize("t", ["integer", "long", "binary"])
def test_differential_missing_values(t: str) -> None:
    """None in integer/binary columns: the server refuses even for optional columns; so do we."""
    pytest.importorskip("mlflow")
    good = {"integer": 1, "long": 1, "binary": "YWJj"}[t]
    body = {"columns": ["x"], "data": [[good], [None]]}
    assert not _mlflow_accepts_body(t, False, body)
    inp = b"abc" if t == "binary" else 1
    assert _ours_accepts(t, False, None) is None
    with pytest.raises(SchemaValidationError):
        validate(sig(col("x", t, False)), [{"x": inp}, {"x": None}])


@pytest.mark.parametrize("t", ["boolean", "float", "double", "string", "datetime"])
def test_differential_none_in_nullable_columns(t: str) -> None:
    pytest.importorskip("mlflow")
    good = {"boolean": True, "float": 1.5, "double": 1.5, "string": "a", "datetime": "2024-01-02"}[t]
    v = validate(sig(col("x", t, False)), [{"x": good}, {"x": None}])
    assert _mlflow_accepts_body(t, False, v.to_wire()["dataframe_split"])
    ps = problems(sig(col("x", t, True)), [{"x": good}, {"x": None}])
    assert [(p.row, p.column) for p in ps] == [(1, "x")]


# --------------------------------------------------------------------------- rules


def test_collects_every_problem_with_row_and_column() -> None:
    s = sig(col("a", "double"), col("b", "long"), col("c", "string"))
    ps = problems(s, [{"a": "x", "b": 1.5, "c": "ok"}, {"a": 1, "b": 2, "c": 3}, {"b": 1}])
    got = {(p.row, p.column) for p in ps}
    assert got == {(0, "a"), (0, "b"), (1, "c"), (2, "a"), (2, "c")}
    # {"b": 1} in row 2: "a" and "c" are missing values in required columns.


def test_missing_required_and_optional_columns() -> None:
    s = sig(col("a", "double"), col("b", "double", required=False))
    ps = problems(s, [{"b": 1.0}])
    assert [(p.column, p.row) for p in ps] == [("a", None)]
    assert "missing" in ps[0].message
    v = validate(s, [{"a": 1}])
    assert list(v.table.columns) == ["a"]
    v = validate(s, [{"a": 1, "b": None}])
    assert v.table.columns["b"] == [None]


def test_extra_columns_are_dropped_and_order_follows_signature() -> None:
    s = sig(col("a", "long"), col("b", "string"))
    v = validate(s, {"z": [1], "b": ["x"], "a": [3]})
    assert v.table.columns == {"a": [3], "b": ["x"]}
    assert v.to_wire() == {"dataframe_split": {"columns": ["a", "b"], "data": [[3, "x"]]}}


def test_conversions_to_canonical_python() -> None:
    s = sig(col("f", "double"), col("i", "integer"), col("b", "boolean"), col("d", "datetime"), col("y", "binary"))
    v = validate(s, [{"f": 1, "i": "7", "b": 1, "d": "2024-01-02T03:04:05", "y": b"\x00\xff"}])
    c = v.table.columns
    assert c["f"] == [1.0] and isinstance(c["f"][0], float)
    assert c["i"] == [7]
    assert c["b"] == [True]
    assert c["d"] == [datetime.datetime(2024, 1, 2, 3, 4, 5)]
    assert c["y"] == [b"\x00\xff"]
    row = v.to_wire()["dataframe_split"]["data"][0]
    assert row == [1.0, 7, True, "2024-01-02T03:04:05", base64.b64encode(b"\x00\xff").decode()]
    json.dumps(v.to_wire())


def test_messages_do_not_leak_whole_values() -> None:
    secret = "s" * 500
    ps = problems(sig(col("a", "double")), [{"a": secret}])
    assert len(str(ps[0])) < 120
    e = SchemaValidationError(ps)
    assert secret not in str(e)


def test_int32_range() -> None:
    s = sig(col("i", "integer"))
    validate(s, [{"i": 2**31 - 1}])
    assert problems(s, [{"i": 2**31}])[0].row == 0
    validate(sig(col("l", "long")), [{"l": 2**40}])


def test_timezone_aware_datetime_rejected() -> None:
    s = sig(col("d", "datetime"))
    aware = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    assert problems(s, [{"d": aware}])
    assert validate(s, [{"d": datetime.date(2024, 1, 1)}]).table.columns["d"] == [datetime.datetime(2024, 1, 1)]


def test_composite_types() -> None:
    s = Signature(
        columns=(
            ColumnSpec(name="arr", type="array", detail={"items": {"type": "long"}}),
            ColumnSpec(name="any", type="any"),
        )
    )
    validate(s, [{"arr": [1, 2], "any": {"k": object()}}])
    ps = problems(s, [{"arr": 3, "any": 1}, {"arr": ["x"], "any": 1}])
    assert [(p.row, p.column) for p in ps] == [(0, "arr"), (1, "arr")]


def test_no_signature_passes_through() -> None:
    v = validate(None, [{"a": object.__name__, "b": 1}])
    assert v.table.columns == {"a": ["object"], "b": [1]}
    assert v.to_wire() == {"dataframe_split": {"columns": ["a", "b"], "data": [["object", 1]]}}
    v = validate(Signature(), {"a": 1}, params={"k": 1})
    assert v.n_rows == 1
    assert v.params == {"k": 1}  # nothing to check against: passed through
    assert validate(None, [{"a": 1}], params={"k": [1]}).to_wire()["params"] == {"k": [1]}
    assert str(validate(None, {"a": [1, 2]}).to_model_input()["a"].dtype) == "int64"
    # A signature with inputs but no params: MLflow ignores params (with a warning).
    assert validate(sig(col("a", "long")), {"a": 1}, params={"k": 1}).params is None


def test_unnamed_columns_are_positional() -> None:
    s = Signature(columns=(ColumnSpec(type="double"), ColumnSpec(type="string")))
    v = validate(s, {"x": [1], "y": ["a"]})
    assert v.table.columns == {"x": [1.0], "y": ["a"]}


# --------------------------------------------------------------------------- params


def test_params_defaults_conversions_and_unknown(caplog: pytest.LogCaptureFixture) -> None:
    ps = (
        ParamSpec(name="t", type="double", default=0.5),
        ParamSpec(name="n", type="long", default=3),
        ParamSpec(name="flag", type="boolean", default=False),
        ParamSpec(name="stops", type="string", default=["x"], shape=(-1,)),
    )
    s = sig(col("a", "double"), params=ps)
    with caplog.at_level(logging.WARNING, logger="client._schema.validate"):
        v = validate(s, [{"a": 1}], params={"t": 1, "bogus": 2})
    assert v.params == {"t": 1.0, "n": 3, "flag": False, "stops": ["x"]}
    assert "bogus" in caplog.text
    assert v.to_wire()["params"]["t"] == 1.0
    errs = problems(s, [{"a": 1}], params={"n": 1.5, "flag": "yes", "stops": "x", "t": "hot"})
    assert len(errs) == 4
    assert all("param" in p.message for p in errs)


def test_int_param_must_not_be_bool() -> None:
    s = sig(col("a", "double"), params=(ParamSpec(name="n", type="integer", default=1),))
    assert problems(s, [{"a": 1}], params={"n": True})


# --------------------------------------------------------------------------- tensors


def test_tensor_dtype_and_shape() -> None:
    s = Signature(tensors=(TensorSpec(dtype="float32", shape=(-1, 3)),))
    v = validate(s, np.ones((2, 3), dtype=np.int8))
    assert v.tensor.dtype == np.float32 and v.n_rows == 2
    assert v.to_wire() == {"inputs": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}
    assert problems(s, np.ones((2, 4), dtype=np.float32))
    # float64 -> float32: JSON carries no precision, the server casts the same way.
    assert validate(s, np.ones((2, 3))).tensor.dtype == np.float32
    assert validate(s, [[1, 2, 3]]).tensor.dtype == np.float32  # nested lists are the array
    si = Signature(tensors=(TensorSpec(dtype="int32", shape=(-1,)),))
    assert problems(si, np.array([1.5]))  # the server would truncate
    assert problems(si, np.array([2**40]))  # would wrap
    assert validate(si, np.array([7], dtype=np.int64)).tensor.tolist() == [7]
    assert problems(si, np.array(["a"]))
    assert problems(s, np.full((1, 3), 1e300))  # would become inf in float32


def test_named_tensors() -> None:
    s = Signature(
        tensors=(TensorSpec(name="a", dtype="int64", shape=(-1,)), TensorSpec(name="b", dtype="float64", shape=(-1, 2)))
    )
    v = validate(s, {"a": np.array([1, 2]), "b": np.zeros((2, 2))})
    assert v.to_wire() == {"inputs": {"a": [1, 2], "b": [[0.0, 0.0], [0.0, 0.0]]}}
    ps = problems(s, {"a": np.array([1.5])})
    assert {p.column for p in ps} == {"a", "b"}


# --------------------------------------------------------------------------- direct mode


def test_to_model_input_dtypes_match_signature() -> None:
    s = sig(
        col("f", "float"), col("d", "double"), col("i", "integer"), col("l", "long"), col("b", "boolean"),
        col("s", "string"), col("t", "datetime"), col("y", "binary"), col("o", "double", required=False),
    )  # fmt: skip
    v = validate(s, [{"f": 1, "d": 2, "i": 3, "l": 4, "b": True, "s": "x", "t": "2024-01-01", "y": b"a"}])
    df = v.to_model_input()
    assert dict(df.dtypes.astype(str)) == {
        "f": "float32", "d": "float64", "i": "int32", "l": "int64", "b": "bool",
        "s": "object", "t": "datetime64[ns]", "y": "object",
    }  # fmt: skip
    assert df["y"].iloc[0] == b"a"


def test_to_model_input_passes_mlflow_enforce_schema() -> None:
    mlflow_utils = pytest.importorskip("mlflow.models.utils")
    from mlflow.types.schema import ColSpec, Schema

    s = sig(
        col("f", "float"), col("i", "integer"), col("b", "boolean"), col("t", "datetime"), col("y", "binary"),
        col("s", "string"), col("l", "long"), col("d", "double", required=False), col("o", "string", required=False),
    )  # fmt: skip
    rows = [{"f": 1.5, "i": 3, "b": False, "t": "2024-01-01", "y": b"a", "s": "x", "l": 2**40, "d": None}] * 3
    v = validate(s, rows)
    schema = Schema([ColSpec(c.type, c.name, required=c.required) for c in s.columns])
    out = mlflow_utils._enforce_schema(v.to_model_input(), schema)
    assert list(out.columns) == ["f", "i", "b", "t", "y", "s", "l", "d"]
    assert out["l"].iloc[0] == 2**40


def test_to_model_input_unnamed_columns() -> None:
    s = Signature(columns=(ColumnSpec(type="integer"), ColumnSpec(type="float")))
    df = validate(s, {"x": [1], "y": [2]}).to_model_input()
    assert [str(t) for t in df.dtypes] == ["int32", "float32"]


# --------------------------------------------------------------------------- misc


def test_import_is_light() -> None:
    code = ("import sys, client._schema.validate; "
            "print(sorted(m for m in ('pandas','numpy','mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dataframe_input() -> None:
    s = sig(col("a", "long"), col("b", "double", required=False))
    v = validate(s, pd.DataFrame({"a": np.array([1, 2], dtype=np.int64), "b": [np.nan, 2.0]}))
    assert v.table.columns == {"a": [1, 2], "b": [None, 2.0]}


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
    st.binary(max_size=4), st.datetimes(), st.lists(st.integers(), max_size=2),
)  # fmt: skip
inputs_strategy = st.one_of(
    scalars,
    st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), scalars, max_size=3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=3),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    inputs=inputs_strategy,
    types=st.lists(st.sampled_from([*TYPES, "array", "any"]), min_size=1, max_size=3),
    required=st.booleans(),
)
def test_validate_raises_only_schema_errors(inputs, types, required) -> None:
    s = Signature(
        columns=tuple(ColumnSpec(name=n, type=t, required=required) for n, t in zip("abc", types, strict=False)),
        params=(ParamSpec(name="p", type=types[0], default=None),),
    )
    params = inputs if isinstance(inputs, dict) else {"p": inputs}
    try:
        v = validate(s, inputs, params)
    except SchemaValidationError as e:
        assert e.problems
        return
    json.dumps(v.to_wire())


MULTI_ROW_EXTRA = {
    "datetime": [datetime.datetime(2024, 1, 2, 3, 4, 5, 500000), datetime.datetime(2024, 1, 2), "20240102"],
    "double": ["nan", "inf", " 1.5", "1e5"],
    "long": [" 3", "+3", -(2**63)],
    "binary": [b"a", b"bb", b""],
}


@pytest.mark.parametrize("t", TYPES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), required=st.booleans())
def test_differential_multi_row(t: str, data, required: bool) -> None:
    """Columns mixing values: pandas infers one dtype per column, so mixes behave unlike singles."""
    pytest.importorskip("mlflow")
    rows = data.draw(st.lists(st.sampled_from(JSON_VALUES + MULTI_ROW_EXTRA.get(t, [])), min_size=2, max_size=4))
    ours = _ours_accepts_rows(t, required, rows)
    if ours is not None:
        assert _mlflow_accepts_body(t, required, ours.to_wire()["dataframe_split"]), rows
    elif not any(isinstance(r, (bytes, datetime.datetime)) or deliberately_stricter(t, r, required) for r in rows):
        assert not _mlflow_accepts_body(t, required, {"columns": ["x"], "data": [[r] for r in rows]}), rows


def _ours_accepts_rows(t: str, required: bool, rows: list) -> ValidatedInput | None:
    try:
        return validate(sig(col("x", t, required)), [{"x": r} for r in rows])
    except SchemaValidationError:
        return None


PARAM_DEFAULTS = {
    "boolean": True,
    "integer": 1,
    "long": 1,
    "float": 1.0,
    "double": 1.0,
    "string": "a",
    "datetime": datetime.datetime(2024, 1, 1),
}
PARAM_VALUES = [1, 0, 2**40, 2**63, 1.5, True, False, "1", "abc", "2024-01-02", None, {"a": 1}]


@pytest.mark.parametrize("shape", [None, (-1,)])
@pytest.mark.parametrize("t", sorted(PARAM_DEFAULTS))
def test_params_differential_against_mlflow(t: str, shape, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("mlflow")
    from mlflow.models.utils import _enforce_params_schema
    from mlflow.types.schema import ParamSchema
    from mlflow.types.schema import ParamSpec as MlflowParamSpec

    default = PARAM_DEFAULTS[t] if shape is None else [PARAM_DEFAULTS[t]]
    mschema = ParamSchema([MlflowParamSpec("p", t, default, shape)])
    s = Signature(
        columns=(ColumnSpec(name="x", type="any"),), params=(ParamSpec(name="p", type=t, default=default, shape=shape),)
    )

    def mlflow_ok(params: dict) -> bool:
        try:
            _enforce_params_schema(json.loads(json.dumps(params)), mschema)
        except Exception:
            return False
        return True

    disagreements = []
    for v in PARAM_VALUES + [[x] for x in PARAM_VALUES]:
        try:
            ours = validate(s, [{"x": 1}], {"p": v})
        except SchemaValidationError:
            ours = None
        if ours is not None:
            if not mlflow_ok(ours.to_wire().get("params", {})):
                disagreements.append(("we accept, server rejects", v))
        # Deliberate: np.datetime64("1") is the year 1; we take ISO 8601 datetimes only.
        elif mlflow_ok({"p": v}) and not (t == "datetime" and v in ("1", ["1"])):
            disagreements.append(("we reject, server accepts", v))
    assert disagreements == []


@pytest.mark.parametrize(
    "array",
    [
        np.ones((2, 3), dtype=np.float64),
        np.ones((2, 3), dtype=np.int8),
        np.array([[1.5, 2.5, 3.5]]),
        np.ones((1, 4)),
        np.array([[True, False, True]]),
        np.array([[2**40, 1, 2]]),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_tensor_accepted_inputs_pass_mlflow(array, dtype: str) -> None:
    pytest.importorskip("mlflow")
    from mlflow.models.utils import _enforce_schema
    from mlflow.types.schema import Schema
    from mlflow.types.schema import TensorSpec as MlflowTensorSpec
    from mlflow.utils.proto_json_utils import parse_tf_serving_input

    s = Signature(tensors=(TensorSpec(dtype=dtype, shape=(-1, 3)),))
    try:
        v = validate(s, array)
    except SchemaValidationError:
        return
    schema = Schema([MlflowTensorSpec(np.dtype(dtype), (-1, 3))])
    parsed = parse_tf_serving_input(json.loads(json.dumps(v.to_wire())), schema)
    _enforce_schema(parsed, schema)
    assert np.array_equal(np.asarray(parsed), array.astype(dtype))


tensor_inputs = st.one_of(
    scalars,
    st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.lists(st.floats(), max_size=3)), max_size=4),
    st.dictionaries(st.sampled_from(["a", "b"]), st.lists(st.integers(), max_size=3), max_size=2),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=tensor_inputs,
    dtype=st.sampled_from(["float32", "float64", "int32", "int64", "bool"]),
    named=st.booleans(),
)
def test_validate_tensor_raises_only_schema_errors(inputs, dtype: str, named: bool) -> None:
    s = Signature(tensors=(TensorSpec(name="a" if named else None, dtype=dtype, shape=(-1,)),))
    try:
        v = validate(s, inputs)
    except SchemaValidationError as e:
        assert e.problems
        return
    json.dumps(v.to_wire())


@pytest.mark.parametrize("spelled", ["nan", "NaN", " nan ", float("nan"), None])
@pytest.mark.parametrize("t", ["double", "float"])
def test_a_missing_value_is_missing_however_it_is_spelled(t: str, spelled) -> None:
    """The text "nan" is a missing value as float NaN and None are: refused in a required column,
    sent as null in an optional one (it used to pass a required column and reach the model as NaN)."""
    s = Signature(columns=(ColumnSpec(name="x", type=t), ColumnSpec(name="y", type=t, required=False)))
    with pytest.raises(SchemaValidationError, match="missing value in a required column"):
        validate(s, [{"x": spelled, "y": 1.0}])
    assert validate(s, [{"x": 1.0, "y": spelled}]).to_wire()["dataframe_split"]["data"] == [[1.0, None]]


@pytest.mark.parametrize("spelled", ["inf", "-Infinity", "+inf", float("inf"), float("-inf")])
@pytest.mark.parametrize("required", [True, False])
def test_a_non_finite_number_is_refused_however_it_is_spelled(spelled, required: bool) -> None:
    """inf cannot travel as JSON, so direct mode refuses it too, as text or as a float."""
    s = Signature(columns=(ColumnSpec(name="x", type="double", required=required),))
    with pytest.raises(SchemaValidationError, match="not a finite number") as info:
        validate(s, [{"x": 1.5}, {"x": spelled}])
    assert [(p.row, p.column) for p in info.value.problems] == [(1, "x")]
