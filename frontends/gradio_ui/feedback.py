"""Gradio feedback: thumbs and a comment under a traced answer, and the Feedback tab.

``feedback_controls(trace_state, ...)`` is reusable under any answer whose trace id a
``gr.State`` holds (a form prediction here; a chat answer on the chat page): buttons named
"Thumbs up"/"Thumbs down", an optional comment, and a status line. The user is the request's
``X-Forwarded-Email`` (else "anonymous").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
import pandas as pd

from frontends.core.feedback import (
    ASK,
    FeedbackAccess,
    feedback_access,
    feedback_user,
    lost_traces_note,
    save_vote,
    summary_tables,
    visible_tables,
)
from frontends.core.markup import html_text
from frontends.gradio_ui.runtime import request_headers


async def vote(trace_id: str | None, thumbs_up: bool, comment: str | None, expected: str | None,
               headers: dict[str, str]) -> str:
    """Store one vote; the status text to show (pure of widgets, so it can be tested directly)."""
    return await asyncio.to_thread(save_vote, trace_id, feedback_user(headers), thumbs_up=thumbs_up,
                                   comment=comment, expected=expected)


def feedback_controls(trace_state: gr.State, *, ask_expected: bool = False,
                      remember: Callable[[str | None, bool, str | None, dict[str, str]], Awaitable[None]] | None = None
                      ) -> list[gr.components.Component]:
    """Thumbs, comment (and the right value, for a tabular prediction) wired to ``trace_state``;
    returns the components, so a caller can clear them when a new answer arrives. ``remember``:
    called with each vote (trace id, thumbs up, comment, headers), to keep it in the chat history too."""
    gr.Markdown(ASK)
    comment = gr.Textbox(label="Comment (optional)", lines=1)
    expected = gr.Textbox(label="Correct value (optional)", visible=ask_expected)
    with gr.Row():
        up = gr.Button("Thumbs up", size="sm")
        down = gr.Button("Thumbs down", size="sm")
    status = gr.HTML()  # it quotes the user's comment: escaped, so it shows as typed (a Markdown would render it)

    async def on_vote(trace_id: str | None, up: bool, text: str, right: str, request: gr.Request) -> str:
        headers = request_headers(request)
        line = await vote(trace_id, up, text, right, headers)
        if remember is not None:
            await remember(trace_id, up, text or None, headers)
        return html_text(line)

    async def on_up(trace_id: str | None, text: str, right: str, request: gr.Request) -> str:
        return await on_vote(trace_id, True, text, right, request)

    async def on_down(trace_id: str | None, text: str, right: str, request: gr.Request) -> str:
        return await on_vote(trace_id, False, text, right, request)

    up.click(on_up, inputs=[trace_state, comment, expected], outputs=status, api_visibility="private")
    down.click(on_down, inputs=[trace_state, comment, expected], outputs=status, api_visibility="private")
    return [comment, expected, status]


def summary_frames(model_name: str | None, experiment_id: str | None, access: FeedbackAccess
                   ) -> tuple[Any, Any, Any, str]:
    """(summary table, thumbs-up rate plot, latest comments, note) updates for the Feedback tab, as
    much as ``access`` may see (a non-reviewer: their own comments only, no team table)."""
    tables = visible_tables(summary_tables(model_name, experiment_id), access)
    plot = gr.BarPlot(value=pd.DataFrame(tables.rates) if tables.rates else None, visible=bool(tables.rates))
    table = gr.update(value=pd.DataFrame(tables.rows), visible=access.reviewer)
    comments = gr.update(value=pd.DataFrame(tables.comments),
                         label="Latest comments" if access.reviewer else "Your comments")
    return table, plot, comments, tables.note


def feedback_tab(model_name: Callable[[], str | None], experiment_id: Callable[[], Awaitable[str | None]]) -> gr.Tab:
    """The Feedback tab; both are read each time it loads: the model's name (known once the model
    loaded) and the app's experiment id (known once the app's tracking set-up finished). A reviewer
    (``PREDICTOR_REVIEWERS``) sees everyone's feedback; anyone else their own comments only."""
    with gr.Tab("Feedback") as tab:
        note = gr.Markdown()
        table = gr.Dataframe(label="Feedback per model version", interactive=False)
        plot = gr.BarPlot(x="version", y="thumbs-up rate", y_lim=[0, 1], label="Thumbs-up rate", visible=False)
        comments = gr.Dataframe(label="Latest comments", interactive=False)
        refresh = gr.Button("Refresh", size="sm")

        async def load(request: gr.Request) -> tuple[Any, ...]:
            access = feedback_access(request_headers(request))  # per visitor: the tab is built once for all
            frame, chart, latest, text = await asyncio.to_thread(summary_frames, model_name(), await experiment_id(),
                                                                 access)
            if lost := lost_traces_note():  # our own text, no user input: safe as markdown
                text = f"{text}\n\n{lost}" if text else lost
            return frame, chart, latest, text

        tab.select(load, outputs=[table, plot, comments, note], api_visibility="private")
        refresh.click(load, outputs=[table, plot, comments, note], api_visibility="private")
    return tab
