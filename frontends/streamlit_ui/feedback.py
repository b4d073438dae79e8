"""Streamlit feedback: thumbs and a comment under a traced answer, and the Feedback page.

``feedback_controls(trace_id, user, key=...)`` is reusable under any answer that has a trace
(a form prediction here; a chat answer on the chat page). ``feedback_page(model_name, ...)``
compares model versions by what users said, for reviewers; anyone else sees their own comments.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from frontends.core.feedback import (
    ASK,
    NOT_TRACED,
    FeedbackAccess,
    SummaryTables,
    lost_traces_note,
    save_vote,
    summary_tables,
    visible_tables,
)
from frontends.streamlit_ui.chart import bar_chart


def feedback_controls(trace_id: str | None, user: str, *, key: str, ask_expected: bool = False,
                      remembered: tuple[bool | None, str | None] = (None, None),
                      remember: Callable[[bool, str | None], None] | None = None) -> None:
    """Thumbs up/down (accessible names "Thumbs up"/"Thumbs down") and an optional comment for
    one traced answer; each change is stored at once (a repeat vote updates the user's own).

    ``remembered``: the vote the chat history kept (the thumbs start in that state);
    ``remember``: called with each vote stored, to keep it there too."""
    if not trace_id:
        st.caption(NOT_TRACED)
        return
    thumbs_key, comment_key = f"{key}:thumbs:{trace_id}", f"{key}:comment:{trace_id}"
    expected_key, status_key = f"{key}:expected:{trace_id}", f"{key}:status:{trace_id}"
    if remembered[0] is not None and thumbs_key not in st.session_state:  # a reopened conversation
        st.session_state[thumbs_key] = 1 if remembered[0] else 0
        st.session_state.setdefault(comment_key, remembered[1] or "")

    def save() -> None:
        value = st.session_state.get(thumbs_key)
        if value is None:  # 0 is thumbs down: only None means "no vote (yet)"
            return
        comment = st.session_state.get(comment_key)
        st.session_state[status_key] = save_vote(trace_id, user, thumbs_up=value == 1, comment=comment,
                                                 expected=st.session_state.get(expected_key))
        if remember is not None:
            remember(value == 1, comment)
        cached_summary.clear()

    st.caption(ASK)
    st.text_input("Comment (optional)", key=comment_key, on_change=save)
    if ask_expected:
        st.text_input("Correct value (optional)", key=expected_key, on_change=save,
                      help="The prediction you believe is right; stored with your feedback.")
    st.feedback("thumbs", key=thumbs_key, on_change=save)
    if status_key in st.session_state:  # it quotes the user's comment: text, never Markdown
        st.text(st.session_state[status_key])


@st.cache_data(ttl=30, show_spinner="Reading feedback...")
def cached_summary(model_name: str | None, experiment_id: str | None) -> SummaryTables:
    return summary_tables(model_name, experiment_id)


def feedback_page(model_name: str | None, experiment_id: str | None, access: FeedbackAccess) -> None:
    """Per model version and served entity: predictions, share with feedback, thumbs-up rate, comments
    (a reviewer); anyone else: their own comments only (``access``, from ``feedback_access``)."""
    st.subheader(f"Feedback on {model_name or 'the model'}")
    if lost := lost_traces_note():
        st.caption(lost)
    if st.button("Refresh", key="feedback-refresh"):  # the summary is cached for 30 s: this reads the store now
        cached_summary.clear()
    # cached for everyone, filtered per visitor: what one may not see never reaches their page
    tables = visible_tables(cached_summary(model_name, experiment_id), access)
    if tables.failed:
        cached_summary.clear()  # the store was down: ask it again on the next run
        st.error(tables.note)
        return
    if experiment_id is None:
        st.info(tables.note)
        return
    import pandas as pd  # here, not at import: the form is drawn before any table needs it

    if not tables.rows:  # nothing yet, or not a reviewer: at most the visitor's own comments
        st.caption(tables.note)
        if tables.comments:
            st.dataframe(pd.DataFrame(tables.comments), hide_index=True, width="stretch")
        return

    st.caption(tables.note)
    st.dataframe(pd.DataFrame(tables.rows), hide_index=True, width="stretch")
    if tables.rates:
        st.caption("Thumbs-up rate")
        bar_chart(tables.rates, x="version", y="thumbs-up rate")
    if tables.comments:
        st.caption("Latest comments")
        st.dataframe(pd.DataFrame(tables.comments), hide_index=True, width="stretch")
