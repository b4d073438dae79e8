"""Gradio's Monitoring tab: per version, line charts over the windows, the feature drift table
with verdicts, and a chosen feature's baseline and current distributions overlaid. Content from
``frontends.core.monitoring``; computed when the tab is selected, for reviewers only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
import pandas as pd

from frontends.core.feedback import feedback_access
from frontends.core.monitoring import LINE_METRICS, MonitoringView, default_feature, monitoring_view, overlay_rows
from frontends.gradio_ui.runtime import request_headers

__all__ = ["monitoring_tab"]


def _lines(view: MonitoringView, metric: str) -> Any:
    rows = view.lines.get(metric) or []
    if not rows:
        return gr.update(value=None, visible=False)
    frame = pd.DataFrame(rows)
    frame["window"] = pd.to_datetime(frame["window"])
    return gr.update(value=frame, visible=True)


def _drift(view: MonitoringView, version: str | None) -> tuple[Any, Any]:
    rows = view.drift.get(version or "", [])
    features = [r["feature"] for r in rows]
    return (gr.update(value=pd.DataFrame(rows), visible=bool(rows)),
            gr.update(choices=features, value=default_feature(rows), visible=bool(features)))


def _overlay(view: MonitoringView, version: str | None, feature: str | None) -> Any:
    rows = overlay_rows(view, version or "", feature or "")
    order = list(dict.fromkeys(r["bin"] for r in rows))  # Gradio sorts the bars by label: number them
    rows = [{**r, "bin": f"{order.index(r['bin']) + 1:02d}. {r['bin']}"} for r in rows]
    return gr.update(value=pd.DataFrame(rows) if rows else None, visible=bool(rows))


def monitoring_tab(model_name: Callable[[], str | None], experiment_id: Callable[[], Awaitable[str | None]],
                   registry_uri: str | None = None) -> gr.Tab:
    """The Monitoring tab, beside Feedback; the report is computed each time it is selected (or
    refreshed), for a reviewer (``PREDICTOR_REVIEWERS``, as the Feedback tab) only."""
    with gr.Tab("Monitoring") as tab:
        view_state = gr.State(None)
        note = gr.Markdown()
        summary = gr.Dataframe(label="Per version", interactive=False, visible=False)
        problems = gr.Dataframe(label="Broken rules", interactive=False, visible=False)
        with gr.Row():
            plots = [gr.LinePlot(x="window", y=metric, color="version", label=metric, visible=False)
                     for metric in LINE_METRICS]
        version = gr.Dropdown(label="Version", choices=[], visible=False)
        drift = gr.Dataframe(label="Feature drift", interactive=False, visible=False)
        feature = gr.Dropdown(label="Distribution of", choices=[], visible=False)
        overlay = gr.BarPlot(x="bin", y="share", color="sample", label="Baseline and current shares (stacked)",
                             visible=False, sort=None)
        refresh = gr.Button("Refresh", size="sm")

        async def load(request: gr.Request) -> tuple[Any, ...]:
            access = feedback_access(request_headers(request))
            view = await asyncio.to_thread(monitoring_view, model_name(), await experiment_id(), access, registry_uri)
            shown = view.report is not None
            first = view.versions[0] if view.versions else None
            table, features = _drift(view, first)
            chosen = features.get("value") if isinstance(features, dict) else None
            return (view, view.note if not view.failed else f"**{view.note}**",
                    gr.update(value=pd.DataFrame(view.summary), visible=shown),
                    gr.update(value=pd.DataFrame(view.problems), visible=bool(view.problems)),
                    *(_lines(view, m) for m in LINE_METRICS),
                    gr.update(choices=view.versions, value=first, visible=shown), table, features,
                    _overlay(view, first, chosen))

        outputs = [view_state, note, summary, problems, *plots, version, drift, feature, overlay]
        tab.select(load, outputs=outputs, api_visibility="private")
        refresh.click(load, outputs=outputs, api_visibility="private")

        def on_version(view: MonitoringView | None, chosen: str | None) -> tuple[Any, Any, Any]:
            if view is None:
                return gr.update(), gr.update(), gr.update()
            table, features = _drift(view, chosen)
            first = features.get("value") if isinstance(features, dict) else None
            return table, features, _overlay(view, chosen, first)

        def on_feature(view: MonitoringView | None, chosen_version: str | None, chosen: str | None) -> Any:
            return gr.update() if view is None else _overlay(view, chosen_version, chosen)

        version.input(on_version, [view_state, version], [drift, feature, overlay], api_visibility="private")
        feature.input(on_feature, [view_state, version, feature], overlay, api_visibility="private")
    return tab
