"""The Gradio page for a chat model: ``gr.ChatInterface`` streaming the answer token by token.

The conversation lives in the browser session's Chatbot (never shared); the Chatbot's clear
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


def build(runtime: Runtime, concurrency: int) -> gr.Blocks:
    async def answer(message: str, history: list[dict[str, Any]], request: gr.Request) -> AsyncIterator[Any]:
        headers = request_headers(request)
        as_user = caller_identity(headers, runtime.config) != "app"
        predictor = predictor_for(await runtime.predictor(), headers, runtime.config)
        turns = [*conversation(history), {"role": "user", "content": message}]
        hosts = image_hosts()
        text = ""
        try:
            async with predictor.astream(turns) as stream:
                async for delta in stream:
                    if delta.text:
                        text += delta.text
                        yield safe_markdown(text, hosts), "", None  # model output loads no outside image
            result = stream.get_final_result()
        except PredictorError as err:
            why = chat_error_text(err, as_user=as_user)
            if not text:
                raise gr.Error(_plain(why), print_exception=False) from None
            yield safe_markdown(text, hosts) + "\n\n---\n\n" + why, "", None
            return
        tag_answer_trace_later(result)  # so the Feedback tab counts the answer (model, version, ...)
        details = [caption(result), *("Tool: " + line for line in tool_lines(result))]
        yield safe_markdown(result.text, hosts), safe_markdown("  \n".join(details), hosts), result.trace_id

    with gr.Blocks(title=runtime.config.title) as demo:
        gr.Markdown(f"# {runtime.config.title}")
        with gr.Tabs():
            with gr.Tab("Chat"), gr.Row():
                with gr.Column(scale=3):
                    details = gr.Markdown(render=False)
                    trace_state = gr.State(None)  # the latest answer's trace id: what the thumbs rate
                    chatbot = gr.Chatbot(label="Conversation", height=460)
                    gr.ChatInterface(
                        answer,
                        chatbot=chatbot,
                        textbox=gr.Textbox(placeholder="Ask the model", show_label=False, submit_btn=True,
                                           stop_btn=True),
                        additional_outputs=[details, trace_state],
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
                    chatbot.clear(lambda: None, outputs=trace_state, api_visibility="private")
                with gr.Column(scale=2):
                    gr.Markdown("## Model")
                    card = gr.Markdown()
                    demo.load(runtime.model_card, outputs=card)
            # the same Feedback tab as the tabular app: answers per version, thumbs, comments
            feedback_tab(lambda: runtime.model_name, runtime.tracking_ready)
    demo.queue(default_concurrency_limit=concurrency)
    return demo
