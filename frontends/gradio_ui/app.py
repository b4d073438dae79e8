"""Gradio app over a Predictor: the same form, batch scoring and model card as the Streamlit page.

Run: ``python -m frontends.gradio_ui.app`` (listens on ``$DATABRICKS_APP_PORT``, default 7860).
"""

import asyncio
import csv
import gc
import json
import logging
import os
import tempfile
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pandas as pd

from client import Predictor, PredictorError, Signature
from client._tracing import warm_up as tracing_warm_up
from client.feedback import setup_app_tracking
from frontends.core.example import form_fields, load_example_rows
from frontends.core.form import Field, form_to_record, parse_csv_rows, signature_rows
from frontends.core.proba import class_probabilities, single_prediction
from frontends.core.session import (
    FIRST_PAGE_GRACE_S,
    AppConfig,
    PredictionCache,
    caller_identity,
    describe_error,
    format_prediction,
    load_predictor,
    model_info,
    prediction_distribution,
    prediction_rows,
    predictor_for,
    result_caption,
)
from frontends.gradio_ui.feedback import feedback_controls, feedback_tab

log = logging.getLogger("frontends.gradio_ui.app")
_BLANK = "(blank)"
#: Concurrent handler runs per event; Model Serving does the heavy lifting, the app mostly waits.
DEFAULT_CONCURRENCY = int(os.environ.get("PREDICTOR_APP_CONCURRENCY", "16"))
_HISTORY_COLUMNS = ["time", "input", "prediction", "version"]


def error_text(err: Exception, as_user: bool = False) -> str:
    """Markdown for an error, never a traceback."""
    return describe_error(err, as_user=as_user)


class Runtime:
    """The app's Predictor, its form, a per-process prediction cache, and the app's MLflow experiment.

    The Predictor loaded at start-up serves Gradio's event loop too: its HTTP pools and batchers
    are per event loop and its signature load is loop-safe (``client/_sync.SingleFlight``).
    The experiment is set up after the page is served (:meth:`start_tracking_setup`); a
    prediction made before that finishes waits for it, so no trace lands in MLflow's default
    experiment.
    """

    def __init__(self, config: AppConfig, predictor: Predictor, signature: Signature | None,
                 fields: list[Field] | None = None) -> None:
        self.config = config
        self.signature = signature
        self.fields = fields if fields is not None else form_fields(signature, [], os.environ)
        self._predictor = predictor
        self._cache = PredictionCache()
        #: The MLflow experiment traces and feedback go to (``None``: not tracing, or not set up).
        self.experiment_id: str | None = None
        self._tracking: Future[str | None] | None = None  # None: no set-up started (nothing to wait for)
        #: Set when a page has loaded (or a handler runs): the set-up waits for it, or FIRST_PAGE_GRACE_S.
        self.page_served = threading.Event()

    def start_tracking_setup(self) -> None:
        """Set up the app's experiment and warm MLflow's tracing up, in a background thread (once)."""
        if self._tracking is not None:
            return
        done: Future[str | None] = Future()
        # Running from now on: a handler cancelled while it waits (asyncio.wrap_future passes the
        # cancellation on) cannot cancel the set-up for every later handler.
        done.set_running_or_notify_cancel()
        self._tracking = done
        threading.Thread(target=self._set_up_tracking, args=(done,), name="tracking-set-up", daemon=True).start()

    def _set_up_tracking(self, done: Future[str | None]) -> None:
        self.page_served.wait(FIRST_PAGE_GRACE_S)  # a visitor waiting for the form goes first
        try:
            # never raises: a store that cannot be reached is a warning, and None
            self.experiment_id = setup_app_tracking("gradio", self.config.tracing)
            if self.config.tracing:
                tracing_warm_up()
        except Exception as err:  # MLflow would not import: the Tracer warns on each first call instead
            log.warning("tracing set-up failed (%s: %s); predictions are unaffected", type(err).__name__, err)
        finally:
            gc.freeze()  # the model, MLflow and Gradio live as long as the process: out of every GC scan
            done.set_result(self.experiment_id)

    async def tracking_ready(self) -> str | None:
        """The app's experiment id, once its set-up (if started) has finished."""
        self.page_served.set()  # someone is here: no reason to wait any longer
        if self._tracking is not None:
            await asyncio.wrap_future(self._tracking)
        return self.experiment_id

    async def predictor(self) -> Predictor:
        """The app's Predictor, once a trace it writes lands in the app's experiment."""
        await self.tracking_ready()
        return self._predictor

    @property
    def model_name(self) -> str | None:
        """The model's name, as the Predictor knows it (for the Feedback tab)."""
        return model_info(self._predictor, self.config).name

    async def predict(self, records: Any, headers: dict[str, str] | None) -> dict[str, Any]:
        base = await self.predictor()
        predictor = predictor_for(base, headers, self.config)  # before the cache: who may call at all
        identity = caller_identity(headers, self.config)
        version = model_info(base, self.config).version
        key = PredictionCache.key(identity, version, records)
        if (answer := self._cache.get(key)) is not None:
            return answer
        return self._cache.put(key, (await predictor.apredict(records)).model_dump(mode="json"))

    async def model_card(self) -> str:
        """The card, on each page load (the endpoint's current state)."""
        self.page_served.set()  # a page is on screen: the tracking set-up may start
        predictor = self._predictor
        try:
            state = await predictor.aendpoint_state()
        except PredictorError as e:
            log.info("endpoint state of %s unavailable: %s", predictor.endpoint, type(e).__name__)
            state = None
        return model_info(predictor, self.config, endpoint_state=state).card()


def _headers(request: gr.Request | None) -> dict[str, str]:
    if request is None:
        return {}
    try:
        return {str(k): str(v) for k, v in dict(request.headers).items()}
    except Exception:
        return {}


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
        if runtime.fields:
            clean = {k: (None if v == _BLANK else v) for k, v in values.items()}
            records: Any = [form_to_record(runtime.fields, clean)]
        else:
            try:
                records = json.loads(values.get("__json__") or "[]")
            except json.JSONDecodeError as e:
                raise PredictorError(f"The JSON input is not valid JSON: {e.msg}") from None
        result = await runtime.predict(records, headers)
    except Exception as e:
        return "", error_text(e, as_user), history, None, None
    text = format_prediction(result["predictions"])
    status = result_caption(result)
    row = [datetime.now(UTC).strftime("%H:%M:%S"),
           json.dumps(records[0] if runtime.fields else records, default=str), text, result.get("model_version")]
    probs = class_probabilities(single_prediction(result["predictions"]))
    return text, status, [row, *history][:50], probs, result.get("trace_id")


async def score_csv(runtime: Runtime, path: str | None, headers: dict[str, str] | None = None
                    ) -> tuple[pd.DataFrame, str | None, str]:
    """Batch scoring of an uploaded CSV: (results table, path of a CSV to download, status)."""
    if not path:
        return pd.DataFrame(), None, "Upload a CSV file with a header row naming the model's columns."
    as_user = caller_identity(headers, runtime.config) != "app"
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
        records = parse_csv_rows(text, runtime.signature)
        result = await runtime.predict(records, headers)
    except UnicodeDecodeError:
        return pd.DataFrame(), None, "**The file is not UTF-8 text.**"
    except Exception as e:
        return pd.DataFrame(), None, error_text(e, as_user)
    table = pd.DataFrame(prediction_rows(records, result["predictions"]))
    with tempfile.NamedTemporaryFile("w", suffix="-predictions.csv", delete=False, newline="") as out:
        table.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return table, out.name, f"Scored {len(records)} rows with version {result.get('model_version') or '?'}."


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
                        history_table = gr.Dataframe(headers=_HISTORY_COLUMNS, interactive=False)
                    names = {c: n for n, c in components.items()}

                    async def on_predict(data: dict, request: gr.Request):
                        # a set of inputs: Gradio passes one dict {component: value}
                        history = data.get(history_state) or []
                        values = {names[c]: v for c, v in data.items() if c in names}
                        text, st, new, probs, trace_id = await predict_form(runtime, values, _headers(request),
                                                                            history)
                        # gr.update, not gr.Label(...): a component built per click costs a schema build
                        chart = gr.update(value=probs, visible=bool(probs))
                        return text, chart, st, new, trace_id, "", "", ""

                    def show_history(history: list[list[Any]]):
                        return (pd.DataFrame(history, columns=_HISTORY_COLUMNS),
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
                        table, out, st = await score_csv(runtime, path, _headers(request))
                        counts = prediction_distribution(table)
                        plot = gr.BarPlot(value=counts, visible=counts is not None)
                        return table, out, st, plot

                    score.click(on_score, inputs=[upload], outputs=[results, download, batch_status, distribution],
                                api_name="score_csv")
                feedback_tab(lambda: runtime.model_name, runtime.tracking_ready)
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
