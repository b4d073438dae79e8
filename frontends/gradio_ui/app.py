"""Gradio app over a Predictor: the same form, batch scoring and model card as the Streamlit page.

Run: ``python -m frontends.gradio_ui.app`` (listens on ``$DATABRICKS_APP_PORT``, default 7860).
"""

import logging
import os
import tempfile
from typing import Any

import gradio as gr
import pandas as pd

from frontends.core.example import form_fields, load_example_rows
from frontends.core.form import Field, signature_rows
from frontends.core.predictions import (
    HISTORY_COLUMNS,
    UPLOAD_HINT,
    error_text,
    form_records,
    history_row,
    push_history,
)
from frontends.core.proba import class_probabilities, single_prediction
from frontends.core.session import (
    AppConfig,
    caller_identity,
    format_prediction,
    load_predictor,
    prediction_distribution,
    result_caption,
)
from frontends.gradio_ui.feedback import feedback_controls, feedback_tab
from frontends.gradio_ui.monitoring import monitoring_tab
from frontends.gradio_ui.runtime import Runtime, request_headers

__all__ = ["Runtime", "build_app", "create_app", "main", "predict_form", "predict_values", "score_csv"]

log = logging.getLogger("frontends.gradio_ui.app")
_BLANK = "(blank)"
#: Concurrent handler runs per event; Model Serving does the heavy lifting, the app mostly waits.
DEFAULT_CONCURRENCY = int(os.environ.get("PREDICTOR_APP_CONCURRENCY", "16"))


def _component(field: Field) -> gr.components.Component:
    info = field.help
    if field.kind in ("float", "int"):
        return gr.Number(label=field.label, value=field.default, precision=0 if field.kind == "int" else None,
                         info=info, placeholder="required" if field.required else None)
    if field.kind == "bool":
        if field.required:
            return gr.Checkbox(label=field.label, value=bool(field.default), info=info)
        value = _BLANK if field.default is None else ("true" if field.default else "false")
        return gr.Dropdown([_BLANK, "true", "false"], label=field.label, value=value, info=info)
    if field.kind == "choice":
        options = list(field.choices) if field.required else [_BLANK, *field.choices]
        value = field.default if field.default in options else options[0]
        return gr.Dropdown(options, label=field.label, value=value, info=info, allow_custom_value=field.open_choices)
    # No `info` here: inside a textbox's <label> it would become part of the accessible name.
    placeholder = f"2024-01-31T12:00:00 ({field.help})" if field.kind == "datetime" else field.help
    return gr.Textbox(label=field.label, value="" if field.default is None else str(field.default),
                      placeholder=placeholder)


async def predict_values(runtime: Runtime, values: dict[str, Any], headers: dict[str, str] | None = None,
                         history: list[list[Any]] | None = None
                         ) -> tuple[str, str, list[list[Any]], dict[str, float] | None]:
    """One form submission: (prediction text, status markdown, new history, class probabilities).

    Errors go to the status; the probabilities are ``None`` when the model returns none.
    """
    text, status, new, probs, _ = await predict_form(runtime, values, headers, history)
    return text, status, new, probs


async def predict_form(runtime: Runtime, values: dict[str, Any], headers: dict[str, str] | None = None,
                       history: list[list[Any]] | None = None
                       ) -> tuple[str, str, list[list[Any]], dict[str, float] | None, str | None]:
    """:func:`predict_values`, and the prediction's trace id (``None`` if untraced or failed)."""
    history = list(history or [])
    as_user = caller_identity(headers, runtime.config) != "app"
    try:
        records = form_records(runtime.fields, {k: (None if v == _BLANK else v) for k, v in values.items()})
        answer = await runtime.predict(records, headers)
    except Exception as e:
        return "", error_text(e, as_user=as_user), history, None, None
    row = history_row(records, answer, tabular=bool(runtime.fields))
    history = push_history(history, [row[c] for c in HISTORY_COLUMNS])  # a table row: the columns' values
    probs = class_probabilities(single_prediction(answer["predictions"]))
    return format_prediction(answer["predictions"]), result_caption(answer), history, probs, answer.get("trace_id")


async def score_csv(runtime: Runtime, path: str | None, headers: dict[str, str] | None = None
                    ) -> tuple[pd.DataFrame, str | None, str]:
    """Batch scoring of an uploaded CSV: (results table, path of a CSV to download, status)."""
    if not path:
        return pd.DataFrame(), None, UPLOAD_HINT
    as_user = caller_identity(headers, runtime.config) != "app"
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        batch = await runtime.score_csv(data, headers)
    except Exception as e:
        return pd.DataFrame(), None, error_text(e, as_user=as_user)
    table = pd.DataFrame(batch.rows)
    with tempfile.NamedTemporaryFile("w", suffix="-predictions.csv", delete=False, newline="") as out:
        table.to_csv(out, index=False)
    return table, out.name, batch.status


def build_app(runtime: Runtime) -> gr.Blocks:
    # analytics off: no telemetry calls out of the workspace (and none to wait for offline)
    with gr.Blocks(title=runtime.config.title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {runtime.config.title}")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tab("Single prediction"):
                    if runtime.fields:
                        components = {f.name: _component(f) for f in runtime.fields}
                    else:
                        components = {"__json__": gr.Code(label="JSON input", language="json", value="[]")}
                    button = gr.Button("Predict", variant="primary")
                    prediction = gr.Textbox(label="Prediction", interactive=False)
                    probabilities = gr.Label(label="Class probabilities", visible=False)
                    status = gr.Markdown()
                    trace_state = gr.State(None)
                    feedback = feedback_controls(trace_state, ask_expected=bool(runtime.fields))
                    history_state = gr.State([])
                    with gr.Accordion("History (0)", open=False) as history_box:
                        history_table = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False)
                    names = {c: n for n, c in components.items()}

                    async def on_predict(data: dict, request: gr.Request):
                        # a set of inputs: Gradio passes one dict {component: value}
                        history = data.get(history_state) or []
                        values = {names[c]: v for c, v in data.items() if c in names}
                        text, st, new, probs, trace_id = await predict_form(runtime, values, request_headers(request),
                                                                            history)
                        # gr.update, not gr.Label(...): a component built per click costs a schema build
                        chart = gr.update(value=probs, visible=bool(probs))
                        return text, chart, st, new, trace_id, "", "", ""

                    def show_history(history: list[list[Any]]):
                        return (pd.DataFrame(history, columns=HISTORY_COLUMNS),
                                gr.update(label=f"History ({len(history)})"))

                    # The answer first; the history table (the heaviest update to render) right after it.
                    button.click(on_predict, inputs={*components.values()} | {history_state},
                                 outputs=[prediction, probabilities, status, history_state, trace_state, *feedback],
                                 api_name="predict", show_progress_on=[prediction]
                                 ).then(show_history, history_state, [history_table, history_box],
                                        show_progress="hidden", api_visibility="private")
                with gr.Tab("Batch (CSV)"):
                    upload = gr.File(label="CSV file", file_types=[".csv"], type="filepath")
                    score = gr.Button("Score CSV")
                    batch_status = gr.Markdown()
                    results = gr.Dataframe(label="Results", interactive=False)
                    download = gr.File(label="Download results", interactive=False)
                    distribution = gr.BarPlot(x="prediction", y="count", y_lim=[0, None], visible=False,
                                              label="Distribution of predictions")

                    async def on_score(path: str | None, request: gr.Request):
                        table, out, st = await score_csv(runtime, path, request_headers(request))
                        counts = prediction_distribution(table)
                        plot = gr.BarPlot(value=counts, visible=counts is not None)
                        return table, out, st, plot

                    score.click(on_score, inputs=[upload], outputs=[results, download, batch_status, distribution],
                                api_name="score_csv")
                feedback_tab(lambda: runtime.model_name, runtime.tracking_ready)
                monitoring_tab(lambda: runtime.model_name, runtime.tracking_ready, runtime.config.registry_uri)
            with gr.Column(scale=2):
                gr.Markdown("## Model")
                card = gr.Markdown()
                demo.load(runtime.model_card, outputs=card)  # on each page load: the endpoint's current state
                rows = signature_rows(runtime.signature)
                if rows:
                    gr.Dataframe(pd.DataFrame(rows), label="Signature", interactive=False)
                else:
                    gr.Markdown("The model has no column signature; inputs are sent as JSON, unvalidated.")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo


def create_app(config: AppConfig | None = None) -> tuple[gr.Blocks, Runtime | None]:
    """The app; if the model cannot be reached at start-up, a page saying why (no traceback).

    The app's experiment is not set up here: ``runtime.start_tracking_setup()`` does it in the
    background (``main`` calls it once the server is up).
    """
    config = config or AppConfig.from_env()
    try:
        predictor, signature = load_predictor(config)
        chat = predictor.kind == "chat"
        fields = [] if chat else form_fields(
            signature, load_example_rows(config.registry_model_uri, config.registry_uri), os.environ)
    except Exception as e:
        log.exception("could not load %s", config.source)
        with gr.Blocks(title=config.title) as broken:
            gr.Markdown(f"# {config.title}\n\nThe model ({config.source}) could not be loaded.\n\n{error_text(e)}")
        return broken, None
    runtime = Runtime(config, predictor, signature, fields)  # the experiment: runtime.start_tracking_setup()
    if chat:  # a chat page instead of the form
        from frontends.gradio_ui.chat_page import build

        app = build(runtime, DEFAULT_CONCURRENCY)
    else:
        app = build_app(runtime)
    return app, runtime


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    demo, runtime = create_app()
    port = int(os.environ.get("DATABRICKS_APP_PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    # Client-side rendering (SSR would start a Node server beside this one for nothing on Databricks).
    demo.launch(server_name=host, server_port=port, show_error=False, ssr_mode=False, prevent_thread_lock=True)
    if runtime is not None:  # MLflow's import (seconds) once the page is served, not before
        runtime.start_tracking_setup()
    demo.block_thread()


if __name__ == "__main__":
    main()
