"""The Streamlit page as an ASGI app that loads the model when the server starts.

Run: ``streamlit run frontends/streamlit_server.py`` (``app.yaml``'s command). Same page as
``streamlit run frontends/streamlit_app.py``; the difference is when the Predictor, its
signature and the input example are loaded: in a background thread as the server starts
(``st.App``'s lifespan), not when the first user opens the page, so the first visitor
finds them ready, or waits only for what is left.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st

if __package__ in (None, ""):  # `streamlit run` imports this file as a top-level module
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("frontends.streamlit_server")


def _warm_up() -> None:
    import pandas  # noqa: F401  the page's tables need it: imported here, not on the first visit

    from frontends._streamlit_resources import resources

    try:
        resources()
    except Exception as e:  # not cached: the page tries again and shows the error
        log.warning("loading the model at start-up failed (%s); the page will retry", type(e).__name__)


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    threading.Thread(target=_warm_up, name="predictor-warm-up", daemon=True).start()
    yield


app = st.App(str(Path(__file__).with_name("streamlit_app.py")), lifespan=_lifespan)
