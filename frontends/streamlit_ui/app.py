"""Streamlit page over a Predictor: a form from the model's signature, CSV batch scoring, a model card;
with ``PREDICTOR_CHAT_MODEL_URI`` (``make demo``: the demo agent) a Chat tab beside them, its
conversations kept in the history store (``frontends/core/history.py``; SQLite on a laptop).

Run: ``streamlit run frontends/streamlit_ui/app.py`` (configuration: see ``frontends/core/session.py``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

if __package__ in (None, ""):  # `streamlit run frontends/streamlit_ui/app.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client import Predictor, PredictorError, Signature
from frontends.core.feedback import feedback_access, feedback_user
from frontends.core.form import Field, csv_template, signature_rows
from frontends.core.predictions import (
    AppPredictor,
    BatchScore,
    error_text,
    form_records,
    history_row,
    push_history,
    with_progress,
)
from frontends.core.proba import class_probabilities, single_prediction
from frontends.core.session import (
    AppConfig,
    PredictionCache,
    SignInRequired,
    caller_identity,
    chat_model_info,
    format_prediction,
    model_info,
    prediction_distribution,
    predictor_for,
    result_caption,
)
from frontends.streamlit_ui.chart import bar_chart
from frontends.streamlit_ui.feedback import feedback_controls, feedback_page
from frontends.streamlit_ui.resources import chat_predictor, experiment_id, form_drawn, resources

if TYPE_CHECKING:
    import pandas as pd

# pandas (~1 s of CPU) and MLflow (seconds) are imported where a table, a chart or a trace needs
# them, after the form is on the page (streamlit_server.py imports them in the background).
log = logging.getLogger("frontends.streamlit_ui.app")
_BLANK = "(blank)"


@st.cache_resource(show_spinner=False)
def _predictions() -> PredictionCache:
    """One call per (caller, model version, input), across the process's sessions."""
    return PredictionCache()


def _app_predictor() -> AppPredictor:
    """The app's Predictor behind the process's answer cache."""
    config, predictor, _, _ = resources()
    return AppPredictor(config, predictor, _predictions())


def _headers() -> dict[str, str]:
    try:
        return dict(st.context.headers)
    except Exception:  # no browser session (e.g. AppTest)
        return {}


def _show_error(err: Exception, as_user: bool = False) -> None:
    st.error(error_text(err, as_user=as_user))


def _widget(field: Field) -> Any:
    key = f"field:{field.name}"
    help_text = field.help
    if field.kind in ("float", "int"):
        is_int = field.kind == "int"
        value = field.default
        if value is not None:
            value = int(value) if is_int else float(value)
        return st.number_input(field.label, value=value, step=1 if is_int else None,
                               format=None if is_int else "%g", key=key, help=help_text,
                               placeholder="required" if field.required else "optional")
    if field.kind == "bool":
        if field.required:
            return st.checkbox(field.label, value=bool(field.default), key=key, help=help_text)
        options = [_BLANK, "true", "false"]
        index = 0 if field.default is None else (1 if field.default else 2)
        choice = st.selectbox(field.label, options, index=index, key=key, help=help_text)
        return None if choice == _BLANK else choice
    if field.kind == "choice":
        options = list(field.choices) if field.required else [_BLANK, *field.choices]
        index = options.index(field.default) if field.default in options else 0
        picked = st.selectbox(field.label, options, index=index, key=key, help=help_text,
                              accept_new_options=field.open_choices)
        return None if picked == _BLANK else picked
    if field.kind == "datetime":  # a date and time picker, to the minute (Streamlit's finest step)
        default = None if field.default is None else datetime.fromisoformat(str(field.default))
        return st.datetime_input(field.label, value=default, key=key, help=help_text, step=60,
                                 format="YYYY-MM-DD")
    return st.text_input(field.label, value="" if field.default is None else str(field.default),
                         placeholder="required" if field.required else None, key=key, help=help_text)


def _predict(headers: dict[str, str], records: Any) -> dict[str, Any]:
    experiment_id()  # set up before the first trace: it lands in the app's experiment, not MLflow's default
    return _app_predictor().predict(records, headers)


def _score_csv(headers: dict[str, str], data: bytes, signature: Signature | None) -> BatchScore:
    """Score an upload in one call (the SDK splits a large one), its progress in a bar."""
    experiment_id()
    bar = st.progress(0.0, text="Scoring...")

    def show(done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"Scored {done} rows")

    app = _app_predictor()  # here: Streamlit's caches are read from the script's thread
    try:
        return with_progress(lambda on_progress: app.score_csv(data, signature, headers, on_progress=on_progress),
                             show)
    finally:
        bar.empty()  # an error replaces the bar, as the results do


def _show_prediction(last: dict[str, Any]) -> None:
    st.metric("Prediction", format_prediction(last["predictions"]))
    probs = class_probabilities(single_prediction(last["predictions"]))
    if probs:
        st.caption("Class probabilities")
        bar_chart([{"class": k, "probability": v} for k, v in probs.items()], x="class", y="probability")
    st.caption(result_caption(last))


def _distribution(table: pd.DataFrame) -> None:
    counts = prediction_distribution(table)
    if counts is not None:
        st.caption("Distribution of predictions")
        bar_chart(counts.to_dict("records"), x="prediction", y="count")


@st.cache_data(ttl=30, show_spinner=False)
def _endpoint_state(_predictor: Predictor, endpoint: str | None) -> dict[str, str] | None:
    """The endpoint's state, looked up at most every 30 s (``None`` if it cannot be read)."""
    try:
        return _predictor.endpoint_state()
    except PredictorError as e:
        log.info("endpoint state of %s unavailable: %s", endpoint, type(e).__name__)
        return None


def _model_card(config: AppConfig, predictor: Predictor, signature: Signature | None) -> None:
    info = model_info(predictor, config, endpoint_state=_endpoint_state(predictor, predictor.endpoint))
    st.header("Model")
    st.markdown(info.card())
    rows = signature_rows(signature)
    if rows:
        import pandas as pd

        st.subheader("Signature")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.caption("The model has no column signature; inputs are sent as JSON, unvalidated.")


@st.fragment
def _single_tab(headers: dict[str, str], as_user: bool, fields: list[Field], user: str) -> None:
    """The form, its answer and the history: a click reruns only this part of the page."""
    history: list[dict[str, Any]] = st.session_state.setdefault("history", [])
    with st.form("predict-form"):
        if fields:
            optional = [f.name for f in fields if not f.required]
            st.caption(f"Optional: {', '.join(optional)}; every other field is required." if optional
                       else "Every field is required.")
            values = {f.name: _widget(f) for f in fields}
        else:
            values = {"__json__": st.text_area("JSON input", value="[]", key="field:__json__")}
        submitted = st.form_submit_button("Predict", type="primary")
    if submitted:
        try:
            records = form_records(fields, values)
            with st.spinner("Predicting..."):
                result = _predict(headers, records)
            st.session_state["last"] = result
            history[:] = push_history(history, history_row(records, result, tabular=bool(fields)))
            st.session_state.pop("error", None)
        except Exception as e:
            st.session_state["error"] = e
            st.session_state.pop("last", None)
    if "error" in st.session_state:
        _show_error(st.session_state["error"], as_user)
    elif "last" in st.session_state:
        _show_prediction(st.session_state["last"])
        feedback_controls(st.session_state["last"].get("trace_id"), user, key="form", ask_expected=bool(fields))
    if history:
        import pandas as pd

        with st.expander(f"History ({len(history)})"):
            st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")


@st.fragment
def _batch_tab(headers: dict[str, str], as_user: bool, fields: list[Field], signature: Signature | None) -> None:
    """CSV upload and its results: an upload reruns only this part of the page."""
    if fields:
        st.download_button("CSV template", csv_template(signature).encode(), file_name="template.csv",
                           mime="text/csv", key="csv-template")
    upload = st.file_uploader("CSV file", type=["csv"], key="csv-upload",
                              help="A header row naming the model's columns, one row per record.")
    if upload is not None:
        import pandas as pd

        try:
            batch = _score_csv(headers, upload.getvalue(), signature)
            table = pd.DataFrame(batch.rows)
            st.success(batch.status)
            st.toast(f"Scored {len(batch.records)} rows")
            st.dataframe(table, hide_index=True, width="stretch")
            st.download_button("Download results", table.to_csv(index=False).encode(),
                               file_name="predictions.csv", mime="text/csv")
            _distribution(table)
        except Exception as e:
            _show_error(e, as_user)


def _chat_tab(config: AppConfig, headers: dict[str, str], as_user: bool) -> None:
    """The chat model's page (``PREDICTOR_CHAT_MODEL_URI``) beside the form; its sidebar (the chat
    model's card, the user's conversations) replaces the form's model card while the tab is open."""
    from frontends.streamlit_ui.chat_page import render

    try:
        chat = chat_predictor()
        if chat is None:
            return
        predictor = predictor_for(chat, headers, config)
    except Exception as e:  # not loadable, or not a chat model: said in the tab, the form unaffected
        _show_error(e, as_user)
        return
    experiment_id()  # before the first answer is traced: it lands in the app's experiment
    render(config.title, chat_model_info(chat, config).card(), predictor, as_user)


def main() -> None:
    st.set_page_config(page_title="Model predictions", layout="wide")
    try:
        config, base, signature, fields = resources()
    except Exception as e:
        st.title("Model predictions")
        _show_error(e)
        st.stop()
        return
    headers = _headers()
    try:
        predictor = predictor_for(base, headers, config)  # the chat page's; the form's go through _predict
    except SignInRequired as e:  # acting as the user, and no user came: no form, no prediction
        st.title(config.title)
        _show_error(e)
        st.stop()
        return
    identity = caller_identity(headers, config)
    user = feedback_user(headers)
    as_user = identity != "app"
    if base.kind == "chat":
        from frontends.streamlit_ui.chat_page import render

        card = model_info(base, config, endpoint_state=_endpoint_state(base, base.endpoint)).card()
        st.title(config.title)
        chat_tab, feedback = st.tabs(["Chat", "Feedback"])
        with feedback:  # first: the chat reruns the script when an answer ends. Sets the experiment up
            # before any answer is traced
            feedback_page(model_info(base, config).name, experiment_id(), feedback_access(headers))
        with chat_tab:
            render(config.title, card, predictor, as_user)
        return
    st.title(config.title)
    # Opening a tab reruns the page, so the Feedback tab (MLflow, a store query, tables) is computed
    # only while it is open, never on a visitor's first page. The other two are always drawn:
    # a widget left out of a run loses its state (the form's values, an uploaded CSV).
    # The Chat tab (PREDICTOR_CHAT_MODEL_URI) is drawn only while open, like Feedback: its state is
    # in the session, and a first page loads no chat model.
    names = ["Single prediction", "Batch (CSV)", *(["Chat"] if config.chat_model_uri else []), "Feedback",
             "Monitoring"]
    tabs = dict(zip(names, st.tabs(names, key="page-tab", on_change="rerun"), strict=True))
    single, batch, feedback, monitoring = (tabs[n] for n in ("Single prediction", "Batch (CSV)", "Feedback",
                                                              "Monitoring"))
    chat = tabs.get("Chat")
    with single:  # the form first, then the rest: its place on screen does not depend on this order
        _single_tab(headers, as_user, fields, user)
    form_drawn.set()  # the start-up warm-up may import MLflow now
    if chat is not None and chat.open:
        with chat:
            _chat_tab(config, headers, as_user)
    else:
        with st.sidebar:
            _model_card(config, base, signature)
    with batch:
        _batch_tab(headers, as_user, fields, signature)
    if feedback.open:
        with feedback:
            feedback_page(model_info(base, config).name, experiment_id(), feedback_access(headers))
    if monitoring.open:
        from frontends.streamlit_ui.monitoring import monitoring_page

        with monitoring:
            monitoring_page(model_info(base, config).name, experiment_id(), feedback_access(headers),
                            config.registry_uri)


main()
