"""A rollout's evidence from client.monitoring: one :class:`~._canary.Evidence` per served entity.

client.monitoring reads the records (one row per scored record, from the traces the SDK and the
apps write) and reports, per served entity, requests, errors, latency percentiles, label and
thumbs-up quality, and the drift / data-quality rules each breaks. This module only translates
that report (:func:`evidence_from_report`, pure) and asks for it over a window
(:func:`monitoring_evidence`). Health rules are left out of ``broken_rules``: the rollout judges
error rate and latency itself, challenger against champion.

Example::

    evidence = monitoring_evidence(experiments=["/Shared/predictor-streamlit-feedback"])
    evidence("iris-ab", ["champion", "challenger"], start, end)["challenger"].requests
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._canary import Evidence, finite

__all__ = ["evidence_from_report", "monitoring_evidence", "records_evidence"]

logger = logging.getLogger(__name__)


def _entity_evidence(group: Any) -> Evidence:
    labels = getattr(group, "labels", None)
    metric: tuple[str, float] | None = None
    if labels is not None and (acc := finite(getattr(labels, "accuracy", None))) is not None:
        metric = ("accuracy", float(acc))
    elif labels is not None and (rmse := finite(getattr(labels, "rmse", None))) is not None:
        metric = ("rmse", float(rmse))
    broken = tuple(sorted({f"{b.kind}:{b.column}" if b.column else str(b.kind)
                           for b in getattr(group, "broken", None) or [] if b.kind != "health"}))
    return Evidence(
        requests=int(group.requests),
        errors=int(group.errors),
        p99_ms=finite(group.latency_p99_ms),
        feedback=int(getattr(labels, "votes", 0) or 0),
        thumbs_up=int(getattr(labels, "thumbs_up", 0) or 0),
        labels=int(getattr(labels, "labelled", 0) or 0),
        label_metric=metric,
        broken_rules=broken,
    )


def evidence_from_report(report: Any) -> dict[str, Evidence]:
    """A ``client.monitoring`` report grouped by served entity, as evidence per served entity."""
    return {str(g.served_entity or g.group): _entity_evidence(g) for g in report.groups}


def monitoring_evidence(*, model: str | None = None, experiments: Sequence[str] | None = None,
                        registry_uri: str | None = None, **monitor_options: Any) -> Any:
    """An evidence source (``_rollout.EvidenceSource``) over ``client.monitoring.monitor``: the
    endpoint's traced predictions in the window, grouped by served entity. With ``model`` (the
    registered model both entities serve) each version's training data is its drift baseline.

    A window without any traced prediction is no evidence at all (every count zero: the step
    waits), never an error that stops the rollout.
    """
    from ..monitoring import NoDataError, monitor

    def evidence(endpoint: str, entities: Sequence[str], start: datetime, end: datetime) -> dict[str, Evidence]:
        try:
            report = monitor(model, endpoint=endpoint, experiments=experiments, since=start, until=end,
                             by="served_entity", registry_uri=registry_uri, **monitor_options)
        except NoDataError as err:
            logger.info("no evidence for %s between %s and %s: %s", endpoint, start, end, err)
            return {}
        found = evidence_from_report(report)
        return {name: found.get(name, Evidence()) for name in entities}

    return evidence


def records_evidence(load_records: Any, **report_options: Any) -> Any:
    """An evidence source over any records frame: ``load_records(endpoint, start, end)`` returns
    one (e.g. unpacked from the endpoint's inference table), ``client.monitoring.report`` judges it.

    Example::

        evidence = records_evidence(lambda name, start, end: unpack(read_payload(name, start, end)))
    """
    from ..monitoring import NoDataError, report

    def evidence(endpoint: str, entities: Sequence[str], start: datetime, end: datetime) -> dict[str, Evidence]:
        try:
            found = evidence_from_report(report(load_records(endpoint, start, end), by="served_entity", since=start,
                                                until=end, **report_options))
        except NoDataError as err:
            logger.info("no evidence for %s between %s and %s: %s", endpoint, start, end, err)
            return {}
        return {name: found.get(name, Evidence()) for name in entities}

    return evidence
