"""Both apps on a classifier that returns class probabilities and was logged with an input example:
the form is pre-filled from the example, its string column offers the example's values, and the
probabilities are drawn as a bar chart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _proba_model import EXAMPLE, PROBA_MODEL_URI, probabilities, register_proba_model

from frontends.core.session import AppConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def label(row: dict) -> str:
    p = probabilities(row)
    return max(p, key=lambda c: p[c])


@pytest.fixture
def animals(registry_uri, monkeypatch):
    register_proba_model(registry_uri)
    for var in ("PREDICTOR_ENDPOINT", "PREDICTOR_ENDPOINT_URL", "PREDICTOR_ON_BEHALF_OF_USER",
                "PREDICTOR_FIELD_CHOICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREDICTOR_REGISTRY_URI", registry_uri)
    monkeypatch.setenv("PREDICTOR_MODEL_URI", PROBA_MODEL_URI)
    return monkeypatch


def _apptest():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    st.cache_data.clear()
    return AppTest.from_file(str(ROOT / "frontends" / "streamlit_ui" / "app.py"), default_timeout=120)


def test_streamlit_example_defaults_choices_and_probability_chart(animals):
    at = _apptest().run()
    assert not at.exception, at.exception
    color = at.selectbox(key="field:color")
    assert (color.label, list(color.options), color.value) == ("color", ["brown", "black", "white"], "brown")
    assert at.number_input(key="field:size").value == EXAMPLE[0]["size"]
    assert at.number_input(key="field:legs").value == EXAMPLE[0]["legs"]
    assert all(w.help.endswith(", required") for w in [*at.number_input, color])
    assert not at.get("vega_lite_chart")

    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.metric[0].value == label(EXAMPLE[0])
    assert len(at.get("vega_lite_chart")) == 1  # the class probabilities

    # the example's colours are suggestions: the widget accepts others (AppTest cannot type one; Gradio's test does)
    assert at.selectbox(key="field:color").proto.accept_new_options
    row = {"size": 1.5, "color": "white", "legs": 4}
    at.selectbox(key="field:color").set_value("white")
    at.number_input(key="field:size").set_value(row["size"])
    at.number_input(key="field:legs").set_value(row["legs"])
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.metric[0].value == label(row)


def test_streamlit_choices_hint_limits_a_column(animals):
    animals.setenv("PREDICTOR_FIELD_CHOICES", '{"color": ["white", "brown"]}')
    at = _apptest().run()
    assert list(at.selectbox(key="field:color").options) == ["white", "brown"]
    assert not at.selectbox(key="field:color").proto.accept_new_options
    assert at.selectbox(key="field:color").value == "brown"  # the example's first row, among the choices


def test_gradio_example_defaults_choices_and_probabilities(animals, tmp_path):
    import gradio as gr

    from frontends.gradio_ui.app import create_app, predict_values, score_csv

    demo, runtime = create_app(AppConfig.from_env())
    assert runtime is not None
    fields = {f.name: f for f in runtime.fields}
    assert fields["color"].choices == ("brown", "black", "white") and fields["color"].open_choices
    dropdown = next(c for c in demo.blocks.values() if isinstance(c, gr.Dropdown) and c.label == "color")
    assert dropdown.value == "brown" and dropdown.allow_custom_value

    row = {"size": 1.5, "color": "purple", "legs": 4}
    text, status, _, probs = asyncio.run(predict_values(runtime, dict(row), {}, []))
    assert text == label(row), status
    assert probs == pytest.approx(probabilities(row))

    csv_path = tmp_path / "animals.csv"
    csv_path.write_text("size,color,legs\n" + "".join(f"{r['size']},{r['color']},{r['legs']}\n" for r in EXAMPLE))
    table, _, status = asyncio.run(score_csv(runtime, str(csv_path), {}))
    assert list(table["label"]) == [label(r) for r in EXAMPLE], status


def test_bar_chart_spec_keeps_order_and_makes_numpy_values_plain():
    import json

    import numpy as np

    from frontends.streamlit_ui.chart import bar_chart_spec

    spec = bar_chart_spec([{"class": "b", "probability": np.float64(0.75), "extra": 1},
                           {"class": "a", "probability": np.float64(0.25)}], x="class", y="probability")
    assert spec["data"]["values"] == [{"class": "b", "probability": 0.75}, {"class": "a", "probability": 0.25}]
    assert spec["encoding"]["x"]["sort"] is None  # the model's class order, not alphabetical
    json.dumps(spec)  # numpy scalars would raise here
    assert all(type(v["probability"]) is float for v in spec["data"]["values"])
