"""Bar charts for the Streamlit pages: a Vega-Lite spec with its rows inline.

``st.bar_chart`` draws the same chart through Altair: importing Altair costs about a second on
a process's first chart, and building the spec ~15 ms of CPU per chart, paid on every click
that shows class probabilities. The spec below gives the same bars in Streamlit's theme
without Altair, pandas or Arrow.

Example::

    bar_chart([{"class": "setosa", "probability": 0.97}, ...], x="class", y="probability")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

__all__ = ["bar_chart", "bar_chart_spec", "line_chart_spec", "overlay_chart_spec"]


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars (from pandas) become Python ones."""
    return value.item() if hasattr(value, "item") else value


def bar_chart_spec(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> dict[str, Any]:
    """Vertical bars of ``y`` per ``x``, in the rows' order (pure)."""
    return {
        "data": {"values": [{x: _plain(row[x]), y: _plain(row[y])} for row in rows]},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": x, "type": "nominal", "sort": None, "title": x},
            "y": {"field": y, "type": "quantitative", "title": y},
        },
    }


def bar_chart(rows: Sequence[Mapping[str, Any]], x: str, y: str, height: int = 220) -> None:
    st.vega_lite_chart(spec=bar_chart_spec(rows, x, y), height=height, width="stretch")


def line_chart_spec(rows: Sequence[Mapping[str, Any]], x: str, y: str, color: str) -> dict[str, Any]:
    """One line of ``y`` over ``x`` (a time) per ``color`` value, with points (pure)."""
    return {
        "data": {"values": [{k: _plain(row[k]) for k in (x, y, color)} for row in rows]},
        "mark": {"type": "line", "point": True, "tooltip": True},
        "encoding": {
            "x": {"field": x, "type": "temporal", "title": x},
            "y": {"field": y, "type": "quantitative", "title": y},
            "color": {"field": color, "type": "nominal", "title": color},
        },
    }


def overlay_chart_spec(rows: Sequence[Mapping[str, Any]], x: str, y: str, color: str) -> dict[str, Any]:
    """Bars of ``y`` per ``x``, one beside the other per ``color`` value (baseline, current) (pure)."""
    spec = bar_chart_spec(rows, x, y)
    spec["data"] = {"values": [{k: _plain(row[k]) for k in (x, y, color)} for row in rows]}
    spec["encoding"]["color"] = {"field": color, "type": "nominal", "title": color}
    spec["encoding"]["xOffset"] = {"field": color}
    return spec
