"""The Gradio page for a chat model: ``gr.ChatInterface`` streaming the answer token by token.

The conversation lives in the browser session's Chatbot (never shared); the Chatbot's clear
button starts a new one, the Stop button cancels the handler, which closes the stream's
connection. Errors before any text are a ``gr.Error``; a stream cut off midway keeps its text
and says why under it. Below the chat: which model answered and its trace id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from client import PredictorError
from frontends._chat import caption, chat_error_text, conversation, tool_lines
from frontends._session import caller_identity, predictor_for

if TYPE_CHECKING:
    from frontends.gradio_app import Runtime


def _plain(markdown: str) -> str:
    return markdown.replace("**", "")


def build(runtime: Runtime, concurrency: int) -> gr.Blocks:
    from frontends.gradio_app import _headers

    async def answer(message: str, history: list[dict[str, Any]], request: gr.Request) -> AsyncIterator[Any]:
        headers = _headers(request)
        as_user = caller_identity(headers, runtime.config) != "app"
        predictor = predictor_for(await runtime.predictor(), headers, runtime.config)
        turns = [*conversation(history), {"role": "user", "content": message}]
        text = ""
        try:
            async with predictor.astream(turns) as stream:
                async for delta in stream:
                    if delta.text:
                        text += delta.text
                        yield text, ""
            result = stream.get_final_result()
        except PredictorError as err:
            why = chat_error_text(err, as_user=as_user)
            if not text:
                raise gr.Error(_plain(why), print_exception=False) from None
            yield text + "\n\n---\n\n" + why, ""
            return
        details = [caption(result), *("Tool: " + line for line in tool_lines(result))]
        yield result.text, "  \n".join(details)

    with gr.Blocks(title=runtime.config.title) as demo:
        gr.Markdown(f"# {runtime.config.title}")
        with gr.Row():
            with gr.Column(scale=3):
                details = gr.Markdown(render=False)
                gr.ChatInterface(
                    answer,
                    chatbot=gr.Chatbot(label="Conversation", height=460),
                    textbox=gr.Textbox(placeholder="Ask the model", show_label=False, submit_btn=True, stop_btn=True),
                    additional_outputs=[details],
                    stop_btn=True,
                    api_name="chat",
                )
                details.render()
            with gr.Column(scale=2):
                gr.Markdown("## Model")
                card = gr.Markdown()
                demo.load(runtime.model_card, outputs=card)
    demo.queue(default_concurrency_limit=concurrency)
    return demo
