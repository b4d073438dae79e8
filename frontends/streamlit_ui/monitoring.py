"""Streamlit's Monitoring tab: per version, line charts over the windows, the feature drift table
with verdicts, and a chosen feature's baseline and current distributions overlaid. Content from
``frontends.core.monitoring``; drawn only while the tab is open, for reviewers only."""

from __future__ import annotations

import streamlit as st

from frontends.core.feedback import FeedbackAccess
from frontends.core.monitoring import LINE_METRICS, MonitoringView, default_feature, monitoring_view, overlay_rows
from frontends.streamlit_ui.chart import line_chart_spec, overlay_chart_spec

__all__ = ["monitoring_page"]


@st.cache_data(ttl=30, show_spinner="Computing the monitoring report...")
def cached_view(model_name: str | None, experiment_id: str | None, registry_uri: str | None) -> MonitoringView:
    # computed for a reviewer (the only visitors who reach it): what others may not see is never cached for them
    return monitoring_view(model_name, experiment_id, FeedbackAccess(reviewer=True, user=""), registry_uri)


def monitoring_page(model_name: str | None, experiment_id: str | None, access: FeedbackAccess,
                    registry_uri: str | None = None) -> None:
    st.subheader(f"Monitoring {model_name or 'the model'}")
    if not access.reviewer:
        st.info(monitoring_view(model_name, experiment_id, access).note)
        return
    if st.button("Refresh", key="monitoring-refresh"):
        cached_view.clear()
    view = cached_view(model_name, experiment_id, registry_uri)
    if view.failed:
        cached_view.clear()
        st.error(view.note)
        return
    st.caption(view.note)
    if view.report is None:
        return
    import pandas as pd

    st.dataframe(pd.DataFrame(view.summary), hide_index=True, width="stretch")
    if view.problems:
        st.warning(f"{len(view.problems)} rule(s) broken")
        st.dataframe(pd.DataFrame(view.problems), hide_index=True, width="stretch")
    columns = st.columns(2)
    for i, metric in enumerate(LINE_METRICS):
        with columns[i % 2]:
            st.caption(metric)
            st.vega_lite_chart(spec=line_chart_spec(view.lines[metric], "window", metric, "version"), height=200,
                               width="stretch")
    version = st.selectbox("Version", view.versions, key="monitoring-version")
    rows = view.drift.get(version or "", [])
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    features = [r["feature"] for r in rows]
    if features:
        feature = st.selectbox("Distribution of", features, index=features.index(default_feature(rows) or features[0]),
                               key="monitoring-feature")
        overlay = overlay_rows(view, version or "", feature or "")
        if overlay:
            st.vega_lite_chart(spec=overlay_chart_spec(overlay, "bin", "share", "sample"), height=240, width="stretch")
