"""The Gradio page for a chat model: ``gr.ChatInterface`` streaming the answer token by token.

The conversation lives in the browser session's Chatbot (never shared), which holds the answers
as shown (made safe by ``frontends.core.markup``); a session ``gr.State`` maps each back to the
model's own text, which is what the next turn sends to the model. The Chatbot's clear
button starts a new one, the Stop button cancels the handler, which closes the stream's
connection. Errors before any text are a ``gr.Error``; a stream cut off midway keeps its text
and says why under it. Below the chat: which model answered and its trace id, then thumbs
up/down and a comment for the latest answer (``frontends/gradio_ui/feedback.feedback_controls``),
stored as a ``user_feedback`` assessment on that answer's trace, wherever it was written (the
agent server's or Model Serving's experiment in endpoint mode, the app's in direct mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from client import PredictorError
from client.feedback import tag_answer_trace_later
from frontends.core.chat import caption, chat_error_text, conversation, tool_lines
from frontends.core.markup import image_hosts, safe_markdown
from frontends.core.session import caller_identity, predictor_for
from frontends.gradio_ui.feedback import feedback_controls, feedback_tab
from frontends.gradio_ui.runtime import Runtime, request_headers


def _plain(markdown: str) -> str:
    return markdown.replace("**", "")


async def answer(runtime: Runtime, message: str, history: list[dict[str, Any]], originals: dict[str, str],
                 headers: dict[str, str]) -> AsyncIterator[tuple[str, str, str | None, dict[str, str]]]:
    """One chat turn, streamed: (answer as shown, details, trace id, ``originals``). The Chatbot
    keeps only the safe text it shows; ``originals`` (the session's) maps it back to the model's
    own text, which is what the next turn sends (``conversation``)."""
    as_user = caller_identity(headers, runtime.config) != "app"
    predictor = predictor_for(await runtime.predictor(), headers, runtime.config)
    turns = [*conversation(history, originals), {"role": "user", "content": message}]
    hosts = image_hosts()
    text = ""
    try:
        async with predictor.astream(turns) as stream:
            async for delta in stream:
                if delta.text:
                    text += delta.text
                    yield safe_markdown(text, hosts), "", None, originals  # model output loads no outside image
        result = stream.get_final_result()
    except PredictorError as err:
        why = chat_error_text(err, as_user=as_user)
        if not text:
            raise gr.Error(_plain(why), print_exception=False) from None
        shown = safe_markdown(text, hosts) + "\n\n---\n\n" + why
        yield shown, "", None, {**originals, shown: text}  # the app's note is not the model's
        return
    tag_answer_trace_later(result)  # so the Feedback tab counts the answer (model, version, ...)
    details = [caption(result), *("Tool: " + line for line in tool_lines(result))]
    shown = safe_markdown(result.text, hosts)
    yield shown, safe_markdown("  \n".join(details), hosts), result.trace_id, {**originals, shown: result.text}


def build(runtime: Runtime, concurrency: int) -> gr.Blocks:
    async def on_message(message: str, history: list[dict[str, Any]], originals: dict[str, str] | None,
                         request: gr.Request) -> AsyncIterator[Any]:
        async for out in answer(runtime, message, history, dict(originals or {}), request_headers(request)):
            yield out

    with gr.Blocks(title=runtime.config.title) as demo:
        gr.Markdown(f"# {runtime.config.title}")
        with gr.Tabs():
            with gr.Tab("Chat"), gr.Row():
                with gr.Column(scale=3):
                    details = gr.Markdown(render=False)
                    trace_state = gr.State(None)  # the latest answer's trace id: what the thumbs rate
                    originals = gr.State({})  # answer as shown -> the model's own text (sent back next turn)
                    chatbot = gr.Chatbot(label="Conversation", height=460)
                    gr.ChatInterface(
                        on_message,
                        chatbot=chatbot,
                        textbox=gr.Textbox(placeholder="Ask the model", show_label=False, submit_btn=True,
                                           stop_btn=True),
                        additional_inputs=[originals],
                        additional_outputs=[details, trace_state, originals],
                        stop_btn=True,
                        api_name="chat",
                    )
                    details.render()
                    comment, _, status = feedback_controls(trace_state)
                    # a new answer (or a cleared chat) starts with an empty comment and no status. Only when
                    # the trace goes to None (the answer's first chunk, or Clear): clearing again when the
                    # finished answer's trace id arrives could wipe a comment the user has started typing
                    trace_state.change(lambda trace: ("", "") if trace is None else (gr.skip(), gr.skip()),
                                       inputs=trace_state, outputs=[comment, status], api_visibility="private")
                    chatbot.clear(lambda: (None, {}), outputs=[trace_state, originals], api_visibility="private")
                with gr.Column(scale=2):
                    gr.Markdown("## Model")
                    card = gr.Markdown()
                    demo.load(runtime.model_card, outputs=card)
            # the same Feedback tab as the tabular app: answers per version, thumbs, comments
            feedback_tab(lambda: runtime.model_name, runtime.tracking_ready)
    demo.queue(default_concurrency_limit=concurrency)
    return demo
