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

Saved conversations (``frontends/core/conversations.py``): the left column lists the signed-in
user's, newest first, 20 a page; choosing one loads it into the Chatbot (through the
ChatInterface's ``chatbot_value``, so the next message sends its history), and it can be
renamed or deleted; ``?conversation=<id>`` opens one on load (someone else's id opens nothing).
Every answer has the Chatbot's own thumbs (its ``like`` event), stored as the same MLflow
feedback and kept in the history, so they show their state when the conversation is reopened;
a thumb clicked on an answer makes it the one the comment box below rates. Each turn is kept
when its answer ends: ok, failed, or stopped. Without a history store, or with its database
down, a note says so and the chat goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from client import PredictorError
from client.feedback import tag_answer_trace_later
from frontends.core.chat import caption, chat_error_text, conversation, stopped_text, tool_lines
from frontends.core.conversations import UserHistory, chatbot_turns
from frontends.core.feedback import feedback_user, save_vote
from frontends.core.history import NOT_SAVED, ConversationPage, HistoryStore, store_from_env
from frontends.core.markup import html_text, image_hosts, safe_markdown
from frontends.core.session import caller_identity, predictor_for
from frontends.gradio_ui.feedback import feedback_controls, feedback_tab
from frontends.gradio_ui.runtime import Runtime, request_headers

log = logging.getLogger(__name__)


def _plain(markdown: str) -> str:
    return markdown.replace("**", "")


async def answer(runtime: Runtime, message: str, history: list[dict[str, Any]], originals: dict[str, str],
                 headers: dict[str, str], outcome: dict[str, Any] | None = None
                 ) -> AsyncIterator[tuple[str, str, str | None, dict[str, str]]]:
    """One chat turn, streamed: (answer as shown, details, trace id, ``originals``). The Chatbot
    keeps only the safe text it shows; ``originals`` (the session's) maps it back to the model's
    own text, which is what the next turn sends (``conversation``). ``outcome`` (if given) learns
    how it ended, for the history: ``status`` ("ok" or "failed"), the ``text`` to keep, ``version``."""
    outcome = {} if outcome is None else outcome
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
                    outcome["partial"] = text
                    yield safe_markdown(text, hosts), "", None, originals  # model output loads no outside image
        result = stream.get_final_result()
    except PredictorError as err:
        why = chat_error_text(err, as_user=as_user)
        if not text:
            outcome.update(status="failed", text=why)
            raise gr.Error(_plain(why), print_exception=False) from None
        shown = safe_markdown(text, hosts) + "\n\n---\n\n" + why
        outcome.update(status="failed", text=text + "\n\n---\n\n" + why)
        yield shown, "", None, {**originals, shown: text}  # the app's note is not the model's
        return
    tag_answer_trace_later(result)  # so the Feedback tab counts the answer (model, version, ...)
    details = [caption(result), *("Tool: " + line for line in tool_lines(result))]
    shown = safe_markdown(result.text, hosts)
    outcome.update(status="ok", text=result.text, version=result.model_version)
    yield shown, safe_markdown("  \n".join(details), hosts), result.trace_id, {**originals, shown: result.text}


class _Store:
    """The app's history store, opened on first use (in a thread); a database that could not be
    opened is tried again by the next request, and meanwhile the chat runs without history."""

    def __init__(self) -> None:
        self._store: HistoryStore | None = None
        self._opened = False
        self._lock = asyncio.Lock()

    async def user(self, headers: dict[str, str]) -> UserHistory:
        """The signed-in user's view of the history (``X-Forwarded-Email``, else ``X-Forwarded-User``)."""
        user = feedback_user(headers)
        async with self._lock:
            if not self._opened:
                try:
                    self._store = await asyncio.to_thread(store_from_env)
                    self._opened = True
                except Exception as err:
                    log.warning("the history store could not be opened: %s", type(err).__name__)
                    history = UserHistory(None, user)
                    history.note = NOT_SAVED
                    return history
        return UserHistory(self._store, user)


def _keep(saved: UserHistory, session: dict[str, Any], prompt: str, outcome: dict[str, Any],
          trace_id: str | None) -> None:
    """Keep one turn; the session learns the conversation's id and the answer's trace id (in place:
    a stopped turn has no output left to return them by)."""
    status = outcome.get("status", "stopped")
    text = outcome.get("text") or stopped_text(outcome.get("partial") or "")
    session["id"] = saved.save(session.get("id"), prompt, text, status=status,
                               trace_id=trace_id if status == "ok" else None, served_version=outcome.get("version"))
    session.setdefault("traces", []).append(trace_id if status == "ok" else None)


def _choices(page: ConversationPage) -> list[tuple[str, str]]:
    return [(c.title, c.id) for c in page.items]


def _answer_index(messages: list[dict[str, Any]], index: int) -> int:
    """Which answer (0 for the first) the Chatbot's message ``index`` is (pure)."""
    return sum(1 for m in messages[:index] if isinstance(m, dict) and m.get("role") == "assistant")


def build(runtime: Runtime, concurrency: int) -> gr.Blocks:
    stores = _Store()

    async def on_message(message: str, history: list[dict[str, Any]], originals: dict[str, str] | None,
                         session: dict[str, Any] | None, request: gr.Request) -> AsyncIterator[Any]:
        headers = request_headers(request)
        session = session if session is not None else {}
        saved = await stores.user(headers)
        outcome: dict[str, Any] = {}
        out: tuple[Any, ...] | None = None
        try:
            async for out in answer(runtime, message, history, dict(originals or {}), headers, outcome):
                yield (*out, session, gr.skip(), gr.skip())
        except gr.Error:  # no answer at all: kept as failed; the error shows as before (no answer bubble)
            session["id"] = await asyncio.to_thread(saved.save, session.get("id"), message, outcome.get("text", ""),
                                                    status="failed")
            raise
        except (asyncio.CancelledError, GeneratorExit):  # Stop, or the page closed: what had arrived, stopped
            _keep(saved, session, message, outcome, None)
            raise
        if out is not None:
            await asyncio.to_thread(_keep, saved, session, message, outcome, out[2])
            page = await asyncio.to_thread(saved.page, int(session.get("page", 0)))
            listed = gr.skip() if page is None else gr.update(choices=_choices(page), value=session.get("id"))
            yield (*out, session, html_text(saved.note or ""), listed)

    with gr.Blocks(title=runtime.config.title) as demo:
        gr.Markdown(f"# {runtime.config.title}")
        # per browser session: the open conversation's id, the list's page, each answer's trace id
        session = gr.State({})
        with gr.Tabs():
            with gr.Tab("Chat"), gr.Row():
                with gr.Column(scale=3):
                    details = gr.Markdown(render=False)
                    note = gr.HTML(render=False)  # about the history: text, never markup
                    listed = gr.Radio(choices=[], label="Your conversations", render=False)  # titles: text
                    trace_state = gr.State(None)  # the answer the thumbs below rate (the latest, or one clicked)
                    originals = gr.State({})  # answer as shown -> the model's own text (sent back next turn)
                    chatbot = gr.Chatbot(label="Conversation", height=460)
                    chat = gr.ChatInterface(
                        on_message,
                        chatbot=chatbot,
                        textbox=gr.Textbox(placeholder="Ask the model", show_label=False, submit_btn=True,
                                           stop_btn=True),
                        additional_inputs=[originals, session],
                        additional_outputs=[details, trace_state, originals, session, note, listed],
                        stop_btn=True,
                        api_name="chat",
                    )
                    details.render()

                    async def remember(trace_id: str | None, thumbs_up: bool, comment: str | None,
                                       headers: dict[str, str]) -> None:
                        saved = await stores.user(headers)
                        await asyncio.to_thread(saved.vote, trace_id, thumbs_up=thumbs_up, comment=comment)

                    comment, _, status = feedback_controls(trace_state, remember=remember)
                    # a new answer (or a cleared chat) starts with an empty comment and no status. Only when
                    # the trace goes to None (the answer's first chunk, or Clear): clearing again when the
                    # finished answer's trace id arrives could wipe a comment the user has started typing
                    trace_state.change(lambda trace: ("", "") if trace is None else (gr.skip(), gr.skip()),
                                       inputs=trace_state, outputs=[comment, status], api_visibility="private")
                with gr.Column(scale=2):
                    gr.Markdown("## Conversations")
                    note.render()
                    new = gr.Button("New conversation", size="sm")
                    listed.render()
                    with gr.Row():
                        newer = gr.Button("Newer", size="sm", visible=False)
                        older = gr.Button("Older", size="sm", visible=False)
                    # Drawn open: Gradio 6 holds back an update to a component in a closed accordion
                    # (here the open conversation's title, on every page load) and applies it after the
                    # accordion is opened, up to seconds later: over what the user had begun to type.
                    with gr.Accordion("Rename or delete", open=True):
                        title = gr.Textbox(label="Title", max_length=200)
                        rename = gr.Button("Rename", size="sm")
                        delete = gr.Button("Delete conversation", size="sm", variant="stop")
                    gr.Markdown("## Model")
                    card = gr.Markdown()
                    demo.load(runtime.model_card, outputs=card)
            # the same Feedback tab as the tabular app: answers per version, thumbs, comments
            feedback_tab(lambda: runtime.model_name, runtime.tracking_ready)

        async def show(session: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            """The user's conversations as they are now (and the note about the history)."""
            saved = await stores.user(request_headers(request))
            number = int((session or {}).get("page", 0))
            page = await asyncio.to_thread(saved.page, number)
            said = html_text(saved.note) if saved.note else gr.skip()  # a note the step before left stays
            if page is None:
                return gr.update(choices=[], value=None), gr.update(visible=False), gr.update(visible=False), said
            return (gr.update(choices=_choices(page), value=(session or {}).get("id")),
                    gr.update(visible=page.has_more), gr.update(visible=number > 0), said)

        async def open_conversation(conversation_id: str | None, session: dict[str, Any] | None,
                                    request: gr.Request) -> tuple[Any, ...]:
            saved = await stores.user(request_headers(request))
            turns = await asyncio.to_thread(saved.open, conversation_id) if conversation_id else []
            messages, shown_originals, thumbs, traces = chatbot_turns(turns or [])
            new_session = {"page": (session or {}).get("page", 0), "traces": traces,
                           "id": conversation_id if turns is not None else None}
            name = await asyncio.to_thread(saved.title, new_session["id"])
            return (messages, gr.update(feedback_value=thumbs), shown_originals, new_session, None,
                    name or "", html_text(saved.note or ""))

        opened = [chat.chatbot_value, chatbot, originals, session, trace_state, title, note]
        listing = [listed, older, newer, note]
        private: dict[str, Any] = {"api_visibility": "private"}

        async def on_load(session: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            """``?conversation=<id>`` opens one of the user's conversations (anyone else's: nothing)."""
            wanted = dict(request.query_params or {}).get("conversation")
            return await open_conversation(wanted or None, session, request)

        async def start_new(session: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            return await open_conversation(None, session, request)

        demo.load(on_load, inputs=[session], outputs=opened, **private).then(
            show, inputs=[session], outputs=listing, **private)
        listed.input(open_conversation, inputs=[listed, session], outputs=opened, **private)
        new.click(start_new, inputs=[session], outputs=opened, **private).then(
            show, inputs=[session], outputs=listing, **private)
        chatbot.clear(start_new, inputs=[session], outputs=opened, **private).then(
            show, inputs=[session], outputs=listing, **private)

        def older_page(session: dict[str, Any]) -> dict[str, Any]:
            return {**session, "page": int(session.get("page", 0)) + 1}

        def newer_page(session: dict[str, Any]) -> dict[str, Any]:
            return {**session, "page": max(0, int(session.get("page", 0)) - 1)}

        for button, step in ((older, older_page), (newer, newer_page)):
            button.click(step, inputs=[session], outputs=[session], **private).then(
                show, inputs=[session], outputs=listing, **private)

        async def on_rename(new_title: str, session: dict[str, Any], request: gr.Request) -> str:
            saved = await stores.user(request_headers(request))
            if session.get("id"):
                await asyncio.to_thread(saved.rename, session["id"], new_title)
            return html_text(saved.note or "")

        async def on_delete(session: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            saved = await stores.user(request_headers(request))
            if session.get("id"):
                await asyncio.to_thread(saved.delete, session["id"])
            out = await open_conversation(None, session, request)
            return (*out[:-1], html_text(saved.note or ""))

        rename.click(on_rename, inputs=[title, session], outputs=[note], **private).then(
            show, inputs=[session], outputs=listing, **private)
        delete.click(on_delete, inputs=[session], outputs=opened, **private).then(
            show, inputs=[session], outputs=listing, **private)

        async def on_like(messages: list[dict[str, Any]], session: dict[str, Any], text: str, data: gr.LikeData,
                          request: gr.Request) -> tuple[Any, ...]:
            """A thumb on any answer: stored on its trace and kept; the comment box below then rates it."""
            traces = (session or {}).get("traces") or []
            which = _answer_index(messages or [], data.index if isinstance(data.index, int) else data.index[0])
            trace_id = traces[which] if which < len(traces) else None
            if data.liked not in (True, False) or trace_id is None:
                return gr.skip(), gr.skip()
            headers = request_headers(request)
            line = await asyncio.to_thread(save_vote, trace_id, feedback_user(headers), thumbs_up=bool(data.liked),
                                           comment=text or None)
            await remember(trace_id, bool(data.liked), text or None, headers)
            return trace_id, html_text(line)

        chatbot.like(on_like, inputs=[chatbot, session, comment], outputs=[trace_state, status], **private)
    demo.queue(default_concurrency_limit=concurrency)
    return demo
