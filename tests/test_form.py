"""The framework-neutral form: fields from a signature, form values and CSV to records."""

from __future__ import annotations

import pytest

from client import AuthenticationError, PredictorError, RateLimitError, SchemaProblem, SchemaValidationError, Signature
from client._types import ColumnSpec, TensorSpec
from frontends.core.example import _records, choices_hint, form_fields, suggestions_from_example
from frontends.core.form import (
    build_fields,
    convert_value,
    csv_template,
    form_to_record,
    parse_csv_rows,
    signature_rows,
)
from frontends.core.proba import class_probabilities, prediction_label
from frontends.core.session import (
    SESSION_EXPIRED,
    AppConfig,
    caller_identity,
    describe_error,
    format_prediction,
    model_info,
    prediction_distribution,
    prediction_rows,
    user_token_from_headers,
)

MIXED = Signature(columns=(
    ColumnSpec(name="x", type="double"),
    ColumnSpec(name="f", type="float"),
    ColumnSpec(name="n", type="long"),
    ColumnSpec(name="s", type="string"),
    ColumnSpec(name="b", type="boolean"),
    ColumnSpec(name="t", type="datetime"),
    ColumnSpec(name="note", type="string", required=False),
))


def test_fields_kinds_and_required():
    fields = build_fields(MIXED)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("x", "float", True), ("f", "float", True), ("n", "int", True), ("s", "text", True),
        ("b", "bool", True), ("t", "datetime", True), ("note", "text", False),
    ]
    assert all(f.label == f.name for f in fields)


def test_defaults_from_example_and_choices():
    fields = {f.name: f for f in build_fields(MIXED, example={"x": "1.5", "n": 3, "b": "yes", "t": "2024-01-02"},
                                              choices={"s": ["a", "b"]})}
    assert fields["x"].default == 1.5
    assert fields["n"].default == 3
    assert fields["b"].default is True
    assert fields["t"].default == "2024-01-02T00:00:00"
    assert fields["s"].kind == "choice" and fields["s"].choices == ("a", "b")


def test_no_fields_for_tensor_or_missing_signature():
    assert build_fields(None) == []
    assert build_fields(Signature(tensors=(TensorSpec(dtype="float32", shape=(-1, 4)),))) == []


@pytest.mark.parametrize(("kind", "raw", "want"), [
    ("float", "2.5", 2.5), ("float", 3, 3.0), ("int", "4", 4), ("int", 4.0, 4), ("bool", "No", False),
    ("bool", True, True), ("text", " hi ", "hi"), ("float", "", None), ("int", None, None),
    ("datetime", "2024-01-31T12:00:00", "2024-01-31T12:00:00"),
])
def test_convert_value(kind, raw, want):
    assert convert_value(kind, raw) == want


@pytest.mark.parametrize(("kind", "raw"), [("float", "abc"), ("int", "1.5"), ("bool", "maybe"),
                                           ("datetime", "yesterday"), ("float", True)])
def test_convert_value_rejects(kind, raw):
    with pytest.raises(ValueError):
        convert_value(kind, raw)


def test_form_to_record_converts_and_drops_blank_optional():
    fields = build_fields(MIXED)
    record = form_to_record(fields, {"x": 1, "f": "2", "n": "3", "s": "a", "b": False, "t": "2024-01-01", "note": ""})
    assert record == {"x": 1.0, "f": 2.0, "n": 3, "s": "a", "b": False, "t": "2024-01-01T00:00:00"}


def test_form_to_record_collects_every_problem():
    with pytest.raises(SchemaValidationError) as e:
        form_to_record(build_fields(MIXED), {"x": "nope", "f": None, "n": "1.5", "s": "a", "b": True, "t": "x"})
    assert {p.column for p in e.value.problems} == {"x", "f", "n", "t"}


def test_parse_csv_rows():
    text = "\ufeffx,f,n,s,b,t,note\n1.5,2,3,a,true,2024-01-01,\n-1,0,7,b,0,2024-02-01T10:00:00,hello\n"
    rows = parse_csv_rows(text, MIXED)
    assert rows[0] == {"x": 1.5, "f": 2.0, "n": 3, "s": "a", "b": True, "t": "2024-01-01T00:00:00"}
    assert rows[1]["note"] == "hello" and rows[1]["b"] is False


def test_parse_csv_rows_reports_rows_and_columns():
    with pytest.raises(SchemaValidationError) as e:
        parse_csv_rows("x,n\n1,2\nbad,3\n", MIXED)
    problems = e.value.problems
    assert any(p.column == "s" and p.row is None for p in problems)  # missing required column
    assert any(p.column == "x" and p.row == 1 for p in problems)


def test_parse_csv_rows_empty():
    with pytest.raises(SchemaValidationError):
        parse_csv_rows("", MIXED)
    with pytest.raises(SchemaValidationError):
        parse_csv_rows("x,f,n,s,b,t\n", MIXED)


def test_csv_template_round_trips():
    assert csv_template(MIXED).strip() == "x,f,n,s,b,t,note"
    assert csv_template(None).strip() == ""


def test_signature_rows():
    assert signature_rows(MIXED)[-1] == {"input": "note", "type": "string", "required": False}
    assert signature_rows(None) == []


def test_config_from_env_and_user_token():
    cfg = AppConfig.from_env({"PREDICTOR_ENDPOINT": "iris", "PREDICTOR_ON_BEHALF_OF_USER": "1"})
    assert cfg.endpoint == "iris" and cfg.on_behalf_of_user and not cfg.uses_demo
    headers = {"x-forwarded-access-token": "tok123"}
    assert user_token_from_headers(headers, cfg) == "tok123"
    assert caller_identity(headers, cfg).startswith("user:") and "tok123" not in caller_identity(headers, cfg)
    off = AppConfig.from_env({})
    assert off.uses_demo
    assert user_token_from_headers(headers, off) is None and caller_identity(headers, off) == "app"


def test_format_prediction_and_rows():
    assert format_prediction([0]) == "0"
    assert format_prediction(["setosa"]) == "setosa"
    assert format_prediction([{"label": 2}]) == "2"
    assert format_prediction([0.123456789]) == "0.123457"
    rows = prediction_rows([{"a": 1}, {"a": 2}], [0, 1])
    assert rows == [{"a": 1, "prediction": 0}, {"a": 2, "prediction": 1}]


# -- class probabilities ----------------------------------------------------------------------



@pytest.mark.parametrize(("pred", "want"), [
    ({"cat": 0.7, "dog": 0.3}, {"cat": 0.7, "dog": 0.3}),
    ({"label": "cat", "probability_cat": 0.6, "probability_dog": 0.2}, {"cat": 0.6, "dog": 0.2}),
    ({"label": "cat", "probabilities": {"cat": 0.9, "dog": 0.1}}, {"cat": 0.9, "dog": 0.1}),
    ({"label": 1, "probabilities": [0.25, 0.75]}, {"0": 0.25, "1": 0.75}),
    ([0.1, 0.2, 0.7], {"0": 0.1, "1": 0.2, "2": 0.7}),
])
def test_class_probabilities_shapes(pred, want):
    assert class_probabilities(pred) == pytest.approx(want)


@pytest.mark.parametrize("pred", [
    0.7, "cat", 3, {"label": 2}, {"a": 2.0, "b": 5.0}, {"a": 0.2, "b": 0.3}, [0.5, 0.7], [1.0, 2.0, "x"],
    {"probabilities": {"cat": 1.5, "dog": -0.5}}, [True, False], {"cat": float("nan"), "dog": 0.5},
])
def test_no_probabilities_for_other_outputs(pred):
    assert class_probabilities(pred) is None


def test_prediction_label_and_format():
    assert prediction_label({"label": "cat", "probability_cat": 0.6, "probability_dog": 0.4}) == "cat"
    assert prediction_label({"cat": 0.3, "dog": 0.7}) == "dog"
    assert prediction_label([0.1, 0.9]) == "1"
    assert format_prediction([{"label": "dog", "probabilities": {"cat": 0.2, "dog": 0.8}}]) == "dog"
    assert format_prediction([[0.2, 0.8]]) == "1"


# -- input example, hints, open and closed choices -----------------------------------------------


ROWS = [{"x": 1.0, "s": "red", "note": "a"}, {"x": 2.0, "s": "blue", "note": "b"}, {"x": 3.0, "s": "red"}]


def test_suggestions_from_a_multi_row_example_only_for_string_columns():
    assert suggestions_from_example(MIXED, ROWS) == {"s": ["red", "blue"], "note": ["a", "b"]}
    assert suggestions_from_example(MIXED, ROWS[:1]) == {}  # one row: nothing to choose from
    assert suggestions_from_example(None, ROWS) == {}


def test_choices_hint_parsing():
    assert choices_hint({"PREDICTOR_FIELD_CHOICES": '{"s": ["a", 1]}'}) == {"s": ["a", "1"]}
    assert choices_hint({"PREDICTOR_FIELD_CHOICES": "not json"}) == {}
    assert choices_hint({"PREDICTOR_FIELD_CHOICES": '["a"]'}) == {}
    assert choices_hint({}) == {}


def test_form_fields_defaults_suggestions_and_hints():
    fields = {f.name: f for f in form_fields(MIXED, ROWS, {"PREDICTOR_FIELD_CHOICES": '{"note": ["a", "z"]}'})}
    assert fields["x"].default == 1.0 and fields["s"].default == "red"
    assert (fields["s"].kind, fields["s"].choices, fields["s"].open_choices) == ("choice", ("red", "blue"), True)
    assert (fields["note"].choices, fields["note"].open_choices) == (("a", "z"), False)
    assert fields["x"].choices == () and fields["x"].kind == "float"  # hints never turn numbers into text
    base = {"x": 1, "f": 1, "n": 1, "b": True, "t": "2024-01-01"}
    assert form_to_record(list(fields.values()), {**base, "s": "green", "note": "z"})["s"] == "green"
    with pytest.raises(SchemaValidationError) as e:
        form_to_record(list(fields.values()), {**base, "s": "red", "note": "b"})
    assert [p.column for p in e.value.problems] == ["note"]


def test_example_records_from_mlflow_shapes():
    import pandas as pd

    df = pd.DataFrame({"x": [1.5, float("nan")], "t": pd.to_datetime(["2024-01-02", "2024-01-03"])})
    assert _records(df) == [{"x": 1.5, "t": "2024-01-02T00:00:00"}, {"x": None, "t": "2024-01-03T00:00:00"}]
    assert _records({"x": [1, 2], "s": ["a", "b"]}) == [{"x": 1, "s": "a"}, {"x": 2, "s": "b"}]
    assert _records({"x": 1}) == [{"x": 1}]
    assert _records([[1, 2]]) == []


# -- errors and the batch distribution ---------------------------------------------------------



def test_describe_error():
    auth = AuthenticationError("Token expired.", status_code=401, error_code="UNAUTHENTICATED")
    assert describe_error(auth, as_user=True) == SESSION_EXPIRED
    assert "Reload" not in describe_error(auth) and "401" in describe_error(auth)
    assert "busy" in describe_error(RateLimitError("slow down", status_code=429))
    problems = SchemaValidationError([SchemaProblem("expected a number", column="x")])
    assert "column 'x': expected a number" in describe_error(problems)
    assert describe_error(PredictorError("boom")) == "**Prediction failed:** boom"
    text = describe_error(KeyError("secret-token-value"))
    assert "KeyError" in text and "secret-token-value" not in text and "Traceback" not in text


def test_prediction_distribution():
    import pandas as pd

    counts = prediction_distribution(pd.DataFrame({"label": ["cat", "dog", "cat"]}))
    assert counts.to_dict("records") == [{"prediction": "cat", "count": 2}, {"prediction": "dog", "count": 1}]
    binned = prediction_distribution(pd.DataFrame({"prediction": [i / 7 for i in range(40)]}))
    assert len(binned) == 10 and binned["count"].sum() == 40
    assert prediction_distribution(pd.DataFrame({"x": [1]})) is None


def test_model_card_names_the_alias():
    from client import Predictor

    config = AppConfig(model_uri="models:/main.default.mixed@champion")
    predictor = Predictor.from_endpoint(url="http://127.0.0.1:9/invocations")
    card = model_info(predictor, config).card()
    assert "**Version:** unknown (alias @champion)" in card and "**Mode:** endpoint" in card
    assert model_info(predictor, AppConfig(endpoint_url="http://x/invocations")).alias is None


def test_parse_csv_rows_unreadable_csv_is_a_schema_error():
    sig = Signature(columns=(ColumnSpec(name="x", type="double"),))
    assert parse_csv_rows("x\r1\r2\r", sig) == [{"x": 1.0}, {"x": 2.0}]  # old Mac line ends
    with pytest.raises(SchemaValidationError) as e:
        parse_csv_rows("x\n1\n" + "9" * 200_000 + "\n", sig)
    assert e.value.problems[-1].row == 1 and "not valid CSV" in e.value.problems[-1].message


def test_result_caption_says_when_the_endpoint_needed_retries():
    from frontends.core.session import result_caption

    base = {"model_name": "m", "model_version": "3", "mode": "endpoint"}
    assert result_caption(base) == "model m version 3, endpoint"
    assert result_caption({**base, "served_model_name": "m-3", "retries": 2}) == (
        "model m version 3, endpoint, served by m-3; the endpoint was busy or failing: answered after 2 retries")


def test_model_card_shows_the_endpoint_state_and_the_run():
    from frontends.core.session import ModelInfo

    info = ModelInfo(name="main.default.iris", version="3", mode="endpoint", source="endpoint iris",
                     run_id="0123abcd", endpoint_state={"ready": "READY", "config_update": "NOT_UPDATING"})
    card = info.card()
    assert "**Endpoint state:** config_update NOT_UPDATING, ready READY" in card
    assert "**Run:** `0123abcd`" in card
    assert "Endpoint state" not in ModelInfo(name="m", version="1", mode="direct", source="model").card()
