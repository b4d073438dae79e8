"""Bad input: property tests over generated signatures and inputs, and hostile payloads.

* The validator raises ``SchemaValidationError`` and nothing else, whatever it is given.
* Its accept/reject agrees with MLflow's own scoring path (``dataframe_from_parsed_json`` then
  ``mlflow.models.utils._enforce_schema``), except for the documented cases where we are
  stricter on purpose (``test_schema.deliberately_stricter`` plus :func:`stricter` below).
* Through a Predictor, invalid input never reaches the network (``httpx.MockTransport``
  counts requests), and what is sent is strict JSON under Model Serving's 16 MB limit.
* Oversized bodies, NaN/inf, deep nesting, huge strings and badly encoded CSV files end in
  a typed error with a short message, never a crash or a hang.

Every property test counts the cases it ran and prints the count.
"""

from __future__ import annotations

import datetime
import json
import math
import warnings
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema import JSON_VALUES, deliberately_stricter

from client import Predictor, SchemaValidationError
from client._constants import MAX_PAYLOAD_BYTES
from client._schema.validate import validate
from client._settings import Identity
from client._types import ColumnSpec, ParamSpec, Signature

TYPES = ["boolean", "integer", "long", "float", "double", "string", "datetime"]
NAMES = ["a", "b", "c", "d"]
SETTINGS = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}


def stricter(t: str, v: Any, required: bool = False) -> bool:
    """``deliberately_stricter`` from test_schema, plus what generated values turned up.

    Each addition is a value MLflow's server accepts by silently changing it.
    """
    if deliberately_stricter(t, v, required):
        return True
    if t == "datetime" and isinstance(v, str):
        # pandas guesses: "2024" is a year, "nan"/"NaT"/"now"/"today" are accepted too; we take
        # ISO 8601 only, as datetime.fromisoformat reads it.
        try:
            datetime.datetime.fromisoformat(v.strip())
        except ValueError:
            return True
    if t == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        # float32 overflow: astype(float32) gives inf; precision loss alone is not a problem.
        return math.isfinite(v) and abs(v) > 3.4028234663852886e38
    return False


# --------------------------------------------------------------------------- MLflow's side


def _mlflow_accepts(columns: list[ColumnSpec], body: dict[str, Any]) -> bool:
    from mlflow.models.utils import _enforce_schema
    from mlflow.types.schema import ColSpec, Schema
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    schema = Schema([ColSpec(c.type, c.name, required=c.required) for c in columns])
    body = json.loads(json.dumps(body))  # exactly what the server parses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _enforce_schema(dataframe_from_parsed_json(body, "split", schema), schema)
        except Exception:
            return False
    return True


# --------------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.sampled_from([v for v in JSON_VALUES if not isinstance(v, (list, dict))]),
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["2024", "nan", "NaT", "1e3", " 2 ", "-0", "0x10", "2024-02-30", "2024-01-02T25:00:00"]),
)


GOOD: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "string": st.text(max_size=8),
    "datetime": st.datetimes().map(lambda d: d.isoformat()),
}


@st.composite
def table_case(draw: st.DrawFn) -> tuple[list[ColumnSpec], dict[str, list[Any]]]:
    """A column signature and a dict-of-columns input for it (JSON values only)."""
    n_cols = draw(st.integers(1, 4))
    columns = [
        ColumnSpec(name=NAMES[i], type=draw(st.sampled_from(TYPES)), required=draw(st.booleans()))
        for i in range(n_cols)
    ]
    n_rows = draw(st.integers(1, 3))
    data: dict[str, list[Any]] = {}
    for c in columns:
        if not c.required and draw(st.integers(0, 5)) == 0:
            continue  # an optional column left out
        # Mostly values of the column's own type, sometimes anything a JSON body can hold.
        cell = st.one_of(*[GOOD[c.type]] * 9, json_scalars)
        data[c.name or ""] = draw(st.lists(cell, min_size=n_rows, max_size=n_rows))
    return columns, data


def _split_body(columns: list[ColumnSpec], data: dict[str, list[Any]]) -> dict[str, Any]:
    names = [c.name for c in columns if c.name in data]
    n = len(next(iter(data.values()))) if data else 0
    return {"columns": names, "data": [[data[name][i] for name in names] for i in range(n)]}


# --------------------------------------------------------------------------- properties


@pytest.mark.slow
def test_accepts_exactly_what_mlflow_accepts() -> None:
    pytest.importorskip("mlflow")
    cases = {"n": 0, "accepted": 0, "rejected": 0, "problems_stricter_on_purpose": 0}
    disagreements: list[tuple[str, Any]] = []

    @settings(max_examples=600, **SETTINGS)
    @given(case=table_case())
    def check(case: tuple[list[ColumnSpec], dict[str, list[Any]]]) -> None:
        columns, data = case
        cases["n"] += 1
        if not data:
            return
        try:
            ours = validate(Signature(columns=tuple(columns)), data)
        except SchemaValidationError as err:
            assert err.problems
            cases["rejected"] += 1
            by_name = {c.name: c for c in columns}
            for problem in err.problems:
                spec = by_name.get(problem.column)
                if spec is None or problem.row is None:
                    # The whole input (a missing column): MLflow must refuse the body, unless a
                    # cell anywhere is one we refuse on purpose.
                    if any(stricter(c.type, v, c.required) for c in columns for v in data.get(c.name or "", [])):
                        cases["problems_stricter_on_purpose"] += 1
                    elif _mlflow_accepts(columns, _split_body(columns, data)):
                        disagreements.append((f"we reject ({problem}), MLflow accepts", case))
                    continue
                values = data[spec.name or ""]
                if stricter(spec.type, values[problem.row], spec.required):
                    cases["problems_stricter_on_purpose"] += 1
                elif _mlflow_accepts([spec], {"columns": [spec.name], "data": [[v] for v in values]}):
                    # One cell we refuse for no documented reason: MLflow must refuse its column.
                    disagreements.append((f"we reject ({problem}), MLflow accepts the column", case))
            return
        cases["accepted"] += 1
        wire = ours.to_wire()["dataframe_split"]
        if not _mlflow_accepts(columns, wire):
            disagreements.append(("we accept, MLflow rejects our body", case))

    check()
    print(f"\ndifferential vs MLflow _enforce_schema: {cases}")
    assert disagreements == [], disagreements[:5]
    assert cases["n"] >= 500 and cases["accepted"] > 50 and cases["rejected"] > 100


@pytest.mark.parametrize("value", ["0001-01-01T01:01:00", "3281-02-02T23:06:27.000069"])
def test_datetimes_outside_pandas_range_are_refused(value: str) -> None:
    """The server's datetime64[ns] column holds 1677-09-21..2262-04-11; beyond, MLflow refuses the body."""
    pytest.importorskip("mlflow")
    column = ColumnSpec(name="a", type="datetime")
    assert not _mlflow_accepts([column], {"columns": ["a"], "data": [[value]]})
    with pytest.raises(SchemaValidationError):
        validate(Signature(columns=(column,)), {"a": [value]})


wild = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=6),
        st.datetimes(), st.dates(), st.sampled_from([object(), Ellipsis, float("nan"), float("-inf"), b"\xff"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3),
                            st.tuples(inner)),
    max_leaves=12,
)
wild_inputs = st.one_of(
    wild,
    st.lists(st.dictionaries(st.sampled_from(NAMES), wild, max_size=4), max_size=4),
    st.dictionaries(st.sampled_from([*NAMES, "zz"]), st.one_of(wild, st.lists(wild, max_size=4)), max_size=4),
)
wild_signature = st.builds(
    lambda cols, params: Signature(columns=tuple(cols), params=tuple(params)),
    st.lists(
        # "any" (and "array" without items) pass values through: see test_any_column_with_unserialisable_values
        st.builds(ColumnSpec, name=st.sampled_from(NAMES), type=st.sampled_from([*TYPES, "binary"]),
                  required=st.booleans()),
        min_size=1, max_size=4, unique_by=lambda c: c.name,
    ),
    st.lists(
        st.builds(ParamSpec, name=st.sampled_from(["p", "q"]), type=st.sampled_from(TYPES),
                  default=st.one_of(st.none(), st.integers(0, 3))),
        max_size=2, unique_by=lambda p: p.name,
    ),
)


@pytest.mark.slow
def test_validator_raises_only_schema_errors_and_sends_nothing_for_them() -> None:
    """Any input, any signature: ``SchemaValidationError`` and no request, or one strict-JSON request."""
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        n = len(json.loads(request.content)["dataframe_split"]["data"])
        return httpx.Response(200, json={"predictions": [0] * n})

    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", http_transport=httpx.MockTransport(handler),
                                batching=False, max_retries=0)
    cases = {"n": 0, "rejected": 0, "sent": 0}

    @settings(max_examples=500, **SETTINGS)
    @given(signature=wild_signature, inputs=wild_inputs, params=st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["p", "q", "r"]), wild, max_size=2)))
    def check(signature: Signature, inputs: Any, params: Any) -> None:
        cases["n"] += 1
        p._identity = Identity(signature)
        before = len(sent)
        try:
            p.predict(inputs, params)
        except SchemaValidationError as err:
            assert err.problems
            assert len(sent) == before, "a request was sent for invalid input"
            cases["rejected"] += 1
            return
        assert len(sent) == before + 1
        body = json.loads(sent[-1], parse_constant=_no_constants)  # strict JSON: no NaN/Infinity
        assert len(sent[-1]) <= MAX_PAYLOAD_BYTES
        assert "dataframe_split" in body
        cases["sent"] += 1

    try:
        check()
    finally:
        p.close()
    print(f"\nvalidator through Predictor + MockTransport: {cases}")
    assert cases["n"] >= 400 and cases["rejected"] > 100 and cases["sent"] > 10


@pytest.mark.parametrize(("kind", "value"), [("any", (b"",)), ("any", (object(),)), ("array", (object(),))],
                         ids=["any-bytes-in-tuple", "any-object", "array-object"])
def test_any_column_with_unserialisable_values_is_a_schema_error(kind: str, value: Any) -> None:
    """Values passed through unconverted ("any", "array" without items) must still be JSON."""
    rec = Recorder()
    with _predictor(rec, Signature(columns=(ColumnSpec(name="a", type=kind),)), batching=False) as p, \
            pytest.raises(SchemaValidationError):
        p.predict([{"a": value}])
    assert rec.bodies == []


def _no_constants(name: str) -> Any:
    raise AssertionError(f"{name} sent on the wire")


@pytest.mark.slow
def test_csv_text_of_any_shape_parses_or_raises_schema_errors() -> None:
    from frontends.core.form import parse_csv_rows

    signature = Signature(columns=(ColumnSpec(name="x", type="double"), ColumnSpec(name="s", type="string"),
                                   ColumnSpec(name="n", type="long", required=False)))
    cases = {"n": 0, "rejected": 0, "parsed": 0}
    crashes: list[tuple[str, str]] = []

    @settings(max_examples=200, **SETTINGS)
    @given(text=st.one_of(
        st.text(max_size=60),
        st.lists(st.lists(st.text(alphabet="x,sn\"\r\n1.5 é\x00\ufeff", max_size=6), max_size=4), max_size=4).map(
            lambda rows: "x,s,n\n" + "\n".join(",".join(r) for r in rows)),
    ))
    def check(text: str) -> None:
        cases["n"] += 1
        try:
            records = parse_csv_rows(text, signature)
        except SchemaValidationError:
            cases["rejected"] += 1
            return
        except Exception as exc:
            crashes.append((type(exc).__name__, text))
            return
        assert isinstance(records, list) and all(isinstance(r, dict) for r in records)
        cases["parsed"] += 1

    check()
    print(f"\nparse_csv_rows on generated text: {cases}")
    assert crashes == [], crashes[:5]
    assert cases["n"] >= 150


# --------------------------------------------------------------------------- hostile payloads


class Recorder:
    """A MockTransport that counts what reaches the network."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        body = json.loads(request.content)
        n = len(body["dataframe_split"]["data"]) if "dataframe_split" in body else 1
        return httpx.Response(200, json={"predictions": [0] * n})


def _predictor(rec: Recorder, signature: Signature | None, **kwargs: Any) -> Predictor:
    p = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations", http_transport=httpx.MockTransport(rec),
                                max_retries=0, **kwargs)
    p._identity = Identity(signature)
    return p


STRING_SIG = Signature(columns=(ColumnSpec(name="s", type="string"),))
DOUBLE_SIG = Signature(columns=(ColumnSpec(name="x", type="double"), ColumnSpec(name="y", type="double",
                                                                                 required=False)))


@pytest.mark.parametrize("batching", [False, True], ids=["batching-off", "batching-on"])
def test_one_row_over_16_mb_is_a_typed_error_and_nothing_is_sent(batching: bool) -> None:
    rec = Recorder()
    with _predictor(rec, STRING_SIG, batching=batching) as p, pytest.raises(SchemaValidationError) as info:
        p.predict([{"s": "x" * (MAX_PAYLOAD_BYTES + 10)}])
    assert rec.bodies == []
    assert "16,777,216" in str(info.value) and len(str(info.value)) < 300


def test_many_rows_over_16_mb_are_never_sent_as_one_oversized_body() -> None:
    """Either split into bodies under the limit (each row answered) or refused, never sent whole."""
    rec = Recorder()
    rows = [{"s": "y" * 500_000} for _ in range(40)]  # ~20 MB in all
    with _predictor(rec, STRING_SIG) as p:
        try:
            result = p.predict(rows)
        except SchemaValidationError:
            assert rec.bodies == []
        else:
            assert len(result.predictions) == 40
            assert len(rec.bodies) >= 2
    assert all(len(b) <= MAX_PAYLOAD_BYTES for b in rec.bodies)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_nan_and_inf_never_reach_the_wire(value: float) -> None:
    rec = Recorder()
    with _predictor(rec, DOUBLE_SIG) as p:
        # In a required column: a missing value (NaN) or not JSON (inf): refused, nothing sent.
        with pytest.raises(SchemaValidationError):
            p.predict([{"x": value}])
        assert rec.bodies == []
        # In an optional column NaN means "missing": sent as null. inf is still refused.
        try:
            p.predict([{"x": 1.0, "y": value}])
        except SchemaValidationError:
            assert not math.isnan(value)
            assert rec.bodies == []
        else:
            assert math.isnan(value)
            assert json.loads(rec.bodies[-1], parse_constant=_no_constants)["dataframe_split"]["data"] == [[1.0, None]]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": [value]}
    return value


@pytest.mark.parametrize("depth", [50, 5_000, 200_000])
@pytest.mark.parametrize("where", ["string column", "any column", "no signature", "param"])
def test_deeply_nested_objects_are_typed_errors_or_sent_intact(where: str, depth: int) -> None:
    rec = Recorder()
    value = _nested(depth)
    signature = {
        "string column": STRING_SIG,
        "any column": Signature(columns=(ColumnSpec(name="s", type="any"),)),
        "no signature": None,
        "param": Signature(columns=(ColumnSpec(name="s", type="string"),),
                           params=(ParamSpec(name="p", type="string", default="a"),)),
    }[where]
    inputs, params = ([{"s": "ok"}], {"p": value}) if where == "param" else ([{"s": value}], None)
    with _predictor(rec, signature, batching=False) as p:
        try:
            p.predict(inputs, params)
        except SchemaValidationError as err:
            assert rec.bodies == []
            assert len(str(err)) < 2_000
        else:
            assert len(rec.bodies) == 1  # sent: then the body must be the value, intact
            assert where in ("any column", "no signature")


def test_huge_strings_are_sent_intact_or_refused_with_a_short_message() -> None:
    rec = Recorder()
    big = "é" * 2_000_000
    with _predictor(rec, STRING_SIG) as p:
        assert p.predict([{"s": big}]).predictions == [0]
        assert json.loads(rec.bodies[-1])["dataframe_split"]["data"] == [[big]]
    rec = Recorder()
    with _predictor(rec, DOUBLE_SIG) as p, pytest.raises(SchemaValidationError) as info:
        p.predict([{"x": big}])
    assert rec.bodies == [] and len(str(info.value)) < 200


# --------------------------------------------------------------------------- CSV uploads

CSV_SIG = Signature(columns=(ColumnSpec(name="city", type="string"), ColumnSpec(name="x", type="double")))
CSV_TEXT = "city,x\nZürich,1.5\nMünchen,2\n"


def _as_app_reads(data: bytes) -> str:
    """What both apps do with an uploaded file's bytes before parsing (``UnicodeDecodeError`` is theirs to show)."""
    return data.decode("utf-8-sig")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_csv_in_utf8_with_or_without_bom_parses(encoding: str) -> None:
    from frontends.core.form import parse_csv_rows

    rows = parse_csv_rows(_as_app_reads(CSV_TEXT.encode(encoding)), CSV_SIG)
    assert rows == [{"city": "Zürich", "x": 1.5}, {"city": "München", "x": 2.0}]


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-32"])
def test_csv_in_another_encoding_is_refused_not_misread(encoding: str) -> None:
    """Decoding fails (the app shows "not UTF-8"), or what decodes is refused by the parser; a
    file never parses into rows with silently different text."""
    from frontends.core.form import parse_csv_rows

    data = CSV_TEXT.encode(encoding)
    try:
        text = _as_app_reads(data)
    except UnicodeDecodeError:
        return
    with pytest.raises(SchemaValidationError):
        parse_csv_rows(text, CSV_SIG)


@pytest.mark.parametrize("text", [
    "city,x\nA,1\x00\n",
    "city,x\n" + "A," + "9" * 200_000 + "\n",
    "city,x\n\"A,1\n",
    "\x00\x00\x00",
    "city,x\r\nA,1\r\nB\r\n",
    "city,x\n" + "A,1\n" * 20_000,
], ids=["nul", "huge-field", "open-quote", "only-nul", "short-row", "20k-rows"])
def test_malformed_csv_is_a_schema_error_or_rows(text: str) -> None:
    from frontends.core.form import parse_csv_rows

    try:
        rows = parse_csv_rows(text, CSV_SIG)
    except SchemaValidationError as err:
        assert err.problems and len(str(err)) < 5_000
        return
    assert all(set(r) <= {"city", "x"} for r in rows)
