"""Streamlit feedback: thumbs and a comment under a traced answer, and the Feedback page.

``feedback_controls(trace_id, user, key=...)`` is reusable under any answer that has a trace
(a form prediction here; a chat answer on the chat page). ``feedback_page(model_name)``
compares model versions by what users said.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from client.feedback import (
    comment_rows,
    parse_expected,
    rate_rows,
    record_feedback,
    summarize,
    summary_rows,
    trace_experiment_ids,
)
from frontends.streamlit_ui.chart import bar_chart

log = logging.getLogger(__name__)


def feedback_controls(trace_id: str | None, user: str, *, key: str, ask_expected: bool = False) -> None:
    """Thumbs up/down (accessible names "Thumbs up"/"Thumbs down") and an optional comment for
    one traced answer; each change is stored at once (a repeat vote updates the user's own)."""
    if not trace_id:
        st.caption("Feedback is unavailable: this prediction was not traced.")
        return
    thumbs_key, comment_key = f"{key}:thumbs:{trace_id}", f"{key}:comment:{trace_id}"
    expected_key, status_key = f"{key}:expected:{trace_id}", f"{key}:status:{trace_id}"

    def save() -> None:
        value = st.session_state.get(thumbs_key)
        if value is None:  # 0 is thumbs down: only None means "no vote (yet)"
            return
        try:
            vote = record_feedback(trace_id, user, thumbs_up=value == 1,
                                   comment=st.session_state.get(comment_key),
                                   expected=parse_expected(st.session_state.get(expected_key)))
            st.session_state[status_key] = f"Feedback saved: thumbs {'up' if vote.thumbs_up else 'down'}" + (
                f", \"{vote.comment}\"" if vote.comment else "") + "."
            cached_summary.clear()
        except Exception as err:  # the store is down: say so, keep the page
            log.warning("feedback not saved: %s: %s", type(err).__name__, err)
            st.session_state[status_key] = "Feedback could not be saved (the tracking store is unavailable)."

    st.caption("Was this right?")
    st.text_input("Comment (optional)", key=comment_key, on_change=save)
    if ask_expected:
        st.text_input("Correct value (optional)", key=expected_key, on_change=save,
                      help="The prediction you believe is right; stored with your feedback.")
    st.feedback("thumbs", key=thumbs_key, on_change=save)
    if status_key in st.session_state:
        st.caption(st.session_state[status_key])


@st.cache_data(ttl=30, show_spinner="Reading feedback...")
def cached_summary(model_name: str | None, experiment_id: str) -> tuple[list[dict[str, Any]], ...]:
    summary = summarize(model_name, trace_experiment_ids(experiment_id))
    return summary_rows(summary), rate_rows(summary), comment_rows(summary)


def feedback_page(model_name: str | None, experiment_id: str | None) -> None:
    """Per model version and served entity: predictions, share with feedback, thumbs-up rate, comments."""
    st.subheader(f"Feedback on {model_name or 'the model'}")
    if st.button("Refresh", key="feedback-refresh"):  # the summary is cached for 30 s: this reads the store now
        cached_summary.clear()
    if experiment_id is None:
        st.info("No MLflow experiment is available: predictions are not traced, so there is no feedback.")
        return
    try:
        rows, rates, comments = cached_summary(model_name, experiment_id)
    except Exception as err:
        log.warning("feedback summary unavailable: %s: %s", type(err).__name__, err)
        st.error("The feedback summary could not be read from the tracking store.")
        return
    if not rows:
        st.caption("No traced predictions yet (last 30 days).")
        return
    import pandas as pd  # here, not at import: the form is drawn before any table needs it

    st.caption("Latest 10,000 traced predictions of the last 30 days, per model version and served entity.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if rates:
        st.caption("Thumbs-up rate")
        bar_chart(rates, x="version", y="thumbs-up rate")
    if comments:
        st.caption("Latest comments")
        st.dataframe(pd.DataFrame(comments), hide_index=True, width="stretch")
