"""The Streamlit page as an ASGI app that loads the model when the server starts.

Run: ``streamlit run frontends/streamlit_ui/server.py`` (``app.yaml``'s command). Same page as
``streamlit run frontends/streamlit_ui/app.py``; the difference is when the Predictor, its
signature and the input example are loaded: in a background thread as the server starts
(``st.App``'s lifespan), not when the first user opens the page, so the first visitor
finds them ready, or waits only for what is left.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st

if __package__ in (None, ""):  # `streamlit run` imports this file as a top-level module
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

log = logging.getLogger("frontends.streamlit_ui.server")


def _warm_up() -> None:
    """What the page needs, in the order a visitor needs it: the model and its form, then what a
    prediction needs (the app's experiment, MLflow's tracing), then the tables' pandas."""
    from frontends.core.session import FIRST_PAGE_GRACE_S
    from frontends.streamlit_ui.resources import experiment_id, form_drawn, resources

    try:
        resources()
    except Exception as e:  # not cached: the page tries again and shows the error
        log.warning("loading the model at start-up failed (%s); the page will retry", type(e).__name__)
        return
    form_drawn.wait(FIRST_PAGE_GRACE_S)  # a visitor waiting for the form goes first
    experiment_id()  # and MLflow's tracing warmed up; never raises: a store that cannot be reached is a warning
    import pandas  # noqa: F401  the page's tables need it: imported here, not on the first visit

    # resources() froze what existed then; MLflow and pandas came after: out of every full GC scan
    # too (Python's own, and Streamlit's after each script run where runner.postScriptGC is on).
    gc.freeze()


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    threading.Thread(target=_warm_up, name="predictor-warm-up", daemon=True).start()
    yield


app = st.App(str(Path(__file__).with_name("app.py")), lifespan=_lifespan)
