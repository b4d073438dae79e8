"""The Streamlit app's process-wide resources (config, Predictor, signature, form fields; the app's
MLflow experiment), cached once.

A module of its own so that the page (``streamlit_app.py``) and the server entry point
(``streamlit_server.py``, which loads them when the server starts) share the cached functions.
"""

from __future__ import annotations

import gc
import os
import threading

import streamlit as st

from client import Predictor, Signature
from frontends.core import example as _example
from frontends.core import session as _session
from frontends.core.feedback import set_up_tracking
from frontends.core.form import Field
from frontends.core.history import HistoryStore, store_from_env
from frontends.core.session import AppConfig

__all__ = ["chat_predictor", "experiment_id", "form_drawn", "history_store", "resources"]

#: Set by the page once a visitor's form is on screen: the start-up warm-up waits for it (or for
#: FIRST_PAGE_GRACE_S) before importing MLflow, so that import does not slow the first form down.
form_drawn = threading.Event()


@st.cache_resource(show_spinner="Loading the model...")
def resources() -> tuple[AppConfig, Predictor, Signature | None, list[Field]]:
    """Load once per process; a failure is not cached (the next page load tries again)."""
    config = AppConfig.from_env()
    # Looked up on the modules at call time (tests patch them).
    predictor, signature = _session.load_predictor(config)
    if predictor.kind == "chat":  # a chat page, no form
        gc.freeze()
        return config, predictor, signature, []
    rows = _example.load_example_rows(config.registry_model_uri, config.registry_uri)
    fields = _example.form_fields(signature, rows, os.environ)
    # What is loaded now lives as long as the process: out of every full GC scan (Python's own, and
    # Streamlit's after each script run wherever runner.postScriptGC is on, its default; with MLflow,
    # pandas and the model loaded that scan cost ~200 ms of CPU per click). MLflow and pandas come
    # later in endpoint mode: streamlit_server.py freezes again after them.
    gc.freeze()
    return config, predictor, signature, fields


@st.cache_resource(show_spinner="Loading the chat model...")
def chat_predictor() -> Predictor | None:
    """The chat model of the Chat tab beside the form (``PREDICTOR_CHAT_MODEL_URI``), or ``None``;
    loaded when the tab is first opened, once per process (a failure is not cached)."""
    return _session.load_chat_predictor(resources()[0])


@st.cache_resource(show_spinner=False)
def experiment_id() -> str | None:
    """The app's MLflow experiment, with MLflow's tracing warmed up, or ``None`` when not tracing (a
    store that cannot be reached: a warning, and ``None``). Set up after the model loaded: registering
    the demo switches experiments. Needed before the first prediction (its trace goes there) and by
    the Feedback tab."""
    config = resources()[0]
    return set_up_tracking("streamlit", config.tracing, config.registry_uri)


@st.cache_resource(show_spinner="Opening the conversation history...")
def history_store() -> HistoryStore | None:
    """The app's conversation history (``frontends/core/history.py``), opened once per process;
    ``None``: history off. A database that cannot be opened raises (not cached: the next run tries again)."""
    return store_from_env()
