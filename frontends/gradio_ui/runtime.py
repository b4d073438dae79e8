"""The Gradio app's runtime: its Predictor (behind the shared answer cache), its form and its
MLflow experiment, and a request's headers. Its own module: the form page (``app``), the chat
page (``chat_page``) and the feedback controls all use it, and none imports another page.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from concurrent.futures import Future
from typing import Any

import gradio as gr

from client import Predictor, PredictorError, Signature
from frontends.core.example import form_fields
from frontends.core.feedback import set_up_tracking
from frontends.core.form import Field
from frontends.core.predictions import AppPredictor, BatchScore
from frontends.core.session import FIRST_PAGE_GRACE_S, AppConfig, model_info

__all__ = ["Runtime", "request_headers"]

log = logging.getLogger(__name__)


def request_headers(request: gr.Request | None) -> dict[str, str]:
    """The request's headers as plain strings (``{}`` without a request)."""
    if request is None:
        return {}
    try:
        return {str(k): str(v) for k, v in dict(request.headers).items()}
    except Exception:
        return {}


class Runtime:
    """The app's Predictor, its form, a per-process prediction cache, and the app's MLflow experiment.

    The Predictor loaded at start-up serves Gradio's event loop too: its HTTP pools and batchers
    are per event loop and its signature load is loop-safe (``SingleFlight``).
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
        self._app = AppPredictor(config, predictor)
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
            self.experiment_id = set_up_tracking("gradio", self.config.tracing, self.config.registry_uri)
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
        """The answer for ``records`` (cached per caller, model version and input)."""
        await self.tracking_ready()
        return await self._app.apredict(records, headers)

    async def score_csv(self, data: bytes | str, headers: dict[str, str] | None) -> BatchScore:
        """An uploaded CSV scored in one call (the SDK splits a large one)."""
        await self.tracking_ready()
        return await self._app.ascore_csv(data, self.signature, headers)

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
